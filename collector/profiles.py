"""Node profiles and model overrides from the config file, and per-node profile resolution.

A profile says which power model applies to a node (provider, instance type or
an explicit curve), where its electricity comes from (region or an explicit grid
intensity) and the building around it (site or PUE). Precedence, field by field:
the first config rule that matches the node > the metadata provider (node labels)
> the config's `default_profile` > the model's built-in tables and defaults. A
node that ends up with neither a known cloud provider nor a power curve is priced
as a share of the reference server ("default" kind), and the collector counts it.

Config-file schema (documented with an example in docs/configuration.md):

    profiles:
      - match: {node: "rack7-*", labels: {"topology.kubernetes.io/zone": "east-a"}}
        provider: baremetal
        instance_type: r740
        region: china-east
        pue: 1.3
    default_profile: {region: china}
    model: {baseline_utilisation: 0.15}
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from collector.metadata import NodeInfo
from collector.model.coefficients import (
    SPECPOWER_RESULTS,
    SPECPOWER_UTILISATION_POINTS,
    LinearPowerCoefficients,
    PowerCurve,
    Range,
)
from collector.model.parameters import (
    PRESETS,
    ModelParameters,
    NodeProfile,
    UncertaintyRanges,
    make_profile,
)

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
REGION_LABEL = "topology.kubernetes.io/region"


@dataclass(frozen=True)
class ProfileFields:
    """Profile fields as written in one place; None means "not said here"."""

    provider: str | None = None  # aws, gcp, azure, alibaba, baremetal
    instance_type: str | None = None
    region: str | None = None  # key of the grid-intensity table, e.g. china-east, us-east-1
    site: str | None = None  # key of the PUE table: aws, gcp, azure, alibaba, onprem, ...
    pue: float | None = None  # beats site
    grid_intensity_grams_per_kilowatt_hour: float | None = None  # beats region
    watts_per_vcpu: LinearPowerCoefficients | None = None  # a cloud VM's own coefficients
    power_curve: PowerCurve | None = None  # a bare-metal server's own SPECpower curve

    def over(self, fallback: ProfileFields) -> ProfileFields:
        """These fields where set, the fallback's elsewhere."""
        values = {}
        for f in fields(self):
            mine = getattr(self, f.name)
            values[f.name] = mine if mine is not None else getattr(fallback, f.name)
        return ProfileFields(**values)

    def to_model(self) -> NodeProfile:
        """The model's profile; raises ValueError for e.g. an unknown site."""
        return make_profile(
            self.provider,
            self.region,
            self.instance_type,
            site=self.site,
            pue=self.pue,
            grid_intensity_grams_per_kilowatt_hour=self.grid_intensity_grams_per_kilowatt_hour,
            linear=self.watts_per_vcpu,
            curve=self.power_curve,
        )


@dataclass(frozen=True)
class ProfileRule:
    """Config rule: a node-name glob and/or an equality label selector (all must match)."""

    fields: ProfileFields
    node_pattern: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, node_name: str, node_labels: Mapping[str, str]) -> bool:
        if self.node_pattern is not None and not fnmatch.fnmatchcase(node_name, self.node_pattern):
            return False
        return all(node_labels.get(key) == value for key, value in self.labels.items())


@dataclass(frozen=True)
class ProfileConfig:
    """The structured part of the config file."""

    rules: tuple[ProfileRule, ...] = ()
    default: ProfileFields = field(default_factory=ProfileFields)
    model: ModelParameters = field(default_factory=ModelParameters)


@dataclass(frozen=True)
class ResolvedNode:
    """A node's model profile after precedence, and which layer decided its machine kind."""

    profile: NodeProfile
    source: str  # "config", "metadata" or "default"

    @property
    def on_default_profile(self) -> bool:
        return self.profile.kind == "default"


_PROFILE_KEYS = {f.name for f in fields(ProfileFields)}


