"""Where kubelet puts pods in the cgroup tree, for the `pod_cpu` and `density` sources.

kubelet creates one cgroup per pod under a `kubepods` parent, grouped by QoS
class: guaranteed pods sit directly under it, burstable and besteffort pods one
level down. The names depend on kubelet's cgroup driver:

    systemd:   kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<u_i_d>.slice
    cgroupfs:  kubepods/burstable/pod<u-i-d>

(the systemd driver writes the uid's dashes as underscores).

Each container of the pod is a child cgroup named by the runtime:
`cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope` (systemd
driver) or the bare 64-hex id / `crio-<id>` (cgroupfs driver). CRI-O's
`crio-conmon-<id>.scope` monitors a container but is not one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from agent.sources import SourceError

# cgroup v1 mounts the CPU accounting controller under one of these names
# (distributions co-mount cpu and cpuacct and usually symlink the other name).
V1_CPUACCT_DIRS = ("cpuacct", "cpu,cpuacct", "cpuacct,cpu")
# kubelet's --cgroup-root defaults to "/", giving `kubepods[.slice]`; k3s, kind
# and some distributions nest it under `kubelet`.
KUBEPODS_DIRS = (
    "kubepods.slice",
    "kubepods",
    "kubelet.slice/kubelet-kubepods.slice",
    "kubelet/kubepods",
)

_POD_DIR = re.compile(
    r"^(?:[a-z]+(?:-[a-z]+)*-)?pod(?P<uid>[0-9a-fA-F][0-9a-fA-F_-]*)(?:\.slice)?$"
)
_QOS_DIR = re.compile(r"^(?:[a-z-]*-)?(?P<qos>burstable|besteffort)(?:\.slice)?$")
_CONTAINER_DIR = re.compile(r"^(?:(?:cri-containerd|crio|docker)-)?[0-9a-f]{64}(?:\.scope)?$")


@dataclass(frozen=True)
class KubepodsLocation:
    """The pods' parent cgroup and the cgroup version that holds it."""

    cgroup_version: int  # 1 or 2
    path: Path


class PodCgroup(NamedTuple):  # a tuple: one per pod, kept while the pod runs
    uid: str  # as the API server spells it: dashes, lower case
    qos_class: str  # "guaranteed", "burstable" or "besteffort"
    path: str  # a str, not a Path: joined with file names in the hot path


def pod_uid_from_dir_name(name: str) -> str | None:
    """The pod uid in a pod cgroup's directory name, normalised to dashes, or None."""
    match = _POD_DIR.match(name)
    if match is None:
        return None
    return match["uid"].replace("_", "-").lower()


def qos_class_from_dir_name(name: str) -> str | None:
    match = _QOS_DIR.match(name)
    return match["qos"] if match else None


def _pod_cgroup(parent: str, name: str, qos_class: str) -> PodCgroup | None:
    uid = pod_uid_from_dir_name(name)
    return None if uid is None else PodCgroup(uid, qos_class, f"{parent}/{name}")


def is_container_dir_name(name: str) -> bool:
    return _CONTAINER_DIR.match(name) is not None


def find_kubepods(cgroup_root: Path) -> KubepodsLocation:
    """Locate kubelet's pods cgroup under `<host_sys>/fs/cgroup`.

    A root holding `cgroup.controllers` is a pure cgroup v2 mount; anything
    else (v1 or hybrid) is searched in the CPU accounting hierarchy, which is
    where kubelet keeps its pods on such hosts.
    """
    if (cgroup_root / "cgroup.controllers").is_file():
        bases = [(2, cgroup_root)]
    else:
        bases = [(1, cgroup_root / name) for name in V1_CPUACCT_DIRS]
    for version, base in bases:
        for relative in KUBEPODS_DIRS:
            candidate = base / relative
            if candidate.is_dir():
                return KubepodsLocation(cgroup_version=version, path=candidate)
    looked_in = ", ".join(str(base) for _, base in bases)
    raise SourceError(
        f"no kubepods cgroup in {looked_in}: not a Kubernetes node, or the host's /sys "
        "is not mounted at --host-sys"
    )


def classify_entry(parent: str, name: str, qos_class: str) -> PodCgroup | str | None:
    """An entry of a kubepods or QoS directory: a pod's cgroup, the QoS class of a QoS
    directory (only directly under kubepods, where `qos_class` is "guaranteed"), or None.

    Names alone decide: cgroup interface files never look like a pod or QoS
    directory, and skipping a stat per entry halves the cost of a listing.
    """
    pod = _pod_cgroup(parent, name, qos_class)
    if pod is not None:
        return pod
    return qos_class_from_dir_name(name) if qos_class == "guaranteed" else None


def list_pod_cgroups(kubepods: Path) -> list[PodCgroup]:
    """Every pod cgroup under `kubepods`, across the three QoS classes, in one full walk."""
    pods: list[PodCgroup] = []
    groups = [(str(kubepods), "guaranteed")]
    while groups:
        path, qos_class = groups.pop()
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            if path == str(kubepods):
                raise SourceError(f"cannot list {path}: it is gone") from None
            continue  # a QoS directory removed since its parent was listed
        except OSError as exc:
            raise SourceError(f"cannot list {path}: {exc.strerror or exc}") from exc
        for name in names:
            entry = classify_entry(path, name, qos_class)
            if isinstance(entry, str):
                groups.append((f"{path}/{name}", entry))
            elif entry is not None:
                pods.append(entry)
    return pods


def count_container_names(names: list[str]) -> int:
    """Container cgroups among a pod directory's entries (the sandbox's included).

    Every cgroup file has a dot in its name and none ends in ".scope", so a
    cheap test on the name skips the interface files before the full match.
    """
    return sum(
        1
        for name in names
        if ("." not in name or name.endswith(".scope")) and is_container_dir_name(name)
    )
