"""Per-pod CPU and container density on real-format cgroup trees (v1/v2, both drivers)."""

import shutil
from pathlib import Path

import pytest
from agent_testkit import (
    CGROUP_TREES,
    FIXTURES,
    UID_BURSTABLE,
    UID_GUARANTEED,
    UID_STATIC_BESTEFFORT,
)

from agent.sources import SourceError
from agent.sources.density import Density, DensitySource
from agent.sources.kept_open import KeptOpenFiles
from agent.sources.kubepods import (
    find_kubepods,
    is_container_dir_name,
    list_pod_cgroups,
    pod_uid_from_dir_name,
    qos_class_from_dir_name,
)
from agent.sources.pod_cpu import (
    PodCpuSource,
    parse_cpu_stat_usage_nanoseconds,
    parse_cpuacct_usage_nanoseconds,
)
from agent.sources.pod_listing import PodListing

# cgroup v2 counts microseconds; v1 counts nanoseconds (the hand-made v1 tree ends in 417 ns)
EXPECTED_POD_CPU_NANOSECONDS = {
    2: {
        UID_GUARANTEED: 3_100_000_000,
        UID_BURSTABLE: 13_238_000_000,
        UID_STATIC_BESTEFFORT: 900_000_000,
    },
    1: {
        UID_GUARANTEED: 3_100_000_417,
        UID_BURSTABLE: 13_238_000_417,
        UID_STATIC_BESTEFFORT: 900_000_417,
    },
}
# Captured from the cluster suite's real node (tests/capture_kubepods.py): the kernel's
# counters of a 100m-limited spin, a 200m-limited spin beside an idle container, and an
# unlimited static pod, 20 s after they started.
CAPTURED_POD_CPU_NANOSECONDS = {
    "v1-cgroupfs-containerd": {
        UID_GUARANTEED: 2_119_586_987,
        UID_BURSTABLE: 4_240_243_923,
        UID_STATIC_BESTEFFORT: 19_277_689_208,
    },
}


@pytest.mark.parametrize("tree", CGROUP_TREES)
def test_pod_cpu_on_every_driver_and_cgroup_version(tree):
    expected = CAPTURED_POD_CPU_NANOSECONDS.get(tree) or EXPECTED_POD_CPU_NANOSECONDS[int(tree[1])]
    assert PodCpuSource(FIXTURES / tree / "sys").sample() == expected


@pytest.mark.parametrize("tree", CGROUP_TREES)
def test_density_counts_pods_and_containers(tree):
    # CRI-O's conmon cgroups (v2-cgroupfs-crio) are monitors, not containers; each pod's
    # 2, 3 and 2 container cgroups include its sandbox's, which the kubelet does not count
    density = DensitySource(FIXTURES / tree / "sys").sample()
    assert density == Density({UID_GUARANTEED: 1, UID_BURSTABLE: 2, UID_STATIC_BESTEFFORT: 1})
    assert (density.pods_running, density.containers_running) == (3, 4)


@pytest.mark.parametrize(
    ("tree", "version", "relative"),
    [
        ("v2-systemd-containerd", 2, "kubepods.slice"),
        ("v2-cgroupfs-crio", 2, "kubepods"),
        ("v1-systemd-docker", 1, "cpuacct/kubepods.slice"),  # symlink to cpu,cpuacct
        ("v1-cgroupfs-containerd", 1, "cpuacct/kubepods"),
    ],
)
def test_kubepods_is_found_in_the_accounting_hierarchy(tree, version, relative):
    # the hybrid v1 trees also mount an empty cgroup v2 at unified/: it must not be taken
    cgroup_root = FIXTURES / tree / "sys" / "fs" / "cgroup"
    location = find_kubepods(cgroup_root)
    assert (location.cgroup_version, location.path) == (version, cgroup_root / relative)


@pytest.mark.parametrize("tree", CGROUP_TREES)
def test_every_qos_class_is_found(tree):
    location = find_kubepods(FIXTURES / tree / "sys" / "fs" / "cgroup")
    assert {(pod.uid, pod.qos_class) for pod in list_pod_cgroups(location.path)} == {
        (UID_GUARANTEED, "guaranteed"),
        (UID_BURSTABLE, "burstable"),
        (UID_STATIC_BESTEFFORT, "besteffort"),
    }


