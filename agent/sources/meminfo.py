"""Node memory from `/proc/meminfo` (source `memory`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.sources import SourceError
from agent.sources.kept_open import KeptOpenFile


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
    fast = _first_lines(text)
    if fast is not None:
        return fast
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


def _first_lines(text: str) -> Memory | None:
    """The layout of every kernel since 3.14: MemTotal, MemFree, MemAvailable first, in kB."""
    lines = text.split("\n", 3)
    if len(lines) < 3:
        return None
    total, available = lines[0].split(), lines[2].split()
    if not (
        total[:1] == ["MemTotal:"] and available[:1] == ["MemAvailable:"]
        and total[2:] == available[2:] == ["kB"]
        and total[1].isdigit() and available[1].isdigit()
    ):  # fmt: skip
        return None
    total_bytes, available_bytes = int(total[1]) * 1024, int(available[1]) * 1024
    return Memory(total_bytes=total_bytes, used_bytes=max(0, total_bytes - available_bytes))


class MeminfoSource:
    """Reads `<host_proc>/meminfo`."""

    name = "memory"

    def __init__(self, host_proc: Path = Path("/proc")) -> None:
        self.path = host_proc / "meminfo"
        self._file = KeptOpenFile(self.path)

    def sample(self) -> Memory:
        return parse_meminfo(self._file.read_text())
