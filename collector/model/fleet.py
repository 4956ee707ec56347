"""Fleet gauges and the uncertainty band of the avoided CO2e.

Gauges come from each live node's latest window (the caller picks those windows); every
term is a sum over nodes, so several collector replicas add up in Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.model import coefficients as c
from collector.model.curve import curve_watts_at
from collector.model.estimate import SOURCE_RAPL, WindowBatch, WindowEstimate
from collector.model.parameters import ModelParameters, Range

FloatArray = npt.NDArray[np.float64]

# 1,000 draws: the p95 moves about 1 % between seeds. A fixed seed: the same fleet gives
# the same band on every scrape and in every report.
UNCERTAINTY_DRAWS = 1000
UNCERTAINTY_SEED = 0


@dataclass(frozen=True)
class FleetGauges:
    fleet_cpu_usage_ratio: float  # sum(busy CPUs) / sum(logical CPUs), 0 for no nodes
    demand_cpus: float  # busy logical CPUs, fleet
    logical_cpus: float
    power_watts: float  # IT power
    baseline_servers: float
    actual_servers: float
    avoided_servers: float
    avoided_co2e_grams_per_hour: float  # operational + embodied, point estimate


def fleet_gauges(
    batch: WindowBatch, estimate: WindowEstimate, params: ModelParameters | None = None
) -> FleetGauges:
    """Gauges over the given windows, one per live node (its latest window).

    `params` is accepted for symmetry with the other entry points; the estimate already
    carries every parameter the gauges need.
    """
    del params
    if len(estimate) != len(batch):
        raise ValueError(f"estimate: {len(estimate)} elements for a batch of {len(batch)}")
    dt = batch.duration_seconds
    demand = float(np.sum(estimate.utilisation * batch.logical_cpus))
    logical = float(np.sum(batch.logical_cpus))
    baseline = float(np.sum(estimate.baseline_servers))
    actual = float(np.sum(estimate.actual_servers))
    avoided_grams = estimate.avoided_operational_co2e_grams + estimate.avoided_embodied_co2e_grams
    return FleetGauges(
        fleet_cpu_usage_ratio=demand / logical if logical > 0 else 0.0,
        demand_cpus=demand,
        logical_cpus=logical,
        power_watts=float(np.sum(estimate.power_watts)),
        baseline_servers=baseline,
        actual_servers=actual,
        avoided_servers=baseline - actual,
        avoided_co2e_grams_per_hour=float(np.sum(avoided_grams / dt)) * c.SECONDS_PER_HOUR,
    )


@dataclass(frozen=True)
class FleetTotals:
    """What the avoided CO2e over a span depends on, summed over nodes.

    The *_grams_per_joule fields are PUE_b * grid intensity / 3.6e6, each averaged with
    the weight of its own term (busy CPU-seconds for the baseline, modelled or measured
    energy for the actual fleet), which keeps the band exact for mixed fleets. For a
    period report, `for_period` fills them from one effective PUE and intensity.
    """

    busy_cpu_seconds: float
    logical_cpu_seconds: float
    modelled_energy_joules: float  # IT energy from power models (power-curve uncertainty applies)
    measured_energy_joules: float  # IT energy from RAPL
    baseline_grams_per_joule: float
    modelled_grams_per_joule: float
    measured_grams_per_joule: float

    @classmethod
    def for_period(
        cls,
        busy_cpu_seconds: float,
        logical_cpu_seconds: float,
        energy_joules: float,
        pue: float,
        grid_intensity_grams_per_kilowatt_hour: float,
        measured_energy_joules: float = 0.0,
    ) -> FleetTotals:
        """Totals of a period from its counters; energy_joules is the modelled IT energy."""
        values = {
            "busy_cpu_seconds": busy_cpu_seconds,
            "logical_cpu_seconds": logical_cpu_seconds,
            "energy_joules": energy_joules,
            "measured_energy_joules": measured_energy_joules,
            "grid_intensity_grams_per_kilowatt_hour": grid_intensity_grams_per_kilowatt_hour,
        }
        for name, value in values.items():
            if not 0 <= value < float("inf"):
                raise ValueError(f"{name}: must be finite and >= 0, got {value}")
        if not 1 <= pue < float("inf"):
            raise ValueError(f"pue: must be finite and >= 1, got {pue}")
        grams_per_joule = pue * grid_intensity_grams_per_kilowatt_hour / c.JOULES_PER_KILOWATT_HOUR
        return cls(
            busy_cpu_seconds=busy_cpu_seconds,
            logical_cpu_seconds=logical_cpu_seconds,
            modelled_energy_joules=energy_joules,
            measured_energy_joules=measured_energy_joules,
            baseline_grams_per_joule=grams_per_joule,
            modelled_grams_per_joule=grams_per_joule,
            measured_grams_per_joule=grams_per_joule,
        )

    @classmethod
    def per_hour(
        cls, batch: WindowBatch, estimate: WindowEstimate, params: ModelParameters | None = None
    ) -> FleetTotals:
        """One hour at the rate of the given windows (each live node's latest)."""
        params = params or ModelParameters()
        if len(estimate) != len(batch):
            raise ValueError(f"estimate: {len(estimate)} elements for a batch of {len(batch)}")
        hours = c.SECONDS_PER_HOUR / batch.duration_seconds
        busy = estimate.utilisation * batch.logical_cpus * c.SECONDS_PER_HOUR
        energy = estimate.energy_joules * hours
        measured = estimate.power_source == SOURCE_RAPL
        pue_b = estimate.pue if params.baseline_pue is None else params.baseline_pue
        grams_per_joule = (
            pue_b * estimate.grid_intensity_grams_per_kilowatt_hour / c.JOULES_PER_KILOWATT_HOUR
        )

        def weighted(weights: FloatArray) -> tuple[float, float]:
            total = float(np.sum(weights))
            mean = float(np.sum(weights * grams_per_joule)) / total if total > 0 else 0.0
            return total, mean

        busy_total, busy_g = weighted(busy)
        modelled_total, modelled_g = weighted(np.where(measured, 0.0, energy))
        measured_total, measured_g = weighted(np.where(measured, energy, 0.0))
        return cls(
            busy_cpu_seconds=busy_total,
            logical_cpu_seconds=float(np.sum(batch.logical_cpus)) * c.SECONDS_PER_HOUR,
            modelled_energy_joules=modelled_total,
            measured_energy_joules=measured_total,
            baseline_grams_per_joule=busy_g,
            modelled_grams_per_joule=modelled_g,
            measured_grams_per_joule=measured_g,
        )


@dataclass(frozen=True)
class Quantiles:
    p05: float
    p50: float
    p95: float


def _avoided_co2e_grams(
    totals: FleetTotals,
    params: ModelParameters,
    baseline_utilisation: FloatArray,
    pue_multiplier: FloatArray,
    curve_multiplier: FloatArray,
    intensity_multiplier: FloatArray,
    embodied_kilograms: FloatArray,
    lifetime_years: FloatArray,
) -> FloatArray:
    """DESIGN's avoided CO2e (operational + embodied) for arrays of parameter values."""
    ref = params.reference_curve
    baseline_server_seconds = totals.busy_cpu_seconds / (ref.logical_cpus * baseline_utilisation)
    actual_server_seconds = totals.logical_cpu_seconds / ref.logical_cpus
    baseline_watts = curve_watts_at(ref.watts, baseline_utilisation) * curve_multiplier
    baseline_grams = baseline_server_seconds * baseline_watts * totals.baseline_grams_per_joule
    actual_grams = (
        totals.modelled_energy_joules * curve_multiplier * totals.modelled_grams_per_joule
        + totals.measured_energy_joules * totals.measured_grams_per_joule
    )
    operational = (baseline_grams - actual_grams) * pue_multiplier * intensity_multiplier
    embodied_grams_per_server_second = (
        embodied_kilograms * 1000.0 / (lifetime_years * c.SECONDS_PER_YEAR)
    )
    embodied = (baseline_server_seconds - actual_server_seconds) * embodied_grams_per_server_second
    result: FloatArray = operational + embodied
    return result


def avoided_co2e_point_grams(totals: FleetTotals, params: ModelParameters | None = None) -> float:
    """The avoided CO2e of the totals' span with every parameter at its point value."""
    params = params or ModelParameters()
    one = np.ones(1)
    return float(
        _avoided_co2e_grams(
            totals,
            params,
            one * params.baseline_utilisation,
            one,
            one,
            one,
            one * params.embodied_kilograms_per_server,
            one * params.server_lifetime_years,
        )[0]
    )


@dataclass(frozen=True)
class ParameterDraws:
    """`draws` values of each uncertain parameter, uniform over its range."""

    baseline_utilisation: FloatArray
    pue_multiplier: FloatArray
    power_curve_multiplier: FloatArray
    grid_intensity_multiplier: FloatArray
    embodied_kilograms_per_server: FloatArray
    server_lifetime_years: FloatArray


def parameter_draws(params: ModelParameters, draws: int,
                    seed: int | np.random.Generator | None) -> ParameterDraws:
    """Each parameter drawn uniformly from its range (ModelParameters.uncertainty), in a
    fixed order, so a seed gives the same draws to every band computed from them."""
    if draws < 1:
        raise ValueError(f"draws: must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    ranges = params.uncertainty

    def uniform(interval: Range) -> FloatArray:
        values: FloatArray = rng.uniform(interval.low, interval.high, draws)
        return values

    return ParameterDraws(
        uniform(ranges.baseline_utilisation),
        uniform(ranges.pue_multiplier),
        uniform(ranges.power_curve_multiplier),
        uniform(ranges.grid_intensity_multiplier),
        uniform(ranges.embodied_kilograms_per_server),
        uniform(ranges.server_lifetime_years),
    )


def avoided_co2e_quantiles(
    totals: FleetTotals,
    params: ModelParameters | None = None,
    draws: int = 1000,
    seed: int | np.random.Generator | None = None,
) -> Quantiles:
    """p05 / p50 / p95 of the avoided CO2e (grams over the totals' span).

    Each draw takes every parameter uniformly from its range (ModelParameters.uncertainty),
    the same value for all nodes: a wrong coefficient is wrong everywhere, which gives a
    wider, more honest band than independent per-node errors would.
    """
    params = params or ModelParameters()
    d = parameter_draws(params, draws, seed)
    samples = _avoided_co2e_grams(
        totals,
        params,
        d.baseline_utilisation,
        d.pue_multiplier,
        d.power_curve_multiplier,
        d.grid_intensity_multiplier,
        d.embodied_kilograms_per_server,
        d.server_lifetime_years,
    )
    p05, p50, p95 = np.quantile(samples, [0.05, 0.5, 0.95])
    return Quantiles(float(p05), float(p50), float(p95))


def avoided_co2e_rate_quantiles(
    batch: WindowBatch,
    estimate: WindowEstimate,
    params: ModelParameters | None = None,
    draws: int = 1000,
    seed: int | np.random.Generator | None = None,
) -> Quantiles:
    """p05 / p50 / p95 of the avoided CO2e rate in grams per hour, from the latest windows."""
    totals = FleetTotals.per_hour(batch, estimate, params)
    return avoided_co2e_quantiles(totals, params, draws, seed)
