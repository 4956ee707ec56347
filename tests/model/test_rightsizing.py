"""Rightsizing (collector/model/rightsizing.py): exact numbers on hand-computed fleets,
and the properties every fleet must keep."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.model.parameters import ModelParameters
from collector.model.rightsizing import (
    Packing,
    RecommendationPolicy,
    avoidable_nodes,
    nodes_needed,
    recommend_cores,
    yearly_savings,
)

GI = 2.0**30


def test_recommendation_is_the_percentile_plus_headroom() -> None:
    samples = np.arange(1.0, 11.0)  # 1..10 cores
    # linear p90 of 1..10: 9 + 0.1 * (10 - 9) = 9.1; plus 15 %: 10.465
    policy = RecommendationPolicy(percentile=90, headroom=0.15, min_samples=10)
    assert recommend_cores(samples, policy) == pytest.approx(10.465)
    assert recommend_cores(samples, RecommendationPolicy(50, 0.0, 10)) == pytest.approx(5.5)


def test_no_recommendation_without_enough_history() -> None:
    policy = RecommendationPolicy(min_samples=11)
    assert recommend_cores(np.arange(1.0, 11.0), policy) is None
    # NaN samples are not history
    assert recommend_cores([1.0] * 10 + [float("nan")], policy) is None


def test_packing_first_fit_decreasing_onto_the_largest_nodes_first() -> None:
    node_cpu, node_memory = [4.0, 8.0, 4.0], [16 * GI, 32 * GI, 16 * GI]
    # 3, 3, 2 fill the 8-core node; the second 2 opens the first 4-core node; 1 joins it
    today = nodes_needed([3, 3, 2, 2, 1], [GI] * 5, node_cpu, node_memory)
    assert today.used.tolist() == [True, True, False] and today.nodes == 2
    # halved requests (5.5 cores) fit the 8-core node alone
    halved = nodes_needed([1.5, 1.5, 1, 1, 0.5], [GI] * 5, node_cpu, node_memory)
    assert halved.used.tolist() == [False, True, False] and halved.nodes == 1
    avoided = avoidable_nodes(today, halved, node_idle_watts=[50.0, 90.0, 40.0])
    # one node freed; costed as the cheapest node of today's packing (50 W), not the 40 W
    # node that packing never used
    assert avoided.nodes == 1 and avoided.avoided.tolist() == [True, False, False]


def test_memory_requests_keep_nodes_when_cpu_shrinks() -> None:
    # three pods of 20 GiB on 32 GiB nodes: one node each, however little CPU they ask
    node_cpu, node_memory = [8.0] * 3, [32 * GI] * 3
    today = nodes_needed([4, 4, 4], [20 * GI] * 3, node_cpu, node_memory)
    after = nodes_needed([0.1, 0.1, 0.1], [20 * GI] * 3, node_cpu, node_memory)
    assert (today.nodes, after.nodes) == (3, 3)
    assert avoidable_nodes(today, after, [100.0] * 3).nodes == 0


def test_a_pod_larger_than_any_node_counts_one_node_and_besteffort_pods_none() -> None:
    packing = nodes_needed([10.0, 0.0, 1.0], [GI, 0.0, GI], [8.0, 8.0], [32 * GI] * 2)
    assert (packing.unplaced, packing.nodes) == (1, 2)
    assert nodes_needed([], [], [], []).nodes == 0
    assert nodes_needed([1.0], [0.0], [], []).nodes == 1


def test_yearly_savings_of_one_avoided_node() -> None:
    params = ModelParameters()
    savings = yearly_savings(idle_watts=[100.0], pue=[1.5],
                             grid_intensity_grams_per_kilowatt_hour=[400.0],
                             logical_cpus=[56.0], params=params)
    # 100 W x 8,760 h = 876 kWh; x 1.5 x 400 g/kWh = 525,600 g. Embodied: 56 of the
    # reference server's 112 logical CPUs = 0.5 server x 1,313 kg / 4 years = 164,125 g.
    assert savings.nodes == 1
    assert savings.it_energy_kilowatt_hours == pytest.approx(876.0)
    assert savings.co2e_tonnes == pytest.approx(0.689725)
    band = savings.co2e_tonnes_band
    # every draw lies between all ranges at their low and at their high ends
    low = 0.5256 * 0.85 * 0.9 * 0.9 + 0.5 * 500 / 6 / 1000
    high = 0.5256 * 1.15 * 1.1 * 1.1 + 0.5 * 2100 / 4 / 1000
    assert low < band.p05 < band.p50 < band.p95 < high
    assert band.p05 < savings.co2e_tonnes < band.p95


def test_no_avoided_node_saves_nothing() -> None:
    savings = yearly_savings([], [], [], [])
    assert (savings.nodes, savings.it_energy_kilowatt_hours, savings.co2e_tonnes) == (0, 0.0, 0.0)
    assert savings.co2e_tonnes_band.p95 == 0.0


@given(st.lists(st.floats(0.0, 64.0, allow_nan=False), min_size=1, max_size=300),
       st.floats(1.0, 100.0), st.floats(0.0, 1.0))
def test_recommendation_never_exceeds_peak_plus_headroom(
    samples: list[float], percentile: float, headroom: float
) -> None:
    policy = RecommendationPolicy(percentile, headroom, min_samples=1)
    cores = recommend_cores(samples, policy)
    assert cores is not None
    assert 0.0 <= cores <= max(samples) * (1 + headroom) * (1 + 1e-12)


PODS = st.lists(st.tuples(st.floats(0.0, 16.0), st.floats(0.0, 64.0), st.floats(0.05, 1.0)),
                max_size=40)
NODES = st.lists(st.tuples(st.sampled_from([2.0, 4.0, 8.0, 16.0]),
                           st.sampled_from([8.0, 16.0, 64.0])), min_size=1, max_size=12)


@settings(max_examples=200)
@given(PODS, NODES)
def test_avoidable_nodes_are_never_negative_nor_more_than_used(
    pods: list[tuple[float, float, float]], nodes: list[tuple[float, float]]
) -> None:
    cpu = [p[0] for p in pods]
    memory = [p[1] for p in pods]
    shrunk = [p[0] * p[2] for p in pods]  # every workload asks for less
    node_cpu, node_memory = [n[0] for n in nodes], [n[1] for n in nodes]
    today = nodes_needed(cpu, memory, node_cpu, node_memory)
    after = nodes_needed(shrunk, memory, node_cpu, node_memory)
    avoided = avoidable_nodes(today, after, np.arange(len(nodes), dtype=np.float64))
    assert avoided.nodes >= 0
    assert int(avoided.avoided.sum()) <= min(avoided.nodes, int(today.used.sum()))
    assert not (avoided.avoided & ~today.used).any()
    for packing, requests in ((today, cpu), (after, shrunk)):
        assert isinstance(packing, Packing)
        placed = packing.node_of_pod
        load_cpu = np.zeros(len(nodes))
        load_memory = np.zeros(len(nodes))
        np.add.at(load_cpu, placed[placed >= 0], np.asarray(requests)[placed >= 0])
        np.add.at(load_memory, placed[placed >= 0], np.asarray(memory)[placed >= 0])
        # no node holds more than its room, and exactly the nodes holding pods are used
        assert (load_cpu <= np.asarray(node_cpu) + 1e-9).all()
        assert (load_memory <= np.asarray(node_memory) + 1e-9).all()
        assert set(placed[placed >= 0].tolist()) == set(np.flatnonzero(packing.used).tolist())
        # a pod left out did not fit the room any node had left
        room_cpu = np.asarray(node_cpu) - load_cpu
        room_memory = np.asarray(node_memory) - load_memory
        left_out = [k for k in np.flatnonzero(placed < 0).tolist()
                    if requests[k] > 0 or memory[k] > 0]
        assert packing.unplaced == len(left_out)
        for k in left_out:
            assert not ((room_cpu >= requests[k]) & (room_memory >= memory[k])).any()


def test_policy_bounds() -> None:
    for bad in ({"percentile": 0}, {"percentile": 101}, {"headroom": -0.1}, {"min_samples": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RecommendationPolicy(**bad)  # type: ignore[arg-type]
