"""`kubecarbon report`: a period report from Prometheus, as CSV, JSON or one HTML file.

    kubecarbon report --prometheus http://prometheus:9090 --start now-30d --end now --format html

Totals come from the collector's counters. A counter's increase over [start, end]
is taken from its samples (query_range at a fixed step, chunked), never from
PromQL's increase(), which extrapolates to the range edges: the report must add
up to what the collector counted. Per series: the increase is the sum of rises
between consecutive samples, and after a drop (a counter reset) the new value
itself; a series born inside the range counts from zero. The avoided-CO2e totals
are typed untyped (they fall when the fleet does worse than the baseline), so
for them the report takes last minus first, which a collector restart without
a state file would spoil. Facility energy is operational CO2e divided by the
region's grid intensity (operational CO2e is facility energy times intensity).
Averages of gauges (servers, utilisation) weight each sample equally. The
avoided-CO2e band is the model's own period uncertainty over totals recovered
from the counters (`period_band`); the collectors' p05/p50/p95 rate gauges
integrated over the period are reported beside it and stand in when the
assumptions cannot be inverted. docs/report.md explains each choice.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import itertools
import math
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import configargparse
import orjson

from collector.model.coefficients import SECONDS_PER_YEAR, SPECPOWER_DELL_R740
from collector.model.fleet import (
    UNCERTAINTY_DRAWS,
    UNCERTAINTY_SEED,
    FleetTotals,
    avoided_co2e_quantiles,
)
from collector.model.parameters import ModelParameters

JOULES_PER_KILOWATT_HOUR = 3.6e6
GRAMS_PER_TONNE = 1e6
SECONDS_PER_HOUR = 3600.0
METHODOLOGY = "docs/methodology.md"
# How far before `start` to look for a counter's last value (a series silent longer
# than this at `start` counts from zero when it reappears). Every query stays within
# Prometheus's default --query.max-samples (50 million) for 10,000 nodes at 15 s scrapes:
# an hour is 2.4 million samples, where a day would be 58 million.
BASELINE_LOOKBACK = "1h"
RELATIVE_TIME = re.compile(r"^now(?:\s*-\s*(\d+(?:\.\d+)?)\s*([smhdw]))?$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
QUANTILES = ("0.05", "0.5", "0.95")


class ReportError(Exception):
    """Anything that stops the report; the message is the one line the user sees."""


# -- time arguments -----------------------------------------------------------------------


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


# -- Prometheus HTTP API ------------------------------------------------------------------


class PrometheusClient:
    """The two calls the report needs, with errors turned into one-line ReportErrors."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.base_url}{path}"
        try:
            async with self.session.post(url, data=params) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ClientConnectionError as exc:
            raise ReportError(f"cannot reach Prometheus at {self.base_url}: {exc}") from None
        except TimeoutError:
            raise ReportError(f"Prometheus at {self.base_url} did not answer in time") from None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ReportError(
                f"{url} answered HTTP {status} with something that is not the Prometheus API"
                " (is --prometheus the server's base URL?)"
            ) from None
        if not isinstance(payload, dict) or payload.get("status") != "success":
            detail = payload.get("error", "") if isinstance(payload, dict) else ""
            raise ReportError(f"Prometheus query failed (HTTP {status}): {detail or body[:200]!r}")
        return payload["data"]

    async def instant(self, query: str, at: float) -> list[dict[str, Any]]:
        data = await self._get("/api/v1/query", {"query": query, "time": repr(at)})
        return list(data["result"])

    async def range(self, query: str, start: float, end: float,
                    step: float) -> list[dict[str, Any]]:
        data = await self._get(
            "/api/v1/query_range",
            {"query": query, "start": repr(start), "end": repr(end), "step": repr(step)},
        )
        return list(data["result"])


def _series_key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metric.items()))


