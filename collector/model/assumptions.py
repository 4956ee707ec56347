"""ModelParameters as label values and back: kubecarbon_model_info and _uncertainty_info.

The collector publishes its assumptions with these labels; `kubecarbon report` reads
them back to recompute a period's band with the ranges the collector used. One home
for the encoding, so the two sides cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

from collector.model import coefficients as c
from collector.model.parameters import ModelParameters, UncertaintyRanges

EMBODIED_CREDIT = {False: "all_avoided", True: "existing_servers_only"}


def model_info_labels(params: ModelParameters) -> tuple[str, ...]:
    """Label values in the order of the model_info catalogue entry."""
    return (
        params.preset,
        params.reference_curve.name,
        ",".join(curve.name for curve in params.reference_servers),
        repr(params.baseline_utilisation),
        "node" if params.baseline_pue is None else repr(params.baseline_pue),
        repr(params.embodied_kilograms_per_server),
        repr(params.server_lifetime_years),
        EMBODIED_CREDIT[params.embodied_only_for_existing_servers],
        ",".join(params.overhead_namespaces),
        repr(params.rapl_platform_factor),
        repr(params.memory_watts_per_gibibyte),
    )


def uncertainty_ranges(params: ModelParameters) -> Iterator[tuple[str, c.Range]]:
    """(parameter, range) for every field of UncertaintyRanges, in declaration order."""
    for item in dataclasses.fields(UncertaintyRanges):
        yield item.name, getattr(params.uncertainty, item.name)


def parameters_from_labels(
    info: Mapping[str, str], ranges: Mapping[str, tuple[str, str]]
) -> ModelParameters:
    """The parameters a collector published; ValueError when they cannot be rebuilt.

    `info`: the model_info labels; `ranges`: parameter -> (low, high) label values of
    model_uncertainty_info (a parameter missing there keeps its default range, which
    is what collectors older than that metric used).
    """
    try:
        curves = [c.SPECPOWER_RESULTS[name] for name in info["reference_servers"].split(",")]
        reference = c.SPECPOWER_RESULTS[info["reference_server"]]
    except KeyError as exc:
        raise ValueError(f"reference server {exc} is not a built-in SPECpower result") from None
    if info.get("baseline_pue", "node") != "node":
        baseline_pue: float | None = float(info["baseline_pue"])
    else:
        baseline_pue = None
    credit = {label: flag for flag, label in EMBODIED_CREDIT.items()}
    bounds = {
        name: c.Range(float(low), float(high)) for name, (low, high) in ranges.items()
        if name in {item.name for item in dataclasses.fields(UncertaintyRanges)}
    }
    try:
        return ModelParameters(
            reference_curve=reference,
            reference_alternatives=tuple(curve for curve in curves if curve != reference),
            baseline_utilisation=float(info["baseline_utilisation"]),
            baseline_pue=baseline_pue,
            embodied_kilograms_per_server=float(info["embodied_kilograms_per_server"]),
            server_lifetime_years=float(info["server_lifetime_years"]),
            embodied_only_for_existing_servers=credit[info["embodied_credit"]],
            # Prometheus drops empty labels: no overhead_namespaces label means none
            overhead_namespaces=tuple(
                n for n in info.get("overhead_namespaces", "").split(",") if n),
            rapl_platform_factor=float(info["rapl_platform_factor"]),
            memory_watts_per_gibibyte=float(info["memory_watts_per_gibibyte"]),
            preset=info["preset"],
            uncertainty=UncertaintyRanges(**bounds),
        )
    except KeyError as exc:
        raise ValueError(f"model_info has no label {exc}") from None
