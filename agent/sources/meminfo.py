"""Node memory from `/proc/meminfo` (source `memory`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.sources import SourceError, read_text


@dataclass(frozen=True)
class Memory:
    """Memory of the node at the moment of the sample."""

    total_bytes: int
    used_bytes: int


_UNIT_BYTES = {"kB": 1024, "": 1}  # meminfo's "kB" is KiB


def parse_meminfo(text: str) -> Memory:
    """Total and used memory; used = MemTotal - MemAvailable (what `free` calls used).

    MemAvailable exists since Linux 3.14; older kernels fall back to
    MemFree + Buffers + Cached, the same estimate `free` used then.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        unit = parts[1] if len(parts) > 1 else ""
        if unit not in _UNIT_BYTES or not parts[0].isdigit():
            continue
        values[key.strip()] = int(parts[0]) * _UNIT_BYTES[unit]
    total = values.get("MemTotal")
    if total is None:
        raise SourceError("no MemTotal line in /proc/meminfo")
    available = values.get("MemAvailable")
    if available is None:
        try:
            available = values["MemFree"] + values["Buffers"] + values["Cached"]
        except KeyError as exc:
            raise SourceError(f"no MemAvailable and no {exc.args[0]} in /proc/meminfo") from exc
    return Memory(total_bytes=total, used_bytes=max(0, total - available))


class MeminfoSource:
    """Reads `<host_proc>/meminfo`."""

    name = "memory"

    def __init__(self, host_proc: Path = Path("/proc")) -> None:
        self.path = host_proc / "meminfo"

    def sample(self) -> Memory:
        return parse_meminfo(read_text(self.path))
