"""A place on this machine for one Kubernetes node that leaves nothing behind.

Everything the node runs lives in one cgroup, `kubecarbon-node-<slot>`, in every
hierarchy, and in its own network, mount and cgroup namespaces (what kind does
with a container per node). Inside them:

- the network is a veth pair to the host (host end `kcnode<slot>`), so iptables
  chains, the CNI bridge, pod interfaces and the network sysctls kube-proxy sets
  (route_localnet, ip_forward) exist in the node's namespace only;
- `/sys` is a fresh sysfs (the namespace's interfaces) with the cgroup
  hierarchies mounted afresh, rooted at the node's cgroup: the kubelet's
  `kubepods` is `/kubecarbon-node-<slot>/kubepods` on the host and `/kubepods`
  to everything in the node, the agent included;
- `/run` and `/var/log` are directories of the node's work directory, so
  sockets, runtime state and pod logs stay there.

What cannot be namespaced is recorded and restored: the kernel sysctls the
kubelet sets (overcommit, panic) go back to their values when the last node on
the machine stops. `cleanup_slot` removes all of it, and runs before a node
starts on a slot, so an interrupted run is cleaned by the next one.

Slots (0..MAX_SLOTS-1) let test runs in several worktrees run nodes at the same
time: each holds an flock on its slot for as long as its node lives.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CGROUP_ROOT = Path("/sys/fs/cgroup")
LOCK_DIR = Path("/run/lock")
WORK_ROOT = Path("/var/tmp")
MAX_SLOTS = 16
# The kernel tunables kubelet 1.20 sets (pkg/kubelet/cm/container_manager_linux.go,
# setupKernelTunables); they are global, not per namespace.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
SYSCTL_STATE = WORK_ROOT / "kubecarbon-node-sysctl.json"
MACHINE_LOCK = LOCK_DIR / "kubecarbon-node.lock"
# The node outweighs a plain process 8:1 for CPU, so pods under CPU limits get
# their quota on a machine that other test runs load (the limits bound it).
NODE_CPU_SHARES = 8192
KILL_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Slot:
    """Names and addresses of node number `number`; none is shared with another slot."""

    number: int

    @property
    def name(self) -> str:
        return f"kubecarbon-node-{self.number}"

    @property
    def host_interface(self) -> str:
        return f"kcnode{self.number}"

    @property
    def host_ip(self) -> str:
        return f"10.232.{self.number}.1"

    @property
    def node_ip(self) -> str:
        return f"10.232.{self.number}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.233.{self.number}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"10.234.{self.number}.0/24"

    @property
    def workdir(self) -> Path:
        return WORK_ROOT / self.name

    @property
    def lock_path(self) -> Path:
        return LOCK_DIR / f"{self.name}.lock"

    def networks(self) -> list[ipaddress.IPv4Network]:
        link = ipaddress.ip_network(f"{self.host_ip}/30", strict=False)
        return [link, ipaddress.ip_network(self.pod_cidr), ipaddress.ip_network(self.service_cidr)]


# --- cgroups -----------------------------------------------------------------


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: where it is and how to mount it again."""

    mountpoint: Path
    fstype: str  # "cgroup" (v1) or "cgroup2"
    options: str  # the controllers (v1), e.g. "cpu,cpuacct" or "none,name=systemd"


