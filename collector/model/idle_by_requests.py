"""Idle power shared by requests: the optional full allocation (--idle-attribution requests).

By default (section 5 of docs/methodology.md) only dynamic power is split over pods, by
CPU use, and idle power stays with the node. Cost tools allocate a node's whole cost by
requested share; with this option the idle energy of each window is split the same
way, over the window's pods in proportion to their effective CPU requests, and its
operational CO2e with it. A window whose pods request nothing keeps its idle energy.
Pure: numpy arrays in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.model.estimate import WindowEstimate

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class IdleShares:
    pod_idle_energy_joules: FloatArray  # one per pod row
    pod_idle_operational_co2e_grams: FloatArray
    unallocated_idle_energy_joules: FloatArray  # one per window: its pods request nothing


def idle_by_requests(estimate: WindowEstimate, pod_window_index: npt.ArrayLike,
                     pod_cpu_request_cores: npt.ArrayLike) -> IdleShares:
    """Each window's idle energy over its pod rows, by requested CPU share."""
    index = np.asarray(pod_window_index, dtype=np.intp)
    requests = np.asarray(pod_cpu_request_cores, dtype=np.float64)
    if index.shape != requests.shape:
        raise ValueError("pod_window_index and pod_cpu_request_cores must have one entry per pod")
    if (~np.isfinite(requests) | (requests < 0)).any():
        raise ValueError("pod_cpu_request_cores: must be finite and >= 0")
    windows = len(estimate)
    requested = np.bincount(index, weights=requests, minlength=windows)
    idle = estimate.idle_energy_joules
    with np.errstate(divide="ignore", invalid="ignore"):
        # share first, then energy: a tiny request over a tiny total stays finite
        share = np.where(requested[index] > 0, requests / requested[index], 0.0)
        grams_per_joule = np.where(estimate.energy_joules > 0,
                                   estimate.operational_co2e_grams / estimate.energy_joules, 0.0)
    pod_idle = share * idle[index]
    return IdleShares(
        pod_idle_energy_joules=pod_idle,
        pod_idle_operational_co2e_grams=pod_idle * grams_per_joule[index],
        unallocated_idle_energy_joules=np.where(requested > 0, 0.0, idle),
    )
