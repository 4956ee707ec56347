"""The band of a period from the model's own uncertainty function (pure).

The band of a total is the quantile of the sum: the period's counters, summed over
every collector replica, give one FleetTotals, and the model draws its parameters over
it. Summing the replicas' quantile gauges, or integrating them over time, would add
quantiles, which is not the quantile of anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.model.assumptions import parameters_from_labels
from collector.model.coefficients import SECONDS_PER_YEAR
from collector.model.fleet import (
    UNCERTAINTY_DRAWS,
    UNCERTAINTY_SEED,
    AvoidedBand,
    FleetTotals,
    avoided_band,
)
from collector.model.parameters import ModelParameters
from collector.report.reduction import ReportData

METHOD = (
    "the model's uncertainty (collector.model.fleet.avoided_band, {draws} draws, seed "
    "{seed}, the ranges the collector published in kubecarbon_model_uncertainty_info) over "
    "the period's totals summed over all collectors, recovered from the counters: the "
    "quantile of the sum, never a sum of quantiles"
)


@dataclass(frozen=True)
class PeriodBand:
    band: AvoidedBand  # grams CO2e over the period; mean avoided servers
    params: ModelParameters
    method: str


def period_parameters(data: ReportData) -> ModelParameters | str:
    """The parameters every collector used, or why they cannot be known."""
    if not data.assumptions:
        return "the collectors published no kubecarbon_model_info in the period"
    if len(data.assumptions) != 1:
        return ("the collectors published different assumptions in the period "
                f"({len(data.assumptions)} model_info series); no single band applies")
    differing = sorted(name for name, pairs in data.uncertainty_ranges.items() if len(pairs) > 1)
    if differing:
        return f"the collectors published different ranges for {', '.join(differing)}"
    ranges = {name: pairs[0] for name, pairs in data.uncertainty_ranges.items()}
    try:
        return parameters_from_labels(data.assumptions[0], ranges)
    except ValueError as exc:
        return f"the published assumptions cannot be rebuilt: {exc}"


def period_band(data: ReportData) -> PeriodBand | str:
    """The band of the period's avoided CO2e and avoided servers, or why there is none.

    FleetTotals is recovered from the counters: baseline server-seconds are the baseline
    energy over the reference power at u_b, busy CPU-seconds follow from them; actual
    server-seconds are the embodied CO2e over EMB / LIFE; the memory both fleets hold
    is IT + avoided - baseline energy and is left out (it cancels); grams per joule
    are each region's operational CO2e over its IT energy, weighted per power source,
    and for the baseline (with PUE_b = each node's PUE) operational plus avoided
    operational CO2e, less the shared memory's at the cloud rate, over baseline energy.
    """
    params = period_parameters(data)
    if isinstance(params, str):
        return params
    if params.baseline_pue is not None:
        return "a fixed baseline_pue cannot be recovered from the counters"
    c = data.counters
    energy = c["it_energy_joules"]
    it_joules = energy.total
    baseline_joules = c["baseline_energy_joules"].total
    shared_memory_joules = max(0.0, it_joules + c["avoided_energy_joules"].total
                               - baseline_joules)
    operational_by_region = c["operational_co2e_grams"].by_group
    embodied_grams_per_server_second = (
        params.embodied_kilograms_per_server * 1000.0
        / (params.server_lifetime_years * SECONDS_PER_YEAR))
    baseline_server_seconds = baseline_joules / params.baseline_server_watts
    if it_joules <= 0 or baseline_server_seconds <= 0 or embodied_grams_per_server_second <= 0:
        return "the period has no energy, no baseline or no embodied carbon to recover from"
    actual_server_seconds = c["embodied_co2e_grams"].total / embodied_grams_per_server_second

    it_by_region = energy.by_label(0)
    joules = {"cloud_linear": 0.0, "rapl": 0.0, "curve": 0.0}
    grams = dict.fromkeys(joules, 0.0)
    for (region, source), value in energy.by_group.items():
        region_it = it_by_region.get(region, 0.0)
        region_rate = operational_by_region.get((region,), 0.0) / region_it if region_it else 0.0
        term = source if source in joules else "curve"
        joules[term] += value
        grams[term] += value * region_rate
    # the shared memory is cloud energy: take it out of that term at the term's own rate
    cloud_per_joule = grams["cloud_linear"] / joules["cloud_linear"] if joules[
        "cloud_linear"] else 0.0
    cloud_joules = max(0.0, joules["cloud_linear"] - shared_memory_joules)

    def per_joule(term: str) -> float:
        return grams[term] / joules[term] if joules[term] else 0.0

    avoided_operational = c["avoided_co2e_grams"].by_group.get(("operational",), 0.0)
    reference = params.reference_curve
    totals = FleetTotals(
        busy_cpu_seconds=baseline_server_seconds * reference.logical_cpus
        * params.baseline_utilisation,
        logical_cpu_seconds=actual_server_seconds * reference.logical_cpus,
        modelled_energy_joules=joules["curve"],
        measured_energy_joules=joules["rapl"],
        baseline_grams_per_joule=(c["operational_co2e_grams"].total + avoided_operational
                                  - shared_memory_joules * cloud_per_joule) / baseline_joules,
        modelled_grams_per_joule=per_joule("curve"),
        measured_grams_per_joule=per_joule("rapl"),
        cloud_energy_joules=cloud_joules,
        cloud_grams_per_joule=cloud_per_joule,
    )
    band = avoided_band(totals, data.end - data.start, params, draws=UNCERTAINTY_DRAWS,
                        seed=UNCERTAINTY_SEED)
    return PeriodBand(band, params, METHOD.format(draws=UNCERTAINTY_DRAWS,
                                                  seed=UNCERTAINTY_SEED))
