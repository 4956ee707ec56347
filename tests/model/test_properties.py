"""hypothesis properties of the model (DESIGN, "Shown by")."""

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from collector.model import (
    SPECPOWER_DELL_R740,
    FleetTotals,
    ModelParameters,
    PowerCurve,
    ProfileArrays,
    Range,
    UncertaintyRanges,
    WindowBatch,
    attribute_pods,
    avoided_co2e_quantiles,
    curve_watts_at,
    estimate_windows,
    fleet_gauges,
    make_profile,
)

PROFILES = [
    make_profile("aws", "us-east-1"),
    make_profile("gcp", "europe-west1"),
    make_profile("azure", "westeurope"),
    make_profile("alibaba", "cn-hangzhou"),
    make_profile("baremetal", "china-north"),
    make_profile(None, "nowhere"),
]


@st.composite
def windows(draw, min_size=1, max_size=40):
    n = draw(st.integers(min_size, max_size))
    floats = st.floats
    dt = draw(hnp.arrays(np.float64, n, elements=floats(1.0, 3600.0)))
    cpus = draw(hnp.arrays(np.float64, n, elements=st.sampled_from([1.0, 2.0, 8.0, 64.0, 224.0])))
    load = draw(hnp.arrays(np.float64, n, elements=floats(0.0, 1.05)))
    memory = draw(hnp.arrays(np.float64, n, elements=floats(0.0, 2.0**40)))
    with_rapl = draw(hnp.arrays(np.bool_, n))
    rapl = draw(hnp.arrays(np.float64, n, elements=floats(0.0, 1e6)))
    batch = WindowBatch(dt, cpus, load * cpus * dt, memory, np.where(with_rapl, rapl, np.nan))
    kinds = draw(st.lists(st.sampled_from(PROFILES), min_size=n, max_size=n))
    return batch, ProfileArrays.from_profiles(kinds)


@settings(max_examples=150)
@given(windows())
def test_energy_and_co2e_counters_never_decrease(data):
    batch, profiles = data
    estimate = estimate_windows(batch, profiles)
    for increments in (
        estimate.energy_joules,
        estimate.facility_energy_joules,
        estimate.operational_co2e_grams,
        estimate.embodied_co2e_grams,
        estimate.idle_energy_joules,
        estimate.dynamic_energy_joules,
    ):
        assert np.all(np.isfinite(increments))
        counter = np.cumsum(increments)  # a counter that applies the windows in order
        assert np.all(np.diff(counter) >= 0)
        assert counter[0] >= 0


@settings(max_examples=100)
@given(windows(max_size=10), st.integers(1, 5))
def test_splitting_a_window_keeps_its_energy(data, parts):
    # a node reporting every 15 s instead of every 60 s must add up to the same totals
    batch, profiles = data
    one = estimate_windows(batch, profiles)
    idx = np.repeat(np.arange(len(batch)), parts)
    split = WindowBatch(
        batch.duration_seconds[idx] / parts,
        batch.logical_cpus[idx],
        batch.busy_seconds[idx] / parts,
        batch.memory_total_bytes[idx],
        batch.rapl_joules[idx] / parts,
    )
    repeated = {f.name: getattr(profiles, f.name)[idx] for f in dataclasses.fields(profiles)}
    many = estimate_windows(split, ProfileArrays(**repeated))
    for field in (
        "energy_joules",
        "operational_co2e_grams",
        "embodied_co2e_grams",
        "baseline_energy_joules",
        "avoided_operational_co2e_grams",
    ):
        summed = np.bincount(idx, weights=getattr(many, field))
        np.testing.assert_allclose(summed, getattr(one, field), rtol=1e-9, atol=1e-6)