def test_node_without_pods_reports_zero_not_failure():
    sys_root = FIXTURES / "v2-no-pods" / "sys"
    assert PodCpuSource(sys_root).sample() == {}
    density = DensitySource(sys_root).sample()
    assert (density.pods_running, density.containers_running) == (0, 0)


def test_host_without_kubepods_says_why(tmp_path):
    (tmp_path / "fs" / "cgroup" / "cpuacct").mkdir(parents=True)
    with pytest.raises(SourceError, match=r"no kubepods cgroup in .*not a Kubernetes node"):
        PodCpuSource(tmp_path).sample()


def test_unreadable_pod_counter_fails_pod_cpu_but_not_density():
    sys_root = FIXTURES / "broken" / "sys"
    with pytest.raises(SourceError, match=r"cannot read .*cpu\.stat: Is a directory"):
        PodCpuSource(sys_root).sample()
    assert DensitySource(sys_root).sample() == Density({UID_BURSTABLE: 1})


def test_pod_deleted_between_listing_and_reading_is_skipped(node_copy):
    root = node_copy("v2-systemd-containerd")
    kubepods = root / "sys/fs/cgroup/kubepods.slice"
    guaranteed = kubepods / f"kubepods-pod{UID_GUARANTEED.replace('-', '_')}.slice"
    # what a deleted cgroup looks like halfway: the directory is listed, its files are gone
    for child in sorted(guaranteed.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    assert set(PodCpuSource(root / "sys").sample()) == {UID_BURSTABLE, UID_STATIC_BESTEFFORT}


@pytest.mark.parametrize(
    ("name", "uid"),
    [
        ("kubepods-burstable-pod8f0e1a2b_3c4d_4e5f_8a9b_0c1d2e3f4a5b.slice", UID_BURSTABLE),
        ("kubepods-besteffort-pod8f0e1a2b_3c4d_4e5f_8a9b_0c1d2e3f4a5b.slice", UID_BURSTABLE),
        ("kubepods-pod8f0e1a2b_3c4d_4e5f_8a9b_0c1d2e3f4a5b.slice", UID_BURSTABLE),
        ("kubelet-kubepods-burstable-pod8f0e1a2b_3c4d_4e5f_8a9b_0c1d2e3f4a5b.slice", UID_BURSTABLE),
        ("pod8f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", UID_BURSTABLE),
        ("pod5b2d6b0f1c1d5e8f9b3a4c2d1e0f9a8b", UID_STATIC_BESTEFFORT),
        ("kubepods-burstable.slice", None),
        ("burstable", None),
        ("system.slice", None),
        ("cri-containerd-" + "a" * 64 + ".scope", None),
    ],
)
def test_pod_uid_is_normalised_to_dashes(name, uid):
    assert pod_uid_from_dir_name(name) == uid


@pytest.mark.parametrize(
    ("name", "qos"),
    [
        ("kubepods-burstable.slice", "burstable"),
        ("kubepods-besteffort.slice", "besteffort"),
        ("burstable", "burstable"),
        ("besteffort", "besteffort"),
        ("kubepods-burstable-pod8f0e1a2b_3c4d.slice", None),
    ],
)
def test_qos_directories(name, qos):
    assert qos_class_from_dir_name(name) == qos


@pytest.mark.parametrize(
    ("name", "is_container"),
    [
        ("cri-containerd-" + "0123456789abcdef" * 4 + ".scope", True),
        ("crio-" + "0123456789abcdef" * 4 + ".scope", True),
        ("docker-" + "0123456789abcdef" * 4 + ".scope", True),
        ("0123456789abcdef" * 4, True),
        ("crio-" + "0123456789abcdef" * 4, True),
        ("crio-conmon-" + "0123456789abcdef" * 4 + ".scope", False),
        ("crio-conmon-" + "0123456789abcdef" * 4, False),
        ("cri-containerd-1234.scope", False),
        ("cgroup.procs", False),
    ],
)
def test_container_directories_of_each_runtime(name, is_container):
    assert is_container_dir_name(name) is is_container


def test_real_cpu_stat_formats():
    # kernel 6.x pod cgroup with the cpu controller enabled
    text = (
        "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnice_usec 0\n"
        "core_sched.force_idle_usec 0\nnr_periods 10\nnr_throttled 1\nthrottled_usec 900\n"
        "nr_bursts 0\nburst_usec 0\n"
    )
    assert parse_cpu_stat_usage_nanoseconds(text.encode()) == 1_234_567_000
    assert parse_cpuacct_usage_nanoseconds(b"66360100695\n") == 66_360_100_695
    with pytest.raises(SourceError, match="no usage_usec"):
        parse_cpu_stat_usage_nanoseconds(b"nr_periods 0\n")
    with pytest.raises(SourceError, match=r"malformed cpuacct\.usage"):
        parse_cpuacct_usage_nanoseconds(b"max\n")


def test_kept_open_counters_follow_new_values_and_close_for_vanished_pods(node_copy):
    root = node_copy("v2-systemd-containerd")
    files = KeptOpenFiles(budget=2)  # fewer than the three pods: the rest is read and closed
    source = PodCpuSource(root / "sys", files=files)
    assert source.sample() == EXPECTED_POD_CPU_NANOSECONDS[2]
    assert len(files) == 2
    pod = next((root / "sys/fs/cgroup/kubepods.slice").glob("kubepods-pod*.slice"))
    (pod / "cpu.stat").write_text("usage_usec 7000000\n")
    assert source.sample()[UID_GUARANTEED] == 7_000_000_000
    for path in sorted(pod.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    pod.rmdir()
    assert UID_GUARANTEED not in source.sample()
    assert len(files) == 1  # the vanished pod's descriptor was closed at the end of the cycle
    source.sample()
    assert len(files) == 2  # and the freed place went to the pod read without one
    files.close()
    assert len(files) == 0


def test_one_listing_serves_both_pod_sources_of_a_cycle():
    now = [100.0]
    listing = PodListing(FIXTURES / "v2-systemd-containerd/sys/fs/cgroup", monotonic=lambda: now[0])
    _, first = listing.refresh()
    now[0] += 0.01  # density is read right after pod_cpu
    assert listing.recent()[1] is first
    now[0] += 15  # the next cycle lists again
    assert listing.recent()[1] is not first
    assert listing.refresh()[1] == first


def test_density_lists_for_itself_when_pod_cpu_could_not(tmp_path):
    listing = PodListing(tmp_path / "fs/cgroup")
    with pytest.raises(SourceError):
        PodCpuSource(tmp_path, listing=listing).sample()
    (tmp_path / "fs/cgroup/cpuacct/kubepods").mkdir(parents=True)
    assert DensitySource(tmp_path, listing=listing).sample() == Density({})


@pytest.mark.parametrize("tree", CGROUP_TREES)
def test_a_pod_with_only_its_sandbox_runs_no_container(tree, node_copy):
    # How a pod looks while the kubelet starts it or tears it down: its sandbox's cgroup
    # (pause, or CRI-O's infra cgroup) beside no container of its own; and, a moment
    # later, nothing at all
    root = node_copy(tree)
    location = find_kubepods(root / "sys" / "fs" / "cgroup")
    (guaranteed,) = [p for p in list_pod_cgroups(location.path) if p.uid == UID_GUARANTEED]
    containers = sorted(
        child for child in Path(guaranteed.path).iterdir()
        if child.is_dir() and is_container_dir_name(child.name)
    )
    assert len(containers) == 2  # the sandbox's and the app container's
    shutil.rmtree(containers[1])
    assert DensitySource(root / "sys").sample().containers_by_pod[UID_GUARANTEED] == 0
    shutil.rmtree(containers[0])
    assert DensitySource(root / "sys").sample().containers_by_pod[UID_GUARANTEED] == 0
