"""Running pods and containers on the node (source `density`).

Counted from the directory structure of the kubepods cgroups alone, so density
is still known when the CPU accounting files of the pods cannot be read.

Listing a pod cgroup means reading its ~80 interface files too, which at 300
pods costs more than the rest of a cycle. On cgroup v2 the pod's `cgroup.stat`
holds `nr_descendants`, which changes whenever a container cgroup is created
or removed, so a pod is listed again only when that number moved. The same
number on the kubepods cgroup itself covers the whole tree: while it and the
set of pods stay the same, no pod needs looking at.

Containers are counted as the kubelet counts them: the pod's own, not its
sandbox. Every runtime gives the sandbox a cgroup of the same form beside the
containers' (containerd and Docker run the pause container there; CRI-O runs
its infra container there, or creates the cgroup empty when it drops that
container), so a pod's containers are its container cgroups less one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.sources import SourceError
from agent.sources.kept_open import KeptOpenFiles
from agent.sources.kubepods import PodCgroup, PodListing, count_containers


def parse_nr_descendants(data: bytes) -> int:
    """`nr_descendants` of a cgroup v2 `cgroup.stat` (the first line)."""
    if data.startswith(b"nr_descendants "):
        first_line = data[15 : data.find(b"\n")] if b"\n" in data else data[15:]
        if first_line.isdigit():
            return int(first_line)
    for line in data.splitlines():
        key, _, value = line.partition(b" ")
        if key == b"nr_descendants":
            try:
                return int(value)
            except ValueError as exc:
                raise SourceError(f"malformed nr_descendants in cgroup.stat: {line!r}") from exc
    raise SourceError("no nr_descendants line in cgroup.stat")


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

    def __init__(
        self,
        host_sys: Path = Path("/sys"),
        *,
        listing: PodListing | None = None,
        files: KeptOpenFiles | None = None,
    ) -> None:
        self.listing = listing if listing is not None else PodListing(host_sys / "fs" / "cgroup")
        self.files = files if files is not None else KeptOpenFiles()
        # pod cgroup path -> (nr_descendants, containers) from the last cycle
        self._known: dict[str, tuple[int, int]] = {}
        # the last cycle's whole-tree nr_descendants, pods and result
        self._last_tree: tuple[int, list[PodCgroup], Density] | None = None

    def _read_descendants(self, cgroup_path: str) -> int | None:
        """nr_descendants of a cgroup v2 directory, None if it has no cgroup.stat (anymore)."""
        stat_path = cgroup_path + "/cgroup.stat"
        try:
            return parse_nr_descendants(self.files.read(stat_path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceError(f"cannot read {stat_path}: {exc.strerror or exc}") from exc

    def sample(self) -> Density:
        kubepods, pods = self.listing.recent()
        tree_descendants = None
        if kubepods.cgroup_version == 2:
            tree_descendants = self._read_descendants(str(kubepods.path))
            last = self._last_tree
            if last is not None and tree_descendants == last[0] and pods == last[1]:
                return last[2]  # no pod vanished, so no descriptor is to be closed either
        density = self._count(kubepods.cgroup_version, pods)
        if tree_descendants is not None:
            self._last_tree = (tree_descendants, pods, density)
        return density

    def _count(self, cgroup_version: int, pods: list[PodCgroup]) -> Density:
        known, self._known = self._known, {}
        containers_by_pod: dict[str, int] = {}
        for pod in pods:
            # None: deleted since the listing (count_containers tells), or no v2 stat
            descendants = self._read_descendants(pod.path) if cgroup_version == 2 else None
            previous = known.get(pod.path)
            if previous is not None and descendants is not None and previous[0] == descendants:
                count: int | None = previous[1]
            else:
                count = count_containers(pod)
            if count is None:
                continue
            containers_by_pod[pod.uid] = app_containers(count)
            if descendants is not None:
                self._known[pod.path] = (descendants, count)
        self.files.end_cycle()
        return Density(containers_by_pod)
