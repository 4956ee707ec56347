"""Split each window's dynamic energy over its pods by CPU share; idle stays with the node.

For window w with dynamic energy D (energy above the idle part), busy core-seconds B and
pods p with CPU seconds s_p, a pod gets  D * s_p / max(B, sum_p s_p).

- sum_p s_p <= B (the usual case): the rest, D * (B - sum_p s_p) / B, is CPU used outside
  pods (kernel, kubelet, system daemons) and is reported as the node's unattributed energy.
- sum_p s_p > B: cgroup and /proc counters are read a few microseconds apart, so pods can
  add up to slightly more than the node; the pods then share D in proportion and nothing
  is left unattributed, so no pod is ever charged energy the node did not use.
- B == 0 and no pod CPU: nothing to split; with a power model D is 0 anyway.

So for every window:  sum(pod energy) + unattributed + idle == node energy (to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.model.estimate import WindowBatch, WindowEstimate

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PodAttribution:
    pod_energy_joules: FloatArray  # IT energy, one per pod row
    pod_operational_co2e_grams: FloatArray  # same share of the window's operational CO2e
    unattributed_energy_joules: FloatArray  # per window: dynamic energy of non-pod CPU use
    idle_energy_joules: FloatArray  # per window, from the estimate, never attributed


def attribute_pods(
    batch: WindowBatch,
    estimate: WindowEstimate,
    pod_window_index: npt.ArrayLike,
    pod_cpu_seconds: npt.ArrayLike,
) -> PodAttribution:
    """Attribute each window's dynamic energy to its pods.

    pod_window_index[k] is the window (element of batch/estimate) pod row k ran in;
    pod_cpu_seconds[k] is its CPU time in that window. Raises ValueError for an index
    out of range or a CPU time that is negative or not finite.
    """
    n = len(batch)
    if len(estimate) != n:
        raise ValueError(f"estimate: {len(estimate)} elements for a batch of {n}")
    index = np.asarray(pod_window_index)
    cpu = np.asarray(pod_cpu_seconds, dtype=np.float64)
    if index.ndim != 1 or cpu.shape != index.shape:
        raise ValueError(
            f"pod_window_index and pod_cpu_seconds: need equal 1-d shapes, "
            f"got {index.shape} and {cpu.shape}"
        )
    if index.size and (
        not np.issubdtype(index.dtype, np.integer) or index.min() < 0 or index.max() >= n
    ):
        raise ValueError(f"pod_window_index: must be integers in 0..{n - 1}")
    bad = ~(np.isfinite(cpu) & (cpu >= 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"pod_cpu_seconds[{k}]: must be finite and >= 0, got {cpu[k]}")

    pod_cpu_per_window = np.bincount(index, weights=cpu, minlength=n)
    denominator = np.maximum(batch.busy_seconds, pod_cpu_per_window)
    dynamic = estimate.dynamic_energy_joules
    with np.errstate(divide="ignore", invalid="ignore"):
        joules_per_cpu_second = np.where(denominator > 0, dynamic / denominator, 0.0)
        # operational CO2e is proportional to energy within one window
        grams_per_joule = np.where(
            estimate.energy_joules > 0,
            estimate.operational_co2e_grams / estimate.energy_joules,
            0.0,
        )
    pod_energy = cpu * joules_per_cpu_second[index]
    attributed = pod_cpu_per_window * joules_per_cpu_second
    # nothing to split when the window had no CPU use at all: keep D with the node
    unattributed = dynamic - attributed
    return PodAttribution(
        pod_energy_joules=pod_energy,
        pod_operational_co2e_grams=pod_energy * grams_per_joule[index],
        unattributed_energy_joules=unattributed,
        idle_energy_joules=estimate.idle_energy_joules,
    )


def group_totals(values: npt.ArrayLike, group_codes: npt.ArrayLike, group_count: int) -> FloatArray:
    """Sum values by group (e.g. pods by namespace code 0..group_count-1)."""
    codes = np.asarray(group_codes)
    if codes.size and (codes.min() < 0 or codes.max() >= group_count):
        raise ValueError(f"group_codes: must be in 0..{group_count - 1}")
    weights = np.asarray(values, dtype=np.float64)
    totals: FloatArray = np.bincount(codes, weights=weights, minlength=group_count).astype(
        np.float64
    )
    return totals