# -- what the report reads ----------------------------------------------------------------

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
    "baseline_energy_joules": ("kubecarbon_baseline_energy_joules_total", (), False),
    "avoided_co2e_grams": ("kubecarbon_avoided_co2e_grams_total", ("scope",), True),
}
# Facility energy has no counter of its own: operational CO2e is facility energy times the
# region's grid intensity, so dividing by the intensity gives it back exactly.
INTENSITY_QUERY = "max by (region) (kubecarbon_grid_carbon_intensity_grams_per_kilowatt_hour)"
# Gauges averaged over the period (summed over collector replicas at each step).
GAUGES: dict[str, str] = {
    "baseline_servers": "sum(kubecarbon_baseline_servers)",
    "actual_servers": "sum(kubecarbon_actual_servers)",
    "avoided_servers": "sum(kubecarbon_avoided_servers)",
    "fleet_cpu_usage_ratio": "avg(kubecarbon_fleet_cpu_usage_ratio)",
}
BAND_QUERY = "sum by (quantile) (kubecarbon_avoided_co2e_grams_per_hour)"
# Sampled on the report's own grid, never as one range over the period (too many samples).
DATA_PROBE = "count(kubecarbon_node_energy_joules_total)"


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
    grid_intensity_by_region: dict[str, float]  # g/kWh, the last value in the period
    gauge_means: dict[str, float | None]
    band_grams: dict[str, float]  # quantile -> grams, the rate gauges integrated over the period
    assumptions: list[dict[str, str]]
    versions: list[str]


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


def trapezoid_integral(times: Sequence[float], values: Sequence[float], step: float) -> float:
    """Integral over time of a gauge sampled at the step; gaps (> 1.5 steps) count as zero."""
    total = 0.0
    for (t0, v0), (t1, v1) in itertools.pairwise(zip(times, values, strict=True)):
        if t1 - t0 <= 1.5 * step:
            total += (v0 + v1) / 2.0 * (t1 - t0)
    return total


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


class CounterAccumulator:
    """Per-series change of one counter, fed chunk by chunk in time order.

    Keeps two numbers per series (its last sample and its change so far), so a long
    range costs memory by series, not by samples.
    """

    def __init__(self, baselines: dict[tuple[tuple[str, str], ...], float],
                 signed: bool) -> None:
        self.last = dict(baselines)  # the value before the period, then the latest sample
        self.change: dict[tuple[tuple[str, str], ...], float] = {}
        self.labels: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        self.signed = signed

    def add(self, matrix: list[dict[str, Any]]) -> None:
        """One query_range answer (a matrix) covering the next stretch of the period."""
        for series in matrix:
            key = _series_key(series["metric"])
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


class ReportBuilder:
    """Reads everything the report needs from Prometheus (the I/O half of the report)."""

    def __init__(self, client: PrometheusClient, start: float, end: float, step: float,
                 points_per_chunk: int = 250,
                 progress: Callable[[int], Any] | None = None) -> None:
        self.client = client
        self.start, self.end = start, end
        self.step, count = sample_grid(start, end, step)
        self.windows = chunks(start, self.step, count, points_per_chunk)
        self.progress = progress

    async def build(self) -> ReportData:
        """Everything the report shows; call probe() first for a clear "no data" error."""
        counters = {key: await self._counter(metric, labels, signed)
                    for key, (metric, labels, signed) in COUNTERS.items()}
        # the last intensity each region had in the period
        intensity = {region: values[-1] for region, (_, values)
                     in (await self._gauge_range(INTENSITY_QUERY, "region")).items() if values}
        gauge_means = {key: await self._gauge_mean(query) for key, query in GAUGES.items()}
        band = await self._band()
        assumptions, versions = await self._assumptions()
        return ReportData(self.start, self.end, self.step, self.client.base_url, counters,
                          intensity, gauge_means, band, assumptions, versions)

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
        before = await self.client.instant(f"last_over_time({metric}[{BASELINE_LOOKBACK}])",
                                           self.start)
        accumulator = CounterAccumulator(
            {_series_key(s["metric"]): float(s["value"][1]) for s in before}, signed)
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

    async def _band(self) -> dict[str, float]:
        series = await self._gauge_range(BAND_QUERY)
        return {q: trapezoid_integral(*series[q], self.step) / SECONDS_PER_HOUR
                for q in QUANTILES if q in series}

    async def _assumptions(self) -> tuple[list[dict[str, str]], list[str]]:
        seconds = max(1, math.ceil(self.end - self.start))
        info = await self.client.instant(f"last_over_time(kubecarbon_model_info[{seconds}s])",
                                         self.end)
        builds = await self.client.instant(f"last_over_time(kubecarbon_build_info[{seconds}s])",
                                           self.end)
        drop = {"__name__", "instance", "job"}
        seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for series in info:
            labels = {k: v for k, v in series["metric"].items() if k not in drop}
            seen[_series_key(labels)] = labels
        versions = sorted({s["metric"].get("version", "?") for s in builds})
        return list(seen.values()), versions


# -- the report document (pure) -----------------------------------------------------------


