"""The status page's data: points read from the real ledger, checked against /metrics."""

import asyncio
import re

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from collector.exposition import Exposition, Scrape
from collector.fleet_view import FleetViewCache
from collector.ingest import Ingestor
from collector.ledger import Ledger
from collector.simulate import DEFAULT_NAMESPACES, FleetSettings, SimulatedFleet
from collector.status import StatusHistory, StatusSettings, add_status_routes
from collector.telemetry import Telemetry

T0 = 1_764_072_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fed_state(clock: Clock, nodes: int = 40) -> tuple[Ingestor, SimulatedFleet]:
    fleet = SimulatedFleet(FleetSettings(nodes=nodes, seed=11), clock=clock)
    ingestor = Ingestor(Ledger(), metadata=fleet.metadata(), clock=clock)
    ingestor.ingest(fleet.reports())
    return ingestor, fleet


def metric_values(ingestor: Ingestor, now: float) -> dict[tuple[str, tuple], float]:
    scrape = Scrape(ingestor.ledger.view(now), Telemetry(), ingestor.metadata.status())
    text = Exposition().render(scrape)
    out: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            out[key] = sample.value
    return out


def total(values: dict, name: str) -> float:
    return sum(v for (n, _), v in values.items() if n == name)


def test_summary_numbers_are_the_metrics_numbers():
    clock = Clock(T0)
    ingestor, _ = fed_state(clock)
    history = StatusHistory(ingestor.ledger, FleetViewCache(), clock=clock)
    current = history.summary()["current"]
    metrics = metric_values(ingestor, clock.now)
    for gauge in ("fleet_cpu_usage_ratio", "baseline_servers", "actual_servers",
                  "avoided_servers"):
        assert current[gauge] == pytest.approx(metrics[f"kubecarbon_{gauge}", ()], rel=1e-12)
    assert current["nodes"] == 40
    assert current["power_watts"] == pytest.approx(total(metrics, "kubecarbon_node_power_watts"))
    assert current["energy_joules"] == pytest.approx(
        total(metrics, "kubecarbon_node_energy_joules_total"))
    assert current["co2e_grams"] == pytest.approx(
        total(metrics, "kubecarbon_node_co2e_grams_total"))
    assert current["avoided_co2e_grams"] == pytest.approx(
        total(metrics, "kubecarbon_avoided_co2e_grams_total"))
    for quantile in ("0.05", "0.5", "0.95"):
        assert current["avoided_co2e_grams_per_hour"][quantile] == pytest.approx(
            metrics["kubecarbon_avoided_co2e_grams_per_hour", (("quantile", quantile),)])
    band = current["avoided_co2e_grams_per_hour"]
    assert band["0.05"] < band["0.5"] < band["0.95"]


def test_baseline_power_is_the_rate_at_which_baseline_energy_is_counted():
    clock = Clock(T0)
    ingestor, fleet = fed_state(clock)
    before = ingestor.ledger.fleet.baseline_energy_joules
    clock.now += 15
    ingestor.ingest(fleet.reports())  # every node reports exactly the last 15 s
    point = StatusHistory(ingestor.ledger, FleetViewCache(), clock=clock).sample()
    counted = ingestor.ledger.fleet.baseline_energy_joules - before
    assert point.baseline_power_watts * 15 == pytest.approx(counted, rel=1e-9)
    assert point.baseline_power_watts > point.power_watts > 0  # this fleet beats u_b


def test_top_namespaces_are_what_each_emitted_since_the_oldest_mark():
    clock = Clock(T0)
    ingestor, fleet = fed_state(clock)
    ledger = ingestor.ledger
    history = StatusHistory(ledger, FleetViewCache(), StatusSettings(
        interval_seconds=15, namespace_mark_seconds=30), clock=clock)
    history.sample()
    at_mark = {ns: c.co2e_grams for ns, c in ledger.namespaces.items()}
    for _ in range(3):
        clock.now += 15
        ingestor.ingest(fleet.reports())
        history.sample()
    assert [t for t, _ in history.marks] == [T0, T0 + 30]
    top = history.summary()["top_namespaces"]
    assert top["since"] == T0
    expected = sorted(((ns, c.co2e_grams - at_mark[ns]) for ns, c in ledger.namespaces.items()),
                      key=lambda kv: -kv[1])[:8]
    assert [ns for ns, _ in top["co2e_grams"]] == [ns for ns, _ in expected]
    assert [g for _, g in top["co2e_grams"]] == pytest.approx([g for _, g in expected])


