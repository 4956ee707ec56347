"""Like for like: the baseline and the fleet are charged for the same things (issue 12).

A fleet made of the reference server itself breaks even exactly at u = u_b, and the
memory a VM family carries above the reference server's share is held by the baseline
too, so the family alone never flips the sign of avoided energy.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.model import (
    FleetTotals,
    ModelParameters,
    ProfileArrays,
    WindowBatch,
    estimate_windows,
    fleet_gauges,
    make_profile,
)
from collector.model.coefficients import SPECPOWER_DELL_R740, SPECPOWER_INSPUR_NF5280M5
from collector.model.fleet import Draws, avoided_samples

GIB = 2**30
REFERENCES = st.sampled_from([SPECPOWER_DELL_R740, SPECPOWER_INSPUR_NF5280M5])


def _reference_fleet(reference, servers, utilisation, u_b):
    params = ModelParameters(reference_curve=reference, baseline_utilisation=u_b)
    profile = make_profile("baremetal", "china", curve=reference)
    dt = 60.0
    cpus = np.full(servers, float(reference.logical_cpus))
    batch = WindowBatch.of(dt, cpus, cpus * utilisation * dt)
    estimate = estimate_windows(batch, ProfileArrays.repeat(profile, servers, params), params)
    return batch, estimate


@settings(max_examples=60)
@given(REFERENCES, st.integers(1, 40), st.floats(0.12, 0.18))
def test_a_fleet_of_the_reference_server_breaks_even_at_the_baseline_utilisation(
    reference, servers, u_b
):
    batch, estimate = _reference_fleet(reference, servers, u_b, u_b)
    gauges = fleet_gauges(batch, estimate)
    assert gauges.avoided_servers == pytest.approx(0.0, abs=1e-9 * servers)
    assert float(estimate.avoided_energy_joules.sum()) == pytest.approx(
        0.0, abs=1e-9 * float(estimate.energy_joules.sum())
    )


@settings(max_examples=60)
@given(REFERENCES, st.integers(1, 40), st.floats(0.12, 0.18), st.floats(0.01, 0.82))
def test_a_fleet_of_the_reference_server_avoids_servers_and_energy_above_it(
    reference, servers, u_b, above
):
    batch, estimate = _reference_fleet(reference, servers, u_b + above, u_b)
    assert fleet_gauges(batch, estimate).avoided_servers > 0
    assert float(estimate.avoided_energy_joules.sum()) > 0
    assert float(estimate.avoided_operational_co2e_grams.sum()) > 0


# c5, m5 and r5 carry 2, 4 and 8 GiB per vCPU; any memory size must give the same answer
@settings(max_examples=80)
@given(
    st.sampled_from(["aws", "gcp", "azure", "alibaba"]),
    st.sampled_from([2, 4, 8, 16, 48, 96]),
    st.floats(0.0, 1.0),
    st.lists(st.floats(0.0, 32.0), min_size=2, max_size=5),
)
def test_the_instance_family_alone_does_not_change_avoided_energy(
    provider, vcpus, utilisation, gib_per_vcpu
):
    params = ModelParameters()
    profile = make_profile(provider, "us-east-1")
    n = len(gib_per_vcpu)
    batch = WindowBatch.of(
        60.0, vcpus, vcpus * utilisation * 60.0, np.array(gib_per_vcpu) * vcpus * GIB
    )
    estimate = estimate_windows(batch, ProfileArrays.repeat(profile, n, params), params)
    avoided = estimate.avoided_energy_joules
    np.testing.assert_allclose(avoided, avoided[0], rtol=1e-9, atol=1e-9)
    # while the fleet's own energy still pays for memory above the reference share
    more_memory = int(np.argmax(gib_per_vcpu))
    assert estimate.energy_joules[more_memory] >= estimate.energy_joules.min()


@pytest.mark.parametrize("gib_per_vcpu", [2, 4, 8])  # c5, m5, r5
def test_break_even_utilisation_is_the_same_for_c5_m5_and_r5(gib_per_vcpu):
    params = ModelParameters()
    profile = make_profile("aws", "us-east-1")
    grid = np.linspace(0.0, 1.0, 100_001)
    batch = WindowBatch.of(60.0, 8, 8 * grid * 60.0, 8 * gib_per_vcpu * GIB)
    estimate = estimate_windows(
        batch, ProfileArrays.repeat(profile, len(grid), params), params
    )
    break_even = grid[np.argmax(estimate.avoided_energy_joules > 0)]
    # P_b / (112 u_b) per busy vCPU against 0.74 / u + 2.76: u = 0.74 / (138 / 16.8 - 2.76)
    assert break_even == pytest.approx(0.74 / (138.0 / (112 * 0.15) - 2.76), abs=2e-5)


def _width(samples):
    p05, p95 = np.quantile(samples, [0.05, 0.95])
    return p95 - p05


@settings(max_examples=40)
@given(
    st.floats(1e3, 1e7),  # busy CPU-seconds
    st.floats(1.0, 10.0),  # logical / busy
    st.floats(0.0, 1e9),  # curve-modelled joules
    st.floats(0.0, 1e9),  # cloud joules
    st.integers(0, 2**32 - 1),
)
def test_independent_power_errors_give_a_band_at_least_as_wide_as_either_sides(
    busy, spread, modelled, cloud, seed
):
    totals = FleetTotals.for_period(busy, busy * spread, modelled, 1.2, 500.0,
                                    cloud_energy_joules=cloud)
    params = ModelParameters()
    draws = Draws.sample(params, 4000, seed)
    ones = np.ones(4000)
    both = avoided_samples(totals, params, draws).co2e_grams
    baseline_only = avoided_samples(totals, params, dataclasses.replace(
        draws, fleet_curve_multiplier=ones, cloud_power_multiplier=ones)).co2e_grams
    fleet_only = avoided_samples(totals, params, dataclasses.replace(
        draws, baseline_power_multiplier=ones)).co2e_grams
    # 2 %: the Monte Carlo noise of a 90 % width at 4,000 draws is well below it
    assert _width(both) >= 0.98 * max(_width(baseline_only), _width(fleet_only))