def _kwh(joules: float) -> float:
    return joules / JOULES_PER_KILOWATT_HOUR


def _tonnes(grams: float) -> float:
    return grams / GRAMS_PER_TONNE


def period_band(data: ReportData) -> tuple[dict[str, float], str] | None:
    """p05/p50/p95 grams from the model's own period uncertainty function.

    FleetTotals needs the period's busy and logical CPU-seconds and the grams per joule
    of each term, which the counters hold implicitly: baseline energy is baseline
    server-seconds times the reference power at u_b; embodied CO2e is actual
    server-seconds times EMB / LIFE; operational CO2e per IT joule is the fleet's
    PUE x intensity; and with PUE_b = each node's PUE (the default), operational plus
    avoided operational CO2e is the baseline energy times its own PUE x intensity.
    None when the assumptions are not ones this can invert (several model_info
    series, a reference server other than the built-in curve, a fixed baseline PUE).
    """
    if len(data.assumptions) != 1:
        return None
    labels = data.assumptions[0]
    if labels.get("reference_server") != SPECPOWER_DELL_R740.name:
        return None
    if labels.get("baseline_pue") != "node":
        return None
    try:
        params = ModelParameters(
            baseline_utilisation=float(labels["baseline_utilisation"]),
            embodied_kilograms_per_server=float(labels["embodied_kilograms_per_server"]),
            server_lifetime_years=float(labels["server_lifetime_years"]),
        )
    except (KeyError, ValueError):
        return None
    c = data.counters
    energy = c["it_energy_joules"].by_label(1)
    it_joules = sum(energy.values())
    measured_joules = energy.get("rapl", 0.0)
    operational_grams = c["operational_co2e_grams"].total
    avoided_operational_grams = c["avoided_co2e_grams"].by_group.get(("operational",), 0.0)
    baseline_joules = c["baseline_energy_joules"].total
    reference = params.reference_curve
    watts_per_baseline_server = params.baseline_server_watts
    baseline_server_seconds = baseline_joules / watts_per_baseline_server
    embodied_grams_per_server_second = (
        params.embodied_kilograms_per_server * 1000.0
        / (params.server_lifetime_years * SECONDS_PER_YEAR))
    actual_server_seconds = c["embodied_co2e_grams"].total / embodied_grams_per_server_second
    if it_joules <= 0 or baseline_server_seconds <= 0:
        return None
    actual_grams_per_joule = operational_grams / it_joules
    totals = FleetTotals(
        busy_cpu_seconds=baseline_server_seconds * reference.logical_cpus
        * params.baseline_utilisation,
        logical_cpu_seconds=actual_server_seconds * reference.logical_cpus,
        modelled_energy_joules=it_joules - measured_joules,
        measured_energy_joules=measured_joules,
        baseline_grams_per_joule=(operational_grams + avoided_operational_grams)
        / baseline_joules,
        modelled_grams_per_joule=actual_grams_per_joule,
        measured_grams_per_joule=actual_grams_per_joule,
    )
    quantiles = avoided_co2e_quantiles(totals, params, draws=UNCERTAINTY_DRAWS,
                                       seed=UNCERTAINTY_SEED)
    method = (
        "the model's period uncertainty (collector.model.fleet.avoided_co2e_quantiles, "
        f"{UNCERTAINTY_DRAWS} draws) over the period's FleetTotals, recovered from the "
        "counters: CPU-seconds from the baseline energy and embodied CO2e, PUE x intensity "
        "from operational and avoided operational CO2e"
    )
    return {"0.05": quantiles.p05, "0.5": quantiles.p50, "0.95": quantiles.p95}, method


def _band_tonnes(grams: dict[str, float]) -> dict[str, float]:
    return {f"p{round(float(q) * 100):02d}": _tonnes(g) for q, g in grams.items()}