def _number(raw: Mapping[str, Any], key: str, where: str, low: float, high: float) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}.{key}: expected a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{where}.{key}: must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _mapping(raw: object, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{where}.{sorted(map(str, unknown))[0]}: unknown key")
    return raw


def _power_curve(raw: object, where: str) -> PowerCurve:
    curve = _mapping(raw, where, {"name", "watts", "logical_cpus", "memory_gibibytes"})
    watts = curve.get("watts")
    points = len(SPECPOWER_UTILISATION_POINTS)
    if not isinstance(watts, list) or len(watts) != points:
        raise ValueError(f"{where}.watts: expected {points} numbers (0 %, 10 %, .., 100 % load)")
    for index, value in enumerate(watts):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}.watts[{index}]: expected a number, got {value!r}")
    cpus = curve.get("logical_cpus")
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus <= 0:
        raise ValueError(f"{where}.logical_cpus: expected a positive integer, got {cpus!r}")
    memory = _number(curve, "memory_gibibytes", where, 0.0, 1e6)
    try:
        return PowerCurve(
            name=str(curve.get("name", where)),
            watts=tuple(float(w) for w in watts),
            logical_cpus=cpus,
            source="config file",
            memory_gibibytes=0.0 if memory is None else memory,
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _profile_fields(raw: object, where: str) -> ProfileFields:
    profile = _mapping(raw, where, _PROFILE_KEYS | {"match"})
    values: dict[str, Any] = {}
    for key in ("provider", "instance_type", "region", "site"):
        value = profile.get(key)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}.{key}: expected a non-empty string, got {value!r}")
            values[key] = value
    values["pue"] = _number(profile, "pue", where, 1.0, 5.0)
    values["grid_intensity_grams_per_kilowatt_hour"] = _number(
        profile, "grid_intensity_grams_per_kilowatt_hour", where, 0.0, 5000.0
    )
    if profile.get("watts_per_vcpu") is not None:
        linear_where = f"{where}.watts_per_vcpu"
        linear = _mapping(profile["watts_per_vcpu"], linear_where, {"min", "max"})
        low = _number(linear, "min", linear_where, 0.0, 1000.0)
        high = _number(linear, "max", linear_where, 0.0, 1000.0)
        if low is None or high is None:
            raise ValueError(f"{linear_where}: needs both min and max")
        try:
            values["watts_per_vcpu"] = LinearPowerCoefficients(low, high, "config file")
        except ValueError as exc:
            raise ValueError(f"{linear_where}: {exc}") from None
    if profile.get("power_curve") is not None:
        values["power_curve"] = _power_curve(profile["power_curve"], f"{where}.power_curve")
        # a curve describes a whole server: a provider label from the cluster must not
        # turn the node back into a cloud VM
        values.setdefault("provider", "baremetal")
    result = ProfileFields(**values)
    try:
        result.to_model()  # unknown site, etc.: fail at start, naming the rule
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None
    return result


def _rule(raw: object, where: str) -> ProfileRule:
    profile = _profile_fields(raw, where)
    assert isinstance(raw, Mapping)  # _profile_fields checked it
    match = _mapping(raw.get("match"), f"{where}.match", {"node", "labels"})
    if not match:
        raise ValueError(f"{where}.match: needs node and/or labels")
    pattern = match.get("node")
    if pattern is not None and (not isinstance(pattern, str) or not pattern):
        raise ValueError(f"{where}.match.node: expected a node name or glob, got {pattern!r}")
    labels = match.get("labels", {})
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ValueError(f"{where}.match.labels: expected a mapping of strings to strings")
    return ProfileRule(fields=profile, node_pattern=pattern, labels=dict(labels))


_RANGE_KEYS = {f.name for f in fields(UncertaintyRanges)}
_MODEL_NUMBER_KEYS = {
    "baseline_utilisation": (0.001, 1.0),
    "baseline_pue": (1.0, 5.0),
    "rapl_platform_factor": (0.0, 10.0),
    "memory_watts_per_gibibyte": (0.0, 100.0),
    "embodied_kilograms_per_server": (0.0, 100_000.0),
    "server_lifetime_years": (0.1, 50.0),
}


