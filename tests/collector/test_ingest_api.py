"""Reports through the real HTTP API produce the numbers DESIGN's formulas give in /metrics.

Expected values are worked out here by hand from DESIGN's formulas and default
coefficients, not by calling the model, so a wrong wiring shows up.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from collector_testkit import (
    JSON,
    T0,
    body_of,
    gzipped,
    make_report,
    metadata_for_tests,
    samples,
    value,
)

from collector.app import create_app
from collector.metadata import StaticMetadataProvider
from collector.settings import DedupeSettings, ExportSettings, Settings

NODE = {"node": "ip-10-0-1-17", "region": "us-east-1", "instance_type": "m5.4xlarge",
        "power_source": "cloud_linear"}
SECONDS_PER_YEAR = 365 * 24 * 3600
# DESIGN: AWS 0.74 / 3.5 W per vCPU, 0.392 W per GB of memory above the reference server's
# share (R740: 192 GiB / 112 threads), PUE 1.135, us-east-1 379.1 g/kWh
MEMORY_WATTS = (64 - 16 * 192 / 112) * 0.392  # 14.336 W
WATTS_AT_HALF = 16 * (0.74 + 0.5 * (3.5 - 0.74)) + MEMORY_WATTS  # 48.256 W
IDLE_WATTS = 16 * 0.74 + MEMORY_WATTS
GRAMS_PER_JOULE = 1.135 * 379.1 / 3.6e6
EMBODIED_GRAMS_PER_SERVER_SECOND = 1313e3 / (4 * SECONDS_PER_YEAR)
BASELINE_SERVERS = (120 / 15) / (112 * 0.15)  # 8 busy CPUs on R740s at 15 %
ACTUAL_SERVERS = 16 / 112
R740_AT_15_PERCENT = (129.0 + 147.0) / 2  # halfway between the 10 % and 20 % points


@pytest.fixture
async def client(aiohttp_client, clock):
    app = create_app(metadata=metadata_for_tests(), clock=clock, status_page=False)
    return await aiohttp_client(app)


async def metrics_text(client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return await response.text()


async def test_one_aws_report_gives_design_numbers(client):
    response = await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    assert response.status == 200
    assert await response.json() == {"accepted": 1, "duplicates": 0}
    text = await metrics_text(client)

    energy = WATTS_AT_HALF * 15
    assert value(text, "kubecarbon_node_cpu_usage_ratio", **NODE) == pytest.approx(0.5)
    assert value(text, "kubecarbon_node_power_watts", **NODE) == pytest.approx(48.256)
    assert value(text, "kubecarbon_node_energy_joules_total", **NODE) == pytest.approx(energy)
    assert value(text, "kubecarbon_node_idle_energy_joules_total", **NODE) == pytest.approx(
        IDLE_WATTS * 15)
    assert value(text, "kubecarbon_node_co2e_grams_total", **NODE) == pytest.approx(
        energy * GRAMS_PER_JOULE)
    assert value(text, "kubecarbon_node_embodied_co2e_grams_total", **NODE) == pytest.approx(
        ACTUAL_SERVERS * EMBODIED_GRAMS_PER_SERVER_SECOND * 15)
    assert value(text, "kubecarbon_node_logical_cpus", **NODE) == 16
    assert value(text, "kubecarbon_node_pods", **NODE) == 2
    assert value(text, "kubecarbon_node_containers", **NODE) == 3
    assert value(text, "kubecarbon_node_last_report_timestamp_seconds", **NODE) == T0

    # dynamic energy split by CPU share: web 60 of 120 busy seconds, db 40
    dynamic = (WATTS_AT_HALF - IDLE_WATTS) * 15
    assert value(text, "kubecarbon_namespace_energy_joules_total", namespace="shop") == (
        pytest.approx(dynamic * 100 / 120))
    assert value(text, "kubecarbon_namespace_cpu_seconds_total", namespace="shop") == 100
    assert value(text, "kubecarbon_workload_energy_joules_total", namespace="shop",
                 workload_kind="Deployment", workload="web") == pytest.approx(dynamic * 60 / 120)
    assert value(text, "kubecarbon_workload_co2e_grams_total", namespace="shop",
                 workload_kind="StatefulSet", workload="db") == pytest.approx(
        dynamic * 40 / 120 * GRAMS_PER_JOULE)

    # the non-elastic baseline
    baseline_energy = BASELINE_SERVERS * R740_AT_15_PERCENT * 15
    assert value(text, "kubecarbon_fleet_cpu_usage_ratio") == pytest.approx(0.5)
    assert value(text, "kubecarbon_baseline_servers") == pytest.approx(BASELINE_SERVERS)
    assert value(text, "kubecarbon_actual_servers") == pytest.approx(ACTUAL_SERVERS)
    assert value(text, "kubecarbon_avoided_servers") == pytest.approx(
        BASELINE_SERVERS - ACTUAL_SERVERS)
    assert value(text, "kubecarbon_baseline_energy_joules_total") == pytest.approx(
        baseline_energy)
    # the memory above the reference share is held by the baseline too: it cancels
    avoided_energy = baseline_energy + MEMORY_WATTS * 15 - energy
    assert value(text, "kubecarbon_avoided_energy_joules_total") == pytest.approx(avoided_energy)
    assert value(text, "kubecarbon_avoided_co2e_grams_total", scope="operational") == (
        pytest.approx(avoided_energy * GRAMS_PER_JOULE))
    assert value(text, "kubecarbon_avoided_co2e_grams_total", scope="embodied") == pytest.approx(
        (BASELINE_SERVERS - ACTUAL_SERVERS) * EMBODIED_GRAMS_PER_SERVER_SECOND * 15)
    p05, p50, p95 = (value(text, "kubecarbon_avoided_co2e_grams_per_hour", quantile=q)
                     for q in ("0.05", "0.5", "0.95"))
    assert p05 <= p50 <= p95
    assert value(text, "kubecarbon_grid_carbon_intensity_grams_per_kilowatt_hour",
                 region="us-east-1") == 379.1
    assert value(text, "kubecarbon_collector_reports_total", result="accepted") == 1
    assert value(text, "kubecarbon_collector_default_profile_nodes") == 0


async def test_gzip_body_is_accepted(client):
    response = await client.post(
        "/api/v1/reports", data=gzipped(body_of(make_report())),
        headers={**JSON, "Content-Encoding": "gzip"},
    )
    assert response.status == 200
    assert await response.json() == {"accepted": 1, "duplicates": 0}


async def test_replayed_report_counts_once(client):
    first = make_report(seq=7)
    assert (await client.post("/api/v1/reports", data=body_of(first), headers=JSON)).status == 200
    before = samples(await metrics_text(client))
    # the same report again, and a batch holding it twice next to a new one
    again = await client.post("/api/v1/reports", data=body_of(first), headers=JSON)
    assert await again.json() == {"accepted": 0, "duplicates": 1}
    new = make_report(seq=8, start=T0)
    mixed = await client.post("/api/v1/reports", data=body_of(first, new, new), headers=JSON)
    assert await mixed.json() == {"accepted": 1, "duplicates": 2}
    after = samples(await metrics_text(client))
    key = ("kubecarbon_node_energy_joules_total", tuple(sorted(NODE.items())))
    assert after[key] == pytest.approx(2 * before[key])
    assert after[("kubecarbon_collector_reports_total", (("result", "duplicate"),))] == 3


async def test_unknown_node_and_pods_fall_back_and_are_counted(client):
    report = make_report(node="rack1-node7", pods=[
        {"uid": "never-seen", "cpu_seconds": 10.0, "containers": 1}])
    assert (await client.post("/api/v1/reports", data=body_of(report), headers=JSON)).status == 200
    text = await metrics_text(client)
    node = {"node": "rack1-node7", "region": "unknown", "instance_type": "unknown",
            "power_source": "default_profile"}
    # DESIGN: unknown node = the reference curve scaled by logical_cpus / ref_cpus
    r740_at_half = 224.0
    assert value(text, "kubecarbon_node_power_watts", **node) == pytest.approx(
        r740_at_half * 16 / 112)
    assert value(text, "kubecarbon_collector_default_profile_nodes") == 1
    assert value(text, "kubecarbon_collector_default_profile_reports_total") == 1
    assert value(text, "kubecarbon_namespace_cpu_seconds_total", namespace="unknown") == 10
    assert value(text, "kubecarbon_workload_cpu_seconds_total", namespace="unknown",
                 workload_kind="unknown", workload="unknown") == 10


async def test_silent_nodes_leave_gauges_but_keep_counters(client, clock):
    await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    clock.now += 60
    await client.post("/api/v1/reports", data=body_of(make_report(
        node="ip-10-0-1-18", agent_id="agent-b", busy_seconds=24.0)), headers=JSON)
    clock.now += 300 - 59  # node 17 last seen 301 s ago, node 18 241 s ago
    text = await metrics_text(client)
    found = samples(text)
    assert not any(name == "kubecarbon_node_power_watts" and ("node", "ip-10-0-1-17") in labels
                   for name, labels in found)
    assert ("kubecarbon_node_energy_joules_total", tuple(sorted(NODE.items()))) in found
    assert value(text, "kubecarbon_collector_stale_nodes") == 1
    assert value(text, "kubecarbon_collector_live_nodes") == 1
    # the fleet gauges follow the live node only: 24 busy seconds of 16 * 15
    assert value(text, "kubecarbon_fleet_cpu_usage_ratio") == pytest.approx(0.1)


async def test_replayed_older_window_adds_energy_without_rolling_gauges_back(client):
    newer = make_report(seq=2, start=T0, busy_seconds=240.0)  # 100 %
    older = make_report(seq=1, start=T0 - 15, busy_seconds=24.0)  # 10 %, arrives late
    for report in (newer, older):
        response = await client.post("/api/v1/reports", data=body_of(report), headers=JSON)
        assert response.status == 200
    text = await metrics_text(client)
    assert value(text, "kubecarbon_node_cpu_usage_ratio", **NODE) == 1.0


async def test_per_pod_series_when_enabled(aiohttp_client, clock):
    settings = Settings(export=dataclasses.replace(ExportSettings(), per_pod_series=True))
    app = create_app(settings, metadata=metadata_for_tests(), clock=clock, status_page=False)
    client = await aiohttp_client(app)
    await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    text = await metrics_text(client)
    assert value(text, "kubecarbon_pod_cpu_seconds_total", namespace="shop", pod="db-0") == 40


async def test_per_pod_series_off_by_default(client):
    await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    assert "kubecarbon_pod_" not in await metrics_text(client)


async def test_workload_cap_folds_into_other(aiohttp_client, clock):
    settings = Settings(export=dataclasses.replace(ExportSettings(), max_workload_series=1))
    app = create_app(settings, metadata=metadata_for_tests(), clock=clock, status_page=False)
    client = await aiohttp_client(app)
    await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    text = await metrics_text(client)
    workloads = {labels for name, labels in samples(text)
                 if name == "kubecarbon_workload_cpu_seconds_total"}
    assert workloads == {
        (("namespace", "shop"), ("workload", "web"), ("workload_kind", "Deployment")),
        (("namespace", "shop"), ("workload", "other"), ("workload_kind", "other")),
    }
    assert value(text, "kubecarbon_collector_series_capped_pod_rows_total",
                 series="workload") == 1


async def test_bearer_token(aiohttp_client, clock):
    app = create_app(metadata=metadata_for_tests(), clock=clock, token=b"s3cret",
                     status_page=False)
    client = await aiohttp_client(app)
    body = body_of(make_report())
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                    {"Authorization": "Basic s3cret"}, {"Authorization": "Bearer s3cret2"}):
        response = await client.post("/api/v1/reports", data=body, headers={**JSON, **headers})
        assert response.status == 401
        assert (await response.json())["error"].startswith("Authorization:")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    ok = await client.post("/api/v1/reports", data=body,
                           headers={**JSON, "Authorization": "bearer s3cret"})
    assert ok.status == 200
    text = await metrics_text(client)
    assert value(text, "kubecarbon_collector_rejected_requests_total", code="401") == 5
    assert value(text, "kubecarbon_collector_reports_total", result="accepted") == 1


async def test_health_and_readiness(client):
    health = await client.get("/healthz")
    assert health.status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    detail = await ready.json()
    assert detail["metadata"] == {"source": "static", "synced": True, "connected": True,
                                  "detail": ""}
    assert detail["ready"] is True


async def test_readiness_fails_while_metadata_is_not_synced(aiohttp_client, clock):
    from collector.metadata import ProviderStatus

    class Syncing:
        def node(self, name):
            return None

        def pod(self, uid):
            return None

        def pod_generation(self):
            return 0

        def status(self):
            return ProviderStatus("kubernetes", synced=False, connected=False,
                                  detail="nodes: listing")

    client = await aiohttp_client(create_app(metadata=Syncing(), clock=clock, status_page=False))
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["metadata"]["detail"] == "nodes: listing"
    text = await metrics_text(client)
    assert value(text, "kubecarbon_collector_metadata_synced", source="kubernetes") == 0


async def test_a_model_failure_is_a_500_and_applies_nothing(aiohttp_client, clock, monkeypatch):
    app = create_app(metadata=metadata_for_tests(), clock=clock, status_page=False)
    client = await aiohttp_client(app)
    from collector.app import LEDGER_KEY

    def broken(*args, **kwargs):
        raise ValueError("model exploded")

    monkeypatch.setattr("collector.ingest.estimate_windows", broken)
    response = await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    assert response.status == 500
    assert (await response.json())["error"] == "internal: model exploded"
    ledger = app[LEDGER_KEY]
    assert ledger.nodes == {} and ledger.reports_accepted == 0
    assert not ledger.seqs.seen("agent-a", 1)  # a retry will be applied


async def test_simulated_fleet_sums_match_the_reports(aiohttp_client, clock):
    """A 60-node mixed fleet over 4 windows: fleet gauges and attribution from the reports."""
    from collections import defaultdict

    from collector.simulate import FleetSettings, SimulatedFleet, batches

    fleet = SimulatedFleet(FleetSettings(nodes=60, seed=11), clock=clock)
    client = await aiohttp_client(create_app(metadata=fleet.metadata(), clock=clock,
                                             status_page=False))
    all_reports = []
    for _ in range(4):
        clock.now += 15
        reports = fleet.reports()
        all_reports += reports
        for body in batches(reports, size=25):
            response = await client.post("/api/v1/reports", data=json.dumps(body), headers=JSON)
            assert response.status == 200, await response.text()
    text = await metrics_text(client)

    latest = {r["node"]: r for r in all_reports}  # one window per node per round, in order
    busy_cpus = sum(r["cpu"]["busy_seconds"] / (r["end"] - r["start"]) for r in latest.values())
    cpus = sum(r["cpu"]["logical_cpus"] for r in latest.values())
    assert value(text, "kubecarbon_fleet_cpu_usage_ratio") == pytest.approx(busy_cpus / cpus)
    assert value(text, "kubecarbon_baseline_servers") == pytest.approx(busy_cpus / (112 * 0.15))
    assert value(text, "kubecarbon_actual_servers") == pytest.approx(cpus / 112)
    assert value(text, "kubecarbon_collector_live_nodes") == 60
    assert value(text, "kubecarbon_collector_reports_total", result="accepted") == 240

    namespace_of = {uid: info.namespace for uid, info in fleet.pod_infos().items()}
    expected_cpu: dict[str, float] = defaultdict(float)
    for report in all_reports:
        for pod in report["pods"]:
            expected_cpu[namespace_of[pod["uid"]]] += pod["cpu_seconds"]
    found = samples(text)
    for namespace, seconds in expected_cpu.items():
        assert found[("kubecarbon_namespace_cpu_seconds_total",
                      (("namespace", namespace),))] == pytest.approx(seconds)
    # attribution never hands out more than the nodes' dynamic energy
    node_energy = sum(v for (name, _), v in found.items()
                      if name == "kubecarbon_node_energy_joules_total")
    idle_energy = sum(v for (name, _), v in found.items()
                      if name == "kubecarbon_node_idle_energy_joules_total")
    namespace_energy = sum(v for (name, _), v in found.items()
                           if name == "kubecarbon_namespace_energy_joules_total")
    assert 0 < namespace_energy <= node_energy - idle_energy + 1e-6
    # every bare-metal node of the simulation sends RAPL
    sources = {dict(labels)["power_source"] for (name, labels) in found
               if name == "kubecarbon_node_power_watts"}
    assert sources == {"cloud_linear", "rapl"}


async def test_a_host_outside_kubernetes_reports_without_pods(client):
    report = make_report()
    del report["pods"], report["containers_running"]
    response = await client.post("/api/v1/reports", data=body_of(report), headers=JSON)
    assert response.status == 200
    text = await metrics_text(client)
    assert value(text, "kubecarbon_node_power_watts", **NODE) == pytest.approx(48.256)
    assert "kubecarbon_node_pods{" not in text and "kubecarbon_node_containers{" not in text


async def test_nodes_silent_beyond_forget_after_lose_every_series(aiohttp_client, clock):
    settings = Settings(export=dataclasses.replace(ExportSettings(), stale_after_seconds=60,
                                                   forget_after_seconds=600))
    client = await aiohttp_client(create_app(settings, metadata=metadata_for_tests(),
                                             clock=clock, status_page=False))
    await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    clock.now += 599
    await client.post("/api/v1/reports", data=body_of(make_report(
        node="ip-10-0-1-18", agent_id="agent-b")), headers=JSON)
    assert 'node="ip-10-0-1-17"' in await metrics_text(client)  # stale, counters kept
    clock.now += 2
    text = await metrics_text(client)
    assert 'node="ip-10-0-1-17"' not in text
    assert 'node="ip-10-0-1-18"' in text
    assert value(text, "kubecarbon_collector_forgotten_nodes_total", reason="silent") == 1
    assert value(text, "kubecarbon_collector_stale_nodes") == 0
    # a report from the forgotten node starts its series again
    await client.post("/api/v1/reports", data=body_of(make_report(seq=2)), headers=JSON)
    assert 'node="ip-10-0-1-17"' in await metrics_text(client)


async def test_token_from_the_token_file(aiohttp_client, clock, tmp_path):
    from collector.settings import ServerSettings

    token_file = tmp_path / "token"
    token_file.write_text("  from-a-secret\n")  # Kubernetes secrets often end in a newline
    settings = Settings(server=dataclasses.replace(ServerSettings(), token_file=token_file))
    client = await aiohttp_client(create_app(settings, clock=clock, status_page=False))
    body = body_of(make_report())
    assert (await client.post("/api/v1/reports", data=body, headers=JSON)).status == 401
    ok = await client.post("/api/v1/reports", data=body,
                           headers={**JSON, "Authorization": "Bearer from-a-secret"})
    assert ok.status == 200


async def test_max_nodes_forgets_the_least_recently_seen(aiohttp_client, clock):
    settings = Settings(export=dataclasses.replace(ExportSettings(), max_nodes=2),
                        dedupe=dataclasses.replace(DedupeSettings(), max_agents=2))
    app = create_app(settings, clock=clock, status_page=False)
    client = await aiohttp_client(app)
    for index, node in enumerate(("n1", "n2", "n1", "n3")):  # n2 is the least recent at n3
        clock.now += 1
        response = await client.post("/api/v1/reports", data=body_of(make_report(
            node, seq=index, agent_id=f"agent-{node}", start=T0 + index * 15)), headers=JSON)
        assert response.status == 200
    text = await metrics_text(client)
    nodes = {dict(labels)["node"] for name, labels in samples(text)
             if name == "kubecarbon_node_energy_joules_total"}
    assert nodes == {"n1", "n3"}
    assert value(text, "kubecarbon_collector_forgotten_nodes_total", reason="cap") == 1
    # the dedupe cap is honoured too (an empty tracker is not replaced by a default one)
    assert value(text, "kubecarbon_collector_dedupe_agents") == 2
    assert value(text, "kubecarbon_collector_dedupe_evictions_total") == 1


async def test_metrics_are_gzipped_when_asked(aiohttp_client, clock):
    from prometheus_client import CollectorRegistry

    # no process metrics: two scrapes must be byte-identical
    client = await aiohttp_client(create_app(clock=clock, registry=CollectorRegistry(),
                                             status_page=False))
    await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"},
                              auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    import gzip as gzip_module

    assert gzip_module.decompress(await zipped.read()) == await plain.read()


@pytest.mark.parametrize("child_render_min_nodes", [0, 1000], ids=["in a child", "on a thread"])
async def test_ingest_goes_on_while_a_scrape_renders_one_version_of_the_ledger(
    aiohttp_client, clock, monkeypatch, tmp_path, child_render_min_nodes
):
    """/metrics renders, in a forked child for a large fleet (here any fleet) or on a worker
    thread, what the ledger held when the scrape began."""
    import asyncio
    import time

    from collector.exposition import Exposition

    client = await aiohttp_client(create_app(
        metadata=metadata_for_tests(), clock=clock, status_page=False,
        child_render_min_nodes=child_render_min_nodes))
    # files, not threading events: the render may run in a forked child
    rendering, release = tmp_path / "rendering", tmp_path / "release"
    render = Exposition.render

    def appears(path, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return path.exists()

    def held_render(self, scrape):
        rendering.touch()
        # bounded: a render on the event loop would block the test's requests, then go on
        appears(release)
        return render(self, scrape)

    monkeypatch.setattr(Exposition, "render", held_render)
    await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    scrape = asyncio.ensure_future(client.get("/metrics"))
    assert await asyncio.to_thread(appears, rendering)
    for i in range(3):
        response = await client.post("/api/v1/reports", data=body_of(make_report(
            f"node-{i}", agent_id=f"agent-{i}")), headers=JSON)
        assert await response.json() == {"accepted": 1, "duplicates": 0}
    assert not scrape.done()  # the render is still held: the reports went in meanwhile
    release.touch()
    text = await (await scrape).text()
    nodes = {dict(labels)["node"] for name, labels in samples(text)
             if name == "kubecarbon_node_energy_joules_total"}
    assert nodes == {"ip-10-0-1-17"}
    assert value(text, "kubecarbon_collector_reports_total", result="accepted") == 1
    assert value(text, "kubecarbon_collector_live_nodes") == 1
    later = await metrics_text(client)
    assert value(later, "kubecarbon_collector_reports_total", result="accepted") == 4
    assert value(later, "kubecarbon_collector_live_nodes") == 4


@pytest.mark.parametrize("child_render_min_nodes", [0, 1000], ids=["in a child", "on a thread"])
async def test_a_scrape_during_ingest_shows_each_node_as_of_one_report(
    aiohttp_client, clock, child_render_min_nodes
):
    """Scrapes taken while reports stream in: every node's gauges and counters come from
    the same number of its reports (never half of one), and the fleet's count of
    accepted reports agrees with the nodes'."""
    import asyncio

    client = await aiohttp_client(create_app(
        metadata=metadata_for_tests(), clock=clock, status_page=False,
        child_render_min_nodes=child_render_min_nodes))
    nodes, rounds = 12, 6

    def report(node: int, k: int) -> dict:
        doc = make_report(f"node-{node}", seq=k, agent_id=f"agent-{node}",
                          start=T0 - 15.0 + 15.0 * k, pods=[
                              {"uid": f"uid-{node}-{j}", "cpu_seconds": 1.0, "containers": 1}
                              for j in range(k + 1)])
        doc["containers_running"] = 100 + k
        return doc

    async def post(node: int, k: int) -> None:
        response = await client.post("/api/v1/reports", data=body_of(report(node, k)),
                                     headers=JSON)
        assert await response.json() == {"accepted": 1, "duplicates": 0}

    texts = []
    for k in range(rounds):  # each round's reports go in while a scrape is taken
        *_, text = await asyncio.gather(*(post(n, k) for n in range(nodes)),
                                        metrics_text(client))
        texts.append(text)
    final = await metrics_text(client)
    texts.append(final)
    # every report of every node is the same window shape: the same energy each time
    energy_per_report = next(
        energy for (name, labels), energy in samples(final).items()
        if name == "kubecarbon_node_energy_joules_total" and ("node", "node-0") in labels
    ) / rounds
    assert energy_per_report > 0
    seen_partial = False
    for text in texts:
        table = samples(text)
        applied = 0
        for (name, labels), pods in table.items():
            if name != "kubecarbon_node_pods":
                continue
            k = int(pods) - 1  # the node's latest report
            assert table[("kubecarbon_node_containers", labels)] == 100 + k
            assert table[("kubecarbon_node_last_window_end_timestamp_seconds", labels)] \
                == T0 + 15.0 * k
            energy = table[("kubecarbon_node_energy_joules_total", labels)]
            assert energy == pytest.approx((k + 1) * energy_per_report, rel=1e-9)
            applied += k + 1
            seen_partial = seen_partial or k < rounds - 1
        energies = [n for n, _ in table if n == "kubecarbon_node_energy_joules_total"]
        assert len(energies) == sum(1 for n, _ in table if n == "kubecarbon_node_pods")
        assert value(text, "kubecarbon_collector_reports_total", result="accepted") == applied
    assert applied == nodes * rounds
    assert seen_partial  # some scrape did land while reports were still coming


