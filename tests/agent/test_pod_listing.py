"""The pod listing that lists a directory again only when it changed: always equal to a full rescan.

What the optimisation relies on: every way a pod or a container cgroup can come
or go (created or removed in place, renamed, moved in or out of the tree, one
gone and another come within one cycle) shows as a change of the directory
that holds it, and a directory that cannot be watched is listed every cycle.
"""

import re
import shutil
import struct
from pathlib import Path

import pytest
from agent_testkit import (
    CGROUP_TREES,
    UID_BURSTABLE,
    UID_GUARANTEED,
    UID_STATIC_BESTEFFORT,
    PodSources,
)

from agent.sources.dir_watch import (
    IN_CREATE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    Changes,
    DirectoryWatch,
    parse_events,
)
from agent.sources.kubepods import (
    find_kubepods,
    is_container_dir_name,
    list_pod_cgroups,
    pod_uid_from_dir_name,
)

IN_ISDIR = 0x40000000  # set on events about a directory


def pod_dir(sys_root: Path, uid: str) -> Path:
    kubepods = find_kubepods(sys_root / "fs" / "cgroup").path
    (pod,) = [p for p in list_pod_cgroups(kubepods) if p.uid == uid]
    return Path(pod.path)


def containers_of(pod: Path) -> list[Path]:
    return sorted(c for c in pod.iterdir() if c.is_dir() and is_container_dir_name(c.name))


def with_new_id(name: str, number: int) -> str:
    """A container cgroup's name with another 64-hex id (runtime prefix and suffix kept)."""
    return re.sub(r"[0-9a-f]{64}", f"{number:064x}", name)


def copy_name(template: Path, number: int) -> str:
    """A pod cgroup's name with another uid (the first 8 hex digits replaced)."""
    uid_in_name = re.search(r"pod([0-9a-fA-F_-]+)", template.name)[1]
    return template.name.replace(uid_in_name[:8], f"{number:08x}", 1)


def copy_uid(template: Path, number: int) -> str:
    return pod_uid_from_dir_name(copy_name(template, number))


def copy_pod(template: Path, target_parent: Path, number: int, containers: int) -> Path:
    """A pod cgroup shaped like `template` (same driver and runtime) under a new uid."""
    pod = target_parent / copy_name(template, number)
    pod.mkdir()
    for item in template.iterdir():
        if item.is_file():
            shutil.copy(item, pod / item.name)
    template_container = containers_of(template)[0].name
    for index in range(containers):
        (pod / with_new_id(template_container, number * 16 + index)).mkdir()
    return pod


class LateEndingWatch(DirectoryWatch):
    """Tells of a directory's removal or rename a cycle after its parent's change: what
    happens when it is removed between the read of the events and the parent's listing."""

    def __init__(self) -> None:
        super().__init__()
        self._late: frozenset[int] = frozenset()

    def changes(self) -> Changes:
        now = super().changes()
        late, self._late = self._late, now.ended
        return Changes(now.entries, late, now.overflowed)


class KernfsWatch(DirectoryWatch):
    """Never tells a directory's own watch that it was removed or moved, as on cgroupfs,
    where a removed cgroup keeps its link count (the parent still hears of it)."""

    def changes(self) -> Changes:
        now = super().changes()
        return Changes(now.entries, frozenset(), now.overflowed)


WATCHES = {
    "watched": lambda: DirectoryWatch(),
    "ends told late": LateEndingWatch,
    "ends never told": KernfsWatch,
    "unwatched": lambda: DirectoryWatch(max_watches=0),  # as without inotify: list every cycle
    "partly watched": lambda: DirectoryWatch(max_watches=3),
}


