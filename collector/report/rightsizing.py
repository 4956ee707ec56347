"""The report's rightsizing section: where servers can still be saved, read from Prometheus.

Over the report's period, on its sample grid: each workload's mean requested, recommended
and requested-but-idle cores and its share of the avoidable CO2e, and the fleet's mean
avoidable nodes, IT energy and CO2e per year with the p05-p95 band (the collectors'
kubecarbon_rightsizing_* gauges, summed over replicas at each step, then averaged).
A workload's projected yearly savings are its share of the fleet's (its avoidable CO2e
over the fleet's median), applied to nodes, kWh and each quantile of the band.
Workloads without a recommendation in the period are listed apart, never sized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.model.coefficients import JOULES_PER_KILOWATT_HOUR
from collector.report.prometheus import PrometheusClient

WORKLOAD = ("namespace", "workload_kind", "workload")
BY_WORKLOAD = "sum by (namespace, workload_kind, workload)"
WORKLOAD_QUERIES = {
    "requested_cores": f"{BY_WORKLOAD} (kubecarbon_workload_requested_cpu_cores)",
    "idle_requested_cores": f"{BY_WORKLOAD} (kubecarbon_workload_idle_requested_cpu_cores)",
    "recommended_cores": f"{BY_WORKLOAD} (kubecarbon_workload_recommended_cpu_cores)",
    "avoidable_co2e_grams_per_year":
        f"{BY_WORKLOAD} (kubecarbon_workload_avoidable_co2e_grams_per_year)",
}
FLEET_QUERIES = {
    "avoidable_nodes": "sum(kubecarbon_rightsizing_avoidable_nodes)",
    "avoidable_energy_joules_per_year":
        "sum(kubecarbon_rightsizing_avoidable_energy_joules_per_year)",
    **{f"avoidable_co2e_grams_per_year_{q}":
       f'sum(kubecarbon_rightsizing_avoidable_co2e_grams_per_year{{quantile="{q}"}})'
       for q in ("0.05", "0.5", "0.95")},
}
TOP_WORKLOADS = 10


@dataclass(frozen=True)
class RightsizingData:
    """Means over the period of what the collectors published (None: never published)."""

    workloads: dict[tuple[str, str, str], dict[str, float]]
    fleet: dict[str, float | None]


def _mean_over_period(metric: str, start: float, end: float, step: float) -> str:
    seconds = max(int(end - start), 1)
    return f"avg_over_time(({metric})[{seconds}s:{max(int(step), 1)}s])"


async def fetch_rightsizing(client: PrometheusClient, start: float, end: float,
                            step: float) -> RightsizingData:
    """One instant query per quantity at `end`: each series' mean over the period's grid."""
    workloads: dict[tuple[str, str, str], dict[str, float]] = {}
    for key, query in WORKLOAD_QUERIES.items():
        for series in await client.instant(_mean_over_period(query, start, end, step), end):
            labels = series["metric"]
            name = (labels.get("namespace", ""), labels.get("workload_kind", ""),
                    labels.get("workload", ""))
            workloads.setdefault(name, {})[key] = float(series["value"][1])
    fleet: dict[str, float | None] = {}
    for key, query in FLEET_QUERIES.items():
        result = await client.instant(_mean_over_period(query, start, end, step), end)
        fleet[key] = float(result[0]["value"][1]) if result else None
    return RightsizingData(workloads, fleet)


def rightsizing_section(data: RightsizingData | None, top: int = TOP_WORKLOADS
                        ) -> dict[str, Any]:
    """The report's section (pure): fleet savings per year and the top opportunities."""
    if data is None or data.fleet.get("avoidable_nodes") is None:
        return {"available": False, "fleet": None, "top_workloads": [],
                "without_recommendation": []}
    fleet = data.fleet
    band = {f"p{round(float(q) * 100):02d}": (fleet[f"avoidable_co2e_grams_per_year_{q}"] or 0.0)
            / 1e6 for q in ("0.05", "0.5", "0.95")}
    nodes = fleet["avoidable_nodes"] or 0.0
    kwh = (fleet["avoidable_energy_joules_per_year"] or 0.0) / JOULES_PER_KILOWATT_HOUR
    median_tonnes = band["p50"]
    rows: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    for (namespace, kind, workload), values in data.workloads.items():
        if "recommended_cores" not in values:
            waiting.append({"namespace": namespace, "workload_kind": kind, "workload": workload,
                            "requested_cores": values.get("requested_cores", 0.0)})
            continue
        tonnes = values.get("avoidable_co2e_grams_per_year", 0.0) / 1e6
        share = tonnes / median_tonnes if median_tonnes > 0 else 0.0
        rows.append({
            "namespace": namespace, "workload_kind": kind, "workload": workload,
            "requested_cores": values.get("requested_cores", 0.0),
            "recommended_cores": values["recommended_cores"],
            "idle_requested_cores": values.get("idle_requested_cores", 0.0),
            "share_of_savings": share,
            "nodes_per_year": share * nodes,
            "it_energy_kwh_per_year": share * kwh,
            "tco2e_per_year": tonnes,
            "tco2e_per_year_band": {p: share * v for p, v in band.items()},
        })
    rows.sort(key=lambda r: (-r["tco2e_per_year"], -r["idle_requested_cores"],
                             r["namespace"], r["workload"]))
    waiting.sort(key=lambda r: (-r["requested_cores"], r["namespace"], r["workload"]))
    return {
        "available": True,
        "fleet": {
            "avoidable_nodes": nodes,
            "avoidable_it_energy_kwh_per_year": kwh,
            "avoidable_tco2e_per_year_band": band,
        },
        "top_workloads": rows[:top],
        "without_recommendation": waiting,
        "method": "means over the period of the collectors' kubecarbon_rightsizing_* and "
                  "kubecarbon_workload_* gauges; a workload's savings are its share of the "
                  "fleet's median avoidable CO2e (docs/methodology.md, \"Where servers can "
                  "still be saved\")",
    }