def parse_cgroup_mounts(mountinfo: str, under: Path = CGROUP_ROOT) -> list[Hierarchy]:
    """The cgroup hierarchies mounted at their root under `under`, from /proc/self/mountinfo."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        separator = fields.index("-")
        root, mountpoint = fields[3], Path(fields[4])
        fstype, super_options = fields[separator + 1], fields[separator + 3]
        if fstype not in ("cgroup", "cgroup2") or root != "/" or mountpoint.parent != under:
            continue
        options = ""
        if fstype == "cgroup":
            kept = [o for o in super_options.split(",") if o not in ("rw", "ro")]
            options = ",".join(kept if any(not o.startswith("name=") for o in kept)
                               else ["none", *kept])
        found.append(Hierarchy(mountpoint, fstype, options))
    return found


def host_hierarchies() -> list[Hierarchy]:
    return parse_cgroup_mounts(Path("/proc/self/mountinfo").read_text())


def cgroup_symlinks(under: Path = CGROUP_ROOT) -> dict[str, str]:
    """Aliases like cpu -> cpu,cpuacct that distributions put beside co-mounted hierarchies."""
    return {p.name: os.readlink(p) for p in under.iterdir() if p.is_symlink()}


def create_cgroups(hierarchies: Sequence[Hierarchy], relative: str) -> None:
    """mkdir `relative` (one level below an existing cgroup) in every hierarchy."""
    for hierarchy in hierarchies:
        path = hierarchy.mountpoint / relative
        path.mkdir(exist_ok=True)
        controllers = hierarchy.options.split(",")
        if "cpuset" in controllers:
            # a new cpuset starts empty and no task may join it until it has CPUs and nodes
            for name in ("cpuset.cpus", "cpuset.mems"):
                (path / name).write_text((path.parent / name).read_text())
        if "cpu" in controllers and "/" not in relative:
            (path / "cpu.shares").write_text(str(NODE_CPU_SHARES))


def join_cgroups(hierarchies: Sequence[Hierarchy], relative: str) -> None:
    """Move the calling process into the cgroup `relative` in every hierarchy.

    Runs in a child between fork and exec, so it uses nothing but os calls.
    """
    pid = str(os.getpid()).encode()
    for hierarchy in hierarchies:
        fd = os.open(f"{hierarchy.mountpoint}/{relative}/cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def _cgroup_dirs(top: Path) -> list[Path]:
    """`top` and every cgroup below it, deepest first."""
    if not top.is_dir():
        return []
    found = [Path(dirpath) for dirpath, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _pids_in(top: Path) -> set[int]:
    pids: set[int] = set()
    for directory in _cgroup_dirs(top):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    return pids


def kill_cgroup_tree(top: Path, timeout_seconds: float = KILL_TIMEOUT_SECONDS) -> None:
    """SIGKILL every process in `top` and below until none is left (forks included)."""
    deadline = time.monotonic() + timeout_seconds
    while pids := _pids_in(top):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes left in {top} after SIGKILL: {sorted(pids)}")
        time.sleep(0.05)


def remove_cgroup_tree(top: Path, timeout_seconds: float = KILL_TIMEOUT_SECONDS) -> None:
    """rmdir `top` and its children, deepest first; a cgroup is busy until its tasks are gone."""
    deadline = time.monotonic() + timeout_seconds
    for directory in _cgroup_dirs(top):
        while True:
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


# --- sysctls -----------------------------------------------------------------


def read_sysctls(names: Sequence[str] = KUBELET_SYSCTLS) -> dict[str, str]:
    return {name: (Path("/proc/sys") / name).read_text().strip() for name in names}


def write_sysctls(values: dict[str, str]) -> None:
    for name, value in values.items():
        (Path("/proc/sys") / name).write_text(value)


# --- slots -------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _slot_is_busy(slot: Slot) -> bool:
    if not slot.lock_path.exists():
        return False
    with slot.lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _host_routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"],
                         check=True, capture_output=True, text=True).stdout
    routes = []
    for line in out.splitlines():
        destination = line.split()[0]
        if destination in ("default", "broadcast", "local", "unreachable"):
            continue
        with contextlib.suppress(ValueError):
            routes.append(ipaddress.ip_network(destination, strict=False))
    return routes


def acquire_slot(numbers: Sequence[int] = range(MAX_SLOTS)) -> tuple[Slot, IO[str]]:
    """The first free slot whose networks no host route overlaps, locked until the handle closes."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    routes = _host_routes()
    for number in numbers:
        slot = Slot(number)
        handle = slot.lock_path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        taken_by_host = any(
            net.overlaps(route) for net in slot.networks() for route in routes
            if route.prefixlen > 0
        ) and not (WORK_ROOT / slot.name).exists()  # our own leftovers are cleaned below
        if taken_by_host:
            handle.close()
            continue
        return slot, handle
    raise RuntimeError(f"node slots {list(numbers)} are busy or collide with host routes")


def cleanup_slot(slot: Slot, hierarchies: Sequence[Hierarchy]) -> list[str]:
    """Remove what a node on `slot` left (its lock must be held); returns what was found."""
    found = []
    tops = [h.mountpoint / slot.name for h in hierarchies if (h.mountpoint / slot.name).exists()]
    for top in tops:
        if _pids_in(top):
            found.append(f"processes in {top}")
            kill_cgroup_tree(top)
    for top in tops:
        remove_cgroup_tree(top)
        found.append(f"cgroup {top}")
    if Path(f"/sys/class/net/{slot.host_interface}").exists():
        subprocess.run(["ip", "link", "delete", slot.host_interface], check=False,
                       capture_output=True)
        found.append(f"interface {slot.host_interface}")
    if slot.workdir.exists():
        shutil.rmtree(slot.workdir)
        found.append(f"directory {slot.workdir}")
    found.extend(restore_sysctls_if_last(slot))
    return found


def leftovers(slot: Slot, hierarchies: Sequence[Hierarchy]) -> list[str]:
    """What of a node on `slot` is still on the machine (nothing, after cleanup_slot)."""
    found = [str(h.mountpoint / slot.name) for h in hierarchies
             if (h.mountpoint / slot.name).exists()]
    if Path(f"/sys/class/net/{slot.host_interface}").exists():
        found.append(f"interface {slot.host_interface}")
    if slot.workdir.exists():
        found.append(str(slot.workdir))
    return found


def snapshot_sysctls() -> None:
    """Record the kernel tunables before the first node on the machine changes them."""
    with _locked(MACHINE_LOCK):
        if not SYSCTL_STATE.exists():
            SYSCTL_STATE.write_text(json.dumps(read_sysctls()))


