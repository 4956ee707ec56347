"""Rightsizing in the collector (collector/rightsizing.py): the bounded usage history and
the fleet view built from it, on hand-computed fleets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import orjson
import pytest
from collector_testkit import T0, FakeClock, make_report

from collector.capacity import PodUsageTracker, capacity_view
from collector.capacity_exposition import CapacityFamilies, CapacityInputs
from collector.fleet_view import FleetView, compute_fleet_view
from collector.ingest import Ingestor
from collector.ledger import Ledger, LedgerView
from collector.metadata import NodeInfo, PodInfo, StaticMetadataProvider, WorkloadKey
from collector.model.parameters import ModelParameters
from collector.render_process import render_in_child
from collector.rightsizing import (
    Recommendation,
    RightsizingView,
    UsageHistory,
    rightsizing_view,
)
from collector.settings import RightsizingSettings
from collector.snapshot import encode, restore_snapshot

WEB = ("shop", "Deployment", "web")
STEP = 600.0
SMALL = RightsizingSettings(window_seconds=5 * STEP, sample_seconds=STEP, percentile=100.0,
                            headroom=0.0, min_history_seconds=2 * STEP)


def _feed(history: UsageHistory, bucket: int, cpu_seconds: float) -> None:
    history.add([bucket * STEP + 300.0], [{WEB: cpu_seconds}])


def test_samples_are_interval_means_the_first_partial_interval_skipped() -> None:
    history = UsageHistory(SMALL)
    _feed(history, 100, 6000.0)  # the collector started during interval 100: not a sample
    _feed(history, 101, 600.0)
    _feed(history, 101, 600.0)  # two nodes' reports in one interval add up: 2 cores
    _feed(history, 102, 300.0)
    assert history.samples_of(WEB).size == 0  # 101 closes once 103 is seen
    _feed(history, 103, 1200.0)
    assert history.samples_of(WEB).tolist() == [2.0]
    assert history.recommendations[WEB] == Recommendation(600.0, 2.0, None)  # too short
    _feed(history, 104, 0.0)
    assert history.samples_of(WEB).tolist() == [2.0, 0.5]
    assert history.recommendations[WEB] == Recommendation(1200.0, 2.0, 2.0)


def test_history_is_a_bounded_ring_and_late_reports_of_closed_intervals_are_dropped() -> None:
    history = UsageHistory(SMALL)
    for bucket in range(100, 120):
        _feed(history, bucket, STEP * bucket / 100)
    _feed(history, 110, 60_000.0)  # long closed
    samples = history.samples_of(WEB)
    assert samples.size == 5  # window / interval
    assert sorted(samples.tolist()) == pytest.approx([1.13, 1.14, 1.15, 1.16, 1.17])


def test_workloads_beyond_the_cap_are_counted_not_tracked_and_silent_ones_expire() -> None:
    history = UsageHistory(dataclasses.replace(SMALL, max_workloads=1))
    other = ("shop", "Deployment", "other")
    for bucket in range(100, 104):
        history.add([bucket * STEP], [{WEB: 60.0, other: 60.0}])
    # intervals 101 (100 was partial; 102 and 103 are still open): one refused sample
    assert history.untracked_workloads == 1 and history.samples_of(other).size == 0
    for bucket in range(104, 112):
        history.add([bucket * STEP], [{}])
    assert history.samples_of(WEB).size == 0 and WEB not in history.recommendations


def test_state_document_round_trip_keeps_samples_and_refuses_another_interval() -> None:
    history = UsageHistory(SMALL)
    for bucket in range(100, 110):
        _feed(history, bucket, float(bucket))
    document = orjson.loads(orjson.dumps(history.to_document()))
    restored = UsageHistory(SMALL)
    restored.load_document(document)
    assert sorted(restored.samples_of(WEB).tolist()) == pytest.approx(
        sorted(history.samples_of(WEB).tolist()))
    assert restored.recommendations == history.recommendations
    other = UsageHistory(dataclasses.replace(SMALL, sample_seconds=300.0))
    other.load_document(document)
    assert other.samples_of(WEB).size == 0


def _three_node_fleet() -> tuple[StaticMetadataProvider, PodUsageTracker, LedgerView, FleetView]:
    """Three 8-core nodes; web: 6 pods of 2 cores (12 requested) using 3 cores in all; a
    DaemonSet of 0.5 core per node; db: 2 pods of 3 cores without enough history."""
    nodes = {f"n{k}": NodeInfo(f"n{k}", provider="aws", instance_type="m5.2xlarge",
                               cpu_allocatable=8.0, memory_allocatable_bytes=32 * 2**30)
             for k in range(3)}
    pods = {}
    for k in range(6):
        pods[f"w{k}"] = PodInfo(f"w{k}", "shop", f"web-{k}", "Deployment", "web",
                                f"n{k % 3}", 2.0, 2**30)
    for k in range(3):
        pods[f"d{k}"] = PodInfo(f"d{k}", "kube-system", f"agent-{k}", "DaemonSet", "agent",
                                f"n{k}", 0.5, 2**28)
    for k in range(2):
        pods[f"db{k}"] = PodInfo(f"db{k}", "shop", f"db-{k}", "StatefulSet", "db",
                                 f"n{k}", 3.0, 4 * 2**30)
    metadata = StaticMetadataProvider(nodes=nodes, pods=pods)
    usage = PodUsageTracker()
    ingestor = Ingestor(Ledger(), metadata=metadata, clock=FakeClock(T0), pod_usage=usage)
    ingestor.ingest([make_report(f"n{k}", 1, agent_id=f"a{k}", logical_cpus=8,
                                 busy_seconds=15.0, pods=[]) for k in range(3)])
    ledger = ingestor.ledger.view(T0)
    return metadata, usage, ledger, compute_fleet_view(ledger.windows, T0, ModelParameters(),
                                                       300.0)


def test_rightsizing_view_on_a_hand_computed_fleet() -> None:
    metadata, usage, ledger, fleet = _three_node_fleet()
    params = ModelParameters()
    capacity = capacity_view(fleet.live, metadata.nodes(), metadata.pod_requests(), usage.latest(),
                             ledger.workloads.keys())
    recommendations = {WEB: Recommendation(86_400.0, 3.0, 3.45),
                       ("shop", "StatefulSet", "db"): Recommendation(600.0, 1.0, None)}
    assert fleet.estimate is not None
    view = rightsizing_view(capacity, recommendations, fleet.live, fleet.estimate, params)
    # room per node: 8 - 0.5 (DaemonSet) = 7.5. Today: 3, 3 (db) + 2, 2, 2, 2, 2, 2 (web)
    # = 18 cores -> 3 nodes. Recommended: web 3.45 cores over 6 pods = 0.575 each;
    # 3 + 3 + 6 x 0.575 = 9.45 cores -> 3, 3, then 0.575 x 2 fill node 1 (7.15), 4 more open
    # node 2: 2 nodes.
    assert (view.nodes_today, view.nodes_recommended) == (3, 2)
    savings = view.savings
    assert savings.nodes == 1
    # the avoided node idles at the m5.2xlarge's idle power (its window's estimate)
    idle = float(np.min(fleet.estimate.idle_power_watts))
    assert savings.it_energy_kilowatt_hours == pytest.approx(idle * 8760 / 1000)
    assert savings.co2e_tonnes_band.p05 < savings.co2e_tonnes < savings.co2e_tonnes_band.p95
    web = view.workloads[WEB]
    assert web.requested_cores == 12.0
    # web frees all the cores freed: the fleet's whole median is its share
    assert web.avoidable_co2e_tonnes_per_year == pytest.approx(savings.co2e_tonnes_band.p50)
    assert view.workloads[("shop", "StatefulSet", "db")].avoidable_co2e_tonnes_per_year == 0.0


def test_the_packing_is_reused_for_a_minute_but_not_across_new_recommendations() -> None:
    metadata, usage, ledger, fleet = _three_node_fleet()
    families = CapacityFamilies(ModelParameters(), RightsizingSettings(recompute_seconds=60.0))

    def views(recommendations: dict[WorkloadKey, Recommendation], at: LedgerView
              ) -> RightsizingView:
        inputs = CapacityInputs(metadata.nodes(), metadata.pod_requests(), usage.latest(),
                                recommendations, 0)
        _, view = families.views(inputs, at, fleet)
        assert view is not None
        return view

    waiting: dict[WorkloadKey, Recommendation] = {}
    first = views(waiting, ledger)
    assert first.workloads[WEB].recommendation is None
    assert views(waiting, dataclasses.replace(ledger, now=ledger.now + 59.0)) is first
    # web's first recommendation arrives within the minute: priced at once
    sized = {WEB: Recommendation(86_400.0, 3.0, 3.45)}
    priced = views(sized, dataclasses.replace(ledger, now=ledger.now + 59.0))
    assert priced.workloads[WEB].recommendation == sized[WEB]
    assert priced.workloads[WEB].avoidable_co2e_tonnes_per_year > 0.0
    # the same recommendations a minute later: packed again (pods and nodes may have moved)
    assert views(sized, dataclasses.replace(ledger, now=ledger.now + 119.0)) is not priced


def test_the_serving_process_keeps_a_packing_made_in_a_child_for_forked_renders() -> None:
    metadata, usage, ledger, fleet = _three_node_fleet()
    families = CapacityFamilies(ModelParameters(), RightsizingSettings(recompute_seconds=60.0))
    inputs = CapacityInputs(metadata.nodes(), metadata.pod_requests(), usage.latest(), {}, 0)
    in_process = CapacityFamilies(ModelParameters()).views(inputs, ledger, fleet)[1]
    # a render in a child packs in its own copy, which dies with it: nothing kept here
    assert render_in_child(lambda: repr(families.views(inputs, ledger, fleet)[1]).encode())
    assert families._reusable(inputs, ledger) is None
    # prepare packs in a child of its own (it calls `fleet` there) and keeps the result
    families.prepare(inputs, ledger, lambda: fleet)
    _, packed = families.views(inputs, ledger, fleet)
    assert packed == in_process
    # the next scrape within the minute: nothing to pack, and a child renders that packing
    later = dataclasses.replace(ledger, now=ledger.now + 30.0)

    def unused() -> FleetView:
        raise AssertionError("packed again within the minute")

    families.prepare(inputs, later, unused)

    def reused_in_child() -> bytes:
        families.forked()
        return b"reused" if families.views(inputs, later, fleet)[1] is packed else b"packed"

    assert render_in_child(reused_in_child) == b"reused"
    a_minute_on = dataclasses.replace(ledger, now=ledger.now + 60.0)
    families.prepare(inputs, a_minute_on, lambda: fleet)
    assert families.views(inputs, a_minute_on, fleet)[1] is not packed  # packed again


def test_usage_history_travels_in_the_state_file_and_a_bad_one_is_refused_whole(
    tmp_path: Path,
) -> None:
    history = UsageHistory(SMALL)
    for bucket in range(100, 106):
        _feed(history, bucket, 600.0 * (bucket - 99))
    path = tmp_path / "state.json"
    path.write_bytes(encode(Ledger(), T0, history))
    restored = UsageHistory(SMALL)
    assert restore_snapshot(Ledger(), path, restored) == "restored"
    assert restored.recommendations == history.recommendations
    # a snapshot written without history (older collectors) still restores the counters
    path.write_bytes(encode(Ledger(), T0))
    assert restore_snapshot(Ledger(), path, UsageHistory(SMALL)) == "restored"
    # a negative sample fails the schema: nothing is loaded
    document = orjson.loads(encode(Ledger(), T0, history))
    document["rightsizing"]["workloads"][0][4][0] = -1.0
    path.write_bytes(orjson.dumps(document))
    untouched = UsageHistory(SMALL)
    assert restore_snapshot(Ledger(), path, untouched) == "corrupt"
    assert untouched.recommendations == {}
