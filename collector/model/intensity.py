"""Hourly grid carbon intensity: parse a CSV text into a vectorised lookup table.

The file (read by the service, parsed here) has a header and one row per region and hour:

    region,timestamp,grams_per_kilowatt_hour
    china-east,2026-11-25T14:00:00Z,548.2
    china-east,1764082800,551.0

timestamp is unix seconds or ISO 8601 with a UTC offset (or Z); a row holds for the
hour that contains it. Hours without a row look up as NaN, so the caller falls back to
the region's static value (`estimate_windows` does that for NaN overrides).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from collector.model.coefficients import SECONDS_PER_HOUR

FloatArray = npt.NDArray[np.float64]
HEADER = ("region", "timestamp", "grams_per_kilowatt_hour")


@dataclass(frozen=True)
class HourlyIntensity:
    """Per region: sorted hour starts (unix seconds) and the intensity of each hour."""

    hour_starts: dict[str, npt.NDArray[np.int64]]
    grams_per_kilowatt_hour: dict[str, FloatArray]

    def regions(self) -> list[str]:
        return sorted(self.hour_starts)

    def lookup(self, regions: Sequence[str], timestamps: npt.ArrayLike) -> FloatArray:
        """Intensity for each (region, unix time) pair; NaN where the file has no value."""
        times = np.asarray(timestamps, dtype=np.float64)
        if times.shape != (len(regions),):
            raise ValueError(f"timestamps: expected {len(regions)} values, got shape {times.shape}")
        result = np.full(len(regions), np.nan)
        names = np.asarray(regions, dtype=object)
        hours = np.floor(times / SECONDS_PER_HOUR).astype(np.int64) * SECONDS_PER_HOUR
        for region in set(regions):
            starts = self.hour_starts.get(region)
            if starts is None:
                continue
            values = self.grams_per_kilowatt_hour[region]
            mask = names == region
            position = np.clip(np.searchsorted(starts, hours[mask]), 0, len(starts) - 1)
            found = starts[position] == hours[mask]
            result[mask] = np.where(found, values[position], np.nan)
        return result


def _parse_timestamp(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp needs a UTC offset (e.g. Z or +08:00)")
    return parsed.timestamp()


def parse_hourly_intensity(text: str) -> HourlyIntensity:
    """Parse the CSV text; raises ValueError naming the line and field of the first error."""
    reader = csv.reader(io.StringIO(text))
    rows: dict[str, dict[int, float]] = {}
    header_seen = False
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in row]
        if not header_seen:
            if tuple(cells) != HEADER:
                raise ValueError(f"line {line}: header must be {','.join(HEADER)}")
            header_seen = True
            continue
        if len(cells) != len(HEADER):
            raise ValueError(f"line {line}: expected {len(HEADER)} fields, got {len(cells)}")
        region, stamp, value_text = cells
        if not region:
            raise ValueError(f"line {line}: region: empty")
        try:
            seconds = _parse_timestamp(stamp)
        except ValueError as exc:
            raise ValueError(f"line {line}: timestamp: {stamp!r}: {exc}") from None
        if not math.isfinite(seconds):
            raise ValueError(f"line {line}: timestamp: {stamp!r} is not finite")
        try:
            value = float(value_text)
        except ValueError:
            raise ValueError(f"line {line}: grams_per_kilowatt_hour: {value_text!r}") from None
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                f"line {line}: grams_per_kilowatt_hour: must be finite and >= 0, got {value_text}"
            )
        hour = math.floor(seconds / SECONDS_PER_HOUR) * SECONDS_PER_HOUR
        per_region = rows.setdefault(region, {})
        if hour in per_region:
            raise ValueError(f"line {line}: {region} already has a value for that hour")
        per_region[hour] = value
    if not header_seen:
        raise ValueError(f"line 1: header must be {','.join(HEADER)}")
    starts: dict[str, npt.NDArray[np.int64]] = {}
    values: dict[str, FloatArray] = {}
    for region, by_hour in rows.items():
        ordered = sorted(by_hour)
        starts[region] = np.asarray(ordered, dtype=np.int64)
        values[region] = np.asarray([by_hour[h] for h in ordered], dtype=np.float64)
    return HourlyIntensity(starts, values)
