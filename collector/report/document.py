"""The report as plain data (pure): what JSON prints and CSV and HTML render."""

from __future__ import annotations

from typing import Any

from collector.model.coefficients import JOULES_PER_KILOWATT_HOUR, SECONDS_PER_HOUR
from collector.report.band import period_band
from collector.report.period import iso
from collector.report.reduction import ReportData
from collector.report.rightsizing import rightsizing_section

GRAMS_PER_TONNE = 1e6
METHODOLOGY = "docs/methodology.md"


def _kwh(joules: float) -> float:
    return joules / JOULES_PER_KILOWATT_HOUR


def _tonnes(grams: float) -> float:
    return grams / GRAMS_PER_TONNE


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
        "rightsizing": rightsizing_section(data.rightsizing),
        "assumptions": data.assumptions,
        "methodology": METHODOLOGY,
    }
