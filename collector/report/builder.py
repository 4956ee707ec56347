"""What the report reads from Prometheus, and the reading of it (the I/O half of the report)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from collector.report.period import chunks, iso, sample_grid
from collector.report.prometheus import PrometheusClient, ReportError
from collector.report.reduction import (
    CounterAccumulator,
    CounterTotals,
    ReportData,
    series_key,
)
from collector.report.rightsizing import fetch_rightsizing

# How far before `start` to look for a counter's last value (a series silent longer
# than this at `start` counts from zero when it reappears). Every query stays within
# Prometheus's default --query.max-samples (50 million) for 10,000 nodes at 15 s scrapes:
# an hour is 2.4 million samples, where a day would be 58 million.
BASELINE_LOOKBACK = "1h"

FACILITY_ENERGY = ("kubecarbon_node_energy_joules_total * on (node, region, instance_type, "
                   "power_source) group_left kubecarbon_node_pue")
# Totals over the period: key -> (metric, labels to group by, signed). Counters are
# reset-aware; "signed" totals (typed untyped: they fall when the fleet does worse than
# the baseline) are the difference between the last value and the one before the period.
COUNTERS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "it_energy_joules": ("kubecarbon_node_energy_joules_total", ("region", "power_source"),
                         False),
    "operational_co2e_grams": ("kubecarbon_node_co2e_grams_total", ("region",), False),
    "embodied_co2e_grams": ("kubecarbon_node_embodied_co2e_grams_total", ("region",), False),
    "namespace_cpu_seconds": ("kubecarbon_namespace_cpu_seconds_total", ("namespace",), False),
    "namespace_energy_joules": ("kubecarbon_namespace_energy_joules_total", ("namespace",),
                                False),
    "namespace_co2e_grams": ("kubecarbon_namespace_co2e_grams_total", ("namespace",), False),
    # facility energy: each node's IT energy times its PUE (constant per node), never
    # operational CO2e over an intensity, which is wrong once intensities change hourly
    "facility_energy_joules": (FACILITY_ENERGY, ("region",), False),
    "baseline_energy_joules": ("kubecarbon_baseline_energy_joules_total", (), False),
    "avoided_energy_joules": ("kubecarbon_avoided_energy_joules_total", (), True),
    "avoided_co2e_grams": ("kubecarbon_avoided_co2e_grams_total", ("scope",), True),
}
# Gauges averaged over the period (summed over collector replicas at each step). Fleet
# utilisation is busy over logical CPUs of every live node, whichever replica serves it:
# replicas weigh by their fleet's size, never one replica, one vote.
GAUGES: dict[str, str] = {
    "baseline_servers": "sum(kubecarbon_baseline_servers)",
    "actual_servers": "sum(kubecarbon_actual_servers)",
    "avoided_servers": "sum(kubecarbon_avoided_servers)",
    "fleet_cpu_usage_ratio": "sum(kubecarbon_node_cpu_usage_ratio * kubecarbon_node_logical_cpus)"
    " / sum(kubecarbon_node_logical_cpus)",
}
# Sampled on the report's own grid, never as one range over the period (too many samples).
DATA_PROBE = "count(kubecarbon_node_energy_joules_total)"


class ReportBuilder:
    """Reads everything the report needs from Prometheus, chunk by chunk of its grid."""

    def __init__(self, client: PrometheusClient, start: float, end: float, step: float,
                 points_per_chunk: int = 250,
                 progress: Callable[[int], Any] | None = None) -> None:
        self.client = client
        self.start, self.end = start, end
        self.step, count = sample_grid(start, end, step)
        self.windows = chunks(start, self.step, count, points_per_chunk)
        self.progress = progress

    @property
    def range_queries(self) -> int:
        """Range queries build() sends: per chunk, each counter and each gauge."""
        return len(self.windows) * (len(COUNTERS) + len(GAUGES))

    async def build(self) -> ReportData:
        """Everything the report shows; call probe() first for a clear "no data" error."""
        counters = {key: await self._counter(metric, labels, signed)
                    for key, (metric, labels, signed) in COUNTERS.items()}
        gauge_means = {key: await self._gauge_mean(query) for key, query in GAUGES.items()}
        assumptions, versions, ranges = await self._assumptions()
        rightsizing = await fetch_rightsizing(self.client, self.start, self.end, self.step)
        return ReportData(self.start, self.end, self.step, self.client.base_url, counters,
                          gauge_means, assumptions, versions, ranges, rightsizing)

    async def probe(self) -> None:
        """Fail with one clear line unless some node counter exists on the report's grid."""
        for a, b in self.windows:
            if await self.client.range(DATA_PROBE, a, b, self.step):
                return
        raise ReportError(
            f"no kubecarbon data in Prometheus at {self.client.base_url} between "
            f"{iso(self.start)} and {iso(self.end)} (is it scraping the collector?)"
        )

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress(1)

    async def _counter(self, metric: str, group_labels: tuple[str, ...],
                       signed: bool) -> CounterTotals:
        # an expression (not a bare metric) needs a subquery to look back over
        selector = metric if metric.isidentifier() else f"({metric})"
        colon = "" if metric.isidentifier() else ":"
        before = await self.client.instant(
            f"last_over_time({selector}[{BASELINE_LOOKBACK}{colon}])", self.start)
        accumulator = CounterAccumulator(
            {series_key(s["metric"]): float(s["value"][1]) for s in before}, signed)
        for a, b in self.windows:
            accumulator.add(await self.client.range(metric, a, b, self.step))
            self._tick()
        return accumulator.totals(group_labels)

    async def _gauge_range(self, query: str, label: str = "quantile",
                           ) -> dict[str, tuple[list[float], list[float]]]:
        """Samples of each series of `query`, keyed by one label, on the report's grid."""
        out: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        for a, b in self.windows:
            for series in await self.client.range(query, a, b, self.step):
                name = series["metric"].get(label, "")
                times, values = out[name]
                for t, v in series["values"]:
                    if math.isfinite(float(v)):
                        times.append(float(t))
                        values.append(float(v))
            self._tick()
        return out

    async def _gauge_mean(self, query: str) -> float | None:
        series = await self._gauge_range(query)
        values = [v for _, vs in series.values() for v in vs]
        return sum(values) / len(values) if values else None

    async def _assumptions(
        self,
    ) -> tuple[list[dict[str, str]], list[str], dict[str, list[tuple[str, str]]]]:
        seconds = max(1, math.ceil(self.end - self.start))

        async def last(metric: str) -> list[dict[str, Any]]:
            return await self.client.instant(f"last_over_time({metric}[{seconds}s])", self.end)

        drop = {"__name__", "instance", "job", "pod", "namespace", "service", "endpoint",
                "container"}
        seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for series in await last("kubecarbon_model_info"):
            labels = {k: v for k, v in series["metric"].items() if k not in drop}
            seen[series_key(labels)] = labels
        versions = sorted({s["metric"].get("version", "?")
                           for s in await last("kubecarbon_build_info")})
        ranges: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for series in await last("kubecarbon_model_uncertainty_info"):
            labels = series["metric"]
            ranges[labels.get("parameter", "")].add((labels.get("low", ""), labels.get("high", "")))
        return list(seen.values()), versions, {k: sorted(v) for k, v in ranges.items()}