async def test_a_report_tripping_the_model_fails_alone(aiohttp_client, clock, monkeypatch):
    import asyncio

    import collector.ingest
    from collector.app import LEDGER_KEY

    real = collector.ingest.estimate_windows

    def fails_on_huge_nodes(batch, *args, **kwargs):
        if (batch.logical_cpus == 4096).any():
            raise ValueError("model exploded")
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(collector.ingest, "estimate_windows", fails_on_huge_nodes)
    app = create_app(metadata=metadata_for_tests(), clock=clock, status_page=False)
    client = await aiohttp_client(app)
    good = [make_report(f"n{i}", agent_id=f"agent-{i}") for i in range(3)]
    bad = make_report("n-bad", agent_id="agent-bad", logical_cpus=4096)
    responses = await asyncio.gather(*(
        client.post("/api/v1/reports", data=body_of(report), headers=JSON)
        for report in [*good, bad]))
    assert [r.status for r in responses] == [200, 200, 200, 500]
    assert app[LEDGER_KEY].reports_accepted == 3


async def test_group_commit_applies_concurrent_batches_in_one_model_run(clock, monkeypatch):
    import asyncio

    import collector.ingest
    from collector.ingest import Ingestor, IngestQueue
    from collector.ledger import Ledger

    real = collector.ingest.estimate_windows
    sizes: list[int] = []

    def counting(batch, *args, **kwargs):
        sizes.append(len(batch))
        if (batch.logical_cpus == 4096).any():
            raise ValueError("model exploded")
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(collector.ingest, "estimate_windows", counting)
    queue = IngestQueue(Ingestor(Ledger(), metadata=metadata_for_tests(), clock=clock))
    first = [make_report("n1", agent_id="a1"), make_report("n1", agent_id="a1")]  # + a repeat
    results = await asyncio.gather(queue.submit(first), queue.submit([make_report("n2")]))
    assert sizes == [2]  # one model run for both requests; the repeat counted once
    assert [(r.accepted, r.duplicates) for r in results] == [(1, 1), (1, 0)]

    sizes.clear()
    bad = make_report("n3", agent_id="a3", logical_cpus=4096)
    outcome = await asyncio.gather(queue.submit([make_report("n4", agent_id="a4")]),
                                   queue.submit([bad]), return_exceptions=True)
    assert sizes == [2, 1, 1]  # the shared run failed, then each batch alone
    assert outcome[0].accepted == 1
    assert isinstance(outcome[1], ValueError)


