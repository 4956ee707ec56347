"""CPU time per pod from the kubepods cgroups (source `pod_cpu`).

The pod-level cgroup accumulates the CPU time of all its containers, so one
file per pod is enough: `cpu.stat` `usage_usec` on cgroup v2, `cpuacct.usage`
(nanoseconds) on cgroup v1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.sources import SourceError
from agent.sources.kubepods import count_containers, find_kubepods, list_pod_cgroups


@dataclass(frozen=True)
class PodCpu:
    usage_nanoseconds: int  # cumulative since the pod cgroup was created
    containers: int


def parse_cpu_stat_usage_nanoseconds(text: str) -> int:
    """`usage_usec` of a cgroup v2 `cpu.stat`, in nanoseconds."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            try:
                return int(value) * 1000
            except ValueError as exc:
                raise SourceError(f"malformed usage_usec in cpu.stat: {line!r}") from exc
    raise SourceError("no usage_usec line in cpu.stat")


def parse_cpuacct_usage_nanoseconds(text: str) -> int:
    """cgroup v1 `cpuacct.usage`: one integer, nanoseconds."""
    try:
        return int(text.strip())
    except ValueError as exc:
        raise SourceError(f"malformed cpuacct.usage: {text.strip()[:40]!r}") from exc


_USAGE_FILE = {
    2: ("cpu.stat", parse_cpu_stat_usage_nanoseconds),
    1: ("cpuacct.usage", parse_cpuacct_usage_nanoseconds),
}


class PodCpuSource:
    """Reads every pod's CPU counter under `<host_sys>/fs/cgroup`."""

    name = "pod_cpu"

    def __init__(self, host_sys: Path = Path("/sys")) -> None:
        self.cgroup_root = host_sys / "fs" / "cgroup"

    def sample(self) -> dict[str, PodCpu]:
        kubepods = find_kubepods(self.cgroup_root)
        file_name, parse = _USAGE_FILE[kubepods.cgroup_version]
        reading: dict[str, PodCpu] = {}
        for pod in list_pod_cgroups(kubepods.path):
            usage_path = pod.path / file_name
            try:
                with open(usage_path, encoding="ascii") as handle:
                    text = handle.read()
            except FileNotFoundError:
                continue  # the pod was deleted between listing and reading
            except OSError as exc:
                raise SourceError(f"cannot read {usage_path}: {exc.strerror or exc}") from exc
            containers = count_containers(pod)
            if containers is None:
                continue
            reading[pod.uid] = PodCpu(usage_nanoseconds=parse(text), containers=containers)
        return reading
