"""Resource bounds under abuse: many distinct agent ids, pods, workloads, namespaces and nodes.

Each cap the collector has is driven past its limit through the HTTP API; the test
checks that the state and the series stop growing at the cap and that the metric
that says so counts exactly the overflow.
"""

import pytest
from prometheus_client import CollectorRegistry
from scale_testkit import exposition_samples, total

from collector.app import LEDGER_KEY, create_app
from collector.metadata import PodInfo, StaticMetadataProvider
from collector.settings import DedupeSettings, ExportSettings, Settings

T0 = 1_764_072_000.0
REPORTS_PATH = "/api/v1/reports"


def report(node: str, agent_id: str, seq: int = 1, pods: list[dict] | None = None) -> dict:
    return {
        "schema": 1, "node": node, "agent_id": agent_id, "seq": seq,
        "start": T0 - 15.0, "end": T0,
        "cpu": {"logical_cpus": 16, "busy_seconds": 100.0},
        "memory": {"total_bytes": 2**36, "used_bytes": 2**35},
        "containers_running": len(pods or []), "pods": pods or [],
    }


async def post_all(client, reports: list[dict]) -> None:
    for offset in range(0, len(reports), 500):
        response = await client.post(REPORTS_PATH, json={"reports": reports[offset:offset + 500]})
        assert response.status == 200, await response.text()


async def metrics(client) -> str:
    return await (await client.get("/metrics")).text()


def series(text: str, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels), _ in exposition_samples(text).items()
            if sample == name]


async def test_dedupe_forgets_least_recent_agent_ids_past_the_cap(aiohttp_client):
    cap, agents = 50, 400
    app = create_app(Settings(kubernetes="off", dedupe=DedupeSettings(max_agents=cap)),
                     clock=lambda: T0, registry=CollectorRegistry(), status_page=False)
    client = await aiohttp_client(app)
    await post_all(client, [report("node-a", f"agent-{i}") for i in range(agents)])
    text = await metrics(client)
    assert total(text, "kubecarbon_collector_dedupe_agents") == cap
    assert total(text, "kubecarbon_collector_dedupe_evictions_total") == agents - cap
    assert len(app[LEDGER_KEY].seqs) == cap
    # the most recent ids are the ones kept: their replays are still recognised
    response = await client.post(REPORTS_PATH, json={"reports": [
        report("node-a", f"agent-{agents - 1}")]})
    assert await response.json() == {"accepted": 0, "duplicates": 1}


async def test_unknown_pod_uids_add_no_namespace_or_workload_series(aiohttp_client):
    """Uids the metadata does not know (a hostile agent can invent any) all go to one place."""
    app = create_app(Settings(kubernetes="off"), clock=lambda: T0, registry=CollectorRegistry(),
                     status_page=False)
    client = await aiohttp_client(app)
    pods_per_report, reports = 200, 20
    await post_all(client, [
        report(f"node-{r}", f"agent-{r}", pods=[
            {"uid": f"made-up-{r}-{p}", "cpu_seconds": 0.1, "containers": 1}
            for p in range(pods_per_report)])
        for r in range(reports)])
    text = await metrics(client)
    assert series(text, "kubecarbon_namespace_cpu_seconds_total") == [{"namespace": "unknown"}]
    assert series(text, "kubecarbon_workload_cpu_seconds_total") == [
        {"namespace": "unknown", "workload_kind": "unknown", "workload": "unknown"}]
    assert total(text, "kubecarbon_namespace_cpu_seconds_total") == pytest.approx(
        0.1 * pods_per_report * reports)
    assert series(text, "kubecarbon_pod_cpu_seconds_total") == []  # per-pod series are off


