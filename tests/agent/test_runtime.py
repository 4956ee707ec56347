"""A real agent on a fixture node: outage and recovery end to end, /metrics, /healthz, SIGTERM."""

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from agent_testkit import FIXTURES, Sink, until
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from agent.runtime import Agent
from agent.settings import (
    AgentSettings,
    DeliverySettings,
    SamplerSettings,
    ServerSettings,
    SourceSettings,
)


def settings_for(root: Path, url: str, interval: float, **delivery) -> AgentSettings:
    return AgentSettings(
        node_name="ip-10-0-1-17",
        sources=SourceSettings(host_proc=root / "proc", host_sys=root / "sys"),
        sampler=SamplerSettings(interval_seconds=interval),
        delivery=DeliverySettings(
            collector_url=url,
            backoff_initial_seconds=0.01,
            backoff_max_seconds=0.05,
            shutdown_grace_seconds=5.0,
            **delivery,
        ),
        server=ServerSettings(listen_host="127.0.0.1", listen_port=0),
    )


async def scrape(port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return {
        sample.name
        + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_agent_survives_an_outage_and_delivers_every_window_once(
    aiohttp_server, unused_tcp_port
):
    sink = Sink()
    agent = Agent(
        settings_for(
            FIXTURES / "v2-systemd-containerd", f"http://127.0.0.1:{unused_tcp_port}", 0.05
        )
    )
    await agent.start()
    try:
        # connection refused: reports pile up, and the metrics say so
        await until(lambda: agent.publisher._next_seq > 5)
        # windows close every 50 ms, so more may be published while the scrape runs
        published_before = agent.publisher._next_seq - 1
        metrics = await scrape(agent.http_port)
        published_after = agent.publisher._next_seq - 1
        assert (published_before <= metrics["kubecarbon_agent_reports_buffered"]
                <= published_after + 1)
        assert metrics["kubecarbon_agent_reports_sent_total"] == 0
        # the collector comes up but answers 503
        sink.mode = "unavailable"
        server = await aiohttp_server(sink.app(), port=unused_tcp_port)
        await until(lambda: sink.requests >= 2)
        sink.mode = "accept"
        backlog_and_three_more = agent.publisher._next_seq + 2
        await until(lambda: len(sink.accepted) >= backlog_and_three_more)
    finally:
        await agent.stop()
    seqs = [report["seq"] for report in sink.accepted]
    assert seqs == list(range(1, len(seqs) + 1))  # every seq exactly once, in order
    assert len(seqs) == agent.publisher._next_seq - 1
    for previous, current in zip(sink.accepted, sink.accepted[1:], strict=False):
        assert current["start"] == previous["end"]  # contiguous windows
    assert {report["containers_running"] for report in sink.accepted} == {4}
    assert {len(report["pods"]) for report in sink.accepted} == {3}
    registry_values = agent.metrics.registry.get_sample_value
    assert registry_values("kubecarbon_agent_reports_sent_total") == len(seqs)
    assert registry_values("kubecarbon_agent_reports_buffered") == 0
    assert registry_values("kubecarbon_agent_reports_dropped_total") == 0
    await server.close()


async def test_metrics_and_health_endpoints(fake_clock, aiohttp_server, node_copy):
    sink = Sink()
    server = await aiohttp_server(sink.app())
    registry = CollectorRegistry()
    root = node_copy("broken")  # a pod's cpu.stat is unreadable
    (root / "proc/meminfo").write_text((FIXTURES / "v2-no-pods/proc/meminfo").read_text())
    agent = Agent(
        settings_for(root, str(server.make_url("/")), 15.0),
        registry=registry,
        clock=fake_clock,
    )
    await agent.start()
    try:
        metrics = await scrape(agent.http_port)
        assert metrics["kubecarbon_agent_source_success{source=cpu}"] == 1
        assert metrics["kubecarbon_agent_source_success{source=memory}"] == 1
        assert metrics["kubecarbon_agent_source_success{source=pod_cpu}"] == 0
        assert metrics["kubecarbon_agent_source_success{source=density}"] == 1
        assert "kubecarbon_agent_source_duration_seconds{source=cpu}" in metrics
        assert metrics["kubecarbon_build_info{version=0.1.0}"] == 1
        for name in ("sent", "failed", "dropped"):
            assert metrics[f"kubecarbon_agent_reports_{name}_total"] == 0
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{agent.http_port}/healthz"
            async with session.get(url) as response:
                assert response.status == 200
            base = f"http://127.0.0.1:{agent.http_port}"
            async with session.get(base + "/nope") as response:
                assert response.status == 404
            async with session.post(base + "/metrics") as response:
                assert response.status == 405
            fake_clock.advance(46)  # three intervals without a sample
            async with session.get(url) as response:
                assert response.status == 503
                assert "no sample for 46.0 s" in await response.text()
    finally:
        await agent.stop()
    # stopping closes the window in progress (46 s long) and delivers it
    assert [(r["seq"], r["end"] - r["start"]) for r in sink.accepted] == [(1, 46.0)]


@pytest.mark.slow
async def test_sigterm_flushes_the_last_window_and_exits_zero(aiohttp_server):
    sink = Sink()
    server = await aiohttp_server(sink.app())
    node = FIXTURES / "v2-cgroupfs-crio"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent",
        "--collector-url", str(server.make_url("/")), "--interval", "1",
        "--node-name", "ip-10-0-1-17", "--listen", "127.0.0.1:0",
        "--host-proc", str(node / "proc"), "--host-sys", str(node / "sys"),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        line = b""
        while b"serving on port" not in line:
            line = await asyncio.wait_for(process.stderr.readline(), 30)
            assert line, "agent exited before serving"
        await until(lambda: len(sink.accepted) >= 1)
        await asyncio.sleep(1.3)  # into the next window, past the 1 s minimum
        process.send_signal(signal.SIGTERM)
        stderr = (await asyncio.wait_for(process.stderr.read(), 30)).decode()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    seqs = [report["seq"] for report in sink.accepted]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2
    assert "undelivered" not in stderr
    assert re.search(r"agent [0-9a-f]{32} for node ip-10-0-1-17", line.decode())
    await server.close()


def test_build_info_version_is_the_installed_distributions():
    from importlib.metadata import version

    import agent

    assert agent.__version__ == version("kubecarbon")