def report_document(data: ReportData) -> dict[str, Any]:
    """The report as plain data: what JSON prints and CSV/HTML render."""
    c = data.counters
    it_energy_by_region = c["it_energy_joules"].by_label(0)
    regions = sorted({g[0] for key in ("it_energy_joules", "operational_co2e_grams",
                                       "embodied_co2e_grams")
                      for g in c[key].by_group})

    def facility_kwh(region: str) -> float | None:
        intensity = data.grid_intensity_by_region.get(region)
        grams = c["operational_co2e_grams"].by_group.get((region,), 0.0)
        if grams == 0.0:
            return 0.0
        return grams / intensity if intensity else None

    by_region: list[dict[str, Any]] = [
        {
            "region": region,
            "it_energy_kwh": _kwh(it_energy_by_region.get(region, 0.0)),
            "facility_energy_kwh": facility_kwh(region),
            "operational_tco2e": _tonnes(c["operational_co2e_grams"].by_group.get((region,), 0.0)),
            "embodied_tco2e": _tonnes(c["embodied_co2e_grams"].by_group.get((region,), 0.0)),
        }
        for region in regions
    ]
    namespaces = sorted({g[0] for key in ("namespace_cpu_seconds", "namespace_energy_joules",
                                          "namespace_co2e_grams") for g in c[key].by_group})
    by_namespace: list[dict[str, Any]] = sorted(
        (
            {
                "namespace": ns,
                "cpu_core_hours": c["namespace_cpu_seconds"].by_group.get((ns,), 0.0)
                / SECONDS_PER_HOUR,
                "energy_kwh": _kwh(c["namespace_energy_joules"].by_group.get((ns,), 0.0)),
                "tco2e": _tonnes(c["namespace_co2e_grams"].by_group.get((ns,), 0.0)),
            }
            for ns in namespaces
        ),
        key=lambda row: -row["tco2e"],
    )
    avoided_scope = c["avoided_co2e_grams"].by_group
    operational = avoided_scope.get(("operational",), 0.0)
    embodied = avoided_scope.get(("embodied",), 0.0)
    facility = [row["facility_energy_kwh"] for row in by_region]
    totals = {
        "it_energy_kwh": _kwh(c["it_energy_joules"].total),
        "facility_energy_kwh": None if None in facility else sum(facility),
        "operational_tco2e": _tonnes(c["operational_co2e_grams"].total),
        "embodied_tco2e": _tonnes(c["embodied_co2e_grams"].total),
        "cpu_core_hours": c["namespace_cpu_seconds"].total / SECONDS_PER_HOUR,
    }
    gauge_band = _band_tonnes(data.band_grams)
    gauge_method = (
        "p05/p50/p95 of kubecarbon_avoided_co2e_grams_per_hour (the collector's draws over "
        "the live fleet), each integrated over the period with trapezoids at step_seconds")
    model_band = period_band(data)
    if model_band is None:
        band, band_method = gauge_band, gauge_method
    else:
        band, band_method = _band_tonnes(model_band[0]), model_band[1]
    return {
        "report": "kubecarbon period report",
        "period": {
            "start": iso(data.start),
            "end": iso(data.end),
            "hours": (data.end - data.start) / SECONDS_PER_HOUR,
            "step_seconds": data.step_seconds,
        },
        "source": {"prometheus": data.prometheus_url, "collector_versions": data.versions},
        "totals": totals,
        "by_region": by_region,
        "by_namespace": by_namespace,
        "baseline": {
            "baseline_energy_kwh": _kwh(c["baseline_energy_joules"].total),
            # exact: every window's avoided energy is its baseline minus its IT energy
            "avoided_energy_kwh": _kwh(c["baseline_energy_joules"].total
                                       - c["it_energy_joules"].total),
            "avoided_operational_tco2e": _tonnes(operational),
            "avoided_embodied_tco2e": _tonnes(embodied),
            "avoided_tco2e": _tonnes(operational + embodied),
            "avoided_tco2e_band": band,
            "band_method": band_method,
            "avoided_tco2e_band_from_rate_gauges": gauge_band,
            "mean_baseline_servers": data.gauge_means["baseline_servers"],
            "mean_actual_servers": data.gauge_means["actual_servers"],
            "mean_avoided_servers": data.gauge_means["avoided_servers"],
            "mean_fleet_cpu_usage_ratio": data.gauge_means["fleet_cpu_usage_ratio"],
        },
        "assumptions": data.assumptions,
        "methodology": METHODOLOGY,
    }


# -- renderers ----------------------------------------------------------------------------


def render_json(document: dict[str, Any]) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else repr(value)