def restore_sysctls_if_last(slot: Slot) -> list[str]:
    """Put the recorded tunables back when no other node runs on the machine."""
    with _locked(MACHINE_LOCK):
        if not SYSCTL_STATE.exists():
            return []
        others = [Slot(n) for n in range(MAX_SLOTS) if n != slot.number]
        if any(_slot_is_busy(other) for other in others):
            return []
        recorded = json.loads(SYSCTL_STATE.read_text())
        changed = {k: v for k, v in read_sysctls(list(recorded)).items() if recorded[k] != v}
        write_sysctls(recorded)
        SYSCTL_STATE.unlink()
        return [f"sysctl {name} restored to {recorded[name]}" for name in changed]


# --- the namespaces ----------------------------------------------------------


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _mount_script(slot: Slot, hierarchies: Sequence[Hierarchy], links: dict[str, str]) -> str:
    """Shell run inside the new namespaces before the holder sleeps."""
    lines = [
        "set -eu",
        "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys",
        f"mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs {CGROUP_ROOT}",
    ]
    for hierarchy in hierarchies:
        lines.append(f"mkdir -p {hierarchy.mountpoint}")
        options = f"-o {hierarchy.options} " if hierarchy.options else ""
        lines.append(f"mount -t {hierarchy.fstype} {options}{hierarchy.fstype} "
                     f"{hierarchy.mountpoint}")
    for name, target in links.items():
        lines.append(f"ln -s {target} {CGROUP_ROOT / name}")
    lines += [
        f"mount --bind {slot.workdir / 'run'} /run",
        f"mount --bind {slot.workdir / 'log'} /var/log",
        "ip link set lo up",
        "echo ready",
        "exec sleep infinity",
    ]
    return "\n".join(lines)


class NodeSandbox:
    """The namespaces, cgroups and network of one node; `run()` starts a process inside."""

    def __init__(self) -> None:
        self.hierarchies = host_hierarchies()
        self.slot, self._lock = acquire_slot()
        self.leftovers = cleanup_slot(self.slot, self.hierarchies)
        self._holder: subprocess.Popen[bytes] | None = None

    @property
    def workdir(self) -> Path:
        return self.slot.workdir

    def start(self) -> None:
        slot = self.slot
        for sub in ("run", "log"):
            (slot.workdir / sub).mkdir(parents=True, exist_ok=True)
        snapshot_sysctls()
        create_cgroups(self.hierarchies, slot.name)
        hierarchies = self.hierarchies
        self._holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--cgroup", "--propagation", "private",
             "sh", "-c", _mount_script(slot, hierarchies, cgroup_symlinks())],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: (join_cgroups(hierarchies, slot.name), _die_with_parent()),
        )
        assert self._holder.stdout is not None
        if self._holder.stdout.readline().strip() != b"ready":
            self._holder.wait(10)
            stderr = self._holder.stderr.read().decode() if self._holder.stderr else ""
            raise RuntimeError(f"node namespaces failed: {stderr}")
        self._plumb_network()

    def _plumb_network(self) -> None:
        slot, pid = self.slot, str(self.holder_pid)
        host = [
            ["ip", "link", "add", slot.host_interface, "type", "veth", "peer", "name", "eth0",
             "netns", pid],
            ["ip", "addr", "add", f"{slot.host_ip}/30", "dev", slot.host_interface],
            ["ip", "link", "set", slot.host_interface, "up"],
            ["ip", "route", "add", slot.pod_cidr, "via", slot.node_ip],
            ["ip", "route", "add", slot.service_cidr, "via", slot.node_ip],
        ]
        node = [
            ["ip", "addr", "add", f"{slot.node_ip}/30", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "route", "add", "default", "via", slot.host_ip],
            # the node routes between its uplink and the pods' bridge (this namespace only)
            ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        ]
        for command in host:
            subprocess.run(command, check=True, capture_output=True)
        for command in node:
            subprocess.run(["nsenter", "--target", pid, "--net", *command], check=True,
                           capture_output=True)

    @property
    def holder_pid(self) -> int:
        assert self._holder is not None
        return self._holder.pid

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the node's namespaces."""
        return ["nsenter", "--target", str(self.holder_pid), "--net", "--mount", "--cgroup",
                "--", *argv]

    def run(self, component: str, argv: Sequence[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        """Start `argv` inside the node, in the cgroup `<node>/<component>`."""
        hierarchies, relative = self.hierarchies, f"{self.slot.name}/{component}"
        create_cgroups(hierarchies, relative)
        return subprocess.Popen(
            self.command(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: (join_cgroups(hierarchies, relative), _die_with_parent()),
        )

    def cgroup(self, hierarchy: str) -> Path:
        """The node's cgroup in a hierarchy by its mount name (e.g. "cpuacct"), on the host."""
        return CGROUP_ROOT / hierarchy / self.slot.name

    def close(self) -> list[str]:
        """Kill everything in the node and remove what it made; returns what was removed."""
        try:
            return cleanup_slot(self.slot, self.hierarchies)
        finally:
            self._lock.close()
