"""Windows of deltas: exact values on fixture trees, pod churn, failures, late samples."""

import itertools
import logging
import shutil
from pathlib import Path

from agent_testkit import FIXTURES, UID_BURSTABLE, UID_GUARANTEED, UID_STATIC_BESTEFFORT, FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agent.metrics import AgentMetrics
from agent.runtime import host_sources
from agent.sampler import Sample, Sampler, window_report
from agent.settings import SourceSettings
from agent.sources.density import Density
from agent.sources.proc_stat import CpuTimes

KUBEPODS = "sys/fs/cgroup/kubepods.slice"
POD_DIRS = {
    UID_GUARANTEED: f"{KUBEPODS}/kubepods-pod0b7a3c5e_2f41_4d8a_9c6b_1e2f3a4b5c6d.slice",
    UID_BURSTABLE: f"{KUBEPODS}/kubepods-burstable.slice/"
    "kubepods-burstable-pod8f0e1a2b_3c4d_4e5f_8a9b_0c1d2e3f4a5b.slice",
    UID_STATIC_BESTEFFORT: f"{KUBEPODS}/kubepods-besteffort.slice/"
    "kubepods-besteffort-pod5b2d6b0f1c1d5e8f9b3a4c2d1e0f9a8b.slice",
}
PROC_STAT_AFTER = (  # the fixture's /proc/stat 15 s later: +200 user, +100 system, +5700 idle ticks
    "cpu  1383041 2207 402218 25879230 20744 0 31559 1611 0 0\n"
    "cpu0 346470 551 100886 6468597 5160 0 12483 398 0 0\n"
    "cpu1 346420 560 100347 6469009 5201 0 6309 402 0 0\n"
    "cpu2 345911 548 100329 6469823 5194 0 6397 405 0 0\n"
    "cpu3 345390 548 100656 6471801 5189 0 6370 406 0 0\n"
    "ctxt 398971233\nbtime 1764050400\nprocesses 1180490\nprocs_running 2\nprocs_blocked 0\n"
)


def set_pod_usage(root: Path, pod_dir: str, usage_usec: int) -> None:
    path = root / pod_dir / "cpu.stat"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"usage_usec {usage_usec}\nuser_usec {usage_usec}\nsystem_usec 0\n")


def make_sampler(root: Path, clock: FakeClock, registry=None, rapl=False) -> Sampler:
    metrics = AgentMetrics(registry if registry is not None else CollectorRegistry())
    sources = host_sources(
        SourceSettings(host_proc=root / "proc", host_sys=root / "sys", rapl_enabled=rapl)
    )
    return Sampler("ip-10-0-1-17", sources, metrics, clock=clock)


def test_a_window_holds_exact_deltas_never_totals_since_boot(node_copy, fake_clock):
    root = node_copy("v2-systemd-containerd")
    sampler = make_sampler(root, fake_clock)
    assert sampler.sample() is None  # the first sample is only the baseline
    fake_clock.advance(15)
    (root / "proc/stat").write_text(PROC_STAT_AFTER)
    set_pod_usage(root, POD_DIRS[UID_GUARANTEED], 3_100_000 + 1_500_000)
    set_pod_usage(root, POD_DIRS[UID_BURSTABLE], 13_238_000 + 250_000)
    assert sampler.sample() == {
        "schema": 1,
        "node": "ip-10-0-1-17",
        "start": 1_764_072_000.0,
        "end": 1_764_072_015.0,
        "cpu": {"logical_cpus": 4, "busy_seconds": 3.0},
        "memory": {"total_bytes": 24683656 * 1024, "used_bytes": 488324 * 1024},
        "containers_running": 4,
        "pods": [
            {"uid": UID_GUARANTEED, "cpu_seconds": 1.5, "containers": 1},
            {"uid": UID_STATIC_BESTEFFORT, "cpu_seconds": 0.0, "containers": 1},
            {"uid": UID_BURSTABLE, "cpu_seconds": 0.25, "containers": 2},
        ],
    }