def csv_rows(document: dict[str, Any]) -> list[list[str]]:
    """One quantity per row: section, name, quantity, value (units are in the quantity)."""
    rows = [["section", "name", "quantity", "value"]]
    period = document["period"]
    rows += [["period", "", key, _cell(period[key])] for key in ("start", "end", "hours")]
    rows += [["totals", "fleet", key, _cell(value)] for key, value in document["totals"].items()]
    for row in document["by_region"]:
        rows += [["region", row["region"], k, _cell(v)] for k, v in row.items() if k != "region"]
    for row in document["by_namespace"]:
        rows += [["namespace", row["namespace"], k, _cell(v)]
                 for k, v in row.items() if k != "namespace"]
    for key, value in document["baseline"].items():
        if key in ("avoided_tco2e_band", "avoided_tco2e_band_from_rate_gauges"):
            prefix = key.removesuffix("_band").replace("_band_", "_")
            rows += [["baseline", "fleet", f"{prefix}_{p}", _cell(v)] for p, v in value.items()]
        else:
            rows.append(["baseline", "fleet", key, _cell(value)])
    for index, labels in enumerate(document["assumptions"]):
        rows += [["assumption", str(index), k, v] for k, v in sorted(labels.items())]
    rows.append(["methodology", "", "reference", document["methodology"]])
    return rows


