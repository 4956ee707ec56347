"""CPU time per pod from the kubepods cgroups (source `pod_cpu`).

The pod-level cgroup accumulates the CPU time of all its containers, so one
small file per pod is enough: `cpu.stat` `usage_usec` on cgroup v2,
`cpuacct.usage` (nanoseconds) on cgroup v1, kept open between cycles. The pods
come from the cycle's one refresh of the pod listing, which `density` shares.
"""

from __future__ import annotations

from pathlib import Path

from agent.sources import SourceError
from agent.sources.kept_open import KeptOpenFiles
from agent.sources.pod_listing import PodListing


def parse_cpu_stat_usage_nanoseconds(data: bytes) -> int:
    """`usage_usec` of a cgroup v2 `cpu.stat`, in nanoseconds."""
    if data.startswith(b"usage_usec "):  # the first line on every kernel so far
        try:
            return int(data[11 : data.index(b"\n")]) * 1000
        except ValueError:
            pass  # no newline, or not a number: the lines below say what is wrong
    for line in data.splitlines():
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


class PodCpuSource:
    """Reads every pod's CPU counter under `<host_sys>/fs/cgroup`; uid -> nanoseconds."""

    name = "pod_cpu"

    def __init__(
        self,
        host_sys: Path = Path("/sys"),
        *,
        listing: PodListing | None = None,
        files: KeptOpenFiles | None = None,
    ) -> None:
        self.listing = listing if listing is not None else PodListing(host_sys / "fs" / "cgroup")
        self.files = files if files is not None else KeptOpenFiles()
        # (listing generation, uids, counter paths): built again only when pods change
        self._counters: tuple[int, list[str], list[str]] = (-1, [], [])

    def sample(self) -> dict[str, int]:
        kubepods, pods = self.listing.refresh()
        file_name, parse = _USAGE_FILE[kubepods.cgroup_version]
        generation, uids, paths = self._counters
        if generation != self.listing.generation:
            uids = [pod.uid for pod in pods]
            paths = [pod.path + file_name for pod in pods]
            self._counters = (self.listing.generation, uids, paths)
        try:
            contents = self.files.read_all(paths)
        except OSError as exc:
            raise SourceError(f"cannot read {exc.filename}: {exc.strerror or exc}") from exc
        # None: the pod was deleted between the listing and the read
        return {
            uid: parse(data) for uid, data in zip(uids, contents, strict=True) if data is not None
        }
