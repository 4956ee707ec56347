"""Idle power shared by requests (collector/model/idle_by_requests.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.model import (
    ModelParameters,
    ProfileArrays,
    WindowBatch,
    attribute_pods,
    estimate_windows,
    make_profile,
)
from collector.model.idle_by_requests import idle_by_requests


def _estimate(windows: int, busy: float = 60.0):  # type: ignore[no-untyped-def]
    params = ModelParameters()
    batch = WindowBatch(
        duration_seconds=np.full(windows, 60.0), logical_cpus=np.full(windows, 4.0),
        busy_seconds=np.full(windows, busy), memory_total_bytes=np.full(windows, 16 * 2.0**30),
        rapl_joules=np.full(windows, np.nan))
    profiles = ProfileArrays.from_profiles([make_profile("aws", "us-east-1")] * windows, params)
    return batch, estimate_windows(batch, profiles, params)


def test_idle_is_split_by_requested_share_and_kept_when_nothing_is_requested() -> None:
    _, estimate = _estimate(2)
    idle = estimate.idle_energy_joules
    # window 0: pods requesting 1 and 3 cores get 1/4 and 3/4 of its idle energy;
    # window 1: its only pod requests nothing, so the node keeps the idle energy
    shares = idle_by_requests(estimate, [0, 0, 1], [1.0, 3.0, 0.0])
    assert shares.pod_idle_energy_joules.tolist() == pytest.approx(
        [idle[0] / 4, idle[0] * 3 / 4, 0.0])
    assert shares.unallocated_idle_energy_joules.tolist() == pytest.approx([0.0, idle[1]])
    grams_per_joule = estimate.operational_co2e_grams[0] / estimate.energy_joules[0]
    assert shares.pod_idle_operational_co2e_grams[0] == pytest.approx(
        idle[0] / 4 * grams_per_joule)


def test_bad_requests_are_refused() -> None:
    _, estimate = _estimate(1)
    with pytest.raises(ValueError, match="finite and >= 0"):
        idle_by_requests(estimate, [0], [-1.0])
    with pytest.raises(ValueError, match="one entry per pod"):
        idle_by_requests(estimate, [0, 0], [1.0])


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0.0, 8.0), st.floats(0.0, 30.0)),
                min_size=1, max_size=20))
def test_with_requests_pods_and_node_add_up_to_the_node_energy(
    pods: list[tuple[int, float, float]]
) -> None:
    batch, estimate = _estimate(3)
    index = np.array([p[0] for p in pods])
    requests = np.array([p[1] for p in pods])
    cpu = np.array([p[2] for p in pods])
    dynamic = attribute_pods(batch, estimate, index, cpu)
    idle = idle_by_requests(estimate, index, requests)
    allocated = dynamic.pod_energy_joules.sum() + idle.pod_idle_energy_joules.sum()
    kept = dynamic.unattributed_energy_joules.sum() + idle.unallocated_idle_energy_joules.sum()
    assert allocated + kept == pytest.approx(estimate.energy_joules.sum())
