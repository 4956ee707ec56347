"""What the pod listing and the kept-open counters rely on, checked on this machine's real cgroupfs.

Each test builds a kubelet-shaped tree of real cgroups in a directory of its own
(cgroup v1 `cpuacct`, and cgroup v2 where it is mounted) and removes it after.
It skips where cgroups cannot be created: not root, a read-only /sys, no such
hierarchy.
"""

import errno
import os
import uuid
from pathlib import Path

import pytest
from agent_testkit import PodSources

from agent.sources.dir_watch import Changes, DirectoryWatch

CGROUP = Path("/sys/fs/cgroup")


def hierarchies() -> dict[str, Path]:
    """Where a test may create cgroups: v1 cpuacct and v2 (pure, or hybrid at unified/)."""
    found = {}
    for name in ("cpuacct", "cpu,cpuacct"):
        if (CGROUP / name / "cpuacct.usage").is_file():
            found["v1"] = CGROUP / name
            break
    for candidate in (CGROUP, CGROUP / "unified"):
        if (candidate / "cgroup.controllers").is_file():
            found["v2"] = candidate
            break
    return found


def container_id(number: int) -> str:
    return f"{number:064x}"


class RealTree:
    """A kubepods tree of real cgroups under <hierarchy>/kubecarbon-test-<random>, v1 or v2."""

    def __init__(self, version: str, hierarchy: Path) -> None:
        self.version = version
        self.root = hierarchy / f"kubecarbon-test-{uuid.uuid4().hex[:12]}"
        try:
            self.root.mkdir()
        except OSError as exc:
            pytest.skip(f"cannot create a cgroup in {hierarchy}: {exc.strerror}")
        # find_kubepods looks under <root>/cpuacct on v1, under <root> itself on v2
        self.kubepods = self.root / ("cpuacct/kubepods" if version == "v1" else "kubepods.slice")
        self.kubepods.mkdir(parents=True)

    def qos(self, qos: str) -> Path:
        path = self.kubepods / (qos if self.version == "v1" else f"kubepods-{qos}.slice")
        path.mkdir(exist_ok=True)
        return path

    def pod_name(self, qos: str, uid: str) -> str:
        if self.version == "v1":
            return f"pod{uid}"
        return f"kubepods-{qos}-pod{uid.replace('-', '_')}.slice"

    def container_name(self, number: int) -> str:
        if self.version == "v1":
            return container_id(number)
        return f"cri-containerd-{container_id(number)}.scope"

    def add_pod(self, qos: str, uid: str, containers: list[int]) -> Path:
        pod = self.qos(qos) / self.pod_name(qos, uid)
        pod.mkdir()
        for number in containers:
            (pod / self.container_name(number)).mkdir()
        return pod

    def remove(self, path: Path) -> None:
        for child in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
            child.rmdir()
        path.rmdir()

    def cleanup(self) -> None:
        if self.root.exists():
            self.remove(self.root)


@pytest.fixture(params=["v1", "v2"])
def real_tree(request):
    found = hierarchies()
    if request.param not in found:
        pytest.skip(f"no cgroup {request.param} hierarchy mounted here")
    tree = RealTree(request.param, found[request.param])
    yield tree
    tree.cleanup()


def test_cgroup_mkdir_rmdir_and_rename_are_reported_to_the_parents_watch(real_tree):
    qos = real_tree.qos("burstable")
    watch = DirectoryWatch()
    if not watch.available:
        pytest.skip("no inotify instance available here")
    parent = watch.add(str(qos))
    pod = real_tree.add_pod("burstable", "0b7a3c5e-2f41-4d8a-9c6b-1e2f3a4b5c6d", [1])
    assert parent in watch.changes().entries
    own = watch.add(str(pod))
    other_name = qos / real_tree.pod_name("burstable", "1b7a3c5e-2f41-4d8a-9c6b-1e2f3a4b5c6d")
    if real_tree.version == "v2":
        with pytest.raises(PermissionError):  # cgroup v2 refuses to rename a cgroup
            pod.rename(other_name)
    else:
        pod = pod.rename(other_name)
        changes = watch.changes()
        assert parent in changes.entries and own in changes.ended  # the watch moved with it
    (pod / real_tree.container_name(2)).mkdir()
    assert watch.changes().entries == {own}
    real_tree.remove(pod)
    # kernfs keeps a removed cgroup's link count, so its own watch is not told (no
    # IN_DELETE_SELF): removals are learnt from the parent, whose listing decides
    assert parent in watch.changes().entries
    assert watch.changes() == Changes()  # nothing new: one failed read
    watch.close()


def test_a_kept_descriptor_of_a_removed_cgroup_fails_with_enodev(real_tree):
    pod = real_tree.add_pod("besteffort", "2b7a3c5e-2f41-4d8a-9c6b-1e2f3a4b5c6d", [])
    counter = "cpuacct.usage" if real_tree.version == "v1" else "cpu.stat"
    descriptor = os.open(pod / counter, os.O_RDONLY)
    try:
        assert os.pread(descriptor, 4096, 0)
        pod.rmdir()
        with pytest.raises(OSError) as raised:
            os.pread(descriptor, 4096, 0)
        assert raised.value.errno == errno.ENODEV
    finally:
        os.close(descriptor)


def test_counts_equal_a_full_rescan_on_real_cgroups(real_tree):
    sources = PodSources(real_tree.root, DirectoryWatch())
    uids = [f"{n}b7a3c5e-2f41-4d8a-9c6b-1e2f3a4b5c6d" for n in range(3, 9)]
    real_tree.add_pod("burstable", uids[0], [1, 2, 3])
    real_tree.add_pod("besteffort", uids[1], [4, 5])
    assert sources.assert_equal_to_a_full_rescan().containers_by_pod == {uids[0]: 2, uids[1]: 1}
    pod = real_tree.add_pod("burstable", uids[2], [6, 7])
    (pod / real_tree.container_name(8)).mkdir()
    first = real_tree.qos("burstable") / real_tree.pod_name("burstable", uids[0])
    (first / real_tree.container_name(3)).rmdir()
    assert sources.assert_equal_to_a_full_rescan().containers_by_pod == {
        uids[0]: 1, uids[1]: 1, uids[2]: 2
    }  # fmt: skip
    if real_tree.version == "v1":  # cgroup v2 cannot rename
        pod.rename(pod.parent / real_tree.pod_name("burstable", uids[3]))
    real_tree.remove(real_tree.qos("besteffort") / real_tree.pod_name("besteffort", uids[1]))
    real_tree.add_pod("besteffort", uids[4], [9])
    renamed_uid = uids[3] if real_tree.version == "v1" else uids[2]
    assert sources.assert_equal_to_a_full_rescan().containers_by_pod == {
        uids[0]: 1, renamed_uid: 2, uids[4]: 0
    }  # fmt: skip
    sources.listing.watch.close()
