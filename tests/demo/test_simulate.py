"""The simulated fleet: wire-format reports that a real collector would accept."""

import itertools
import math
import re
from collections import Counter

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.model.coefficients import GRID_INTENSITY_BY_REGION, PUE_BY_SITE
from collector.profiles import resolve_node
from collector.simulate import (
    FleetSettings,
    SimulatedFleet,
    batches,
    daily_utilisation,
)

LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_1123 = re.compile(rf"^{LABEL}(\.{LABEL})*$")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(fleet: SimulatedFleet, clock: FakeClock, steps: list[float]) -> list[dict]:
    out = []
    for step in steps:
        clock.now += step
        out += fleet.reports()
    return out


def test_windows_are_contiguous_and_seq_rises_by_one():
    clock = FakeClock(1_764_072_000.0)
    fleet = SimulatedFleet(FleetSettings(nodes=20, seed=3), clock=clock)
    reports = run(fleet, clock, [0, 15, 15, 7.5, 30])
    by_agent: dict[str, list[dict]] = {}
    for report in reports:
        by_agent.setdefault(report["agent_id"], []).append(report)
    assert len(by_agent) == 20  # one agent id per node
    for series in by_agent.values():
        assert [r["seq"] for r in series] == list(range(1, len(series) + 1))
        assert series[0]["end"] - series[0]["start"] == pytest.approx(15.0)
        for before, after in itertools.pairwise(series):
            assert after["start"] == before["end"]
        assert series[-1]["end"] == clock.now
        assert len({r["node"] for r in series}) == 1


def test_reports_respect_the_wire_format_limits():
    clock = FakeClock(1_764_072_000.0)
    fleet = SimulatedFleet(FleetSettings(nodes=60, seed=1), clock=clock)
    for report in run(fleet, clock, [0, 15, 15]):
        dt = report["end"] - report["start"]
        cpus = report["cpu"]["logical_cpus"]
        busy = report["cpu"]["busy_seconds"]
        assert 1.0 <= dt <= 3600.0
        assert 0 < busy <= cpus * dt
        pod_seconds = sum(p["cpu_seconds"] for p in report["pods"])
        assert pod_seconds <= busy
        assert all(p["cpu_seconds"] >= 0 and p["containers"] >= 1 for p in report["pods"])
        assert report["containers_running"] == sum(p["containers"] for p in report["pods"])
        assert 0 < report["memory"]["used_bytes"] <= report["memory"]["total_bytes"]
        assert DNS_1123.match(report["node"]) and len(report["node"]) <= 253
        assert len(report["pods"]) <= 2000
        for value in (busy, pod_seconds, *report.get("rapl", {}).values()):
            assert math.isfinite(value) and value >= 0
        orjson.dumps(report)  # plain JSON types only


def test_same_seed_and_clock_give_the_same_reports_and_another_seed_does_not():
    def reports_for(seed: int) -> list[dict]:
        clock = FakeClock(1_764_072_000.0)
        return run(SimulatedFleet(FleetSettings(nodes=10, seed=seed), clock=clock), clock,
                   [0, 15, 15])

    assert reports_for(5) == reports_for(5)
    assert reports_for(5) != reports_for(6)


def test_pod_uids_are_stable_and_resolve_through_the_metadata():
    clock = FakeClock(1_764_072_000.0)
    fleet = SimulatedFleet(FleetSettings(nodes=30, seed=2), clock=clock)
    metadata = fleet.metadata()
    reports = run(fleet, clock, [0, 15])
    first = {p["uid"] for r in reports[:30] for p in r["pods"]}
    second = {p["uid"] for r in reports[30:] for p in r["pods"]}
    assert first == second
    namespaces = Counter()
    for report in reports:
        node = metadata.node(report["node"])
        assert node is not None and node.region and node.instance_type
        assert node.cpu_capacity == report["cpu"]["logical_cpus"]
        for pod in report["pods"]:
            info = metadata.pod(pod["uid"])
            assert info is not None
            namespaces[info.namespace] += 1
    assert len(namespaces) >= 5 and "kube-system" in namespaces
    assert metadata.pod("no-such-uid") is None


def test_the_fleet_mixes_providers_and_regions():
    fleet = SimulatedFleet(FleetSettings(nodes=300, seed=0), clock=FakeClock(0.0))
    providers = Counter(node.machine.provider for node in fleet.nodes)
    regions = {node.region for node in fleet.nodes}
    assert set(providers) == {"aws", "gcp", "azure", "alibaba", "baremetal"}
    assert {"china-east", "china-north", "cn-hangzhou", "us-east-1", "eu-west-1"} <= regions


def test_long_gaps_are_split_into_windows_of_at_most_an_hour():
    clock = FakeClock(1_764_072_000.0)
    fleet = SimulatedFleet(FleetSettings(nodes=2, seed=0), clock=clock)
    fleet.reports()
    clock.now += 3 * 3600 + 10
    reports = fleet.reports()
    assert len(reports) == 2 * 4
    for report in reports:
        assert report["end"] - report["start"] <= 3600.0
    assert reports[3]["end"] == clock.now


def test_a_gap_under_a_second_waits_for_the_next_call():
    clock = FakeClock(1_764_072_000.0)
    fleet = SimulatedFleet(FleetSettings(nodes=3, seed=0), clock=clock)
    fleet.reports()
    clock.now += 0.4
    assert fleet.reports() == []
    clock.now += 0.7
    reports = fleet.reports()
    assert [r["end"] - r["start"] for r in reports] == pytest.approx([1.1] * 3)


