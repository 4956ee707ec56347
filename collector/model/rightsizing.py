"""Rightsizing: recommended CPU requests, packing them onto the fleet's nodes, and the
servers, energy and CO2e a fleet that requested only that would avoid.

Pure functions over numpy arrays (no I/O). docs/methodology.md ("Where servers can still
be saved") gives the method, its limits and a worked example.

- A workload's recommendation is a high percentile of its observed CPU use (cores, summed
  over its pods) plus headroom: by default the 90th percentile plus 15 %, the target the
  Kubernetes Vertical Pod Autoscaler's recommender uses. Without enough history there is
  no recommendation (None), never a guess.
- The scheduler packs requests, not use. `nodes_needed` packs pod requests (CPU and
  memory) onto the fleet's real nodes, first fit decreasing, the largest nodes first.
- Avoidable nodes compare the same packing of today's requests and of the recommended
  ones, so that they measure rightsizing alone, not a better packing than the
  scheduler's; never negative.
- An avoided node saves its idle power (the work moves, so its dynamic power mostly
  moves with it) and its share of embodied emissions. The band draws the same
  parameters as the avoided-emissions band (collector/model/fleet.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.model import coefficients as c
from collector.model.fleet import Draws, Quantiles
from collector.model.parameters import ModelParameters

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

HOURS_PER_YEAR = c.SECONDS_PER_YEAR / c.SECONDS_PER_HOUR


@dataclass(frozen=True)
class RecommendationPolicy:
    """How a recommendation is drawn from history (defaults: the VPA recommender's target)."""

    percentile: float = 90.0  # of the workload's usage samples
    headroom: float = 0.15  # added on top, for spikes between samples and growth
    min_samples: int = 144  # below this (24 h of 10-minute samples): "not enough history"

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile: must be in (0, 100], got {self.percentile}")
        if not 0 <= self.headroom < float("inf"):
            raise ValueError(f"headroom: must be finite and >= 0, got {self.headroom}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples: must be >= 1, got {self.min_samples}")


def recommend_cores(samples: npt.ArrayLike, policy: RecommendationPolicy | None = None
                    ) -> float | None:
    """Recommended CPU request (cores) of one workload from its usage samples; None without
    enough of them. Never above the peak sample times (1 + headroom)."""
    policy = policy or RecommendationPolicy()
    values = np.asarray(samples, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < policy.min_samples:
        return None
    percentile = float(np.percentile(values, policy.percentile, method="linear"))
    return max(percentile, 0.0) * (1.0 + policy.headroom)


@dataclass(frozen=True)
class Packing:
    """Which nodes a set of requests occupies once packed."""

    used: BoolArray  # per node, in the caller's order
    unplaced: int  # pods larger than any node's free room: each counted as one more node
    node_of_pod: npt.NDArray[np.intp]  # node index per pod; -1: unplaced or requests nothing

    @property
    def nodes(self) -> int:
        return int(self.used.sum()) + self.unplaced


def nodes_needed(
    pod_cpu: npt.ArrayLike,
    pod_memory: npt.ArrayLike,
    node_cpu: npt.ArrayLike,
    node_memory: npt.ArrayLike,
) -> Packing:
    """First fit decreasing of pods (CPU cores, memory bytes) onto nodes (allocatable room).

    Nodes are tried largest first (by CPU, then memory, then their order): a pod goes to
    the first open node with room, else opens the first node that fits it; pods are placed
    largest first by their larger share of the largest node. Pods that request nothing
    take no room. One vectorised scan of the nodes per pod.
    """
    cpu = np.asarray(pod_cpu, dtype=np.float64)
    memory = np.asarray(pod_memory, dtype=np.float64)
    room_cpu = np.asarray(node_cpu, dtype=np.float64).copy()
    room_memory = np.asarray(node_memory, dtype=np.float64).copy()
    if cpu.shape != memory.shape or room_cpu.shape != room_memory.shape:
        raise ValueError("pod and node arrays must pair up (cpu with memory)")
    used = np.zeros(room_cpu.shape, dtype=np.bool_)
    node_of_pod = np.full(cpu.shape, -1, dtype=np.intp)
    if room_cpu.size == 0:
        return Packing(used, int(np.count_nonzero((cpu > 0) | (memory > 0))), node_of_pod)
    node_order = np.lexsort((np.arange(room_cpu.size), -room_memory, -room_cpu))
    scale_cpu = max(float(room_cpu.max()), 1e-12)
    scale_memory = max(float(room_memory.max()), 1.0)
    size = np.maximum(cpu / scale_cpu, memory / scale_memory)
    # rooms and the used flag in node order: each pod is one vectorised scan of them
    free_cpu, free_memory = room_cpu[node_order], room_memory[node_order]
    open_ = np.zeros(room_cpu.shape, dtype=np.bool_)
    unplaced = 0
    for k in np.argsort(-size, kind="stable").tolist():
        need_cpu, need_memory = float(cpu[k]), float(memory[k])
        if need_cpu <= 0 and need_memory <= 0:
            continue
        fits = (free_cpu >= need_cpu) & (free_memory >= need_memory)
        candidates = fits & open_
        slot = int(candidates.argmax())
        if not candidates[slot]:  # no open node has room: open the first one that fits
            slot = int(fits.argmax())
            if not fits[slot]:
                unplaced += 1
                continue
            open_[slot] = True
        free_cpu[slot] -= need_cpu
        free_memory[slot] -= need_memory
        node_of_pod[k] = node_order[slot]
    used[node_order] = open_
    return Packing(used, unplaced, node_of_pod)


@dataclass(frozen=True)
class AvoidableNodes:
    nodes: int  # >= 0
    # the nodes counted as avoided: those of today's packing with the least idle power
    avoided: BoolArray


def avoidable_nodes(today: Packing, recommended: Packing, node_idle_watts: npt.ArrayLike
                    ) -> AvoidableNodes:
    """How many nodes rightsizing frees, and which ones are costed.

    The count is today's packing minus the recommended one, never below 0. Which nodes
    would empty is the scheduler's business; costing the ones that idle cheapest keeps
    the savings on the low side.
    """
    idle = np.asarray(node_idle_watts, dtype=np.float64)
    count = max(today.nodes - recommended.nodes, 0)
    candidates = np.flatnonzero(today.used)
    cheapest = candidates[np.argsort(idle[candidates], kind="stable")[:count]]
    avoided = np.zeros(idle.shape, dtype=np.bool_)
    avoided[cheapest] = True
    return AvoidableNodes(count, avoided)


@dataclass(frozen=True)
class YearlySavings:
    """What the avoided nodes would save in a year at today's rates."""

    nodes: int
    it_energy_kilowatt_hours: float  # idle IT energy of the avoided nodes
    co2e_tonnes: float  # point estimate: operational (IT x PUE x intensity) + embodied
    co2e_tonnes_band: Quantiles  # p05 / p50 / p95 over the model's uncertainty ranges


def _yearly_grams(idle_watts: FloatArray, grams_per_joule: FloatArray, servers: float,
                  curve_multiplier: FloatArray, pue_multiplier: FloatArray,
                  intensity_multiplier: FloatArray, embodied_kilograms: FloatArray,
                  lifetime_years: FloatArray) -> FloatArray:
    seconds = c.SECONDS_PER_YEAR
    operational = (float(np.sum(idle_watts * grams_per_joule)) * seconds
                   * curve_multiplier * pue_multiplier * intensity_multiplier)
    embodied = servers * embodied_kilograms * 1000.0 / lifetime_years
    result: FloatArray = operational + embodied
    return result


def yearly_savings(
    idle_watts: npt.ArrayLike,
    pue: npt.ArrayLike,
    grid_intensity_grams_per_kilowatt_hour: npt.ArrayLike,
    logical_cpus: npt.ArrayLike,
    params: ModelParameters | None = None,
    draws: int = 1000,
    seed: int | np.random.Generator | None = 0,
) -> YearlySavings:
    """Yearly savings of the avoided nodes (one entry per node: idle IT watts, PUE, intensity,
    logical CPUs). Embodied emissions count each node as its share of the reference
    server's logical CPUs, as the actual fleet's servers are counted.

    Each draw takes the power-curve, PUE and intensity multipliers, the embodied
    kilograms and the lifetime uniformly from ModelParameters.uncertainty, the same for
    every node (as the avoided-emissions band does).
    """
    params = params or ModelParameters()
    watts = np.asarray(idle_watts, dtype=np.float64)
    grams_per_joule = (np.asarray(pue, dtype=np.float64)
                       * np.asarray(grid_intensity_grams_per_kilowatt_hour, dtype=np.float64)
                       / c.JOULES_PER_KILOWATT_HOUR)
    servers = float(np.sum(np.asarray(logical_cpus, dtype=np.float64))
                    / params.reference_curve.logical_cpus)
    one = np.ones(1)
    point = _yearly_grams(watts, grams_per_joule, servers, one, one, one,
                          one * params.embodied_kilograms_per_server,
                          one * params.server_lifetime_years)[0]
    # the avoided nodes are the actual fleet's hardware: its own curve multiplier
    d = Draws.sample(params, draws, seed)
    samples = _yearly_grams(
        watts, grams_per_joule, servers, d.fleet_curve_multiplier, d.pue_multiplier,
        d.intensity_multiplier, d.embodied_kilograms, d.lifetime_years)
    p05, p50, p95 = (float(q) / 1e6 for q in np.quantile(samples, [0.05, 0.5, 0.95]))
    return YearlySavings(
        nodes=int(watts.size),
        it_energy_kilowatt_hours=float(watts.sum()) * HOURS_PER_YEAR / 1000.0,
        co2e_tonnes=float(point) / 1e6,
        co2e_tonnes_band=Quantiles(p05, p50, p95),
    )
