"""The report's disclosure section (pure): what an avoided-emissions claim must state.

It follows ISO 14064-2 (baseline scenario, conservativeness, uncertainty), the WBCSD
Guidance on Avoided Emissions (2023: avoided emissions are reported apart from the
organisation's inventory and are not offsets) and the Software Carbon Intensity
specification, ISO/IEC 21031:2024 (a rate per functional unit, boundary stated).
Every assumption row carries its value, its range and its source.
"""

from __future__ import annotations

from typing import Any

from collector.model import coefficients as c
from collector.model.assumptions import EMBODIED_CREDIT
from collector.model.parameters import ModelParameters

# Bump when a formula changes what the same counters mean (docs/methodology.md).
METHOD_VERSION = "kubecarbon-avoided-emissions/2 (like-for-like memory, independent power errors)"

STANDARDS = (
    "ISO 14064-2:2019 (GHG projects: baseline scenario, conservativeness, uncertainty)",
    "WBCSD Guidance on Avoided Emissions (2023)",
    "Software Carbon Intensity, ISO/IEC 21031:2024",
)

STATEMENT = (
    "Avoided emissions are a comparison against a hypothetical baseline, not a reduction "
    "of this organisation's own emissions. They are reported separately from the "
    "organisation's scope 1, 2 and 3 inventory, must not be subtracted from it, and are "
    "not offsets or credits."
)

BASELINE_SCENARIO = (
    "The same CPU demand served by a dedicated, non-elastic estate: one application per "
    "server, sized for peaks, running at the baseline utilisation u_b on the reference "
    "server, in the same facilities (PUE_b = each node's PUE unless set) and on the same "
    "grids. Why: it is how the work was run before elastic platforms, and NRDC (2014) "
    "measured its utilisation (12-18 %). The organisation's own measured pre-migration "
    "utilisation, set as model.baseline_utilisation, is a better baseline than the default."
)

BOUNDARY_INCLUDED = (
    "IT power of every reporting node (CPU-driven models, RAPL where present) and the "
    "memory above the reference server's share, counted in both fleets",
    "facility overhead through PUE, operational CO2e through the grid intensity",
    "embodied (manufacturing) CO2e of servers, amortised over their lifetime",
)
BOUNDARY_EXCLUDED = (
    "network, storage arrays, GPUs and other accelerators",
    "end-of-life and transport of servers; the cloud provider's own overhead beyond PUE",
    "rebound effects (work the spare capacity enabled)",
)

_SOURCES = {
    "baseline_utilisation": "NRDC, Data Center Efficiency Assessment (2014): 12-18 %",
    "reference_server": "SPECpower_ssj2008 results (see data sources)",
    "power_curve_multiplier": "kubecarbon assumption: +-15 % for a server of the same "
    "class as its published result; drawn separately for the baseline and the fleet",
    "cloud_power_multiplier": "Cloud Carbon Footprint per-processor max watts (AWS, "
    "b7a049c7) over its average",
    "rapl_platform_factor": "Boavizta: the rest of the server adds 20-60 % to RAPL",
    "pue_multiplier": "kubecarbon assumption: +-10 % on published PUE",
    "grid_intensity_multiplier": "kubecarbon assumption: +-10 % on annual grid factors",
    "embodied_kilograms_per_server": "Dell PowerEdge R740 product carbon footprint "
    "(manufacturing share); range: kubecarbon assumption (docs/methodology.md, section 8)",
    "server_lifetime_years": "Cloud Carbon Footprint (4 years); range 4-6 years",
    "memory_watts_per_gibibyte": "Cloud Carbon Footprint memory coefficient, 0.000392 kWh/GB-h",
}


