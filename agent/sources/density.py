"""Running pods and containers on the node (source `density`).

Counted from the directory structure of the kubepods cgroups alone, so density
is still known when the CPU accounting files of the pods cannot be read. The
counting itself happens in the cycle's one refresh of the pod listing
(pod_listing.py), which lists a pod's cgroup again only when it gained or lost
an entry; this source turns those counts into the report's figures.

Containers are counted as the kubelet counts them: the pod's own, not its
sandbox. Every runtime gives the sandbox a cgroup of the same form beside the
containers' (containerd and Docker run the pause container there; CRI-O runs
its infra container there, or creates the cgroup empty when it drops that
container), so a pod's containers are its container cgroups less one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.sources.pod_listing import PodListing


def app_containers(container_cgroups: int) -> int:
    """A pod's own running containers, from its container cgroups (the sandbox's among them).

    Never below 0: a pod being set up or torn down may have the sandbox's cgroup alone.
    """
    return max(0, container_cgroups - 1)


@dataclass(frozen=True)
class Density:
    # running containers per pod uid, as the kubelet counts them (sandboxes not included)
    containers_by_pod: dict[str, int]

    @property
    def pods_running(self) -> int:
        return len(self.containers_by_pod)

    @property
    def containers_running(self) -> int:
        return sum(self.containers_by_pod.values())


class DensitySource:
    name = "density"

    def __init__(self, host_sys: Path = Path("/sys"), *, listing: PodListing | None = None) -> None:
        self.listing = listing if listing is not None else PodListing(host_sys / "fs" / "cgroup")
        self._last: tuple[int, Density] | None = None  # (listing generation, its density)

    def sample(self) -> Density:
        self.listing.recent()
        generation = self.listing.generation
        if self._last is not None and self._last[0] == generation:
            return self._last[1]  # no pod and no container came or went
        counts = self.listing.container_cgroups()
        density = Density({uid: app_containers(count) for uid, count in counts.items()})
        self._last = (generation, density)
        return density