@pytest.mark.parametrize("watch", WATCHES)
@pytest.mark.parametrize("tree", CGROUP_TREES)
def test_counts_equal_a_full_rescan_as_pods_and_containers_come_and_go(
    tree, watch, node_copy, tmp_path
):
    sys_root = node_copy(tree) / "sys"
    node = PodSources(sys_root / "fs" / "cgroup", WATCHES[watch]())
    assert node.assert_equal_to_a_full_rescan().containers_by_pod == {
        UID_GUARANTEED: 1, UID_BURSTABLE: 2, UID_STATIC_BESTEFFORT: 1
    }  # fmt: skip
    burstable = pod_dir(sys_root, UID_BURSTABLE)
    guaranteed = pod_dir(sys_root, UID_GUARANTEED)

    # a pod created in place, with its sandbox and two containers
    new = copy_pod(burstable, burstable.parent, 0xA1, containers=3)
    new_uid = pod_uid_from_dir_name(new.name)
    assert node.assert_equal_to_a_full_rescan().containers_by_pod[new_uid] == 2

    # a container started in one pod, another one stopped in another pod, same cycle
    (guaranteed / with_new_id(containers_of(guaranteed)[0].name, 0xB1)).mkdir()
    shutil.rmtree(containers_of(new)[-1])
    density = node.assert_equal_to_a_full_rescan()
    assert (density.containers_by_pod[UID_GUARANTEED], density.containers_by_pod[new_uid]) == (2, 1)

    # a container restarted: one cgroup gone and another come in one cycle, the count unchanged
    shutil.rmtree(containers_of(guaranteed)[0])
    (guaranteed / with_new_id(containers_of(guaranteed)[0].name, 0xB2)).mkdir()
    node.assert_equal_to_a_full_rescan()

    # a pod deleted
    shutil.rmtree(pod_dir(sys_root, UID_STATIC_BESTEFFORT))
    assert UID_STATIC_BESTEFFORT not in node.assert_equal_to_a_full_rescan().containers_by_pod

    # a pod renamed in place (the same inode under another uid)
    renamed = new.rename(new.parent / copy_name(burstable, 0xA2))
    pods = node.assert_equal_to_a_full_rescan().containers_by_pod
    assert new_uid not in pods and pod_uid_from_dir_name(renamed.name) in pods
    (renamed / with_new_id(containers_of(renamed)[0].name, 0xA3)).mkdir()  # still watched
    assert node.assert_equal_to_a_full_rescan().containers_by_pod[copy_uid(burstable, 0xA2)] == 2

    # a pod built outside the tree and moved in; then one moved out
    outside = tmp_path / "outside"
    outside.mkdir()
    moved_in = copy_pod(burstable, outside, 0xC1, containers=2)
    moved_in = moved_in.rename(burstable.parent / moved_in.name)
    pods = node.assert_equal_to_a_full_rescan().containers_by_pod
    assert pod_uid_from_dir_name(moved_in.name) in pods
    renamed.rename(outside / renamed.name)
    node.assert_equal_to_a_full_rescan()

    # one pod gone and another come in the same parent within one cycle
    shutil.rmtree(moved_in)
    copy_pod(burstable, burstable.parent, 0xD1, containers=4)
    assert node.assert_equal_to_a_full_rescan().containers_by_pod[copy_uid(burstable, 0xD1)] == 3

    # a guaranteed pod, directly under kubepods
    copy_pod(guaranteed, guaranteed.parent, 0xE1, containers=2)
    node.assert_equal_to_a_full_rescan()


def test_directories_are_listed_again_only_when_they_changed(node_copy):
    sys_root = node_copy("v2-systemd-containerd") / "sys"
    listed: list[str] = []
    watch = DirectoryWatch()
    if not watch.available:
        pytest.skip("no inotify instance available here")
    node = PodSources(sys_root / "fs" / "cgroup", watch, listed)
    first = node.assert_equal_to_a_full_rescan()
    assert len(listed) == 6  # kubepods, its two QoS cgroups, three pods
    listed.clear()
    burstable = pod_dir(sys_root, UID_BURSTABLE)
    # counters rewritten in place, as the kernel does, are no reason to list anything
    (burstable / "cpu.stat").write_text("usage_usec 99000000\n")
    usage, density = node.cycle()
    assert usage[UID_BURSTABLE] == 99_000_000_000
    assert density is first  # nothing changed: the last cycle's figures stand as they were
    assert listed == []
    (burstable / with_new_id(containers_of(burstable)[0].name, 0xF1)).mkdir()
    assert node.assert_equal_to_a_full_rescan().containers_by_pod[UID_BURSTABLE] == 3
    assert listed == [str(burstable)]


