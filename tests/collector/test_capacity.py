"""Requested versus used cores per node, namespace and workload (collector/capacity.py).

Hand-computed: windows are 15 s long (collector_testkit.make_report), so CPU seconds / 15
are the cores used.
"""

from __future__ import annotations

import pytest
from collector_testkit import T0, FakeClock, make_report

from collector.capacity import CpuAccount, PodUsageTracker, capacity_view
from collector.fleet_view import split_live
from collector.ingest import Ingestor
from collector.ledger import OTHER, Ledger
from collector.metadata import NodeInfo, PodInfo, StaticMetadataProvider

WEB = ("shop", "Deployment", "web")
CACHE = ("shop", "StatefulSet", "cache")
BATCH = ("ops", "Job", "backup")


def _fleet() -> tuple[Ingestor, PodUsageTracker, StaticMetadataProvider]:
    metadata = StaticMetadataProvider(
        nodes={"n1": NodeInfo("n1", cpu_allocatable=7.5, memory_allocatable_bytes=30 * 2**30)},
        pods={
            "w1": PodInfo("w1", *WEB[:1], "web-1", *WEB[1:], "n1", 2.0, 2**30),
            "w2": PodInfo("w2", *WEB[:1], "web-2", *WEB[1:], "n2", 2.0, 2**30),
            "c1": PodInfo("c1", *CACHE[:1], "cache-0", *CACHE[1:], "n1", 0.5),
            "b1": PodInfo("b1", *BATCH[:1], "backup-1", *BATCH[1:], "n2", 1.0,
                          holds_requests=False),
            "s1": PodInfo("s1", "shop", "old-1", "Deployment", "old", "stale", 3.0),
        },
    )
    usage = PodUsageTracker()
    clock = FakeClock(T0 - 1000)
    ingestor = Ingestor(Ledger(), metadata=metadata, clock=clock, pod_usage=usage)
    ingestor.ingest([make_report("stale", 1, agent_id="s", start=T0 - 1015,
                                 pods=[{"uid": "s1", "cpu_seconds": 1.0, "containers": 1}])])
    clock.now = T0
    ingestor.ingest([
        make_report("n1", 1, agent_id="a", busy_seconds=60.0, pods=[
            {"uid": "w1", "cpu_seconds": 3.0, "containers": 1},  # 0.2 cores of 2 requested
            {"uid": "c1", "cpu_seconds": 15.0, "containers": 1},  # 1 core of 0.5: over
            {"uid": "ghost", "cpu_seconds": 30.0, "containers": 1},  # unknown: left out
        ]),
        make_report("n2", 1, agent_id="b", busy_seconds=60.0, pods=[
            {"uid": "w2", "cpu_seconds": 6.0, "containers": 1},  # 0.4 of 2
        ]),
    ])
    return ingestor, usage, metadata


def test_requested_used_and_idle_per_node_namespace_and_workload() -> None:
    ingestor, usage, metadata = _fleet()
    ledger = ingestor.ledger.view(T0)
    live, stale = split_live(ledger.windows, T0, 300)
    assert stale == 1
    view = capacity_view(live, metadata.nodes(), metadata.pod_requests(), usage.latest(),
                         ledger.workloads.keys())
    by_node = {labels[0]: account for labels, account in view.nodes.items()}
    assert by_node["n1"] == CpuAccount(2.5, pytest.approx(1.2), pytest.approx(1.8))
    # the finished backup pod holds nothing
    assert by_node["n2"] == CpuAccount(2.0, pytest.approx(0.4), pytest.approx(1.6))
    assert view.workloads[WEB] == CpuAccount(4.0, pytest.approx(0.6), pytest.approx(3.4))
    # the cache uses more than it asked for: no idle, and it does not offset web's idle
    assert view.workloads[CACHE] == CpuAccount(0.5, pytest.approx(1.0), 0.0)
    assert view.namespaces["shop"] == CpuAccount(4.5, pytest.approx(1.6), pytest.approx(3.4))
    assert "ops" not in view.namespaces and "stale" not in by_node
    assert {p.uid for p in view.pods} == {"w1", "w2", "c1"}
    capacity = {c.labels[0]: c for c in view.capacity}
    assert (capacity["n1"].allocatable_cpu, capacity["n1"].allocatable_memory) == (
        7.5, 30 * 2**30)
    # without allocatable from the cluster: the node's own logical CPUs
    assert capacity["n2"].allocatable_cpu == 16


def test_workloads_beyond_the_cap_add_up_under_other() -> None:
    ingestor, usage, metadata = _fleet()
    ledger = ingestor.ledger.view(T0)
    live, _ = split_live(ledger.windows, T0, 300)
    view = capacity_view(live, metadata.nodes(), metadata.pod_requests(), usage.latest(), [WEB])
    assert view.workloads[("shop", OTHER, OTHER)] == CpuAccount(0.5, pytest.approx(1.0), 0.0)
    assert set(view.workloads) == {WEB, ("shop", OTHER, OTHER)}


def test_the_latest_window_wins_and_silent_nodes_are_dropped() -> None:
    ingestor, usage, _ = _fleet()
    ingestor.ingest([make_report("n2", 0, agent_id="b2", start=T0 - 45, pods=[
        {"uid": "w2", "cpu_seconds": 15.0, "containers": 1}])])  # older window: ignored
    assert usage.latest()["n2"].cores[WEB] == pytest.approx(0.4)
    usage.forget_before(T0 - 500)
    assert set(usage.latest()) == {"n1", "n2"}


def test_idle_attribution_by_requests_is_an_option_and_the_default_is_unchanged() -> None:
    def namespace_energy(idle_by_requests: bool) -> tuple[dict[str, float], float, float]:
        metadata = StaticMetadataProvider(pods={
            "w1": PodInfo("w1", "shop", "web-1", "Deployment", "web", "n1", 3.0),
            "c1": PodInfo("c1", "ops", "cron-1", "CronJob", "cron", "n1", 1.0),
        })
        ingestor = Ingestor(Ledger(), metadata=metadata, clock=FakeClock(T0),
                            idle_by_requests=idle_by_requests)
        ingestor.ingest([make_report("n1", 1, agent_id="a", busy_seconds=60.0, pods=[
            {"uid": "w1", "cpu_seconds": 10.0, "containers": 1},
            {"uid": "c1", "cpu_seconds": 30.0, "containers": 1}])])
        view = ingestor.ledger.view(T0)
        (node,) = view.nodes.values()
        totals = {ns: c.energy_joules for ns, c in view.namespaces.items()}
        return totals, node.energy_joules, node.idle_energy_joules

    by_use, node_energy, idle = namespace_energy(False)
    by_requests, node_energy_again, _ = namespace_energy(True)
    assert node_energy_again == node_energy  # the node's own counters never change
    # default: dynamic energy by CPU use (10 : 30 of 60 busy seconds), idle stays with the node
    dynamic = node_energy - idle
    assert by_use["shop"] == pytest.approx(dynamic * 10 / 60)
    assert by_use["ops"] == pytest.approx(dynamic * 30 / 60)
    # by requests: idle split 3 : 1 on top
    assert by_requests["shop"] == pytest.approx(dynamic * 10 / 60 + idle * 3 / 4)
    assert by_requests["ops"] == pytest.approx(dynamic * 30 / 60 + idle / 4)
    # everything but the CPU used outside pods (20 of 60 busy seconds) is allocated
    assert sum(by_requests.values()) == pytest.approx(node_energy - dynamic * 20 / 60)
