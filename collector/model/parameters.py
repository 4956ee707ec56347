"""Model parameters (global assumptions) and node profiles (what one node is)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from collector.model import coefficients as c
from collector.model.coefficients import Range
from collector.model.curve import curve_watts_at

FloatArray = npt.NDArray[np.float64]
NodeKind = Literal["cloud", "baremetal", "default"]
# Integer codes used in the per-element arrays; index into NODE_KINDS.
NODE_KINDS: tuple[NodeKind, ...] = ("cloud", "baremetal", "default")
KIND_CLOUD, KIND_BAREMETAL, KIND_DEFAULT = 0, 1, 2


@dataclass(frozen=True)
class UncertaintyRanges:
    """How far each assumption may be off (DESIGN, "Uncertainty").

    Multipliers scale the point value; the others replace it.
    """

    baseline_utilisation: Range = Range(0.12, 0.18)  # NRDC 2014: 12-18 %
    pue_multiplier: Range = Range(0.9, 1.1)
    # drawn twice per draw: once for the baseline's reference server, once for the
    # fleet's curve-modelled nodes (different hardware, independent errors)
    power_curve_multiplier: Range = Range(0.85, 1.15)
    cloud_power_multiplier: Range = c.CLOUD_POWER_MULTIPLIER_RANGE
    rapl_platform_factor: Range = c.RAPL_PLATFORM_FACTOR_RANGE
    grid_intensity_multiplier: Range = Range(0.9, 1.1)
    embodied_kilograms_per_server: Range = Range(500.0, 2100.0)
    server_lifetime_years: Range = Range(4.0, 6.0)


PRESETS = ("default", "conservative")
# The high end of NRDC's 12-18 %: the fewest baseline servers the source allows.
CONSERVATIVE_BASELINE_UTILISATION = 0.18
# kube-system and kubecarbon's own namespace: the platform's overhead, not the work.
CONSERVATIVE_OVERHEAD_NAMESPACES = ("kube-system", "kubecarbon")


@dataclass(frozen=True)
class ModelParameters:
    """Global assumptions; every field has the documented default and can be overridden."""

    reference_curve: c.PowerCurve = c.SPECPOWER_DELL_R740  # the baseline's server
    baseline_utilisation: float = c.BASELINE_UTILISATION  # u_b
    # None: each node's own PUE, so only elasticity is credited, not a better building.
    baseline_pue: float | None = None
    rapl_platform_factor: float = c.RAPL_PLATFORM_FACTOR
    memory_watts_per_gibibyte: float = c.MEMORY_WATTS_PER_GIBIBYTE
    embodied_kilograms_per_server: float = c.EMBODIED_KILOGRAMS_PER_SERVER
    server_lifetime_years: float = c.SERVER_LIFETIME_YEARS
    uncertainty: UncertaintyRanges = field(default_factory=UncertaintyRanges)
    # Real published results the band also draws the reference server from (its size
    # sets the avoided servers); the point estimate uses reference_curve. Empty by
    # default: two real servers make a two-humped band whose median jumps between seeds
    # (docs/methodology.md, section 8), so the reference is a stated scenario choice.
    reference_alternatives: tuple[c.PowerCurve, ...] = ()
    # Conservative: no embodied credit for baseline servers that were never built, only
    # the embodied carbon of servers that exist (a fleet larger than its baseline).
    embodied_only_for_existing_servers: bool = False
    # Namespaces whose pods' CPU is the platform's own overhead, left out of the demand
    # the baseline is sized for (empty: all CPU counts).
    overhead_namespaces: tuple[str, ...] = ()
    preset: str = "default"  # which preset the values came from, for model_info

    @classmethod
    def conservative(cls, **overrides: Any) -> ModelParameters:
        """The preset that leans against overstating (docs/methodology.md, section 10)."""
        values: dict[str, Any] = {
            "baseline_utilisation": CONSERVATIVE_BASELINE_UTILISATION,
            "embodied_only_for_existing_servers": True,
            "overhead_namespaces": CONSERVATIVE_OVERHEAD_NAMESPACES,
            "preset": "conservative",
        }
        values.update(overrides)
        return cls(**values)

    @property
    def reference_servers(self) -> tuple[c.PowerCurve, ...]:
        """The curves the band draws the reference from: the point one first, no repeats."""
        return tuple(dict.fromkeys((self.reference_curve, *self.reference_alternatives)))

    def credited_server_seconds(self, avoided_server_seconds: FloatArray) -> FloatArray:
        """Avoided server-seconds whose embodied carbon counts (all, or only real servers)."""
        if self.embodied_only_for_existing_servers:
            return np.minimum(avoided_server_seconds, 0.0)
        return avoided_server_seconds

    @property
    def baseline_server_watts(self) -> float:
        """Power of one baseline server: the reference curve at u_b (one home for this rule)."""
        return float(curve_watts_at(self.reference_curve.watts, self.baseline_utilisation))

    def __post_init__(self) -> None:
        if not 0 < self.baseline_utilisation <= 1:
            raise ValueError(
                f"baseline_utilisation: must be in (0, 1], got {self.baseline_utilisation}"
            )
        if self.preset not in PRESETS:
            raise ValueError(f"preset: must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.baseline_pue is not None and not self.baseline_pue >= 1:
            raise ValueError(f"baseline_pue: must be >= 1, got {self.baseline_pue}")
        for name in (
            "rapl_platform_factor",
            "memory_watts_per_gibibyte",
            "embodied_kilograms_per_server",
        ):
            value = getattr(self, name)
            if not 0 <= value < float("inf"):
                raise ValueError(f"{name}: must be finite and >= 0, got {value}")
        if not 0 < self.server_lifetime_years < float("inf"):
            raise ValueError(
                f"server_lifetime_years: must be > 0, got {self.server_lifetime_years}"
            )
        # A point value outside its own uncertainty range is almost surely a config slip.
        checked = ("baseline_utilisation", "embodied_kilograms_per_server", "server_lifetime_years")
        for name in checked:
            value, interval = getattr(self, name), getattr(self.uncertainty, name)
            if not interval.low <= value <= interval.high:
                raise ValueError(
                    f"{name}: {value} lies outside its uncertainty range "
                    f"[{interval.low}, {interval.high}]; change both together"
                )
        ranges = self.uncertainty
        if ranges.baseline_utilisation.low <= 0 or ranges.server_lifetime_years.low <= 0:
            raise ValueError("uncertainty: baseline_utilisation and lifetime ranges must be > 0")


@dataclass(frozen=True)
class NodeProfile:
    """What one node is, as far as power and carbon go.

    kind "cloud" uses `linear` (per-vCPU watts) plus memory; "baremetal" uses `curve`
    (the whole server); "default" (an unknown node) uses the reference curve scaled by
    the node's share of the reference server's logical CPUs.
    """

    provider: str
    region: str
    kind: NodeKind
    pue: float
    grid_intensity_grams_per_kilowatt_hour: float
    instance_type: str = ""
    linear: c.LinearPowerCoefficients | None = None
    curve: c.PowerCurve | None = None
    # "config" (given explicitly), "table" (built-in table) or "default" (region unknown)
    grid_intensity_source: str = "table"

    def __post_init__(self) -> None:
        if self.kind not in NODE_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(NODE_KINDS)}, got {self.kind!r}")
        if self.kind == "cloud" and self.linear is None:
            raise ValueError("a cloud profile needs linear power coefficients")
        if self.kind == "baremetal" and self.curve is None:
            raise ValueError("a baremetal profile needs a power curve")
        if not 1 <= self.pue < float("inf"):
            raise ValueError(f"pue: must be finite and >= 1, got {self.pue}")
        if not 0 <= self.grid_intensity_grams_per_kilowatt_hour < float("inf"):
            raise ValueError(
                "grid_intensity_grams_per_kilowatt_hour: must be finite and >= 0, "
                f"got {self.grid_intensity_grams_per_kilowatt_hour}"
            )


def make_profile(
    provider: str | None = None,
    region: str | None = None,
    instance_type: str | None = None,
    *,
    kind: NodeKind | None = None,
    site: str | None = None,
    pue: float | None = None,
    grid_intensity_grams_per_kilowatt_hour: float | None = None,
    linear: c.LinearPowerCoefficients | None = None,
    curve: c.PowerCurve | None = None,
) -> NodeProfile:
    """Build a profile from what is known; explicit values beat the built-in tables.

    kind: given, else "cloud" for a provider in CLOUD_LINEAR_COEFFICIENTS (or when
    `linear` is given), "baremetal" when a `curve` is given or provider is "baremetal",
    else "default". PUE: `pue`, else PUE_BY_SITE[site], else PUE_BY_PROVIDER_REGION
    [provider, region], else PUE_BY_SITE[provider], else DEFAULT_PUE.
    Intensity: given, else GRID_INTENSITY_BY_REGION[region], else DEFAULT_GRID_INTENSITY.
    Raises ValueError for an unknown `site` or a cloud kind without coefficients.
    """
    provider_key = (provider or "").lower()
    if kind is None:
        if linear is not None or provider_key in c.CLOUD_LINEAR_COEFFICIENTS:
            kind = "cloud"
        elif curve is not None or provider_key == "baremetal":
            kind = "baremetal"
        else:
            kind = "default"
    if kind == "cloud" and linear is None:
        linear = c.CLOUD_LINEAR_COEFFICIENTS.get(provider_key)
        if linear is None:
            raise ValueError(
                f"provider: no built-in power coefficients for {provider!r}; known: "
                f"{', '.join(sorted(c.CLOUD_LINEAR_COEFFICIENTS))} (or give min/max watts)"
            )
    if kind == "baremetal" and curve is None:
        curve = c.SPECPOWER_DELL_R740
    if pue is None:
        if site is not None:
            if site not in c.PUE_BY_SITE:
                raise ValueError(
                    f"site: unknown {site!r}; known: {', '.join(sorted(c.PUE_BY_SITE))}"
                )
            pue = c.PUE_BY_SITE[site]
        else:
            provider_pue = c.PUE_BY_SITE.get(provider_key, c.DEFAULT_PUE)
            pue = c.PUE_BY_PROVIDER_REGION.get((provider_key, region or ""), provider_pue)
    region_name = region or ""
    if grid_intensity_grams_per_kilowatt_hour is not None:
        intensity, intensity_source = grid_intensity_grams_per_kilowatt_hour, "config"
    elif region_name in c.GRID_INTENSITY_BY_REGION:
        intensity = c.GRID_INTENSITY_BY_REGION[region_name].grams_per_kilowatt_hour
        intensity_source = "table"
    else:
        intensity = c.DEFAULT_GRID_INTENSITY.grams_per_kilowatt_hour
        intensity_source = "default"
    return NodeProfile(
        provider=provider_key or "unknown",
        region=region_name,
        kind=kind,
        pue=pue,
        grid_intensity_grams_per_kilowatt_hour=intensity,
        instance_type=instance_type or "",
        linear=linear if kind == "cloud" else None,
        curve=curve if kind == "baremetal" else None,
        grid_intensity_source=intensity_source,
    )


DEFAULT_PROFILE = make_profile()

IntArray = npt.NDArray[np.int8]


@dataclass(frozen=True)
class ProfileArrays:
    """Per-element profile parameters, aligned with a `WindowBatch` (one row per report).

    Build it with `from_profiles`; `curve_watts` holds each element's 11-point curve
    (the reference curve for default-kind elements, zeros for cloud ones).
    """

    kind: IntArray  # KIND_CLOUD / KIND_BAREMETAL / KIND_DEFAULT
    min_watts_per_vcpu: FloatArray
    max_watts_per_vcpu: FloatArray
    curve_watts: FloatArray  # shape (n, 11)
    curve_logical_cpus: FloatArray  # the curve's own server size
    pue: FloatArray
    grid_intensity_grams_per_kilowatt_hour: FloatArray

    def __post_init__(self) -> None:
        n = int(np.shape(self.kind)[0])
        for name in (
            "min_watts_per_vcpu",
            "max_watts_per_vcpu",
            "curve_logical_cpus",
            "pue",
            "grid_intensity_grams_per_kilowatt_hour",
        ):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name}: shape {np.shape(getattr(self, name))}, expected ({n},)")
        points = len(c.SPECPOWER_UTILISATION_POINTS)
        if np.shape(self.curve_watts) != (n, points):
            raise ValueError(
                f"curve_watts: shape {np.shape(self.curve_watts)}, expected ({n}, {points})"
            )
        kinds = np.asarray(self.kind)
        if ((kinds < KIND_CLOUD) | (kinds > KIND_DEFAULT)).any():
            raise ValueError(f"kind: codes must be {KIND_CLOUD}..{KIND_DEFAULT}")
        if not (np.asarray(self.curve_logical_cpus) > 0).all():
            raise ValueError("curve_logical_cpus: must be > 0")

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @classmethod
    def from_profiles(
        cls, profiles: Sequence[NodeProfile], params: ModelParameters | None = None
    ) -> ProfileArrays:
        params = params or ModelParameters()
        n = len(profiles)
        kind = np.empty(n, dtype=np.int8)
        min_w = np.zeros(n)
        max_w = np.zeros(n)
        curve_watts = np.zeros((n, len(c.SPECPOWER_UTILISATION_POINTS)))
        curve_cpus = np.ones(n)
        pue = np.empty(n)
        intensity = np.empty(n)
        # Profiles repeat across a fleet; convert each distinct curve once.
        curve_rows: dict[c.PowerCurve, FloatArray] = {}
        for i, profile in enumerate(profiles):
            kind[i] = NODE_KINDS.index(profile.kind)
            pue[i] = profile.pue
            intensity[i] = profile.grid_intensity_grams_per_kilowatt_hour
            if profile.linear is not None and profile.kind == "cloud":
                min_w[i] = profile.linear.min_watts_per_vcpu
                max_w[i] = profile.linear.max_watts_per_vcpu
                continue
            curve = profile.curve if profile.kind == "baremetal" else params.reference_curve
            assert curve is not None  # NodeProfile.__post_init__ guarantees it
            row = curve_rows.get(curve)
            if row is None:
                row = curve_rows[curve] = np.asarray(curve.watts, dtype=np.float64)
            curve_watts[i] = row
            curve_cpus[i] = curve.logical_cpus
        return cls(kind, min_w, max_w, curve_watts, curve_cpus, pue, intensity)

    @classmethod
    def repeat(
        cls, profile: NodeProfile, count: int, params: ModelParameters | None = None
    ) -> ProfileArrays:
        """`count` elements with the same profile (a homogeneous fleet, or a benchmark)."""
        one = cls.from_profiles([profile], params)
        return cls(
            kind=np.repeat(one.kind, count),
            min_watts_per_vcpu=np.repeat(one.min_watts_per_vcpu, count),
            max_watts_per_vcpu=np.repeat(one.max_watts_per_vcpu, count),
            curve_watts=np.repeat(one.curve_watts, count, axis=0),
            curve_logical_cpus=np.repeat(one.curve_logical_cpus, count),
            pue=np.repeat(one.pue, count),
            grid_intensity_grams_per_kilowatt_hour=np.repeat(
                one.grid_intensity_grams_per_kilowatt_hour, count
            ),
        )
