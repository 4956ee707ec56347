"""CPU package and DRAM energy from RAPL powercap zones (source `rapl`, opt-in).

`/sys/class/powercap/intel-rapl:<n>` is a top-level zone (a CPU package, or
`psys`, the whole platform on client chips); `intel-rapl:<n>:<m>` is a subzone
(`core` and `uncore` are parts of their package, `dram` is its own RAPL domain
that sysfs merely nests there). `intel-rapl-mmio:<n>` exposes the same package
counter again through MMIO. To count every joule once, the energy is the sum of
the top-level `package-*` zones plus every `dram` zone; `core`, `uncore`,
`psys` and all `intel-rapl-mmio` zones are ignored. AMD CPUs use the same
driver and names.

`energy_uj` is cumulative and wraps to 0 after `max_energy_range_uj`; the
sampler turns two readings into a delta and handles the wrap.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from agent.sources import SourceError, read_text

_ZONE_DIR = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


@dataclass(frozen=True)
class EnergyCounter:
    kind: str  # "package" or "dram"
    energy_microjoules: int
    max_energy_range_microjoules: int


def zone_kind(dir_name: str, zone_name: str) -> str | None:
    """Which sum a zone belongs to, or None for zones that would double count."""
    match = _ZONE_DIR.match(dir_name)
    if match is None:
        return None
    top_level = match.group(2) is None
    if top_level and zone_name.startswith("package"):
        return "package"
    if zone_name == "dram":
        return "dram"
    return None


def _read_int(path: Path) -> int:
    text = read_text(path).strip()
    try:
        return int(text)
    except ValueError as exc:
        raise SourceError(f"malformed {path}: {text[:40]!r}") from exc


class RaplSource:
    """Reads `<host_sys>/class/powercap/intel-rapl:*`."""

    name = "rapl"

    def __init__(self, host_sys: Path = Path("/sys")) -> None:
        self.powercap = host_sys / "class" / "powercap"

    def sample(self) -> dict[str, EnergyCounter]:
        try:
            with os.scandir(self.powercap) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as exc:
            raise SourceError(
                f"cannot list {self.powercap}: {exc.strerror or exc} "
                "(no powercap driver: not an x86 host, or intel_rapl_common is not loaded)"
            ) from exc
        counters: dict[str, EnergyCounter] = {}
        for dir_name in names:
            if _ZONE_DIR.match(dir_name) is None:
                continue
            zone = self.powercap / dir_name
            kind = zone_kind(dir_name, read_text(zone / "name").strip())
            if kind is None:
                continue
            try:
                energy = _read_int(zone / "energy_uj")
            except SourceError as exc:
                if isinstance(exc.__cause__, PermissionError):
                    raise SourceError(
                        f"{exc}: RAPL energy counters are readable by root only "
                        "(CVE-2020-8694); run the agent as root or leave --rapl off"
                    ) from exc
                raise
            counters[dir_name] = EnergyCounter(
                kind=kind,
                energy_microjoules=energy,
                max_energy_range_microjoules=_read_int(zone / "max_energy_range_uj"),
            )
        if not any(counter.kind == "package" for counter in counters.values()):
            raise SourceError(f"no RAPL package zone in {self.powercap}")
        return counters