def test_pods_that_appear_vanish_or_reset(node_copy, fake_clock):
    root = node_copy("v2-systemd-containerd")
    sampler = make_sampler(root, fake_clock)
    sampler.sample()
    fake_clock.advance(15)
    # created inside the window: everything its cgroup counted belongs to this window
    new_uid = "11111111-2222-4333-8444-555555555555"
    new_dir = (
        f"{KUBEPODS}/kubepods-besteffort.slice/"
        f"kubepods-besteffort-pod{new_uid.replace('-', '_')}.slice"
    )
    set_pod_usage(root, new_dir, 700_000)
    for container_id in ("ab" * 32, "ef" * 32):  # its sandbox and its one container
        (root / new_dir / f"cri-containerd-{container_id}.scope").mkdir()
    shutil.rmtree(root / POD_DIRS[UID_STATIC_BESTEFFORT])  # deleted pod
    set_pod_usage(root, POD_DIRS[UID_BURSTABLE], 400_000)  # counter reset (recreated cgroup)
    pods = {pod["uid"]: pod for pod in sampler.sample()["pods"]}
    assert pods == {
        UID_GUARANTEED: {"uid": UID_GUARANTEED, "cpu_seconds": 0.0, "containers": 1},
        UID_BURSTABLE: {"uid": UID_BURSTABLE, "cpu_seconds": 0.4, "containers": 2},
        new_uid: {"uid": new_uid, "cpu_seconds": 0.7, "containers": 1},
    }
    fake_clock.advance(15)
    set_pod_usage(root, new_dir, 900_000)
    pods = {pod["uid"]: pod["cpu_seconds"] for pod in sampler.sample()["pods"]}
    assert pods == {UID_GUARANTEED: 0.0, UID_BURSTABLE: 0.0, new_uid: 0.2}


def test_windows_stay_contiguous_when_samples_are_late_or_the_wall_clock_steps(
    node_copy, fake_clock
):
    sampler = make_sampler(node_copy("v2-no-pods"), fake_clock)
    sampler.sample()
    windows = []
    for late_by in (0, 0, 32.5, 0, 7.25):
        fake_clock.advance(15 + late_by)
        if late_by == 7.25:
            fake_clock.wall -= 3600  # NTP steps the wall clock back an hour
        report = sampler.sample()
        windows.append((report["start"], report["end"]))
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert start == end
    assert [end - start for start, end in windows] == [15, 15, 47.5, 15, 22.25]


def test_busy_never_exceeds_all_cpus_for_the_whole_window():
    before = Sample(timestamp=100.0, cpu=CpuTimes(0, 0, 0, 2))
    after = Sample(timestamp=101.0, cpu=CpuTimes(203, 0, 203, 2))  # 2.03 s busy in 1 s on 2 CPUs
    assert window_report("n", before, after, user_hz=100)["cpu"]["busy_seconds"] == 2.0


def test_steal_is_counted_apart_and_never_as_busy(node_copy, fake_clock):
    root = node_copy("v2-no-pods")
    registry = CollectorRegistry()
    sampler = make_sampler(root, fake_clock, registry)
    sampler.sample()
    fake_clock.advance(15)
    # +300 busy ticks as in PROC_STAT_AFTER, and +1200 ticks of steal (4 s on 4 CPUs in 15 s)
    (root / "proc/stat").write_text(PROC_STAT_AFTER.replace(" 1611 0 0\n", " 2811 0 0\n", 1))
    assert sampler.sample()["cpu"] == {"logical_cpus": 4, "busy_seconds": 3.0}
    assert registry.get_sample_value("kubecarbon_agent_cpu_steal_seconds_total") == 12.0
    fake_clock.advance(15)  # nothing moved: no steal either
    assert sampler.sample()["cpu"] == {"logical_cpus": 4, "busy_seconds": 0.0}
    assert registry.get_sample_value("kubecarbon_agent_cpu_steal_seconds_total") == 12.0


