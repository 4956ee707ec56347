"""Faults on the collector's and Prometheus' side, with real processes.

* SIGKILL mid-run, restart with the same --state-file: the agents' publishers replay
  what they buffered meanwhile, and the totals afterwards equal those of a control
  collector that never failed, short by at most the reports applied in one snapshot
  interval (acknowledged after the last snapshot, so neither kept nor replayed).
* Prometheus stopped for a while and restarted on the same TSDB directory: the
  collector's counters kept counting, and Prometheus sees one continuous increase.
* A node that stops reporting goes stale and leaves every gauge and fleet sum.
"""

import asyncio
import itertools
import math
import random
import time

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from scale_testkit import (
    REPORTS_PATH,
    RoundRobinProxy,
    exposition_samples,
    fleet_profiles,
    fleet_totals,
    total,
    until,
)

from agent.metrics import AgentMetrics
from agent.publisher import Publisher
from agent.settings import DeliverySettings
from collector.app import create_app
from collector.settings import ExportSettings, Settings
from collector.simulate import FleetSettings, SimulatedFleet, post_reports

T0 = 1_764_072_000.0
WINDOW_SECONDS = 15.0
SNAPSHOT_INTERVAL_SECONDS = 1.0
ROUND_SECONDS = 0.2  # real time between rounds of windows: 5 rounds per snapshot interval


async def scrape(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as response:
        assert response.status == 200
        return await response.text()


@pytest.mark.slow
async def test_sigkill_and_restart_lose_at_most_one_snapshot_interval(
        collectors, aiohttp_server, tmp_path):
    fleet = SimulatedFleet(FleetSettings(nodes=6, seed=5, window_seconds=WINDOW_SECONDS))
    config = fleet_profiles(fleet)
    state_file = tmp_path / "state.json"
    faulty, control = await asyncio.gather(
        asyncio.to_thread(collectors, "faulty", ["--state-file", str(state_file),
                                                 "--snapshot-interval",
                                                 str(SNAPSHOT_INTERVAL_SECONDS)], config),
        asyncio.to_thread(collectors, "control", [], config),
    )
    proxy = RoundRobinProxy([faulty.url])  # the Service in front of the one replica
    front = await aiohttp_server(proxy.app(), host="127.0.0.1")
    publishers = {
        node.name: Publisher(
            DeliverySettings(collector_url=f"http://127.0.0.1:{front.port}",
                             backoff_initial_seconds=0.05, backoff_max_seconds=0.3),
            AgentMetrics(CollectorRegistry()), rng=random.Random(i))
        for i, node in enumerate(fleet.nodes)
    }
    deliveries = [asyncio.create_task(p.run()) for p in publishers.values()]
    rounds, kill_at, restart_at = 30, 10, 18
    control_energy = [0.0]  # control's IT energy after each round
    buffered_during_outage = 0
    try:
        async with aiohttp.ClientSession() as session:
            for round_ in range(1, rounds + 1):
                if round_ == kill_at:
                    text = await scrape(session, faulty.url)
                    assert total(text, "kubecarbon_collector_snapshot_writes_total",
                                 result="success") >= 1
                    await asyncio.to_thread(faulty.kill)
                if round_ == restart_at:
                    buffered_during_outage = sum(len(p.buffer) for p in publishers.values())
                    await asyncio.to_thread(faulty.start)  # same --state-file, new port
                    proxy.upstreams[0] = faulty.url
                reports = fleet.reports(T0 + round_ * WINDOW_SECONDS)
                for report in reports:
                    publishers[report["node"]].publish(report)
                assert await post_reports(session, control.url + REPORTS_PATH, reports) == (
                    len(reports), 0)
                control_energy.append(total(await scrape(session, control.url),
                                            "kubecarbon_node_energy_joules_total"))
                await asyncio.sleep(ROUND_SECONDS)
            await until(lambda: all(len(p.buffer) == 0 for p in publishers.values()),
                        what="agents replaying their buffers")
            faulty_text = await scrape(session, faulty.url)
            control_text = await scrape(session, control.url)
    finally:
        for task in deliveries:
            task.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)
        for publisher in publishers.values():
            await publisher.close()

    # the agents saw the outage, kept their reports and delivered every one of them
    assert proxy.unreachable > 0 and buffered_during_outage >= len(fleet.nodes)
    for publisher in publishers.values():
        agent_text = generate_latest(publisher.metrics.registry).decode()
        assert total(agent_text, "kubecarbon_agent_reports_sent_total") == rounds
        assert total(agent_text, "kubecarbon_agent_reports_dropped_total") == 0
        assert total(agent_text, "kubecarbon_agent_reports_failed_total") == 0
    assert total(faulty_text, "kubecarbon_collector_snapshot_restore", result="restored") == 1

    # Lost: reports acknowledged after the last snapshot before the kill. They arrive
    # within one snapshot interval, i.e. in at most this many consecutive rounds (+1 for
    # a round in flight across the interval's edges).
    rounds_per_interval = math.ceil(SNAPSHOT_INTERVAL_SECONDS / ROUND_SECONDS) + 1
    per_round = [b - a for a, b in itertools.pairwise(control_energy)]
    one_interval_joules = max(sum(per_round[i:i + rounds_per_interval])
                              for i in range(len(per_round)))
    faulty_totals, control_totals = fleet_totals(faulty_text), fleet_totals(control_text)
    energy = "kubecarbon_node_energy_joules_total"
    deficit = control_totals[energy] - faulty_totals[energy]
    assert -1e-9 * control_totals[energy] <= deficit <= one_interval_joules
    lost_reports = (total(control_text, "kubecarbon_collector_reports_total", result="accepted")
                    - total(faulty_text, "kubecarbon_collector_reports_total",
                            result="accepted"))
    assert 0 <= lost_reports <= rounds_per_interval * len(fleet.nodes)
    print(f"\nSIGKILL: {lost_reports:g} of {rounds * len(fleet.nodes)} reports lost, "
          f"{deficit:.0f} J of {control_totals[energy]:.0f} J (bound {one_interval_joules:.0f} J)")
    # every other total is short by the same share (the lost windows are ordinary ones)
    share = deficit / control_totals[energy]
    for name, value in control_totals.items():
        assert faulty_totals[name] == pytest.approx(value * (1 - share), rel=0.02), name


