"""Three collector replicas behind a round-robin front add up, in a real Prometheus, to one.

Every report of a deterministic simulated fleet goes once through a proxy that
spreads requests over three `python -m collector` replicas in turn (job "sharded",
like a Service without session affinity, but per request rather than per
connection), and once straight to a single collector (job "single"). The replicas
run with `--replicas 3` and find each other through `--peers-file`: each node is
owned by one replica, and a replica forwards the reports of nodes it does not own
(docs/scaling.md). Prometheus scrapes all four every second. Counters and fleet
gauges summed over the replicas must equal the single collector's (counters within
0.1 %, fleet gauges within the 0.5 % of issue 15), the recording rule's avoided band
must equal the single collector's, and a replay through other replicas must count
nothing twice.
"""

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import yaml
from scale_testkit import REPORTS_PATH, RoundRobinProxy, fleet_profiles

from collector.sharding import owner_of
from collector.simulate import FleetSettings, SimulatedFleet, post_reports

RULES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "kubecarbon-rules.yaml"

T0 = 1_764_072_000.0
WINDOW_SECONDS = 15.0
ROUNDS = 8
REPLICAS = 3
# Not a multiple of 3, so request i of round r lands on replica (i + 41 r) mod 3: every
# node's windows reach each replica in turn from one round to the next.
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
# Fleet gauges across replicas: sums over nodes, and each node is on one replica.
FLEET_GAUGES = {
    "baseline servers": "sum by (job) (kubecarbon_baseline_servers)",
    "actual servers": "sum by (job) (kubecarbon_actual_servers)",
    "avoided servers": "sum by (job) (kubecarbon_avoided_servers)",
    "fleet CPU usage ratio": "sum by (job) (kubecarbon_node_cpu_usage_ratio"
                             " * kubecarbon_node_logical_cpus)"
                             " / sum by (job) (kubecarbon_node_logical_cpus)",
    "power": "sum by (job) (kubecarbon_node_power_watts)",
}
BAND_RULE = "kubecarbon:avoided_co2e_tonnes_per_day:quantile"


def band_rule_for(job: str) -> str:
    """The chart's recording rule for the avoided band, restricted to one job."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    (expr,) = [r["expr"] for g in groups for r in g["rules"] if r.get("record") == BAND_RULE]
    for metric in ("kubecarbon_avoided_co2e_grams_per_hour_draw",
                   "kubecarbon_avoided_co2e_grams_per_hour)"):
        name = metric.rstrip(")")
        expr = expr.replace(metric, metric.replace(name, f'{name}{{job="{job}"}}'))
    return str(expr)


@pytest.mark.slow
async def test_three_replicas_behind_round_robin_sum_to_one_collector(
        collectors, prometheus, aiohttp_server, tmp_path):
    fleet = SimulatedFleet(FleetSettings(nodes=NODES, seed=11, window_seconds=WINDOW_SECONDS))
    config = fleet_profiles(fleet)
    peers_file = tmp_path / "peers"
    peers_file.write_text("")
    started = await asyncio.gather(*(
        asyncio.to_thread(collectors, f"replica-{i}", config=config,
                          args=["--replicas", str(REPLICAS), "--replica-name", f"kc-{i}",
                                "--peers-file", str(peers_file)])
        for i in range(REPLICAS)), asyncio.to_thread(collectors, "single", config=config))
    replicas, single = list(started[:REPLICAS]), started[REPLICAS]
    peers_file.write_text("".join(f"{r.url}\n" for r in replicas))
    proxy = RoundRobinProxy([r.url for r in replicas])
    front = await aiohttp_server(proxy.app(), host="127.0.0.1")
    server = await asyncio.to_thread(prometheus, {
        "sharded": [f"127.0.0.1:{r.port}" for r in replicas],
        "single": [f"127.0.0.1:{single.port}"],
    })

    sent = 0
    first_round: list[dict] = []
    async with aiohttp.ClientSession() as session:
        for round_ in range(1, ROUNDS + 1):
            reports = fleet.reports(T0 + round_ * WINDOW_SECONDS)
            first_round = first_round or reports
            # one report per request, as an agent sends in steady state
            through_front = await post_reports(session, f"http://127.0.0.1:{front.port}"
                                               f"{REPORTS_PATH}", reports, batch_size=1)
            direct = await post_reports(session, single.url + REPORTS_PATH, reports)
            assert through_front == direct == (len(reports), 0)
            sent += len(reports)
        # every acknowledgement of round 1 was lost: the agents retry, and the front
        # sends each retry to another replica than the first time
        replay = await post_reports(session, f"http://127.0.0.1:{front.port}{REPORTS_PATH}",
                                    first_round, batch_size=1)
        assert replay == (0, len(first_round))
    assert sent == NODES * ROUNDS
    assert proxy.forwarded == [(sent + NODES + 2 - i) // 3 for i in range(REPLICAS)]

    await asyncio.to_thread(server.wait_for_scrapes, "single", 2)
    await asyncio.to_thread(server.wait_for_scrapes, "sharded", 6)

    # every node's counters are on one replica: its owner
    owners = await asyncio.to_thread(
        server.query, 'kubecarbon_node_energy_joules_total{job="sharded"}')
    assert Counter(row["metric"]["node"] for row in owners) == Counter(
        {node.name: 1 for node in fleet.nodes})
    ports = {f"127.0.0.1:{r.port}": i for i, r in enumerate(replicas)}
    assert all(ports[row["metric"]["instance"]] == owner_of(row["metric"]["node"], REPLICAS)
               for row in owners)
    assert len({row["metric"]["instance"] for row in owners}) == REPLICAS

    for name, expr in TOTALS.items():
        totals = await asyncio.to_thread(server.scalar_by, expr, "job")
        assert set(totals) == {"sharded", "single"}, name
        assert totals["single"] != 0, name
        assert totals["sharded"] == pytest.approx(totals["single"], rel=1e-3), name
    accepted = await asyncio.to_thread(server.scalar_by, TOTALS["reports accepted"], "job")
    assert accepted == {"sharded": sent, "single": sent}
    duplicates = await asyncio.to_thread(
        server.scalar_by, 'sum by (job) (kubecarbon_collector_reports_total{result="duplicate"})',
        "job")
    assert duplicates["sharded"] == len(first_round)
    forwarded = await asyncio.to_thread(
        server.scalar_by, 'sum by (result) (kubecarbon_collector_forwarded_requests_total)',
        "result")
    # about two in three requests reach a replica that does not own their node
    assert forwarded["unavailable"] == forwarded["refused"] == 0
    assert 0.5 < forwarded["applied"] / (sent + len(first_round)) < 0.8

    series = Counter(row["metric"]["job"] for row in await asyncio.to_thread(
        server.query, "kubecarbon_node_power_watts"))
    assert series == {"sharded": NODES, "single": NODES}
    for name, expr in FLEET_GAUGES.items():
        gauges = await asyncio.to_thread(server.scalar_by, expr, "job")
        assert gauges["single"] > 0, name
        assert gauges["sharded"] == pytest.approx(gauges["single"], rel=5e-3), name

    # the avoided band: the rule over the replicas' summed draws equals one collector's band
    sharded_band = await asyncio.to_thread(server.scalar_by, band_rule_for("sharded"),
                                           "quantile")
    single_band = await asyncio.to_thread(server.scalar_by, band_rule_for("single"), "quantile")
    assert set(sharded_band) == set(single_band) == {"0.05", "0.5", "0.95"}
    for quantile, tonnes in single_band.items():
        assert tonnes > 0
        assert sharded_band[quantile] == pytest.approx(tonnes, rel=1e-6), quantile