@st.composite
def windows_with_pods(draw):
    batch, profiles = draw(windows(max_size=8))
    n = len(batch)
    pods = draw(st.integers(0, 60))
    index = draw(hnp.arrays(np.int64, pods, elements=st.integers(0, n - 1)))
    # pods can add up to less than, exactly, or more than (counter skew) the node's busy time
    scale = draw(st.sampled_from([0.0, 0.3, 1.0, 1.3]))
    weights = draw(hnp.arrays(np.float64, pods, elements=st.floats(0.0, 1.0)))
    per_window = np.bincount(index, weights=weights, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(per_window[index] > 0, weights / per_window[index], 0.0)
    cpu = share * batch.busy_seconds[index] * scale
    return batch, profiles, index, cpu


@settings(max_examples=200)
@given(windows_with_pods())
def test_attribution_over_pods_plus_idle_equals_node_energy(data):
    batch, profiles, index, cpu = data
    estimate = estimate_windows(batch, profiles)
    result = attribute_pods(batch, estimate, index, cpu)
    assert np.all(result.pod_energy_joules >= 0)
    per_window = np.bincount(index, weights=result.pod_energy_joules, minlength=len(batch))
    total = per_window + result.unattributed_energy_joules + result.idle_energy_joules
    np.testing.assert_allclose(total, estimate.energy_joules, rtol=1e-9, atol=1e-9)
    # never charge pods more than the dynamic energy, never leave a negative remainder
    tolerance = 1e-9 * np.maximum(estimate.energy_joules, 1.0)
    assert np.all(result.unattributed_energy_joules >= -tolerance)
    assert np.all(per_window <= estimate.dynamic_energy_joules + tolerance)


# The sign of avoided_servers is exactly that of (U - u_b) for any fleet, since
# avoided = (sum of logical CPUs / ref_cpus) * (U / u_b - 1). For avoided energy and CO2e
# the statement needs the fleet on the reference curve (default profile) at one
# utilisation U, and a curve whose watts per unit of load, curve(u) / u, falls until
# u_b and never climbs back above curve(u_b) / u_b. The R740 curve meets that for every
# u_b up to 0.45 (it rises again only above 70 % load, to 457 W at 100 %).
@settings(max_examples=300)
@given(
    utilisation=st.floats(0.0, 1.0),
    baseline_utilisation=st.floats(0.05, 0.45),
    nodes=st.integers(1, 20),
    cpus=st.sampled_from([4.0, 48.0, 112.0]),
)
def test_avoided_quantities_change_sign_where_fleet_utilisation_crosses_baseline(
    utilisation, baseline_utilisation, nodes, cpus
):
    assume(abs(utilisation - baseline_utilisation) > 1e-9)
    ranges = UncertaintyRanges(baseline_utilisation=Range(0.01, 1.0))
    params = ModelParameters(baseline_utilisation=baseline_utilisation, uncertainty=ranges)
    dt = 60.0
    batch = WindowBatch.of(dt, np.full(nodes, cpus), np.full(nodes, utilisation * cpus * dt))
    profiles = ProfileArrays.from_profiles([make_profile(None, "china")] * nodes, params)
    estimate = estimate_windows(batch, profiles, params)
    gauges = fleet_gauges(batch, estimate)
    expected = np.sign(utilisation - baseline_utilisation)
    assert np.sign(gauges.avoided_servers) == expected
    assert np.sign(estimate.avoided_energy_joules.sum()) == expected
    assert np.sign(estimate.avoided_operational_co2e_grams.sum()) == expected
    assert np.sign(estimate.avoided_embodied_co2e_grams.sum()) == expected
    assert np.sign(gauges.avoided_co2e_grams_per_hour) == expected


def test_the_r740_curve_meets_the_sign_condition_up_to_u_b_045():
    # the condition stated above, checked on a fine grid rather than assumed
    u = np.linspace(1e-4, 1.0, 100_001)
    per_load = curve_watts_at(SPECPOWER_DELL_R740.watts, u) / u
    for u_b in np.linspace(0.05, 0.45, 41):
        at_b = curve_watts_at(SPECPOWER_DELL_R740.watts, u_b) / u_b
        assert np.all(per_load[u < u_b - 1e-9] > at_b)
        assert np.all(per_load[u > u_b + 1e-9] < at_b)
    # and where it stops holding: at u_b 0.5 a fleet at 100 % avoids no energy
    at_half = curve_watts_at(SPECPOWER_DELL_R740.watts, 0.5) / 0.5
    assert curve_watts_at(SPECPOWER_DELL_R740.watts, 1.0) > at_half


@st.composite
def totals(draw):
    busy = draw(st.floats(0.0, 1e9))
    logical = busy / draw(st.floats(0.01, 1.0)) if busy else draw(st.floats(0.0, 1e9))
    return FleetTotals.for_period(
        busy_cpu_seconds=busy,
        logical_cpu_seconds=logical,
        energy_joules=draw(st.floats(0.0, 1e12)),
        pue=draw(st.floats(1.0, 2.5)),
        grid_intensity_grams_per_kilowatt_hour=draw(st.floats(0.0, 1200.0)),
        measured_energy_joules=draw(st.floats(0.0, 1e12)),
    )


@settings(max_examples=200)
@given(totals(), st.integers(1, 2000), st.integers(0, 2**32 - 1))
def test_quantiles_are_ordered(fleet, draws, seed):
    band = avoided_co2e_quantiles(fleet, draws=draws, seed=seed)
    assert band.p05 <= band.p50 <= band.p95


def test_reference_curve_with_other_size_scales_baseline_servers():
    half = PowerCurve("half", SPECPOWER_DELL_R740.watts, 56)
    params = ModelParameters(reference_curve=half)
    batch = WindowBatch.of(60.0, 56, 56 * 60.0 * 0.5)
    estimate = estimate_windows(
        batch, ProfileArrays.from_profiles([make_profile()], params), params
    )
    assert estimate.baseline_servers[0] == pytest.approx(0.5 / 0.15)
    assert estimate.actual_servers[0] == pytest.approx(1.0)