@pytest.mark.slow
async def test_prometheus_down_then_restarted_sees_a_continuous_increase(
        collectors, prometheus):
    fleet = SimulatedFleet(FleetSettings(nodes=5, seed=9, window_seconds=WINDOW_SECONDS))
    collector = await asyncio.to_thread(collectors, "collector", [], fleet_profiles(fleet))
    server = await asyncio.to_thread(prometheus, {"collector": [f"127.0.0.1:{collector.port}"]})
    counter = "kubecarbon_baseline_energy_joules_total"
    round_ = 0

    async def feed(session: aiohttp.ClientSession, rounds: int) -> None:
        nonlocal round_
        for _ in range(rounds):
            round_ += 1
            reports = fleet.reports(T0 + round_ * WINDOW_SECONDS)
            assert await post_reports(session, collector.url + REPORTS_PATH, reports) == (
                len(reports), 0)
            await asyncio.sleep(0.25)

    async with aiohttp.ClientSession() as session:
        await feed(session, 8)
        await asyncio.to_thread(server.wait_for_scrapes, "collector", 2)
        before_stop = time.time()
        seen_before = float((await asyncio.to_thread(server.query, counter))[0]["value"][1])
        await asyncio.to_thread(server.stop)
        await feed(session, 8)  # nobody scrapes meanwhile
        while_down = total(await scrape(session, collector.url), counter)
        await asyncio.to_thread(server.start)  # same config, same TSDB directory
        await feed(session, 4)
        await asyncio.to_thread(server.wait_for_scrapes, "collector", 3)
        final = total(await scrape(session, collector.url), counter)

    assert 0 < seen_before < while_down < final
    # what Prometheus had before it stopped is still there after the restart
    at_stop = await asyncio.to_thread(server.query, counter, before_stop)
    assert float(at_stop[0]["value"][1]) == pytest.approx(seen_before)
    window = f"[{int(time.time() - before_stop) + 30}s]"
    checks = {
        f"resets({counter}{window})": 0.0,  # one continuous counter across the gap
        f"max_over_time({counter}{window})": final,  # the collector's own total
        f"{counter} - {counter} offset {int(time.time() - before_stop) + 1}s":
            final - seen_before,
    }
    for expr, expected in checks.items():
        rows = await asyncio.to_thread(server.query, expr)
        assert len(rows) == 1, expr
        assert float(rows[0]["value"][1]) == pytest.approx(expected, rel=1e-9, abs=1e-6), expr
    # the gap is real: no samples while Prometheus was down
    longest_gap = await asyncio.to_thread(
        server.query, f"max_over_time((timestamp({counter}) - timestamp({counter} offset 1s))"
                      f"{window[:-1]}:1s])")
    assert longest_gap and float(longest_gap[0]["value"][1]) >= 1.5


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_vanished_node_goes_stale_and_leaves_the_fleet_sums(aiohttp_client):
    """The alert on it (KubecarbonAgentMissing) fires in tests/deploy/promtool rule tests."""
    fleet = SimulatedFleet(FleetSettings(nodes=4, seed=13, window_seconds=WINDOW_SECONDS))
    clock = Clock(T0)
    stale_after = 300.0
    app = create_app(Settings(kubernetes="off",
                              export=ExportSettings(stale_after_seconds=stale_after)),
                     metadata=fleet.metadata(), clock=clock, registry=CollectorRegistry())
    client = await aiohttp_client(app)
    gone = fleet.nodes[1]
    staying = [n for n in fleet.nodes if n is not gone]

    async def feed(nodes) -> None:
        clock.now += WINDOW_SECONDS
        names = {n.name for n in nodes}
        # the vanished node's windows are made but never arrive
        reports = [r for r in fleet.reports(clock.now) if r["node"] in names]
        response = await client.post(REPORTS_PATH, json={"reports": reports})
        assert response.status == 200

    async def metrics() -> str:
        return await (await client.get("/metrics")).text()

    await feed(fleet.nodes)
    before = await metrics()
    for _ in range(int(stale_after // WINDOW_SECONDS) + 1):
        await feed(staying)
    after = await metrics()

    def nodes_in(text: str, name: str) -> set[str]:
        return {dict(labels)["node"] for (sample, labels), _ in exposition_samples(text).items()
                if sample == name}

    gauges = ("kubecarbon_node_power_watts", "kubecarbon_node_cpu_usage_ratio",
              "kubecarbon_node_logical_cpus", "kubecarbon_node_last_report_timestamp_seconds")
    for gauge in gauges:
        assert gone.name in nodes_in(before, gauge)
        assert nodes_in(after, gauge) == {n.name for n in staying}, gauge
    assert total(after, "kubecarbon_collector_live_nodes") == len(staying)
    assert total(after, "kubecarbon_collector_stale_nodes") == 1
    # its counters keep their totals
    assert total(after, "kubecarbon_node_energy_joules_total", node=gone.name) == total(
        before, "kubecarbon_node_energy_joules_total", node=gone.name) > 0
    # fleet gauges are sums over the live nodes only
    reference_cpus = 112
    for text, nodes in ((before, fleet.nodes), (after, staying)):
        cpus = sum(n.logical_cpus for n in nodes)
        assert total(text, "kubecarbon_node_logical_cpus") == cpus
        assert total(text, "kubecarbon_actual_servers") == pytest.approx(cpus / reference_cpus)
    assert total(after, "kubecarbon_actual_servers") < total(before, "kubecarbon_actual_servers")
