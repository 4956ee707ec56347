"""Running pods and containers on the node (source `density`).

Counted from the directory structure of the kubepods cgroups alone, so density
is still known when the CPU accounting files of the pods cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.sources.kubepods import count_containers, find_kubepods, list_pod_cgroups


@dataclass(frozen=True)
class Density:
    pods_running: int
    containers_running: int  # pod sandboxes (pause containers) included, as the runtime runs them


class DensitySource:
    name = "density"

    def __init__(self, host_sys: Path = Path("/sys")) -> None:
        self.cgroup_root = host_sys / "fs" / "cgroup"

    def sample(self) -> Density:
        kubepods = find_kubepods(self.cgroup_root)
        pods = containers = 0
        for pod in list_pod_cgroups(kubepods.path):
            count = count_containers(pod)
            if count is None:
                continue
            pods += 1
            containers += count
        return Density(pods_running=pods, containers_running=containers)
