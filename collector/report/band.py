"""The avoided-CO2e band of a period from the model's own uncertainty function (pure)."""

from __future__ import annotations

from collector.model.coefficients import SECONDS_PER_YEAR, SPECPOWER_DELL_R740
from collector.model.fleet import (
    UNCERTAINTY_DRAWS,
    UNCERTAINTY_SEED,
    FleetTotals,
    avoided_co2e_quantiles,
)
from collector.model.parameters import ModelParameters
from collector.report.reduction import ReportData


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