async def test_group_commit_runs_at_once_when_idle_and_gathers_requests_when_busy(
    clock, monkeypatch
):
    import asyncio

    import collector.ingest
    from collector.ingest import Ingestor, IngestQueue
    from collector.ledger import Ledger

    real = collector.ingest.estimate_windows
    sizes: list[int] = []

    def counting(batch, *args, **kwargs):
        sizes.append(len(batch))
        return real(batch, *args, **kwargs)

    async def turns(count: int) -> None:
        for _ in range(count):
            await asyncio.sleep(0)

    monkeypatch.setattr(collector.ingest, "estimate_windows", counting)
    queue = IngestQueue(Ingestor(Ledger(), metadata=metadata_for_tests(), clock=clock),
                        min_run_interval_seconds=1.0, full_run_reports=3)
    idle = asyncio.ensure_future(queue.submit([make_report("n1", agent_id="a1")]))
    await turns(5)
    assert idle.done() and sizes == [1]  # nothing ran lately: applied on the next turn
    early = asyncio.ensure_future(queue.submit([make_report("n2", agent_id="a2")]))
    await turns(5)
    assert not early.done()  # the last run began less than the interval ago: it waits
    later = await queue.submit([make_report("n3", agent_id="a3")])
    assert sizes == [1, 2]  # and the request that came meanwhile shares its run
    assert [(r.accepted, r.duplicates) for r in (idle.result(), early.result(), later)] == [
        (1, 0), (1, 0), (1, 0)]
    burst = [asyncio.ensure_future(queue.submit([make_report(f"b{k}", agent_id=f"b{k}")]))
             for k in range(3)]
    await turns(5)
    assert all(request.done() for request in burst)  # a full run does not wait the interval
    assert sizes == [1, 2, 3]


