"""The report's period: its time arguments and the grid of samples read over it."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

RELATIVE_TIME = re.compile(r"^now(?:\s*-\s*(\d+(?:\.\d+)?)\s*([smhdw]))?$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str, now: float) -> float:
    """RFC3339 ("2026-11-01T00:00:00Z"), unix seconds ("1764072000") or now[-N{s,m,h,d,w}]."""
    text = value.strip()
    match = RELATIVE_TIME.match(text)
    if match:
        amount, unit = match.groups()
        return now - (float(amount) * UNIT_SECONDS[unit] if amount else 0.0)
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"expected a time, got {value!r}")
        return seconds
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected RFC3339 (2026-11-01T00:00:00Z), unix seconds or now-24h, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"RFC3339 time needs a zone (Z or +08:00), got {value!r}")
    return parsed.timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def choose_step(seconds: float) -> float:
    """About 2,000 samples per series over the range, never finer than a second."""
    return max(1.0, math.ceil(seconds / 2000.0))


def sample_grid(start: float, end: float, step: float) -> tuple[float, int]:
    """The step shrunk so that samples fall on both `start` and `end`, and the step count."""
    count = max(1, math.ceil((end - start) / step - 1e-9))
    return (end - start) / count, count


def chunks(start: float, step: float, count: int,
           points_per_chunk: int) -> list[tuple[float, float]]:
    """[a, b] query ranges covering grid points 0..count, points_per_chunk points each."""
    out = []
    for first in range(0, count + 1, points_per_chunk):
        last = min(first + points_per_chunk - 1, count)
        out.append((start + first * step, start + last * step))
    return out
