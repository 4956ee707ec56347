"""The report as plain data (pure): what JSON prints and CSV and HTML render."""

from __future__ import annotations

from typing import Any

from collector.model.coefficients import JOULES_PER_KILOWATT_HOUR, SECONDS_PER_HOUR
from collector.model.fleet import UNCERTAINTY_DRAWS
from collector.report.band import PeriodBand, period_band, period_parameters
from collector.report.disclosure import disclosure
from collector.report.period import iso
from collector.report.reduction import ReportData
from collector.report.rightsizing import rightsizing_section

GRAMS_PER_TONNE = 1e6
METHODOLOGY = "docs/methodology.md"


def _kwh(joules: float) -> float:
    return joules / JOULES_PER_KILOWATT_HOUR


def _tonnes(grams: float) -> float:
    return grams / GRAMS_PER_TONNE


# Measured by tests/model/test_uncertainty.py's noise test (docs/methodology.md, section
# 8); the report pins seed 0, so the same counters give the same band.
MONTE_CARLO_NOISE = ("each quantile moves by 1-2 % (relative standard deviation) between "
                     "seeds at 1,000 draws")


def report_document(data: ReportData) -> dict[str, Any]:
    """The report as plain data: what JSON prints and CSV/HTML render."""
    c = data.counters
    it_energy_by_region = c["it_energy_joules"].by_label(0)
    facility_by_region = c["facility_energy_joules"].by_group
    regions = sorted({g[0] for key in ("it_energy_joules", "operational_co2e_grams",
                                       "embodied_co2e_grams")
                      for g in c[key].by_group})
    by_region: list[dict[str, Any]] = [
        {
            "region": region,
            "it_energy_kwh": _kwh(it_energy_by_region.get(region, 0.0)),
            "facility_energy_kwh": _kwh(facility_by_region.get((region,), 0.0)),
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
    emissions_grams = c["operational_co2e_grams"].total + c["embodied_co2e_grams"].total
    cpu_core_hours = c["namespace_cpu_seconds"].total / SECONDS_PER_HOUR
    totals = {
        "it_energy_kwh": _kwh(c["it_energy_joules"].total),
        "facility_energy_kwh": _kwh(c["facility_energy_joules"].total),
        "operational_tco2e": _tonnes(c["operational_co2e_grams"].total),
        "embodied_tco2e": _tonnes(c["embodied_co2e_grams"].total),
        "cpu_core_hours": cpu_core_hours,
    }
    baseline_kwh = _kwh(c["baseline_energy_joules"].total)
    avoided_kwh = _kwh(c["avoided_energy_joules"].total)
    result = period_band(data)
    if isinstance(result, PeriodBand):
        band = result.band
        co2e_band: dict[str, float | None] = {
            "p05": _tonnes(band.co2e_grams.p05), "p50": _tonnes(band.co2e_grams.p50),
            "p95": _tonnes(band.co2e_grams.p95)}
        servers_band: dict[str, float | None] = {
            "p05": band.servers.p05, "p50": band.servers.p50, "p95": band.servers.p95}
        band_method: str = result.method
    else:
        co2e_band = servers_band = dict.fromkeys(("p05", "p50", "p95"))
        band_method = f"no band: {result}"
    period = {
        "start": iso(data.start),
        "end": iso(data.end),
        "hours": (data.end - data.start) / SECONDS_PER_HOUR,
        "step_seconds": data.step_seconds,
    }
    uncertainty = {
        "avoided_tco2e": co2e_band,
        "mean_avoided_servers": servers_band,
        "method": band_method,
        "draws": UNCERTAINTY_DRAWS,
        "monte_carlo_noise": MONTE_CARLO_NOISE,
    }
    sci = {
        "functional_unit": "CPU core-hour of pod work (kubecarbon_namespace_cpu_seconds_total)",
        "gco2e_per_functional_unit": emissions_grams / cpu_core_hours if cpu_core_hours
        else None,
        "formula": "(operational + embodied CO2e) / core-hours: SCI's (E x I + M) per R",
    }
    return {
        "report": "kubecarbon period report",
        "period": period,
        "source": {"prometheus": data.prometheus_url, "collector_versions": data.versions},
        "totals": totals,
        "by_region": by_region,
        "by_namespace": by_namespace,
        "baseline": {
            "baseline_energy_kwh": baseline_kwh,
            "avoided_energy_kwh": avoided_kwh,
            # memory above the reference server's share, counted in both fleets
            "shared_memory_energy_kwh": max(0.0, totals["it_energy_kwh"] + avoided_kwh
                                            - baseline_kwh),
            "avoided_operational_tco2e": _tonnes(operational),
            "avoided_embodied_tco2e": _tonnes(embodied),
            "avoided_tco2e": _tonnes(operational + embodied),
            "avoided_tco2e_band": co2e_band,
            "mean_avoided_servers_band": servers_band,
            "band_method": band_method,
            "mean_baseline_servers": data.gauge_means["baseline_servers"],
            "mean_actual_servers": data.gauge_means["actual_servers"],
            "mean_avoided_servers": data.gauge_means["avoided_servers"],
            "mean_fleet_cpu_usage_ratio": data.gauge_means["fleet_cpu_usage_ratio"],
        },
        "rightsizing": rightsizing_section(data.rightsizing),
        "assumptions": data.assumptions,
        "disclosure": disclosure(period_parameters(data), uncertainty, period, data.versions,
                                 sci),
        "methodology": METHODOLOGY,
    }
