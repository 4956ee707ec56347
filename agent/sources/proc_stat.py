"""Node CPU time from `/proc/stat` (source `cpu`).

The first line, `cpu  user nice system idle iowait irq softirq steal guest
guest_nice`, counts clock ticks (USER_HZ) spent in each state by all CPUs
together; one `cpuN` line exists per online logical CPU.

Steal is not busy: the kernel counts there the time a virtual CPU wanted to run
while the hypervisor ran something else ("involuntary wait", proc.rst section
1.8). The node did no work then, and counting it would overstate a VM's demand
and with it the servers and CO2e the baseline says elasticity avoids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.sources import SourceError
from agent.sources.kept_open import KeptOpenFile


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU time of the whole node, in ticks since boot."""

    busy_ticks: int
    steal_ticks: int
    total_ticks: int
    logical_cpus: int


def parse_proc_stat(text: str) -> CpuTimes:
    """Busy, steal and total ticks over all CPUs, and the number of online logical CPUs.

    Busy is user + nice + system + irq + softirq. Idle, iowait and steal are
    not busy; total is the four of them together. guest and guest_nice are left
    out because the kernel already counts them inside user and nice.
    """
    # the kernel writes the aggregate line first and the cpuN lines right after it;
    # no other line starts with "cpu"
    line = text.partition("\n")[0]
    if not line.startswith("cpu "):
        raise SourceError("no aggregate 'cpu' line in /proc/stat")
    try:
        ticks = [int(value) for value in line.split()[1:9]]
    except ValueError as exc:
        raise SourceError(f"malformed cpu line in /proc/stat: {line!r}") from exc
    if len(ticks) < 4:
        raise SourceError(f"cpu line in /proc/stat has {len(ticks)} fields, need >= 4")
    ticks += [0] * (8 - len(ticks))  # kernels before 2.6.11 lack the later columns
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    busy = user + nice + system + irq + softirq
    logical_cpus = text.count("\ncpu")
    if logical_cpus == 0:
        raise SourceError("no per-CPU 'cpuN' lines in /proc/stat")
    return CpuTimes(
        busy_ticks=busy,
        steal_ticks=steal,
        total_ticks=busy + idle + iowait + steal,
        logical_cpus=logical_cpus,
    )


class ProcStatSource:
    """Reads `<host_proc>/stat`."""

    name = "cpu"

    def __init__(self, host_proc: Path = Path("/proc")) -> None:
        self.path = host_proc / "stat"
        self._file = KeptOpenFile(self.path)

    def sample(self) -> CpuTimes:
        return parse_proc_stat(self._file.read_text())