class LosingWatch(DirectoryWatch):
    """A watch whose kernel queue overflowed: the events since the last look are lost."""

    def changes(self) -> Changes:
        super().changes()
        return Changes(overflowed=True)


def test_lost_events_make_the_whole_tree_listed_again(node_copy):
    sys_root = node_copy("v1-cgroupfs-containerd") / "sys"
    node = PodSources(sys_root / "fs" / "cgroup", LosingWatch())
    node.assert_equal_to_a_full_rescan()
    shutil.rmtree(pod_dir(sys_root, UID_BURSTABLE))
    assert UID_BURSTABLE not in node.assert_equal_to_a_full_rescan().containers_by_pod


@pytest.mark.parametrize("watch", [DirectoryWatch, KernfsWatch])
def test_kubepods_removed_and_created_again_is_found_again(watch, node_copy, tmp_path):
    sys_root = node_copy("v1-cgroupfs-containerd") / "sys"
    node = PodSources(sys_root / "fs" / "cgroup", watch())
    node.assert_equal_to_a_full_rescan()
    kubepods = sys_root / "fs/cgroup/cpuacct/kubepods"
    # moved away rather than deleted, so that the new one cannot reuse its inode number
    kubepods.rename(tmp_path / "old-kubepods")
    shutil.copytree(tmp_path / "old-kubepods", kubepods)
    shutil.rmtree(pod_dir(sys_root, UID_GUARANTEED))
    assert UID_GUARANTEED not in node.assert_equal_to_a_full_rescan().containers_by_pod
    shutil.rmtree(pod_dir(sys_root, UID_BURSTABLE))  # the new kubepods is watched too
    assert node.assert_equal_to_a_full_rescan().containers_by_pod == {UID_STATIC_BESTEFFORT: 1}


def event(watch: int, mask: int, name: bytes = b"") -> bytes:
    padded = name + b"\0" * (-len(name) % 16) if name else b""
    return struct.pack("iIII", watch, mask, 0, len(padded)) + padded


def test_inotify_records_are_sorted_into_entries_ended_and_overflow():
    data = (
        event(1, IN_CREATE | IN_ISDIR, b"pod1234")
        + event(2, IN_MOVED_TO | IN_ISDIR, b"a-much-longer-directory-name")
        + event(3, IN_DELETE_SELF)
        + event(3, IN_IGNORED)
    )
    assert parse_events(data) == Changes(frozenset({1, 2}), frozenset({3}))
    assert parse_events(event(-1, IN_Q_OVERFLOW)).overflowed
    assert parse_events(b"") == Changes()


def test_without_inotify_every_directory_is_listed_every_cycle(node_copy, monkeypatch, caplog):
    import ctypes

    def no_libc(*args, **kwargs):
        raise OSError("libc.so.6: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    watch = DirectoryWatch()
    assert not watch.available and watch.add("/") is None
    assert "no inotify (libc.so.6: cannot open shared object file)" in caplog.text
    sys_root = node_copy("v2-cgroupfs-crio") / "sys"
    listed: list[str] = []
    node = PodSources(sys_root / "fs" / "cgroup", watch, listed)
    node.assert_equal_to_a_full_rescan()
    listed.clear()
    shutil.rmtree(pod_dir(sys_root, UID_BURSTABLE))
    assert UID_BURSTABLE not in node.assert_equal_to_a_full_rescan().containers_by_pod
    assert len(listed) == 5  # kubepods, two QoS cgroups, the two pods left: all of them