async def test_pod_series_cap_bites_and_counts(aiohttp_client):
    cap, pods = 25, 400
    app = create_app(
        Settings(kubernetes="off",
                 export=ExportSettings(per_pod_series=True, max_pod_series=cap)),
        clock=lambda: T0, registry=CollectorRegistry(), status_page=False)
    client = await aiohttp_client(app)
    await post_all(client, [
        report(f"node-{r}", f"agent-{r}", pods=[
            {"uid": f"uid-{r}-{p}", "cpu_seconds": 0.01, "containers": 1} for p in range(100)])
        for r in range(pods // 100)])
    text = await metrics(client)
    names = series(text, "kubecarbon_pod_cpu_seconds_total")
    assert len(names) == cap + 1 and {"namespace": "unknown", "pod": "other"} in names
    assert total(text, "kubecarbon_collector_series_capped_pod_rows_total", series="pod") == (
        pods - cap)
    # nothing is lost by the cap: the "other" series carries the overflow
    assert total(text, "kubecarbon_pod_cpu_seconds_total") == pytest.approx(0.01 * pods)


async def test_workload_series_cap_bites_and_counts(aiohttp_client):
    cap, namespaces, workloads_per_namespace = 10, 3, 20
    pods = {
        f"uid-{n}-{w}": PodInfo(f"uid-{n}-{w}", f"team-{n}", f"app-{w}-x", "Deployment",
                                f"app-{w}")
        for n in range(namespaces) for w in range(workloads_per_namespace)
    }
    app = create_app(
        Settings(kubernetes="off", export=ExportSettings(max_workload_series=cap)),
        metadata=StaticMetadataProvider(pods=pods), clock=lambda: T0,
        registry=CollectorRegistry(), status_page=False)
    client = await aiohttp_client(app)
    await post_all(client, [report("node-a", "agent-a", pods=[
        {"uid": uid, "cpu_seconds": 0.5, "containers": 1} for uid in pods])])
    text = await metrics(client)
    rows = series(text, "kubecarbon_workload_cpu_seconds_total")
    named = [r for r in rows if r["workload"] != "other"]
    others = [r for r in rows if r["workload"] == "other"]
    assert len(named) == cap
    # past the cap, each namespace gets one "other" series: bounded by the namespaces the
    # cluster has (metadata), never by what agents send
    assert len(others) <= namespaces
    assert total(text, "kubecarbon_collector_series_capped_pod_rows_total",
                 series="workload") == len(pods) - cap
    assert total(text, "kubecarbon_workload_cpu_seconds_total") == pytest.approx(0.5 * len(pods))
    assert len(series(text, "kubecarbon_namespace_cpu_seconds_total")) == namespaces


async def test_silent_nodes_are_forgotten_after_forget_after_and_counted(aiohttp_client):
    clock = {"now": T0}
    app = create_app(
        Settings(kubernetes="off",
                 export=ExportSettings(stale_after_seconds=60, forget_after_seconds=600)),
        clock=lambda: clock["now"], registry=CollectorRegistry(), status_page=False)
    client = await aiohttp_client(app)
    await post_all(client, [report(f"scaled-away-{i}", f"agent-{i}") for i in range(300)])
    clock["now"] += 120
    await post_all(client, [report("keeper", "agent-keeper")])
    text = await metrics(client)
    assert total(text, "kubecarbon_collector_stale_nodes") == 300
    assert len(series(text, "kubecarbon_node_energy_joules_total")) == 301
    clock["now"] += 600  # the 300 are silent past --forget-after; the keeper reports again
    await post_all(client, [report("keeper", "agent-keeper", seq=2)])
    text = await metrics(client)
    assert series(text, "kubecarbon_node_energy_joules_total") == [
        {"node": "keeper", "region": "unknown", "instance_type": "unknown",
         "power_source": "default_profile"}]
    assert total(text, "kubecarbon_collector_forgotten_nodes_total") == 300
    assert total(text, "kubecarbon_collector_stale_nodes") == 0
    ledger = app[LEDGER_KEY]
    assert len(ledger.nodes) == len(ledger.latest) == 1


async def test_many_node_names_do_not_grow_series_without_bound(aiohttp_client):
    # --max-nodes bounds the names a burst can leave behind, within --forget-after too
    clock = {"now": T0}
    app = create_app(Settings(kubernetes="off",
                              export=ExportSettings(stale_after_seconds=60, max_nodes=1500)),
                     clock=lambda: clock["now"], registry=CollectorRegistry(),
                     status_page=False)
    client = await aiohttp_client(app)
    counts = []
    for wave in range(3):  # each wave: 1,000 new names, then silence past --stale-after
        await post_all(client, [report(f"bogus-{wave}-{i}", f"agent-{wave}-{i}")
                                for i in range(1000)])
        clock["now"] += 120
        text = await metrics(client)
        counts.append(len(series(text, "kubecarbon_node_energy_joules_total")))
    assert counts == [1000, 1500, 1500]
    # the least recently seen go first: all of wave 0, then half of wave 1
    names = {labels["node"] for labels in series(text, "kubecarbon_node_energy_joules_total")}
    assert not any(name.startswith("bogus-0-") for name in names)
    assert sum(name.startswith("bogus-1-") for name in names) == 500
    assert total(text, "kubecarbon_collector_forgotten_nodes_total", reason="cap") == 1500
    assert total(text, "kubecarbon_collector_forgotten_nodes_total", reason="silent") == 0
