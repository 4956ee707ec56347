"""`kubecarbon report` against a real Prometheus that scraped a real collector.

The collector is fed a known simulated fleet over HTTP; Prometheus scrapes it every
second; the report, run as the console command, must give back what was fed: the
collector's own counters (read straight from its /metrics once the feeding stopped)
and, independently of the collector, the CPU seconds of every namespace summed from
the reports sent.
"""

import asyncio
import csv
import io
import re
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.app import create_app
from collector.model.parameters import make_profile
from collector.settings import Settings
from collector.simulate import FleetSettings, SimulatedFleet, post_reports

KUBECARBON = shutil.which("kubecarbon", path=str(Path(sys.executable).parent)) or "kubecarbon"
KWH = 3.6e6
ROUNDS = 12
COLLAPSE_FROM_ROUND = 8  # the last rounds run at 3 % of the load: avoided CO2e goes down


async def kubecarbon_report(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        KUBECARBON, "report", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def wait_for_scrapes(session: aiohttp.ClientSession, prometheus: str, count: int) -> None:
    """Until Prometheus holds `count` more successful scrapes of the collector than now."""

    async def scrapes() -> int:
        query = 'count_over_time(up{job="kubecarbon"}[1h])'
        async with session.get(f"{prometheus}/api/v1/query", params={"query": query}) as r:
            result = (await r.json())["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    target = await scrapes() + count
    deadline = time.monotonic() + 30
    while await scrapes() < target:
        assert time.monotonic() < deadline, "Prometheus is not scraping the collector"
        await asyncio.sleep(0.2)


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def summed(samples, name: str, by: str | None = None) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for sample_name, labels, value in samples:
        if sample_name == name:
            out[labels.get(by, "") if by else ""] += value
    return dict(out)


@pytest.mark.slow
async def test_report_totals_match_what_the_collector_counted(aiohttp_server, start_prometheus,
                                                              tmp_path):
    fleet = SimulatedFleet(FleetSettings(nodes=30, seed=21, window_seconds=1.0))
    app = create_app(Settings(kubernetes="off"), metadata=fleet.metadata())
    server = await aiohttp_server(app, host="127.0.0.1")
    collector = f"http://127.0.0.1:{server.port}"
    prometheus = (await asyncio.to_thread(start_prometheus, [f"127.0.0.1:{server.port}"], 1.0)).url
    pods = fleet.pod_infos()
    fed_cpu_seconds: dict[str, float] = defaultdict(float)

    async with aiohttp.ClientSession() as session:
        await wait_for_scrapes(session, prometheus, 1)
        # Prometheus scrapes the collector but no node has reported: a clear error
        code, out, err = await kubecarbon_report("--prometheus", prometheus, "--start", "now-5m",
                                                 "--format", "json")
        assert code == 1 and out == ""
        assert re.fullmatch(r"kubecarbon report: error: no kubecarbon data in Prometheus at "
                            r"\S+ between \S+ and \S+ \(is it scraping the collector\?\)\n", err)

        start = time.time()
        await asyncio.sleep(1.2)
        for round_ in range(ROUNDS):
            if round_ == COLLAPSE_FROM_ROUND:
                fleet.load_scale = 0.03
            reports = fleet.reports()
            for report in reports:
                for pod in report["pods"]:
                    fed_cpu_seconds[pods[pod["uid"]].namespace] += pod["cpu_seconds"]
            accepted, duplicates = await post_reports(session, f"{collector}/api/v1/reports",
                                                      reports)
            assert (accepted, duplicates) == (len(reports), 0)
            await asyncio.sleep(1.0)
        await wait_for_scrapes(session, prometheus, 2)  # both after the last report
        end = time.time()
        async with session.get(f"{collector}/metrics") as response:
            samples = metric_samples(await response.text())
        await asyncio.sleep(1.1)  # Prometheus has samples on both sides of `end`

        code, out, err = await kubecarbon_report(
            "--prometheus", prometheus, "--start", repr(start), "--end", repr(end),
            "--format", "json")
        assert code == 0, err
        report = orjson.loads(out)
        # Rightsizing: no workload has a recommendation after seconds of history, so every
        # one is listed as such, with the cores its pods request (constant: mean = value).
        section = report["rightsizing"]
        assert section["available"] and section["top_workloads"] == []
        requested: dict[tuple[str, str], float] = defaultdict(float)
        for pod in pods.values():
            requested[pod.namespace, pod.workload_name] += pod.cpu_request_cores
        listed = {(r["namespace"], r["workload"]): r["requested_cores"]
                  for r in section["without_recommendation"]}
        assert listed.keys() == requested.keys()
        for key, cores in requested.items():
            assert listed[key] == pytest.approx(cores), key
        assert section["fleet"]["avoidable_nodes"] == 0

        # the same period with a 0.1 s step: several chunked queries and a progress bar
        code, fine_out, fine_err = await kubecarbon_report(
            "--prometheus", prometheus, "--start", repr(start), "--end", repr(end),
            "--format", "csv", "--step", "0.1", "--progress", "always")
        assert code == 0, fine_err
        assert "kubecarbon report" in fine_err and "query" in fine_err
        html_path = tmp_path / "report.html"
        code, _, err = await kubecarbon_report(
            "--prometheus", prometheus, "--start", repr(start), "--end", repr(end),
            "--format", "html", "--output", str(html_path))
        assert code == 0, err

    # -- totals against the collector's own counters ------------------------------------
    rel = 0.01
    it_energy = summed(samples, "kubecarbon_node_energy_joules_total", "region")
    operational = summed(samples, "kubecarbon_node_co2e_grams_total", "region")
    embodied = summed(samples, "kubecarbon_node_embodied_co2e_grams_total", "region")
    regions = {row["region"]: row for row in report["by_region"]}
    assert set(regions) == set(it_energy) and len(regions) >= 8
    for region, row in regions.items():
        assert row["it_energy_kwh"] == pytest.approx(it_energy[region] / KWH, rel=rel)
        assert row["operational_tco2e"] == pytest.approx(operational[region] / 1e6, rel=rel)
        assert row["embodied_tco2e"] == pytest.approx(embodied[region] / 1e6, rel=rel)
    totals = report["totals"]
    assert totals["it_energy_kwh"] == pytest.approx(sum(it_energy.values()) / KWH, rel=rel)
    assert totals["operational_tco2e"] == pytest.approx(sum(operational.values()) / 1e6, rel=rel)

    # facility energy, independently: each node's IT energy times its profile's PUE
    nodes = fleet.node_infos()
    facility: dict[str, float] = defaultdict(float)
    for name, labels, value in samples:
        if name == "kubecarbon_node_energy_joules_total":
            info = nodes[labels["node"]]
            pue = make_profile(provider=info.provider, region=info.region).pue
            facility[labels["region"]] += value * pue / KWH
    for region, row in regions.items():
        assert row["facility_energy_kwh"] == pytest.approx(facility[region], rel=rel)
    assert totals["facility_energy_kwh"] == pytest.approx(sum(facility.values()), rel=rel)

    # namespaces: CPU against what was fed, energy and CO2e against the collector
    namespaces = {row["namespace"]: row for row in report["by_namespace"]}
    assert set(namespaces) == set(fed_cpu_seconds)
    ns_co2e = summed(samples, "kubecarbon_namespace_co2e_grams_total", "namespace")
    ns_energy = summed(samples, "kubecarbon_namespace_energy_joules_total", "namespace")
    for namespace, row in namespaces.items():
        assert row["cpu_core_hours"] * 3600 == pytest.approx(fed_cpu_seconds[namespace], rel=rel)
        assert row["tco2e"] == pytest.approx(ns_co2e[namespace] / 1e6, rel=rel)
        assert row["energy_kwh"] == pytest.approx(ns_energy[namespace] / KWH, rel=rel)

    # the baseline and what was avoided (signed: the collapse pulled it down)
    baseline = report["baseline"]
    assert baseline["baseline_energy_kwh"] == pytest.approx(
        summed(samples, "kubecarbon_baseline_energy_joules_total")[""] / KWH, rel=rel)
    assert baseline["avoided_energy_kwh"] == pytest.approx(
        summed(samples, "kubecarbon_avoided_energy_joules_total")[""] / KWH, rel=rel)
    scopes = summed(samples, "kubecarbon_avoided_co2e_grams_total", "scope")
    assert baseline["avoided_operational_tco2e"] == pytest.approx(scopes["operational"] / 1e6,
                                                                  rel=rel)
    assert baseline["avoided_embodied_tco2e"] == pytest.approx(scopes["embodied"] / 1e6, rel=rel)
    band = baseline["avoided_tco2e_band"]
    # the model's band over the summed counters, with the ranges the collector published
    assert "quantile of the sum" in baseline["band_method"]
    assert band["p05"] < baseline["avoided_tco2e"] < band["p95"]
    servers = baseline["mean_avoided_servers_band"]
    assert servers["p05"] <= servers["p50"] <= servers["p95"]
    assert report["disclosure"]["preset"] == "default"
    assert {row["name"] for row in report["disclosure"]["assumptions"]} >= {
        "baseline_utilisation", "power_curve_multiplier", "cloud_power_multiplier"}
    assert baseline["mean_baseline_servers"] > 0 and baseline["mean_actual_servers"] > 0
    assert report["assumptions"] and report["assumptions"][0]["baseline_utilisation"] == "0.15"
    assert report["methodology"] == "docs/methodology.md"

    # the chunked, finer-step CSV gives the same totals
    rows = {(r[0], r[1], r[2]): r[3] for r in csv.reader(io.StringIO(fine_out))}
    for key in ("it_energy_kwh", "operational_tco2e", "embodied_tco2e"):
        assert float(rows["totals", "fleet", key]) == pytest.approx(totals[key], rel=1e-9)

    page = html_path.read_text()
    assert "kubecarbon period report" in page and "Assumptions in force" in page
    assert not re.search(r"""(src|href)\s*=""", page) and "<script" not in page


async def test_unreachable_prometheus_is_one_clear_line():
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = await kubecarbon_report("--prometheus", f"http://127.0.0.1:{port}",
                                             "--format", "csv")
    assert code == 1 and out == ""
    assert err.startswith(f"kubecarbon report: error: cannot reach Prometheus at "
                          f"http://127.0.0.1:{port}")
    assert err.count("\n") == 1


async def test_a_url_that_is_not_prometheus_is_named(aiohttp_server):
    server = await aiohttp_server(create_app(Settings(kubernetes="off")), host="127.0.0.1")
    code, _, err = await kubecarbon_report("--prometheus", f"http://127.0.0.1:{server.port}")
    assert code == 1
    assert "is not the Prometheus API" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "yesterday"], "expected RFC3339"),
        (["--start", "now-1h", "--end", "now-2h"], "is not after --start"),
        (["--step", "0"], "--step must be a positive"),
        (["--format", "pdf"], "invalid choice"),
    ],
)
async def test_bad_arguments_are_refused(args, message):
    code, _, err = await kubecarbon_report("--prometheus", "http://127.0.0.1:9", *args)
    assert code == 2 and message in err


async def test_flags_beat_environment_variables(tmp_path):
    import os

    config = tmp_path / "report.yaml"
    config.write_text("prometheus: http://127.0.0.1:3\nformat: csv\n")
    env = {**os.environ, "KUBECARBON_PROMETHEUS": "http://127.0.0.1:2"}

    async def error_with(*args: str, environment: dict[str, str]) -> str:
        process = await asyncio.create_subprocess_exec(
            KUBECARBON, "report", *args, env=environment,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 60)
        return err.decode()

    # flag > environment > config file > default
    assert "127.0.0.1:1" in await error_with("--config", str(config), "--prometheus",
                                             "http://127.0.0.1:1", environment=env)
    assert "127.0.0.1:2" in await error_with("--config", str(config), environment=env)
    assert "127.0.0.1:3" in await error_with("--config", str(config),
                                             environment=dict(os.environ))
