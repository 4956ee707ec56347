"""State snapshots: counters and dedupe survive a restart; a bad snapshot means a clean start."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from collector_testkit import JSON, T0, body_of, make_report, metadata_for_tests, samples, value
from prometheus_client import CollectorRegistry

from collector.app import TELEMETRY_KEY, create_app, save_snapshot
from collector.ingest import Ingestor
from collector.ledger import Ledger
from collector.metadata import StaticMetadataProvider
from collector.settings import Settings, StateSettings
from collector.snapshot import encode, restore_snapshot, write_atomically
from collector.status import HISTORY_KEY
from collector.telemetry import Telemetry

NODE = {"node": "ip-10-0-1-17", "region": "us-east-1", "instance_type": "m5.4xlarge",
        "power_source": "cloud_linear"}
COUNTERS = ("kubecarbon_node_energy_joules_total", "kubecarbon_node_co2e_grams_total",
            "kubecarbon_node_embodied_co2e_grams_total")


def settings_with(state_file: Path, interval: float = 3600.0) -> Settings:
    return Settings(state=dataclasses.replace(
        StateSettings(), state_file=state_file, snapshot_interval_seconds=interval))


def counter_values(text: str) -> dict:
    return {key: v for key, v in samples(text).items()
            if key[0].endswith("_total") and "snapshot" not in key[0]}


@pytest.mark.parametrize("child_render_min_nodes", [0, 1000], ids=["in a child", "on the loop"])
async def test_restart_resumes_counters_and_dedupe(aiohttp_client, clock, tmp_path,
                                                   child_render_min_nodes):
    state_file = tmp_path / "state.json"
    first = await aiohttp_client(create_app(
        settings_with(state_file), metadata=metadata_for_tests(), clock=clock,
        registry=CollectorRegistry(), status_page=False,
        child_render_min_nodes=child_render_min_nodes))
    report = make_report(seq=1)
    assert (await first.post("/api/v1/reports", data=body_of(report), headers=JSON)).status == 200
    before = counter_values(await (await first.get("/metrics")).text())
    await first.close()  # app cleanup writes the final snapshot
    assert state_file.exists()

    second = await aiohttp_client(create_app(
        settings_with(state_file), metadata=metadata_for_tests(), clock=clock,
        registry=CollectorRegistry(), status_page=False))
    text = await (await second.get("/metrics")).text()
    assert counter_values(text) == before
    assert value(text, "kubecarbon_collector_snapshot_restore", result="restored") == 1
    # the replay of an already-counted report is recognised after the restart
    replay = await second.post("/api/v1/reports", data=body_of(report), headers=JSON)
    assert await replay.json() == {"accepted": 0, "duplicates": 1}
    newer = make_report(seq=2, start=T0)
    assert (await second.post("/api/v1/reports", data=body_of(newer), headers=JSON)).status == 200
    after = await (await second.get("/metrics")).text()
    energy = ("kubecarbon_node_energy_joules_total", tuple(sorted(NODE.items())))
    assert samples(after)[energy] == pytest.approx(2 * before[energy])


@pytest.mark.parametrize("content", [
    b"", b"{", b"null", b"[]", b'{"format": "something-else", "version": 1, "state": {}}',
    b'{"format": "kubecarbon-collector-state", "version": 99, "state": {}}',
    b'{"format": "kubecarbon-collector-state", "version": 1, "state": {"nodes": "x"}}',
    b"\x00\xff" * 100,
])
async def test_corrupt_snapshot_means_clean_start(aiohttp_client, clock, tmp_path, content,
                                                  caplog):
    state_file = tmp_path / "state.json"
    state_file.write_bytes(content)
    client = await aiohttp_client(create_app(
        settings_with(state_file), clock=clock, registry=CollectorRegistry(), status_page=False))
    text = await (await client.get("/metrics")).text()
    assert value(text, "kubecarbon_collector_snapshot_restore", result="corrupt") == 1
    assert value(text, "kubecarbon_collector_reports_total", result="accepted") == 0
    assert "corrupt" in caplog.text
    ok = await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    assert ok.status == 200


async def test_corrupt_rows_are_refused_whole(clock, tmp_path):
    ingestor = Ingestor(Ledger(), metadata=metadata_for_tests(), clock=clock)
    ingestor.ingest([make_report()])
    document = orjson.loads(encode(ingestor.ledger, T0))
    document["state"]["nodes"][0][4] = -1.0  # a negative energy counter
    path = tmp_path / "state.json"
    path.write_bytes(orjson.dumps(document))
    fresh = Ledger()
    assert restore_snapshot(fresh, path) == "corrupt"
    assert fresh.nodes == {}


async def test_missing_snapshot_is_reported(aiohttp_client, clock, tmp_path):
    client = await aiohttp_client(create_app(
        settings_with(tmp_path / "absent.json"), clock=clock, registry=CollectorRegistry(),
        status_page=False))
    text = await (await client.get("/metrics")).text()
    assert value(text, "kubecarbon_collector_snapshot_restore", result="missing") == 1


class ListingProvider(StaticMetadataProvider):
    """A provider that starts, as the Kubernetes one does: it lists the cluster first."""

    def start(self) -> None:
        time.sleep(0.05)  # a worker thread; the event loop runs on meanwhile

    def stop(self) -> None:
        pass


async def test_status_history_starts_from_the_restored_counters(aiohttp_client, clock,
                                                                tmp_path):
    state_file = tmp_path / "state.json"
    first = await aiohttp_client(create_app(
        settings_with(state_file), metadata=metadata_for_tests(), clock=clock,
        registry=CollectorRegistry(), status_page=False))
    assert (await first.post("/api/v1/reports", data=body_of(make_report()),
                             headers=JSON)).status == 200
    energy = value(await (await first.get("/metrics")).text(),
                   "kubecarbon_node_energy_joules_total", **NODE)
    await first.close()  # writes the state file

    app = create_app(settings_with(state_file), metadata=ListingProvider(), clock=clock,
                     registry=CollectorRegistry())
    await aiohttp_client(app)
    history = app[HISTORY_KEY]
    deadline = time.monotonic() + 10
    while not history.points:  # the sampler takes its first point as soon as it runs
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    # the charts start from the restored counters, not from zero
    assert history.points[0].energy_joules == pytest.approx(energy)


async def test_periodic_snapshots_and_failures_are_counted(aiohttp_client, clock, tmp_path):
    state_file = tmp_path / "sub" / "state.json"  # the directory does not exist: writes fail
    app = create_app(settings_with(state_file, interval=0.05), clock=clock,
                     registry=CollectorRegistry(), status_page=False)
    client = await aiohttp_client(app)
    deadline = time.monotonic() + 10
    while app[TELEMETRY_KEY].snapshot_writes["failure"] < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    (tmp_path / "sub").mkdir()
    while app[TELEMETRY_KEY].snapshot_writes["success"] < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    text = await (await client.get("/metrics")).text()
    assert value(text, "kubecarbon_collector_snapshot_last_success_timestamp_seconds") == T0
    assert state_file.exists()


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "state.json"
    write_atomically(path, b"first")
    write_atomically(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# a bound on a hung start, not a speed check: a loaded machine takes tens of seconds to
# import numpy and aiohttp in a new process
def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("collector did not start")


def _start(state_file: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "KUBECARBON_KUBERNETES": "off"}
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "--listen", f"127.0.0.1:{port}",
         "--state-file", str(state_file), "--snapshot-interval", "3600"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_sigterm_writes_the_snapshot_and_a_new_process_resumes(tmp_path):
    state_file = tmp_path / "state.json"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(state_file, port)
    try:
        _wait_ready(url, process)
        request = urllib.request.Request(url + "/api/v1/reports", data=body_of(make_report()),
                                         headers=JSON, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert orjson.loads(response.read()) == {"accepted": 1, "duplicates": 0}
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            before = counter_values(response.read().decode())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert state_file.exists()

    process = _start(state_file, port)
    try:
        _wait_ready(url, process)
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            after = counter_values(response.read().decode())
        energy = [k for k in before if k[0] == "kubecarbon_node_energy_joules_total"]
        assert energy and all(after[k] == before[k] for k in energy)
        assert after[("kubecarbon_collector_reports_total", (("result", "accepted"),))] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


async def test_a_snapshot_in_a_child_holds_the_ledger_as_it_was_when_it_forked(clock, tmp_path):
    ledger = Ledger()
    ingestor = Ingestor(ledger, metadata=metadata_for_tests())
    ingestor.ingest([make_report(seq=1)])
    as_forked = ledger.to_document()
    telemetry = Telemetry()
    path = tmp_path / "state.json"
    saving = asyncio.create_task(
        save_snapshot(ledger, telemetry, path, clock, None, child_min_nodes=0))
    await asyncio.sleep(0)  # the task forks, then waits for the child on a thread
    ingestor.ingest([make_report(seq=2)])  # meanwhile, on the loop: only the parent sees it
    assert await saving
    assert ledger.to_document() != as_forked
    assert orjson.loads(path.read_bytes())["state"] == orjson.loads(orjson.dumps(as_forked))
    assert telemetry.snapshot_writes["success"] == 1


async def test_a_failed_child_is_a_failed_snapshot_and_the_last_one_stays(
        clock, tmp_path, monkeypatch, capfd):
    ledger = Ledger()
    Ingestor(ledger, metadata=metadata_for_tests()).ingest([make_report(seq=1)])
    telemetry = Telemetry()
    path = tmp_path / "state.json"
    assert await save_snapshot(ledger, telemetry, path, clock, None, child_min_nodes=0)
    kept = path.read_bytes()

    def broken(*args: object) -> bytes:
        raise MemoryError("encoding the ledger")
    monkeypatch.setattr("collector.app.encode", broken)
    assert not await save_snapshot(ledger, telemetry, path, clock, None, child_min_nodes=0)
    assert telemetry.snapshot_writes == {"success": 1, "failure": 1}
    assert path.read_bytes() == kept
    assert "MemoryError: encoding the ledger" in capfd.readouterr().err