def _assumption_rows(params: ModelParameters) -> list[dict[str, Any]]:
    ranges = params.uncertainty

    def row(name: str, value: Any, interval: c.Range | None, source: str) -> dict[str, Any]:
        return {"name": name, "value": value,
                "range": None if interval is None else [interval.low, interval.high],
                "source": source}

    return [
        row("baseline_utilisation", params.baseline_utilisation, ranges.baseline_utilisation,
            _SOURCES["baseline_utilisation"]),
        row("reference_server", params.reference_curve.name, None,
            "drawn from: " + ", ".join(curve.name for curve in params.reference_servers)),
        row("power_curve_multiplier", 1.0, ranges.power_curve_multiplier,
            _SOURCES["power_curve_multiplier"]),
        row("cloud_power_multiplier", 1.0, ranges.cloud_power_multiplier,
            _SOURCES["cloud_power_multiplier"]),
        row("rapl_platform_factor", params.rapl_platform_factor, ranges.rapl_platform_factor,
            _SOURCES["rapl_platform_factor"]),
        row("pue_multiplier", 1.0, ranges.pue_multiplier, _SOURCES["pue_multiplier"]),
        row("baseline_pue", "each node's PUE" if params.baseline_pue is None
            else params.baseline_pue, None, "credits elasticity only, not a better building"),
        row("grid_intensity_multiplier", 1.0, ranges.grid_intensity_multiplier,
            _SOURCES["grid_intensity_multiplier"]),
        row("embodied_kilograms_per_server", params.embodied_kilograms_per_server,
            ranges.embodied_kilograms_per_server, _SOURCES["embodied_kilograms_per_server"]),
        row("server_lifetime_years", params.server_lifetime_years,
            ranges.server_lifetime_years, _SOURCES["server_lifetime_years"]),
        row("memory_watts_per_gibibyte", params.memory_watts_per_gibibyte, None,
            _SOURCES["memory_watts_per_gibibyte"]),
        row("embodied_credit", EMBODIED_CREDIT[params.embodied_only_for_existing_servers],
            None, "conservative preset: no credit for servers that were never built"),
        row("overhead_namespaces", ", ".join(params.overhead_namespaces) or "none", None,
            "conservative preset: the platform's own pods are not demand"),
    ]


def data_sources(params: ModelParameters | None) -> list[dict[str, str]]:
    """Each built-in source with its vintage (the source strings carry dates and commits)."""
    curves = params.reference_servers if params is not None else tuple(
        c.SPECPOWER_RESULTS.values())
    rows = [{"data": f"reference server {curve.name}", "source": curve.source}
            for curve in curves]
    rows += [{"data": f"cloud power coefficients, {provider}", "source": coefficients.source}
             for provider, coefficients in sorted(c.CLOUD_LINEAR_COEFFICIENTS.items())]
    rows += [
        {"data": "grid intensity", "source": "per region: collector/model/coefficients.py "
         "GRID_INTENSITY_BY_REGION (each row names its table and year), or the hourly file "
         "given with --grid-intensity-file"},
        {"data": "node measurements", "source": "the kubecarbon agents' counters for the period "
         "(/proc/stat, cgroups, RAPL), read back from Prometheus"},
    ]
    return rows


def disclosure(params: ModelParameters | str, uncertainty: dict[str, Any],
               period: dict[str, Any], versions: list[str],
               sci: dict[str, Any]) -> dict[str, Any]:
    """The disclosure section; `params` is the reason when the assumptions are unknown."""
    known = not isinstance(params, str)
    return {
        "standards": list(STANDARDS),
        "statement": STATEMENT,
        "baseline_scenario": BASELINE_SCENARIO,
        "preset": params.preset if not isinstance(params, str) else None,
        "boundary": {"included": list(BOUNDARY_INCLUDED), "excluded": list(BOUNDARY_EXCLUDED)},
        "period": period,
        "data_sources": data_sources(params if not isinstance(params, str) else None),
        "assumptions": _assumption_rows(params) if not isinstance(params, str) else [],
        "assumptions_unknown_because": None if known else params,
        "method_version": METHOD_VERSION,
        "collector_versions": versions,
        "uncertainty": uncertainty,
        "sci": sci,
    }