def render_csv(document: dict[str, Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(csv_rows(document))
    return buffer.getvalue()


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


HTML_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:980px;color:#1d2733;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem;
border-bottom:1px solid #d6dde5;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{padding:.3rem .6rem;border-bottom:1px solid #e7ebf0;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f6f9}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}.card{flex:1 1 200px;background:#f3f8f4;
border:1px solid #cfe3d4;border-radius:6px;padding:.7rem}.card b{display:block;font-size:1.4rem}
.muted{color:#5b6875}code{background:#f3f6f9;padding:0 .2rem}
"""


def render_html(document: dict[str, Any]) -> str:
    """One self-contained file: inline CSS, no scripts, no external requests."""
    period, totals, base = document["period"], document["totals"], document["baseline"]
    band = base["avoided_tco2e_band"]
    cards = [
        ("Avoided tCO2e", _number(base["avoided_tco2e"]),
         f"band p05 {_number(band.get('p05'))} / p50 {_number(band.get('p50'))} / "
         f"p95 {_number(band.get('p95'))}"),
        ("Avoided servers (mean)", _number(base["mean_avoided_servers"], 1),
         f"baseline {_number(base['mean_baseline_servers'], 1)}, "
         f"actual {_number(base['mean_actual_servers'], 1)}"),
        ("Energy (facility)", f"{_number(totals['facility_energy_kwh'])} kWh",
         f"IT {_number(totals['it_energy_kwh'])} kWh"),
        ("Emissions", f"{_number(totals['operational_tco2e'] + totals['embodied_tco2e'])} t",
         f"operational {_number(totals['operational_tco2e'])}, "
         f"embodied {_number(totals['embodied_tco2e'])}"),
    ]
    card_html = "".join(
        f'<div class="card">{html.escape(title)}<b>{html.escape(value)}</b>'
        f'<span class="muted">{html.escape(note)}</span></div>'
        for title, value, note in cards
    )
    regions = _table(
        ["region", "IT energy (kWh)", "facility energy (kWh)", "operational tCO2e",
         "embodied tCO2e"],
        ([r["region"] or "(none)", _number(r["it_energy_kwh"]), _number(r["facility_energy_kwh"]),
          _number(r["operational_tco2e"], 4), _number(r["embodied_tco2e"], 4)]
         for r in document["by_region"]),
    )
    namespaces = _table(
        ["namespace", "CPU core-hours", "energy (kWh)", "tCO2e"],
        ([r["namespace"], _number(r["cpu_core_hours"], 2), _number(r["energy_kwh"]),
          _number(r["tco2e"], 4)] for r in document["by_namespace"]),
    )
    baseline = _table(
        ["quantity", "value"],
        [
            ["baseline energy (kWh)", _number(base["baseline_energy_kwh"])],
            ["avoided energy (kWh)", _number(base["avoided_energy_kwh"])],
            ["avoided operational tCO2e", _number(base["avoided_operational_tco2e"], 4)],
            ["avoided embodied tCO2e", _number(base["avoided_embodied_tco2e"], 4)],
            ["avoided tCO2e, p05", _number(band.get("p05"), 4)],
            ["avoided tCO2e, p50", _number(band.get("p50"), 4)],
            ["avoided tCO2e, p95", _number(band.get("p95"), 4)],
            ["avoided tCO2e from the rate gauges, p05 / p50 / p95",
             " / ".join(_number(base["avoided_tco2e_band_from_rate_gauges"].get(p), 4)
                        for p in ("p05", "p50", "p95"))],
            ["mean fleet CPU utilisation", _number(base["mean_fleet_cpu_usage_ratio"], 3)],
        ],
    )
    assumptions = "".join(
        _table(["parameter", "value"], sorted(labels.items()))
        for labels in document["assumptions"]
    ) or "<p>The collector published no kubecarbon_model_info in this period.</p>"
    title = f"kubecarbon report {period['start']} .. {period['end']}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head>
<body>
<h1>kubecarbon period report</h1>
<p class="muted">{html.escape(period['start'])} to {html.escape(period['end'])}
({period['hours']:.2f} h), from Prometheus {html.escape(document['source']['prometheus'])},
collector {html.escape(', '.join(document['source']['collector_versions']) or 'unknown')}.</p>
<div class="cards">{card_html}</div>
<h2>Energy and emissions by region</h2>{regions}
<h2>By namespace</h2>{namespaces}
<h2>Against the non-elastic baseline</h2>{baseline}
<p class="muted">{html.escape(base['band_method'])}.</p>
<h2>Assumptions in force</h2>{assumptions}
<h2>Methodology</h2>
<p>Formulas, default coefficients and their sources:
<code>{html.escape(document['methodology'])}</code> in the kubecarbon repository.
Totals are counter increases between samples {period['step_seconds']:g} s apart.</p>
</body></html>
"""


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "csv": render_csv,
    "json": render_json,
    "html": render_html,
}


# -- command line ---------------------------------------------------------------------------


def build_parser() -> configargparse.ArgumentParser:
    parser = configargparse.ArgumentParser(
        prog="kubecarbon report",
        description="Write a period report (energy, CO2e, avoided CO2e) from Prometheus.",
        auto_env_var_prefix="KUBECARBON_",
        config_file_parser_class=configargparse.YAMLConfigFileParser,
        args_for_setting_config_path=["--config"],
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--prometheus", default="http://localhost:9090", help="Prometheus base URL")
    add("--start", default="now-24h", help="RFC3339, unix seconds or now-N{s,m,h,d,w}")
    add("--end", default="now", help="RFC3339, unix seconds or now-N{s,m,h,d,w}")
    add("--format", choices=sorted(RENDERERS), default="html")
    add("--output", "-o", type=Path, help="file to write (default: standard output)")
    add("--step", type=float, metavar="SECONDS",
        help="sample spacing (default: about 2,000 samples over the range, at least 1 s)")
    add("--timeout", type=float, default=60.0, metavar="SECONDS", help="per-query timeout")
    add("--progress", choices=("auto", "always", "never"), default="auto",
        help="progress bar on stderr: auto shows it on a terminal when the range needs "
        "several queries per metric")
    return parser


async def fetch(prometheus: str, start: float, end: float, step: float,
                query_timeout_seconds: float, progress: str) -> ReportData:
    client_timeout = aiohttp.ClientTimeout(total=query_timeout_seconds)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        builder = ReportBuilder(PrometheusClient(session, prometheus), start, end, step)
        await builder.probe()
        # per chunk: each counter, each gauge, the band and the intensities
        queries = len(builder.windows) * (len(COUNTERS) + len(GAUGES) + 2)
        show = progress == "always" or (
            progress == "auto" and len(builder.windows) > 1 and sys.stderr.isatty())
        if not show:
            return await builder.build()
        from tqdm import tqdm

        with tqdm(total=queries, unit="query", file=sys.stderr, desc="kubecarbon report",
                  leave=False) as bar:
            builder.progress = bar.update
            return await builder.build()


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    now = time.time()
    try:
        start = parse_time(args.start, now)
        end = parse_time(args.end, now)
    except ValueError as exc:
        parser.exit(2, f"kubecarbon report: error: {exc}\n")
    if end <= start:
        parser.exit(2, f"kubecarbon report: error: --end {iso(end)} is not after --start "
                       f"{iso(start)}\n")
    if args.step is not None and not (math.isfinite(args.step) and args.step > 0):
        parser.exit(2, "kubecarbon report: error: --step must be a positive number of seconds\n")
    step = args.step or choose_step(end - start)
    try:
        data = asyncio.run(fetch(args.prometheus, start, end, step, args.timeout, args.progress))
    except ReportError as exc:
        print(f"kubecarbon report: error: {exc}", file=sys.stderr)
        return 1
    text = RENDERERS[args.format](report_document(data))
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"kubecarbon report: error: cannot write {args.output}: {exc.strerror}",
                  file=sys.stderr)
            return 1
    return 0