def test_a_failing_source_is_disabled_alone_logged_once_and_never_double_counts(
    node_copy, fake_clock, caplog
):
    root = node_copy("v2-systemd-containerd")
    registry = CollectorRegistry()
    sampler = make_sampler(root, fake_clock, registry)
    sampler.sample()
    stat = root / POD_DIRS[UID_GUARANTEED] / "cpu.stat"
    stat.write_text("usage_usec garbage\n")
    caplog.set_level(logging.INFO, logger="agent.sampler")
    reports = []
    for _ in range(3):
        fake_clock.advance(15)
        reports.append(sampler.sample())
    assert [sorted(report) for report in reports] == [
        ["containers_running", "cpu", "end", "memory", "node", "schema", "start"]
    ] * 3
    success = registry.get_sample_value
    assert success("kubecarbon_agent_source_success", {"source": "pod_cpu"}) == 0
    assert success("kubecarbon_agent_source_success", {"source": "cpu"}) == 1
    assert success("kubecarbon_agent_source_success", {"source": "density"}) == 1
    assert (
        registry.get_sample_value("kubecarbon_agent_source_duration_seconds", {"source": "pod_cpu"})
        >= 0
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "source pod_cpu disabled: malformed usage_usec in cpu.stat" in warnings[0]

    # recovery: the first good cycle is a new baseline, so usage of the broken
    # cycles is never folded into one window
    set_pod_usage(root, POD_DIRS[UID_GUARANTEED], 9_000_000)
    fake_clock.advance(15)
    assert "pods" not in sampler.sample()
    set_pod_usage(root, POD_DIRS[UID_GUARANTEED], 9_500_000)
    fake_clock.advance(15)
    pods = {pod["uid"]: pod["cpu_seconds"] for pod in sampler.sample()["pods"]}
    assert pods[UID_GUARANTEED] == 0.5
    assert success("kubecarbon_agent_source_success", {"source": "pod_cpu"}) == 1
    assert "source pod_cpu recovered" in caplog.text


def test_broken_node_reports_everything_that_still_works(node_copy, fake_clock):
    root = node_copy("broken")
    (root / "proc/meminfo").write_text((FIXTURES / "v2-no-pods/proc/meminfo").read_text())
    registry = CollectorRegistry()
    sampler = make_sampler(root, fake_clock, registry, rapl=True)
    sampler.sample()
    fake_clock.advance(15)
    report = sampler.sample()
    # a pod's cpu.stat is unreadable and there is no RAPL: cpu, memory and density remain
    assert report["cpu"] == {"logical_cpus": 4, "busy_seconds": 0.0}
    assert report["containers_running"] == 1
    assert "pods" not in report and "rapl" not in report
    states = {
        source: registry.get_sample_value("kubecarbon_agent_source_success", {"source": source})
        for source in ("cpu", "memory", "pod_cpu", "density", "rapl")
    }
    assert states == {"cpu": 1, "memory": 1, "pod_cpu": 0, "density": 1, "rapl": 0}


def test_a_window_without_node_memory_is_still_sent(fake_clock):
    # memory is optional on the wire: a failing meminfo source costs that section only
    registry = CollectorRegistry()
    sampler = make_sampler(FIXTURES / "broken", fake_clock, registry)  # no /proc/meminfo
    sampler.sample()
    fake_clock.advance(15)
    report = sampler.sample()
    assert report is not None
    assert "memory" not in report
    assert report["cpu"]["busy_seconds"] == 0.0  # the fixture /proc/stat does not move
    assert registry.get_sample_value("kubecarbon_agent_source_success", {"source": "memory"}) == 0


# --- property: over any history of pod churn, no negative and no doubled CPU seconds ---

pod_events = st.lists(  # per window, at most one thing happens to each pod
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]),
        st.tuples(
            st.sampled_from(["run", "run", "run", "delete", "reset"]),
            st.integers(min_value=0, max_value=10**9),
        ),
        max_size=3,
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200)
@given(pod_events)
def test_reported_pod_seconds_equal_what_the_cgroups_counted_while_watched(history):
    counters: dict[str, int] = {"a": 5 * 10**9}  # "a" ran before the agent started
    counted_since_start = {"a": 0}
    samples = [Sample(0.0, pod_cpu=dict(counters), density=Density(dict.fromkeys(counters, 1)))]
    for step, events in enumerate(history, start=1):
        for uid, (kind, nanoseconds) in events.items():
            if kind == "delete":  # what it counted until the last sample was reported already
                counters.pop(uid, None)
            elif kind == "reset" and counters.get(uid):
                # the cgroup was recreated and counted less than before since
                counters[uid] = nanoseconds % counters[uid]
                counted_since_start[uid] += counters[uid]
            else:
                counters[uid] = counters.get(uid, 0) + nanoseconds
                counted_since_start[uid] = counted_since_start.get(uid, 0) + nanoseconds
        density = Density(dict.fromkeys(counters, 1))
        samples.append(Sample(15.0 * step, pod_cpu=dict(counters), density=density))
    reported: dict[str, float] = {}
    for previous, current in itertools.pairwise(samples):
        for pod in window_report("n", previous, current, 100)["pods"]:
            assert pod["cpu_seconds"] >= 0
            reported[pod["uid"]] = reported.get(pod["uid"], 0.0) + pod["cpu_seconds"]
    for uid, nanoseconds in counted_since_start.items():
        assert abs(reported.get(uid, 0.0) - nanoseconds / 1e9) < 1e-6


def test_pods_come_with_their_containers_or_not_at_all():
    before = Sample(timestamp=0.0, pod_cpu={"p1": 10**9, "p2": 0})
    after = {"timestamp": 15.0, "pod_cpu": {"p1": 3 * 10**9, "p2": 5 * 10**8}}
    # p2's cgroup went away between the pod_cpu and the density read of this cycle
    known = window_report("n", before, Sample(**after, density=Density({"p1": 4})), 100)
    unknown = window_report("n", before, Sample(**after), 100)
    assert known["pods"] == [
        {"uid": "p1", "cpu_seconds": 2.0, "containers": 4},
        {"uid": "p2", "cpu_seconds": 0.5, "containers": 0},
    ]
    assert known["containers_running"] == 4
    assert "pods" not in unknown and "containers_running" not in unknown
