"""CPU time per pod from the kubepods cgroups (source `pod_cpu`).

The pod-level cgroup accumulates the CPU time of all its containers, so one
small file per pod is enough: `cpu.stat` `usage_usec` on cgroup v2,
`cpuacct.usage` (nanoseconds) on cgroup v1. Containers per pod come from the
`density` source, which lists the same tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.sources import SourceError
from agent.sources.kubepods import find_kubepods, list_pod_cgroups


def parse_cpu_stat_usage_nanoseconds(data: bytes) -> int:
    """`usage_usec` of a cgroup v2 `cpu.stat`, in nanoseconds."""
    for line in data.splitlines():  # usage_usec is the first line on every kernel so far
        key, _, value = line.partition(b" ")
        if key == b"usage_usec":
            try:
                return int(value) * 1000
            except ValueError as exc:
                raise SourceError(f"malformed usage_usec in cpu.stat: {line!r}") from exc
    raise SourceError("no usage_usec line in cpu.stat")


def parse_cpuacct_usage_nanoseconds(data: bytes) -> int:
    """cgroup v1 `cpuacct.usage`: one integer, nanoseconds."""
    try:
        return int(data)
    except ValueError as exc:
        raise SourceError(f"malformed cpuacct.usage: {data.strip()[:40]!r}") from exc


_USAGE_FILE = {
    2: ("/cpu.stat", parse_cpu_stat_usage_nanoseconds),
    1: ("/cpuacct.usage", parse_cpuacct_usage_nanoseconds),
}


def read_small_file(path: str) -> bytes:
    # os.read on a raw descriptor: a buffered text file costs four times as much
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return os.read(descriptor, 65536)
    finally:
        os.close(descriptor)


class PodCpuSource:
    """Reads every pod's CPU counter under `<host_sys>/fs/cgroup`; uid -> nanoseconds."""

    name = "pod_cpu"

    def __init__(self, host_sys: Path = Path("/sys")) -> None:
        self.cgroup_root = host_sys / "fs" / "cgroup"

    def sample(self) -> dict[str, int]:
        kubepods = find_kubepods(self.cgroup_root)
        file_name, parse = _USAGE_FILE[kubepods.cgroup_version]
        usage: dict[str, int] = {}
        for pod in list_pod_cgroups(kubepods.path):
            path = pod.path + file_name
            try:
                data = read_small_file(path)
            except FileNotFoundError:
                continue  # the pod was deleted between listing and reading
            except OSError as exc:
                raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
            usage[pod.uid] = parse(data)
        return usage