async def test_report_without_memory_uses_the_nodes_capacity_else_no_memory_power(
    aiohttp_client, clock
):
    # the agent's meminfo source failed: the window still counts, with the node's
    # memory capacity from the metadata provider, or without memory power if unknown
    known = metadata_for_tests().node("ip-10-0-1-17")
    assert known is not None and known.memory_capacity_bytes is None
    metadata = StaticMetadataProvider(nodes={
        "ip-10-0-1-17": dataclasses.replace(known, memory_capacity_bytes=32 * 2**30),
        "ip-10-0-1-18": dataclasses.replace(known, name="ip-10-0-1-18"),
    })
    client = await aiohttp_client(create_app(metadata=metadata, clock=clock, status_page=False))
    reports = [make_report(), make_report(node="ip-10-0-1-18", agent_id="agent-b")]
    for report in reports:
        del report["memory"]
    response = await client.post("/api/v1/reports", data=body_of(*reports), headers=JSON)
    assert response.status == 200, await response.text()
    text = await metrics_text(client)
    cpu_watts = 16 * (0.74 + 0.5 * (3.5 - 0.74))
    assert value(text, "kubecarbon_node_power_watts", **NODE) == pytest.approx(
        cpu_watts + (32 - 16 * 192 / 112) * 0.392)
    assert value(text, "kubecarbon_node_power_watts", **{**NODE, "node": "ip-10-0-1-18"}) == (
        pytest.approx(cpu_watts))
