"""Two collector replicas behind a round-robin front add up, in a real Prometheus, to one collector.

Every report of a deterministic simulated fleet goes once through a proxy that
alternates between two `python -m collector` replicas (job "sharded"), once through
a proxy that keeps each agent on one of two other replicas (job "affinity", like a
Service with sessionAffinity: ClientIP), and once straight to a single collector
(job "single"). Prometheus scrapes all five every second. The fleet totals summed
over either pair of replicas must equal the single collector's within 0.1 %; the
fleet gauges add up only with affinity (docs/scaling.md).
"""

import asyncio
from collections import Counter

import aiohttp
import pytest
from scale_testkit import REPORTS_PATH, RoundRobinProxy, by_agent, fleet_profiles

from collector.simulate import FleetSettings, SimulatedFleet, post_reports

T0 = 1_764_072_000.0
WINDOW_SECONDS = 15.0
ROUNDS = 8
# Odd, so request i of round r lands on replica (i + 41 r) mod 2: every node's
# windows alternate between the replicas from one round to the next.
NODES = 41
TOTALS = {
    "IT energy": "sum by (job) (kubecarbon_node_energy_joules_total)",
    "idle energy": "sum by (job) (kubecarbon_node_idle_energy_joules_total)",
    "operational CO2e": "sum by (job) (kubecarbon_node_co2e_grams_total)",
    "embodied CO2e": "sum by (job) (kubecarbon_node_embodied_co2e_grams_total)",
    "baseline energy": "sum by (job) (kubecarbon_baseline_energy_joules_total)",
    "avoided energy": "sum by (job) (kubecarbon_avoided_energy_joules_total)",
    "avoided CO2e operational":
        'sum by (job) (kubecarbon_avoided_co2e_grams_total{scope="operational"})',
    "avoided CO2e embodied": 'sum by (job) (kubecarbon_avoided_co2e_grams_total{scope="embodied"})',
    "namespace CPU": "sum by (job) (kubecarbon_namespace_cpu_seconds_total)",
    "reports accepted": 'sum by (job) (kubecarbon_collector_reports_total{result="accepted"})',
}
# Fleet gauges across replicas: sums over nodes, so they add when each node has one replica.
FLEET_GAUGES = {
    "baseline servers": "sum by (job) (kubecarbon_baseline_servers)",
    "actual servers": "sum by (job) (kubecarbon_actual_servers)",
    "avoided servers": "sum by (job) (kubecarbon_avoided_servers)",
    "fleet CPU usage ratio": "sum by (job) (kubecarbon_node_cpu_usage_ratio"
                             " * kubecarbon_node_logical_cpus)"
                             " / sum by (job) (kubecarbon_node_logical_cpus)",
}
# Node gauges across replicas: each node's series from the replica that heard from it last.
LATEST_NODE_POWER = """
sum by (job) (
  kubecarbon_node_power_watts
  and on (job, instance, node)
  (kubecarbon_node_last_report_timestamp_seconds
     == on (job, node) group_left
     max by (job, node) (kubecarbon_node_last_report_timestamp_seconds))
)"""


@pytest.mark.slow
async def test_two_replicas_behind_round_robin_sum_to_one_collector(
        collectors, prometheus, aiohttp_server):
    fleet = SimulatedFleet(FleetSettings(nodes=NODES, seed=11, window_seconds=WINDOW_SECONDS))
    config = fleet_profiles(fleet)
    replica_a, replica_b, sticky_a, sticky_b, single = await asyncio.gather(*(
        asyncio.to_thread(collectors, name, config=config)
        for name in ("replica-a", "replica-b", "sticky-a", "sticky-b", "single")))
    proxy = RoundRobinProxy([replica_a.url, replica_b.url])
    front = await aiohttp_server(proxy.app(), host="127.0.0.1")
    sticky = RoundRobinProxy([sticky_a.url, sticky_b.url], route=by_agent)
    sticky_front = await aiohttp_server(sticky.app(), host="127.0.0.1")
    server = await asyncio.to_thread(prometheus, {
        "sharded": [f"127.0.0.1:{replica_a.port}", f"127.0.0.1:{replica_b.port}"],
        "affinity": [f"127.0.0.1:{sticky_a.port}", f"127.0.0.1:{sticky_b.port}"],
        "single": [f"127.0.0.1:{single.port}"],
    })

    sent = 0
    async with aiohttp.ClientSession() as session:
        for round_ in range(1, ROUNDS + 1):
            reports = fleet.reports(T0 + round_ * WINDOW_SECONDS)
            # one report per request, as an agent sends in steady state
            through_front = await post_reports(session, f"http://127.0.0.1:{front.port}"
                                               f"{REPORTS_PATH}", reports, batch_size=1)
            with_affinity = await post_reports(session, f"http://127.0.0.1:{sticky_front.port}"
                                               f"{REPORTS_PATH}", reports, batch_size=1)
            direct = await post_reports(session, single.url + REPORTS_PATH, reports)
            assert through_front == with_affinity == direct == (len(reports), 0)
            sent += len(reports)
    assert sent == NODES * ROUNDS
    assert proxy.forwarded == [sent // 2 + sent % 2, sent // 2]

    await asyncio.to_thread(server.wait_for_scrapes, "single", 2)
    await asyncio.to_thread(server.wait_for_scrapes, "sharded", 4)
    await asyncio.to_thread(server.wait_for_scrapes, "affinity", 4)
    assert min(sticky.forwarded) > sent / 4  # both sticky replicas have agents

    # every node has counters on both replicas: its windows really were spread
    per_node = await asyncio.to_thread(
        server.scalar_by, 'count by (node) (kubecarbon_node_energy_joules_total{job="sharded"})',
        "node")
    assert len(per_node) == NODES and set(per_node.values()) == {2.0}

    for name, expr in TOTALS.items():
        totals = await asyncio.to_thread(server.scalar_by, expr, "job")
        assert set(totals) == {"sharded", "affinity", "single"}, name
        assert totals["single"] != 0, name
        assert totals["sharded"] == pytest.approx(totals["single"], rel=1e-3), name
        assert totals["affinity"] == pytest.approx(totals["single"], rel=1e-3), name
    accepted = await asyncio.to_thread(server.scalar_by, TOTALS["reports accepted"], "job")
    assert accepted == {"sharded": sent, "affinity": sent, "single": sent}

    # Fleet gauges do not add up under round-robin (each replica counts every node it
    # heard from); node gauges taken from the replica that heard last do.
    power = await asyncio.to_thread(server.scalar_by, LATEST_NODE_POWER, "job")
    assert power["sharded"] == pytest.approx(power["single"], rel=1e-3)
    assert power["affinity"] == pytest.approx(power["single"], rel=1e-3)
    series = Counter(row["metric"]["job"] for row in await asyncio.to_thread(
        server.query, "kubecarbon_node_power_watts"))
    assert series == {"sharded": 2 * NODES, "affinity": NODES, "single": NODES}
    for name, expr in FLEET_GAUGES.items():
        gauges = await asyncio.to_thread(server.scalar_by, expr, "job")
        assert gauges["single"] > 0, name
        assert gauges["affinity"] == pytest.approx(gauges["single"], rel=1e-3), name
        if name != "fleet CPU usage ratio":
            assert gauges["sharded"] > 1.5 * gauges["single"], name  # every node counted twice
