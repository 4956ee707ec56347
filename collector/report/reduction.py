"""From samples to the period's numbers (pure): reset-aware counter totals, gauge integrals.

`ReportData` is what the reduction of one period yields and what the document is made of.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.report.rightsizing import RightsizingData

SeriesKey = tuple[tuple[str, str], ...]


def series_key(metric: dict[str, str]) -> SeriesKey:
    return tuple(sorted(metric.items()))


@dataclass
class CounterTotals:
    """Reset-aware increases of one counter, summed by its group labels."""

    by_group: dict[tuple[str, ...], float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.by_group.values())

    def by_label(self, position: int) -> dict[str, float]:
        """Totals by one of the group labels, summed over the others."""
        out: dict[str, float] = defaultdict(float)
        for group, value in self.by_group.items():
            out[group[position]] += value
        return dict(out)


@dataclass
class ReportData:
    start: float
    end: float
    step_seconds: float
    prometheus_url: str
    counters: dict[str, CounterTotals]
    gauge_means: dict[str, float | None]
    assumptions: list[dict[str, str]]  # distinct kubecarbon_model_info label sets
    versions: list[str]
    # parameter -> every (low, high) the collectors published in model_uncertainty_info
    uncertainty_ranges: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    rightsizing: RightsizingData | None = None  # collector/report/rightsizing.py


def series_delta(baseline: float | None, values: Sequence[float]) -> float:
    """Change of a signed total: its last value minus the one before the period (or zero)."""
    if not values:
        return 0.0
    return values[-1] - (0.0 if baseline is None else baseline)


def series_increase(baseline: float | None, values: Iterable[float]) -> float:
    """Counter increase from the value before the period through every sample in it."""
    previous = 0.0 if baseline is None else baseline
    total = 0.0
    for value in values:
        total += value - previous if value >= previous else value
        previous = value
    return total


class CounterAccumulator:
    """Per-series change of one counter, fed chunk by chunk in time order.

    Keeps two numbers per series (its last sample and its change so far), so a long
    range costs memory by series, not by samples.
    """

    def __init__(self, baselines: dict[SeriesKey, float], signed: bool) -> None:
        self.last = dict(baselines)  # the value before the period, then the latest sample
        self.change: dict[SeriesKey, float] = {}
        self.labels: dict[SeriesKey, dict[str, str]] = {}
        self.signed = signed

    def add(self, matrix: list[dict[str, Any]]) -> None:
        """One query_range answer (a matrix) covering the next stretch of the period."""
        for series in matrix:
            key = series_key(series["metric"])
            values = [float(v) for _, v in series["values"]]
            if not values:
                continue
            before = self.last.get(key)
            step = (series_delta if self.signed else series_increase)(before, values)
            self.change[key] = self.change.get(key, 0.0) + step
            self.last[key] = values[-1]
            self.labels[key] = series["metric"]

    def totals(self, group_labels: tuple[str, ...]) -> CounterTotals:
        grouped: dict[tuple[str, ...], float] = defaultdict(float)
        for key, change in self.change.items():
            labels = self.labels[key]
            grouped[tuple(labels.get(label, "") for label in group_labels)] += change
        return CounterTotals(dict(grouped))
