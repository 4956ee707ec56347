"""Hourly grid carbon intensity from a CSV file (`--grid-intensity-file`), optional.

The built-in table gives one yearly-average factor per region. Where hourly values
are available (a grid operator's data, Electricity Maps exports, ...), a CSV file
overrides it for the hours it covers:

    region,hour,grams_per_kilowatt_hour
    china-east,2025-11-25T14:00:00Z,561.2
    us-east-1,1764079200,402.5

`hour` is the start of an hour, as ISO 8601 with a time zone or as unix seconds. A
report's window takes the value of the hour holding its midpoint (windows are at most
an hour long); regions or hours the file does not cover keep the built-in value.
docs/methodology.md documents the format for users.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from collector.model.coefficients import SECONDS_PER_HOUR

COLUMNS = ("region", "hour", "grams_per_kilowatt_hour")


@dataclass(frozen=True)
class HourlyIntensity:
    """(region, unix hour number) -> grams CO2e per kWh."""

    grams_per_kilowatt_hour: Mapping[tuple[str, int], float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.grams_per_kilowatt_hour)

    def lookup(
        self, regions: Sequence[str], window_midpoints: npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Intensity per window, NaN where the file has no value (the model then keeps its own)."""
        hours = (np.asarray(window_midpoints, dtype=np.float64) // SECONDS_PER_HOUR).tolist()
        table = self.grams_per_kilowatt_hour
        return np.array(
            [table.get((region, int(hour)), math.nan) for region, hour in zip(
                regions, hours, strict=True)],
            dtype=np.float64,
        )


def _hour(text: str) -> int:
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = _iso_seconds(text)
    if not math.isfinite(seconds) or seconds % SECONDS_PER_HOUR:
        raise ValueError(f"hour: {text!r} is not the start of an hour")
    return int(seconds // SECONDS_PER_HOUR)


def _iso_seconds(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"hour: expected ISO 8601 or unix seconds, got {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"hour: {text!r} has no time zone (use Z for UTC)")
    return moment.timestamp()


def parse_hourly_intensity(text: str) -> HourlyIntensity:
    """Parse the CSV text; ValueError names the line and the column."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(column.strip() for column in header) != COLUMNS:
        raise ValueError(f"line 1: expected the header {','.join(COLUMNS)}")
    table: dict[tuple[str, int], float] = {}
    for line_number, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(COLUMNS):
            raise ValueError(f"line {line_number}: expected {len(COLUMNS)} columns, got {len(row)}")
        region, hour_text, grams_text = (cell.strip() for cell in row)
        if not region:
            raise ValueError(f"line {line_number}: region: empty")
        try:
            hour = _hour(hour_text)
            grams = float(grams_text)
        except ValueError as exc:
            raise ValueError(f"line {line_number}: {exc}") from None
        if not 0 <= grams <= 5000:
            raise ValueError(
                f"line {line_number}: grams_per_kilowatt_hour: must be 0..5000, got {grams_text!r}"
            )
        if (region, hour) in table:
            raise ValueError(f"line {line_number}: a second value for {region} at {hour_text}")
        table[(region, hour)] = grams
    return HourlyIntensity(table)


def load_hourly_intensity(path: Path) -> HourlyIntensity:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read: {exc}") from None
    return parse_hourly_intensity(text)
