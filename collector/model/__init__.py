"""The estimation model: pure functions over numpy arrays (no I/O).

Typical use by the service, for a batch of accepted reports:

    profiles = ProfileArrays.from_profiles([make_profile("aws", "us-east-1"), ...])
    batch = WindowBatch(duration_seconds=..., logical_cpus=..., busy_seconds=...,
                        memory_total_bytes=..., rapl_joules=...)   # NaN: no RAPL
    estimate = estimate_windows(batch, profiles, params)          # per-window arrays
    pods = attribute_pods(batch, estimate, pod_window_index, pod_cpu_seconds)
    gauges = fleet_gauges(latest_batch, latest_estimate)          # one window per live node
    band = avoided_co2e_rate_quantiles(latest_batch, latest_estimate, params, seed=...)

docs/methodology.md gives every formula, default and source.
"""

from collector.model.attribution import PodAttribution, attribute_pods, group_totals
from collector.model.coefficients import (
    CLOUD_LINEAR_COEFFICIENTS,
    DEFAULT_GRID_INTENSITY,
    DEFAULT_PUE,
    GRID_INTENSITY_BY_REGION,
    PUE_BY_SITE,
    SPECPOWER_DELL_R740,
    GridIntensity,
    LinearPowerCoefficients,
    PowerCurve,
    Range,
)
from collector.model.curve import curve_watts_at
from collector.model.estimate import (
    POWER_SOURCES,
    WindowBatch,
    WindowEstimate,
    estimate_windows,
)
from collector.model.fleet import (
    AvoidedBand,
    FleetGauges,
    FleetTotals,
    Quantiles,
    avoided_band,
    avoided_co2e_point_grams,
    avoided_co2e_quantiles,
    avoided_co2e_rate_quantiles,
    avoided_rate_band,
    fleet_gauges,
)
from collector.model.parameters import (
    DEFAULT_PROFILE,
    NODE_KINDS,
    ModelParameters,
    NodeKind,
    NodeProfile,
    ProfileArrays,
    UncertaintyRanges,
    make_profile,
)

__all__ = [
    "CLOUD_LINEAR_COEFFICIENTS",
    "DEFAULT_GRID_INTENSITY",
    "DEFAULT_PROFILE",
    "DEFAULT_PUE",
    "GRID_INTENSITY_BY_REGION",
    "NODE_KINDS",
    "POWER_SOURCES",
    "PUE_BY_SITE",
    "SPECPOWER_DELL_R740",
    "AvoidedBand",
    "FleetGauges",
    "FleetTotals",
    "GridIntensity",
    "LinearPowerCoefficients",
    "ModelParameters",
    "NodeKind",
    "NodeProfile",
    "PodAttribution",
    "PowerCurve",
    "ProfileArrays",
    "Quantiles",
    "Range",
    "UncertaintyRanges",
    "WindowBatch",
    "WindowEstimate",
    "attribute_pods",
    "avoided_band",
    "avoided_co2e_point_grams",
    "avoided_co2e_quantiles",
    "avoided_co2e_rate_quantiles",
    "avoided_rate_band",
    "curve_watts_at",
    "estimate_windows",
    "fleet_gauges",
    "group_totals",
    "make_profile",
]