def test_collapse_scales_utilisation_down():
    def fleet_utilisation(scale: float) -> float:
        clock = FakeClock(1_764_072_000.0)
        fleet = SimulatedFleet(FleetSettings(nodes=50, seed=4), clock=clock)
        fleet.load_scale = scale
        reports = fleet.reports()
        busy = sum(r["cpu"]["busy_seconds"] for r in reports)
        capacity = sum(r["cpu"]["logical_cpus"] * (r["end"] - r["start"]) for r in reports)
        return busy / capacity

    normal, collapsed = fleet_utilisation(1.0), fleet_utilisation(0.2)
    assert collapsed == pytest.approx(0.2 * normal, rel=0.01)


def test_daily_pattern_peaks_at_the_local_peak_hour():
    # 06:00 UTC is 14:00 in China (UTC+8) and 01:00 in us-east (UTC-5)
    six_utc = 6 * 3600.0
    assert daily_utilisation(six_utc, 8, 0.7, 0.1, 14.0) == pytest.approx(0.7)
    assert daily_utilisation(six_utc + 12 * 3600, 8, 0.7, 0.1, 14.0) == pytest.approx(0.1)
    assert daily_utilisation(six_utc, -5, 0.7, 0.1, 14.0) < 0.2


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**31),
    steps=st.lists(st.floats(0.0, 5000.0, allow_nan=False), min_size=1, max_size=6),
    scale=st.floats(0.0, 3.0),
)
def test_busy_never_exceeds_capacity_for_any_clock_or_load(seed, steps, scale):
    clock = FakeClock(1_700_000_000.0)
    fleet = SimulatedFleet(FleetSettings(nodes=4, seed=seed), clock=clock)
    fleet.load_scale = scale
    for report in run(fleet, clock, steps):
        dt = report["end"] - report["start"]
        assert 1.0 <= dt <= 3600.0
        assert report["cpu"]["busy_seconds"] <= report["cpu"]["logical_cpus"] * dt


def test_batches_keep_every_report_within_the_batch_limit():
    clock = FakeClock(1_764_072_000.0)
    reports = SimulatedFleet(FleetSettings(nodes=1203, seed=0), clock=clock).reports()
    bodies = list(batches(reports, 500))
    assert [len(b["reports"]) for b in bodies] == [500, 500, 203]
    assert [r for b in bodies for r in b["reports"]] == reports


def test_every_node_resolves_to_a_known_profile_through_metadata_or_config_alone():
    fleet = SimulatedFleet(FleetSettings(nodes=200, seed=9), clock=FakeClock(0.0))
    config = fleet.profile_config()
    metadata = fleet.metadata()
    assert len(config.rules) == 200
    assert yaml.safe_load(yaml.safe_dump(fleet.config_document())) == fleet.config_document()
    for node in fleet.nodes:
        assert node.region in GRID_INTENSITY_BY_REGION
        via_metadata = resolve_node(config, node.name, metadata.node(node.name))
        via_config = resolve_node(config, node.name, None)
        for resolved in (via_metadata, via_config):
            assert not resolved.on_default_profile
            assert resolved.profile.region == node.region
            assert resolved.profile.provider == node.machine.provider
        if node.machine.provider == "baremetal" and node.region.startswith("china"):
            assert via_config.profile.pue == PUE_BY_SITE["china-average-2021"]


def test_simulated_pods_request_cpu_some_over_some_right_and_fit_their_nodes():
    from collector.simulate import (
        ALLOCATABLE_SHARE,
        DEFAULT_OVER_REQUESTED,
        FleetSettings,
        SimulatedFleet,
    )

    fleet = SimulatedFleet(FleetSettings(nodes=30, seed=3))
    infos = fleet.pod_infos()
    nodes = fleet.node_infos()
    for node in fleet.nodes:
        requested = sum(infos[pod.uid].cpu_request_cores for pod in node.pods)
        allocatable = nodes[node.name].cpu_allocatable
        assert allocatable == node.machine.logical_cpus * ALLOCATABLE_SHARE
        assert 0 < requested <= allocatable + 0.01 * len(node.pods)  # rounding to millicores
        assert all(infos[pod.uid].node_name == node.name for pod in node.pods)
    # at the daily peak, the over-requested workloads ask for several times what they use
    report_time = 1_764_072_000.0
    used, asked = Counter(), Counter()
    for report in fleet.reports(now=report_time):
        for pod in report["pods"]:
            info = infos[pod["uid"]]
            used[info.workload_name] += pod["cpu_seconds"] / (report["end"] - report["start"])
            asked[info.workload_name] += info.cpu_request_cores
    over = {w: asked[w] / used[w] for w in asked if w in DEFAULT_OVER_REQUESTED}
    right = {w: asked[w] / used[w] for w in asked if w not in DEFAULT_OVER_REQUESTED}
    assert min(over.values()) > max(right.values())
    # a namespace's collapse lowers its pods' use and the node's busy time, nothing else
    fleet.namespace_load_scale["risk"] = 0.0
    again = fleet.reports(now=report_time + 15)
    risk = {p.uid for n in fleet.nodes for p in n.pods if p.namespace == "risk"}
    assert all(pod["cpu_seconds"] == 0.0 for r in again for pod in r["pods"] if pod["uid"] in risk)
    assert any(pod["cpu_seconds"] > 0 for r in again for pod in r["pods"]
               if pod["uid"] not in risk)