def parse_model_overrides(raw: object, where: str = "model") -> ModelParameters:
    """`model:` section -> ModelParameters; ValueError names the key."""
    model = _mapping(raw, where, set(_MODEL_NUMBER_KEYS)
                     | {"reference_curve", "uncertainty", "preset", "overhead_namespaces",
                        "reference_alternatives"})
    values: dict[str, Any] = {}
    preset = model.get("preset", "default")
    if preset not in PRESETS:
        raise ValueError(f"{where}.preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    namespaces = model.get("overhead_namespaces")
    if namespaces is not None:
        if not isinstance(namespaces, list) or not all(
            isinstance(n, str) and n for n in namespaces
        ):
            raise ValueError(f"{where}.overhead_namespaces: expected a list of namespace names")
        values["overhead_namespaces"] = tuple(namespaces)
    alternatives = model.get("reference_alternatives")
    if alternatives is not None:
        if not isinstance(alternatives, list) or not all(
            isinstance(name, str) and name in SPECPOWER_RESULTS for name in alternatives
        ):
            raise ValueError(f"{where}.reference_alternatives: expected a list of built-in "
                             f"SPECpower results: {', '.join(SPECPOWER_RESULTS)}")
        values["reference_alternatives"] = tuple(SPECPOWER_RESULTS[n] for n in alternatives)
    for key, (low, high) in _MODEL_NUMBER_KEYS.items():
        number = _number(model, key, where, low, high)
        if number is not None:
            values[key] = number
    if model.get("reference_curve") is not None:
        values["reference_curve"] = _power_curve(
            model["reference_curve"], f"{where}.reference_curve"
        )
    if model.get("uncertainty") is not None:
        ranges_where = f"{where}.uncertainty"
        ranges = _mapping(model["uncertainty"], ranges_where, _RANGE_KEYS)
        parsed: dict[str, Range] = {}
        for key, pair in ranges.items():
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or any(isinstance(v, bool) or not isinstance(v, int | float) for v in pair)
            ):
                raise ValueError(f"{ranges_where}.{key}: expected [low, high]")
            try:
                parsed[key] = Range(float(pair[0]), float(pair[1]))
            except ValueError as exc:
                raise ValueError(f"{ranges_where}.{key}: {exc}") from None
        values["uncertainty"] = UncertaintyRanges(**parsed)
    try:
        if preset == "conservative":
            return ModelParameters.conservative(**values)
        return ModelParameters(**values)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def parse_profile_document(document: object) -> ProfileConfig:
    """The structured sections of an already-loaded config document; ValueError names the key."""
    if document is None:
        return ProfileConfig()
    if not isinstance(document, Mapping):
        raise ValueError("expected a YAML mapping at the top level")
    raw_rules = document.get("profiles")
    raw_rules = [] if raw_rules is None else raw_rules
    if not isinstance(raw_rules, list):
        raise ValueError("profiles: expected a list of rules")
    rules = tuple(_rule(raw, f"profiles[{index}]") for index, raw in enumerate(raw_rules))
    default = _profile_fields(document.get("default_profile") or {}, "default_profile")
    model = parse_model_overrides(document.get("model") or {})
    return ProfileConfig(rules=rules, default=default, model=model)


def parse_profile_config(path: Path) -> ProfileConfig:
    """Read the structured sections of the YAML config file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    return parse_profile_document(document)


def profile_from_node_info(info: NodeInfo) -> ProfileFields:
    """What the cluster says: explicit provider fields first, well-known labels second."""
    return ProfileFields(
        provider=info.provider,
        instance_type=info.instance_type or info.labels.get(INSTANCE_TYPE_LABEL),
        region=info.region or info.labels.get(REGION_LABEL),
    )


def resolve_node(config: ProfileConfig, node_name: str, node_info: NodeInfo | None) -> ResolvedNode:
    """Apply config > metadata > default precedence for one node."""
    labels: Mapping[str, str] = node_info.labels if node_info is not None else {}
    from_config = next(
        (rule.fields for rule in config.rules if rule.matches(node_name, labels)), ProfileFields()
    )
    from_metadata = profile_from_node_info(node_info) if node_info is not None else ProfileFields()
    merged = from_config.over(from_metadata).over(config.default)
    # cannot fail: metadata gives only provider, instance type and region, which the model
    # accepts whatever they are, and config values were checked at start
    profile = merged.to_model()
    if from_config.provider or from_config.power_curve or from_config.watts_per_vcpu:
        source = "config"
    elif from_metadata.provider or from_metadata.instance_type:
        source = "metadata"
    else:
        source = "default"
    return ResolvedNode(profile=profile, source=source)