def test_history_is_a_bounded_ring():
    clock = Clock(T0)
    ingestor, _ = fed_state(clock, nodes=3)
    settings = StatusSettings(interval_seconds=10, history_seconds=60)
    history = StatusHistory(ingestor.ledger, FleetViewCache(), settings, clock=clock)
    for _ in range(50):
        clock.now += 10
        history.sample()
    assert len(history.points) == settings.capacity == 7
    summary = history.summary()
    assert [p["timestamp"] for p in summary["history"]] == [T0 + 10 * k for k in range(44, 51)]


async def test_routes_serve_the_page_and_sample_while_the_app_runs(aiohttp_client):
    clock = Clock(T0)
    ingestor, _ = fed_state(clock, nodes=5)
    app = web.Application()
    history = add_status_routes(app, ingestor.ledger, FleetViewCache(),
                                StatusSettings(interval_seconds=0.05), clock=clock)
    client = await aiohttp_client(app)
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert 'id="avoided-servers"' in html
    # self-contained: no external scripts, styles, fonts or images
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    await asyncio.sleep(0.3)
    assert len(history.points) >= 2
    summary = await client.get("/api/v1/summary")
    assert summary.status == 200
    body = await summary.json()
    assert body["current"]["nodes"] == 5 and len(body["history"]) >= 2
    await client.close()
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "kubecarbon-status-history"]
    assert tasks == []


async def test_every_collector_serves_the_page_and_its_data(aiohttp_client):
    from collector.app import create_app
    from collector.settings import Settings

    fleet = SimulatedFleet(FleetSettings(nodes=7, seed=3))
    client = await aiohttp_client(create_app(Settings(kubernetes="off"),
                                             metadata=fleet.metadata()))
    post = await client.post("/api/v1/reports", json={"reports": fleet.reports()})
    assert post.status == 200
    page = await client.get("/")
    assert page.status == 200 and "kubecarbon status" in await page.text()
    summary = await (await client.get("/api/v1/summary")).json()
    assert summary["current"]["nodes"] == 7
    assert summary["interval_seconds"] == 15.0  # the collector's default history spacing
    assert {ns for ns, _ in summary["top_namespaces"]["co2e_grams"]} <= set(
        DEFAULT_NAMESPACES) | {"kube-system"}


async def test_the_page_shows_where_servers_can_still_be_saved(aiohttp_client):
    from collector.app import create_app
    from collector.settings import RightsizingSettings, Settings

    # one usage sample per second and a recommendation from three of them
    fleet = SimulatedFleet(FleetSettings(nodes=7, seed=3, window_seconds=1.0))
    settings = Settings(kubernetes="off", rightsizing=RightsizingSettings(
        sample_seconds=1.0, min_history_seconds=3.0, recompute_seconds=0.0))
    client = await aiohttp_client(create_app(settings, metadata=fleet.metadata()))
    start = 1_764_072_000.0
    post = await client.post("/api/v1/reports", json={"reports": fleet.reports(now=start)})
    assert post.status == 200
    summary = await (await client.get("/api/v1/summary")).json()
    # no history yet: nothing sized, nothing avoidable
    assert summary["rightsizing"]["workloads_sized"] == 0
    assert summary["rightsizing"]["avoidable_nodes"] == 0
    for second in range(1, 8):
        post = await client.post("/api/v1/reports",
                                 json={"reports": fleet.reports(now=start + second)})
        assert post.status == 200
    summary = await (await client.get("/api/v1/summary")).json()
    rightsizing = summary["rightsizing"]
    workloads = {(p.namespace, p.workload_name) for p in fleet.pod_infos().values()}
    assert rightsizing["workloads_sized"] + rightsizing["workloads_waiting"] == len(workloads)
    assert rightsizing["workloads_sized"] > 0
    # the simulated fleet over-requests: some of its 7 nodes are not needed
    assert 0 < rightsizing["avoidable_nodes"] < 7
    band = rightsizing["co2e_tonnes_per_year"]
    assert 0 < band["0.05"] < band["0.5"] < band["0.95"]
    page = await (await client.get("/")).text()
    assert 'id="rightsizing-nodes"' in page and "Servers still to save" in page
