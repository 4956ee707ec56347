"""Fleet gauges and the uncertainty band of the avoided CO2e.

Gauges come from each live node's latest window (the caller picks those windows); every
term is a sum over nodes, so several collector replicas add up in Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.model import coefficients as c
from collector.model.coefficients import Range
from collector.model.curve import curve_watts_at
from collector.model.estimate import SOURCE_CLOUD, SOURCE_RAPL, WindowBatch, WindowEstimate
from collector.model.parameters import ModelParameters

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

    IT energy comes in three terms, each with its own uncertainty: `modelled` (SPECpower
    curves: bare metal and default-profile nodes), `cloud` (CCF's per-vCPU watts) and
    `measured` (RAPL times the platform factor). Memory above the reference server's share
    is in none of them: the baseline holds it too, so it cancels (methodology section 6).
    The *_grams_per_joule fields are PUE_b * grid intensity / 3.6e6, each averaged with
    the weight of its own term (busy CPU-seconds for the baseline), which keeps the band
    exact for mixed fleets. For a period report, `for_period` fills them from one
    effective PUE and intensity.
    """

    busy_cpu_seconds: float
    logical_cpu_seconds: float
    modelled_energy_joules: float  # IT energy from power curves
    measured_energy_joules: float  # IT energy from RAPL, platform factor applied
    baseline_grams_per_joule: float
    modelled_grams_per_joule: float
    measured_grams_per_joule: float
    cloud_energy_joules: float = 0.0  # IT energy from per-vCPU watts, shared memory excluded
    cloud_grams_per_joule: float = 0.0

    @classmethod
    def for_period(
        cls,
        busy_cpu_seconds: float,
        logical_cpu_seconds: float,
        energy_joules: float,
        pue: float,
        grid_intensity_grams_per_kilowatt_hour: float,
        measured_energy_joules: float = 0.0,
        cloud_energy_joules: float = 0.0,
    ) -> FleetTotals:
        """Totals of a period from its counters; energy_joules is the curve-modelled IT energy."""
        values = {
            "busy_cpu_seconds": busy_cpu_seconds,
            "logical_cpu_seconds": logical_cpu_seconds,
            "energy_joules": energy_joules,
            "measured_energy_joules": measured_energy_joules,
            "cloud_energy_joules": cloud_energy_joules,
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
            cloud_energy_joules=cloud_energy_joules,
            cloud_grams_per_joule=grams_per_joule,
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
        busy = estimate.demand_cpus * c.SECONDS_PER_HOUR
        energy = (estimate.energy_joules - estimate.shared_memory_energy_joules) * hours
        measured = estimate.power_source == SOURCE_RAPL
        cloud = estimate.power_source == SOURCE_CLOUD
        curve = ~measured & ~cloud
        pue_b = estimate.pue if params.baseline_pue is None else params.baseline_pue
        grams_per_joule = (
            pue_b * estimate.grid_intensity_grams_per_kilowatt_hour / c.JOULES_PER_KILOWATT_HOUR
        )

        def weighted(weights: FloatArray) -> tuple[float, float]:
            total = float(np.sum(weights))
            mean = float(np.sum(weights * grams_per_joule)) / total if total > 0 else 0.0
            return total, mean

        busy_total, busy_g = weighted(busy)
        modelled_total, modelled_g = weighted(np.where(curve, energy, 0.0))
        measured_total, measured_g = weighted(np.where(measured, energy, 0.0))
        cloud_total, cloud_g = weighted(np.where(cloud, energy, 0.0))
        return cls(
            busy_cpu_seconds=busy_total,
            logical_cpu_seconds=float(np.sum(batch.logical_cpus)) * c.SECONDS_PER_HOUR,
            modelled_energy_joules=modelled_total,
            measured_energy_joules=measured_total,
            baseline_grams_per_joule=busy_g,
            modelled_grams_per_joule=modelled_g,
            measured_grams_per_joule=measured_g,
            cloud_energy_joules=cloud_total,
            cloud_grams_per_joule=cloud_g,
        )


@dataclass(frozen=True)
class Quantiles:
    p05: float
    p50: float
    p95: float

    @classmethod
    def of(cls, samples: FloatArray) -> Quantiles:
        p05, p50, p95 = np.quantile(samples, [0.05, 0.5, 0.95])
        return cls(float(p05), float(p50), float(p95))


@dataclass(frozen=True)
class Draws:
    """One value per draw of every uncertain parameter (the point values: `Draws.point`).

    The baseline's and the actual fleet's power multipliers are separate draws: they are
    different hardware, and one shared multiplier would cancel their errors.
    """

    baseline_utilisation: FloatArray
    reference_logical_cpus: FloatArray
    reference_watts_at_baseline: FloatArray  # watts of one reference server at u_b
    pue_multiplier: FloatArray
    intensity_multiplier: FloatArray
    baseline_power_multiplier: FloatArray
    fleet_curve_multiplier: FloatArray
    cloud_power_multiplier: FloatArray
    rapl_platform_ratio: FloatArray  # drawn platform factor / the point value
    embodied_kilograms: FloatArray
    lifetime_years: FloatArray

    @classmethod
    def point(cls, params: ModelParameters) -> Draws:
        one = np.ones(1)
        ref = params.reference_curve
        return cls(
            baseline_utilisation=one * params.baseline_utilisation,
            reference_logical_cpus=one * ref.logical_cpus,
            reference_watts_at_baseline=one * params.baseline_server_watts,
            pue_multiplier=one,
            intensity_multiplier=one,
            baseline_power_multiplier=one,
            fleet_curve_multiplier=one,
            cloud_power_multiplier=one,
            rapl_platform_ratio=one,
            embodied_kilograms=one * params.embodied_kilograms_per_server,
            lifetime_years=one * params.server_lifetime_years,
        )

    @classmethod
    def sample(
        cls, params: ModelParameters, draws: int, seed: int | np.random.Generator | None
    ) -> Draws:
        """Every parameter uniform in its range (ModelParameters.uncertainty), independently.

        A draw applies one value to all nodes: a wrong coefficient is wrong everywhere,
        which gives a wider, more honest band than independent per-node errors would.
        """
        if draws < 1:
            raise ValueError(f"draws: must be >= 1, got {draws}")
        rng = np.random.default_rng(seed)
        ranges = params.uncertainty

        def uniform(interval: Range) -> FloatArray:
            values: FloatArray = rng.uniform(interval.low, interval.high, draws)
            return values

        u_b = uniform(ranges.baseline_utilisation)
        curves = params.reference_servers
        pick = rng.integers(0, len(curves), draws)
        curve_watts = np.array([curve.watts for curve in curves], dtype=np.float64)[pick]
        return cls(
            baseline_utilisation=u_b,
            reference_logical_cpus=np.array(
                [curve.logical_cpus for curve in curves], dtype=np.float64
            )[pick],
            reference_watts_at_baseline=curve_watts_at(curve_watts, u_b),
            pue_multiplier=uniform(ranges.pue_multiplier),
            intensity_multiplier=uniform(ranges.grid_intensity_multiplier),
            baseline_power_multiplier=uniform(ranges.power_curve_multiplier),
            fleet_curve_multiplier=uniform(ranges.power_curve_multiplier),
            cloud_power_multiplier=uniform(ranges.cloud_power_multiplier),
            rapl_platform_ratio=uniform(ranges.rapl_platform_factor)
            / params.rapl_platform_factor,
            embodied_kilograms=uniform(ranges.embodied_kilograms_per_server),
            lifetime_years=uniform(ranges.server_lifetime_years),
        )


@dataclass(frozen=True)
class AvoidedSamples:
    """Avoided server-seconds and grams CO2e over the totals' span, one value per draw."""

    server_seconds: FloatArray
    co2e_grams: FloatArray


def avoided_samples(totals: FleetTotals, params: ModelParameters, draws: Draws) -> AvoidedSamples:
    """DESIGN's avoided servers and CO2e (operational + embodied) for every draw."""
    ref_cpus = draws.reference_logical_cpus
    baseline_server_seconds = totals.busy_cpu_seconds / (ref_cpus * draws.baseline_utilisation)
    actual_server_seconds = totals.logical_cpu_seconds / ref_cpus
    baseline_watts = draws.reference_watts_at_baseline * draws.baseline_power_multiplier
    baseline_grams = baseline_server_seconds * baseline_watts * totals.baseline_grams_per_joule
    actual_grams = (
        totals.modelled_energy_joules * draws.fleet_curve_multiplier
        * totals.modelled_grams_per_joule
        + totals.cloud_energy_joules * draws.cloud_power_multiplier * totals.cloud_grams_per_joule
        + totals.measured_energy_joules * draws.rapl_platform_ratio
        * totals.measured_grams_per_joule
    )
    operational = (
        (baseline_grams - actual_grams) * draws.pue_multiplier * draws.intensity_multiplier
    )
    embodied_grams_per_server_second = (
        draws.embodied_kilograms * 1000.0 / (draws.lifetime_years * c.SECONDS_PER_YEAR)
    )
    avoided_server_seconds = baseline_server_seconds - actual_server_seconds
    embodied = (
        params.credited_server_seconds(avoided_server_seconds) * embodied_grams_per_server_second
    )
    return AvoidedSamples(avoided_server_seconds, operational + embodied)


def avoided_co2e_point_grams(totals: FleetTotals, params: ModelParameters | None = None) -> float:
    """The avoided CO2e of the totals' span with every parameter at its point value."""
    params = params or ModelParameters()
    return float(avoided_samples(totals, params, Draws.point(params)).co2e_grams[0])


@dataclass(frozen=True)
class AvoidedBand:
    """p05/p50/p95 of the avoided CO2e (grams) and of the avoided servers over a span."""

    co2e_grams: Quantiles
    servers: Quantiles  # mean avoided servers over the span

    @classmethod
    def of(cls, samples: AvoidedSamples, span_seconds: float) -> AvoidedBand:
        return cls(co2e_grams=Quantiles.of(samples.co2e_grams),
                   servers=Quantiles.of(samples.server_seconds / span_seconds))


def avoided_band(
    totals: FleetTotals,
    span_seconds: float,
    params: ModelParameters | None = None,
    draws: int = UNCERTAINTY_DRAWS,
    seed: int | np.random.Generator | None = None,
) -> AvoidedBand:
    """The band of the avoided CO2e and of the mean avoided servers over the totals' span."""
    params = params or ModelParameters()
    if not 0 < span_seconds < float("inf"):
        raise ValueError(f"span_seconds: must be finite and > 0, got {span_seconds}")
    samples = avoided_samples(totals, params, Draws.sample(params, draws, seed))
    return AvoidedBand.of(samples, span_seconds)


def avoided_co2e_quantiles(
    totals: FleetTotals,
    params: ModelParameters | None = None,
    draws: int = UNCERTAINTY_DRAWS,
    seed: int | np.random.Generator | None = None,
) -> Quantiles:
    """p05 / p50 / p95 of the avoided CO2e (grams over the totals' span)."""
    params = params or ModelParameters()
    samples = avoided_samples(totals, params, Draws.sample(params, draws, seed))
    return Quantiles.of(samples.co2e_grams)


def avoided_rate_band(
    batch: WindowBatch,
    estimate: WindowEstimate,
    params: ModelParameters | None = None,
    draws: int = UNCERTAINTY_DRAWS,
    seed: int | np.random.Generator | None = None,
) -> AvoidedBand:
    """The band of the live fleet: avoided grams per hour and avoided servers."""
    samples = avoided_rate_samples(batch, estimate, params, draws, seed)
    return AvoidedBand.of(samples, c.SECONDS_PER_HOUR)


def avoided_rate_samples(
    batch: WindowBatch,
    estimate: WindowEstimate,
    params: ModelParameters | None = None,
    draws: int = UNCERTAINTY_DRAWS,
    seed: int | np.random.Generator | None = None,
) -> AvoidedSamples:
    """Avoided server-seconds and grams in one hour at the rate of the live fleet, per draw.

    With the same seed every collector replica draws the same parameters, and each draw
    is a sum over nodes: draw k of the whole fleet is the sum of every replica's draw k
    (with embodied_only_for_existing_servers, whose clip is not a sum, that sum counts no
    more embodied savings than the whole fleet would).
    """
    params = params or ModelParameters()
    totals = FleetTotals.per_hour(batch, estimate, params)
    return avoided_samples(totals, params, Draws.sample(params, draws, seed))


def avoided_co2e_rate_quantiles(
    batch: WindowBatch,
    estimate: WindowEstimate,
    params: ModelParameters | None = None,
    draws: int = UNCERTAINTY_DRAWS,
    seed: int | np.random.Generator | None = None,
) -> Quantiles:
    """p05 / p50 / p95 of the avoided CO2e rate in grams per hour, from the latest windows."""
    return avoided_rate_band(batch, estimate, params, draws, seed).co2e_grams
