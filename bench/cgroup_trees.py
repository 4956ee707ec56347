"""Generated kubepods cgroup trees for the agent benchmark, and a stand-in kernel for them.

Two shapes, both with 2 to 4 container cgroups per pod (one of them the sandbox's)
and the three QoS classes mixed:

* v2: pure cgroup v2, systemd driver, containerd
  (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<u_i_d>.slice/
  cri-containerd-<id>.scope`); every non-root cgroup has the ~80 interface files a
  6.x kernel creates, `cgroup.stat` with true `nr_descendants` among them.
* v1: what kubelet 1.20 makes with the cgroupfs driver and containerd
  (`cpuacct/kubepods/{burstable,besteffort,}/pod<u-i-d>/<64-hex id>`), the cpuacct
  interface files of a 6.x kernel in every cgroup, no `cgroup.stat` anywhere, and an
  empty cgroup v2 at `unified/` (a hybrid host, as kubelet 1.20 nodes usually are).

`CounterWriter` advances the pods' CPU counters in place, as the kernel does: the
same inode, rewritten at offset 0 with a value of the same width, so a reader with
a descriptor kept open sees every new value and never a half-written one.

Two more shapes, `v1-cgroupfs` and `v2-cgroupfs`, are the same trees made of real
cgroups on this machine's cgroupfs (root only), so that every read costs what the
kernel charges for it (on cgroup v2, reading cpu.stat flushes the per-CPU
statistics first); no process runs in them, so their counters stay still.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The interface files of a non-root cgroup v2 directory on kernel 6.x with the
# cpu, cpuset, io, memory, hugetlb, pids, rdma and misc controllers enabled.
CGROUP_V2_FILES = (  # noqa: SIM905  # one string keeps the kernel's list readable
    "cgroup.controllers cgroup.events cgroup.freeze cgroup.kill cgroup.max.depth "
    "cgroup.max.descendants cgroup.pressure cgroup.procs cgroup.stat "
    "cgroup.subtree_control cgroup.threads cgroup.type cpu.idle cpu.max cpu.max.burst "
    "cpu.pressure cpu.stat cpu.stat.local cpu.uclamp.max cpu.uclamp.min cpu.weight "
    "cpu.weight.nice cpuset.cpus cpuset.cpus.effective cpuset.cpus.exclusive "
    "cpuset.cpus.exclusive.effective cpuset.cpus.partition cpuset.mems "
    "cpuset.mems.effective hugetlb.1GB.current hugetlb.1GB.events hugetlb.1GB.events.local "
    "hugetlb.1GB.max hugetlb.1GB.numa_stat hugetlb.1GB.rsvd.current hugetlb.1GB.rsvd.max "
    "hugetlb.2MB.current hugetlb.2MB.events hugetlb.2MB.events.local hugetlb.2MB.max "
    "hugetlb.2MB.numa_stat hugetlb.2MB.rsvd.current hugetlb.2MB.rsvd.max io.max "
    "io.pressure io.prio.class io.stat io.weight memory.current memory.events "
    "memory.events.local memory.high memory.low memory.max memory.min memory.numa_stat "
    "memory.oom.group memory.peak memory.pressure memory.reclaim memory.stat "
    "memory.swap.current memory.swap.events memory.swap.high memory.swap.max "
    "memory.swap.peak memory.zswap.current memory.zswap.max memory.zswap.writeback "
    "misc.current misc.events misc.max pids.current pids.events pids.max pids.peak "
    "rdma.current rdma.max"
).split()

# The interface files of a non-root cgroup in a cgroup v1 cpuacct hierarchy mounted
# on its own (kernel 6.x; listed on this benchmark's machine).
CGROUP_V1_CPUACCT_FILES = (  # noqa: SIM905
    "cgroup.clone_children cgroup.procs cpuacct.stat cpuacct.usage cpuacct.usage_all "
    "cpuacct.usage_percpu cpuacct.usage_percpu_sys cpuacct.usage_percpu_user "
    "cpuacct.usage_sys cpuacct.usage_user notify_on_release tasks"
).split()

QOS_CLASSES = ("guaranteed", "burstable", "besteffort")
# Counters start at 13 digits and stay there for the length of any run, so an
# in-place rewrite never changes a file's size.
FIRST_COUNTER = 1_000_000_000_000


@dataclass
class GeneratedTree:
    sys_root: Path  # what the agent gets as --host-sys
    cgroup_version: int
    pods: int
    containers_running: int  # as the kubelet counts them: sandboxes not included
    counters: list[Path] = field(default_factory=list)  # each pod's CPU counter file
    counters_advance: bool = True  # False for real cgroups nothing runs in
    cleanup: Callable[[], None] = lambda: None


def _pod_uid(index: int) -> str:
    return f"{index:08x}-2f41-4d8a-9c6b-1e2f3a4b5c6d"


def _container_cgroups(index: int) -> int:
    return 2 + index % 3  # the sandbox's and 1 to 3 app containers


def v2_cpu_stat(usage_usec: int) -> bytes:
    return (
        f"usage_usec {usage_usec}\nuser_usec {usage_usec}\nsystem_usec {FIRST_COUNTER}\n"
        "nice_usec 0\ncore_sched.force_idle_usec 0\nnr_periods 0\nnr_throttled 0\n"
        "throttled_usec 0\nnr_bursts 0\nburst_usec 0\n"
    ).encode()


def v1_cpuacct_usage(usage_nanoseconds: int) -> bytes:
    return f"{usage_nanoseconds}\n".encode()


def _make_v2_cgroup(path: Path, descendants: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name in CGROUP_V2_FILES:
        (path / name).touch()
    (path / "cgroup.stat").write_text(
        f"nr_descendants {descendants}\nnr_subsys_cpu {descendants + 1}\n"
        f"nr_subsys_memory {descendants + 1}\nnr_dying_descendants 0\n"
    )


def make_v2_tree(root: Path, pods: int) -> GeneratedTree:
    sys_root = root / "sys"
    cgroup = sys_root / "fs" / "cgroup"
    kubepods = cgroup / "kubepods.slice"
    qos_slices = [kubepods / f"kubepods-{qos}.slice" for qos in QOS_CLASSES[1:]]
    descendants = {path: 0 for path in (kubepods, *qos_slices)}
    tree = GeneratedTree(sys_root, 2, pods, 0)
    for index in range(pods):
        uid = _pod_uid(index).replace("-", "_")
        qos = QOS_CLASSES[index % 3]
        if qos == "guaranteed":
            pod = kubepods / f"kubepods-pod{uid}.slice"
        else:
            pod = kubepods / f"kubepods-{qos}.slice" / f"kubepods-{qos}-pod{uid}.slice"
        containers = _container_cgroups(index)
        _make_v2_cgroup(pod, descendants=containers)
        for ancestor in descendants:
            if ancestor in pod.parents:
                descendants[ancestor] += 1 + containers
        for number in range(containers):
            container = pod / f"cri-containerd-{index:032x}{number:032x}.scope"
            _make_v2_cgroup(container, descendants=0)
            (container / "cpu.stat").write_bytes(v2_cpu_stat(FIRST_COUNTER))
        (pod / "cpu.stat").write_bytes(v2_cpu_stat(FIRST_COUNTER + index))
        tree.counters.append(pod / "cpu.stat")
        tree.containers_running += containers - 1
    descendants[kubepods] += len(qos_slices)
    for path, count in descendants.items():
        _make_v2_cgroup(path, descendants=count)
    # the root cgroup has no cgroup.stat of the pods' kind, but it marks a pure v2 host
    (cgroup / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    return tree


def _make_v1_cgroup(path: Path, usage_nanoseconds: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name in CGROUP_V1_CPUACCT_FILES:
        (path / name).touch()
    (path / "cpuacct.usage").write_bytes(v1_cpuacct_usage(usage_nanoseconds))


def make_v1_tree(root: Path, pods: int) -> GeneratedTree:
    sys_root = root / "sys"
    cgroup = sys_root / "fs" / "cgroup"
    (cgroup / "unified").mkdir(parents=True)  # hybrid host: an empty v2 beside v1
    (cgroup / "unified" / "cgroup.controllers").write_text("")
    kubepods = cgroup / "cpuacct" / "kubepods"
    for path in (cgroup / "cpuacct", kubepods, kubepods / "burstable", kubepods / "besteffort"):
        _make_v1_cgroup(path, FIRST_COUNTER)
    tree = GeneratedTree(sys_root, 1, pods, 0)
    for index in range(pods):
        qos = QOS_CLASSES[index % 3]
        parent = kubepods if qos == "guaranteed" else kubepods / qos
        pod = parent / f"pod{_pod_uid(index)}"
        _make_v1_cgroup(pod, FIRST_COUNTER + index)
        containers = _container_cgroups(index)
        for number in range(containers):
            _make_v1_cgroup(pod / f"{index:032x}{number:032x}", FIRST_COUNTER)
        tree.counters.append(pod / "cpuacct.usage")
        tree.containers_running += containers - 1
    return tree


def _real_cgroup_root(version: int) -> Path:
    """Where to make cgroups: v1's cpuacct hierarchy, or v2's (pure, or hybrid's unified/)."""
    cgroup = Path("/sys/fs/cgroup")
    if version == 1:
        candidates = [cgroup / "cpuacct", cgroup / "cpu,cpuacct"]
    else:
        candidates = [cgroup, cgroup / "unified"]
    marker = "cpuacct.usage" if version == 1 else "cgroup.controllers"
    for candidate in candidates:
        if (candidate / marker).is_file():
            return candidate
    raise SystemExit(f"no cgroup v{version} hierarchy mounted at {cgroup}")


def _remove_cgroups(top: Path) -> None:
    for directory, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
        os.rmdir(directory)


def make_real_tree(root: Path, pods: int, version: int) -> GeneratedTree:
    """The same layout as make_v1_tree/make_v2_tree, made of real cgroups (needs root)."""
    top = _real_cgroup_root(version) / f"kubecarbon-bench-{uuid.uuid4().hex[:12]}"
    top.mkdir()  # the cgroupfs makes every interface file itself
    sys_root = root / "sys"
    cgroup = sys_root / "fs" / "cgroup"
    if version == 1:
        (cgroup / "cpuacct").parent.mkdir(parents=True)
        (cgroup / "cpuacct").symlink_to(top)
        kubepods, counter = top / "kubepods", "cpuacct.usage"
        qos_dirs = {"burstable": kubepods / "burstable", "besteffort": kubepods / "besteffort"}
    else:
        cgroup.parent.mkdir(parents=True)
        cgroup.symlink_to(top)  # a cgroup v2 directory has cgroup.controllers: a pure v2 host
        kubepods, counter = top / "kubepods.slice", "cpu.stat"
        qos_dirs = {q: kubepods / f"kubepods-{q}.slice" for q in QOS_CLASSES[1:]}
    tree = GeneratedTree(sys_root, version, pods, 0, counters_advance=False)
    tree.cleanup = lambda: _remove_cgroups(top)
    try:
        for path in (kubepods, *qos_dirs.values()):
            path.mkdir()
        for index in range(pods):
            qos, uid = QOS_CLASSES[index % 3], _pod_uid(index)
            if version == 1:
                parent = kubepods if qos == "guaranteed" else qos_dirs[qos]
                pod = parent / f"pod{uid}"
                names = [f"{index:032x}{n:032x}" for n in range(_container_cgroups(index))]
            else:
                slice_uid = uid.replace("-", "_")
                parent = kubepods if qos == "guaranteed" else qos_dirs[qos]
                prefix = "kubepods" if qos == "guaranteed" else f"kubepods-{qos}"
                pod = parent / f"{prefix}-pod{slice_uid}.slice"
                names = [
                    f"cri-containerd-{index:032x}{n:032x}.scope"
                    for n in range(_container_cgroups(index))
                ]
            pod.mkdir()
            for name in names:
                (pod / name).mkdir()
            tree.counters.append(pod / counter)
            tree.containers_running += len(names) - 1
    except BaseException:
        tree.cleanup()
        raise
    return tree


TREES: dict[str, Callable[[Path, int], GeneratedTree]] = {
    "v2": make_v2_tree,
    "v1": make_v1_tree,
    "v2-cgroupfs": lambda root, pods: make_real_tree(root, pods, 2),
    "v1-cgroupfs": lambda root, pods: make_real_tree(root, pods, 1),
}


class CounterWriter:
    """Advances every pod's CPU counter in place every `period_seconds`, in a thread."""

    def __init__(self, tree: GeneratedTree, period_seconds: float = 0.25) -> None:
        if not tree.counters_advance:
            tree = GeneratedTree(tree.sys_root, tree.cgroup_version, 0, 0)  # nothing to write
        self.render = v2_cpu_stat if tree.cgroup_version == 2 else v1_cpuacct_usage
        # cgroup v2 counts microseconds, v1 nanoseconds: 1 % of a CPU per pod either way
        per_second = 10_000 if tree.cgroup_version == 2 else 10_000_000
        self.step = round(per_second * period_seconds)
        self.period_seconds = period_seconds
        self._descriptors = [os.open(path, os.O_WRONLY) for path in tree.counters]
        self._values = [FIRST_COUNTER + index for index in range(len(tree.counters))]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counter-writer", daemon=True)

    def __enter__(self) -> CounterWriter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        for descriptor in self._descriptors:
            os.close(descriptor)

    def _run(self) -> None:
        while not self._stop.wait(self.period_seconds):
            for index, descriptor in enumerate(self._descriptors):
                self._values[index] += self.step
                os.pwrite(descriptor, self.render(self._values[index]), 0)
