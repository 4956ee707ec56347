"""The model's numbers against hand-computed values from DESIGN's formulas and tables."""

import numpy as np
import pytest

from collector.model import (
    POWER_SOURCES,
    SPECPOWER_DELL_R740,
    ModelParameters,
    ProfileArrays,
    WindowBatch,
    attribute_pods,
    curve_watts_at,
    estimate_windows,
    fleet_gauges,
    make_profile,
)
from collector.model.coefficients import SECONDS_PER_YEAR, SPECPOWER_INSPUR_NF5280M5

GIB = 2**30


def _estimate(profile, batch, params=None):
    return estimate_windows(batch, ProfileArrays.from_profiles([profile] * len(batch)), params)


def test_ccf_linear_formula_for_an_aws_m5_2xlarge_at_half_load():
    # m5.2xlarge: 8 vCPU, 32 GiB. Memory is charged above the reference server's share
    # (R740: 192 GiB / 112 threads): 32 - 8 * 192 / 112 = 18.2857 GiB at 0.392 W = 7.168 W.
    # P = 8 * (0.74 + 0.5 * (3.5 - 0.74)) + 7.168
    profile = make_profile("aws", "us-east-1", "m5.2xlarge")
    batch = WindowBatch.of(15.0, 8, busy_seconds=8 * 15.0 * 0.5, memory_total_bytes=32 * GIB)
    estimate = _estimate(profile, batch)
    memory_watts = (32 - 8 * 192 / 112) * 0.392
    assert memory_watts == pytest.approx(7.168)
    assert estimate.utilisation[0] == pytest.approx(0.5)
    assert estimate.power_watts[0] == pytest.approx(16.96 + 7.168)  # 24.128 W
    assert estimate.idle_power_watts[0] == pytest.approx(8 * 0.74 + 7.168)  # 13.088 W
    assert estimate.energy_joules[0] == pytest.approx(24.128 * 15)
    assert estimate.facility_energy_joules[0] == pytest.approx(24.128 * 15 * 1.135)
    # the baseline holds the same extra memory: avoided = baseline + 7.168 W - fleet
    assert estimate.shared_memory_energy_joules[0] == pytest.approx(7.168 * 15)
    assert estimate.avoided_energy_joules[0] == pytest.approx(
        estimate.baseline_energy_joules[0] + 7.168 * 15 - 24.128 * 15
    )
    assert POWER_SOURCES[estimate.power_source[0]] == "cloud_linear"


@pytest.mark.parametrize(
    ("provider", "min_watts", "max_watts", "pue"),
    [
        ("aws", 0.74, 3.5, 1.135),
        ("gcp", 0.71, 4.26, 1.1),
        ("azure", 0.78, 3.76, 1.185),
        ("alibaba", 0.74, 3.5, 1.3),
    ],
)
def test_each_cloud_uses_its_ccf_coefficients_and_pue(provider, min_watts, max_watts, pue):
    profile = make_profile(provider, None)
    batch = WindowBatch.of(60.0, 4, busy_seconds=4 * 60.0 * 0.25)
    estimate = _estimate(profile, batch)
    assert estimate.power_watts[0] == pytest.approx(
        4 * (min_watts + 0.25 * (max_watts - min_watts))
    )
    assert estimate.pue[0] == pue


@pytest.mark.parametrize(
    ("utilisation", "watts"),
    [(0.0, 52.3), (0.15, 138.0), (0.5, 224.0), (1.0, 457.0), (0.05, 90.65), (0.95, 432.5)],
)
def test_r740_curve_points_and_interpolation(utilisation, watts):
    assert curve_watts_at(SPECPOWER_DELL_R740.watts, utilisation) == pytest.approx(watts)


def test_bare_metal_node_follows_its_whole_curve():
    profile = make_profile("baremetal", "china-east")
    busy = np.array([0.0, 0.15, 0.5, 1.0]) * 112 * 30.0
    estimate = _estimate(profile, WindowBatch.of(30.0, 112, busy))
    np.testing.assert_allclose(estimate.power_watts, [52.3, 138.0, 224.0, 457.0])
    np.testing.assert_allclose(estimate.idle_power_watts, 52.3)
    assert {POWER_SOURCES[s] for s in estimate.power_source} == {"specpower_curve"}


def test_unknown_node_gets_its_cpu_share_of_the_reference_server():
    # 56 of the R740's 112 logical CPUs at 50 %: half of 224 W
    estimate = _estimate(make_profile(), WindowBatch.of(10.0, 56, 56 * 10.0 * 0.5))
    assert estimate.power_watts[0] == pytest.approx(112.0)
    assert POWER_SOURCES[estimate.power_source[0]] == "default_profile"


def test_measured_rapl_energy_times_platform_factor_replaces_the_model():
    batch = WindowBatch.of([15.0, 15.0], 16, [61.2, 61.2], rapl_joules=[1210.5 + 96.0, np.nan])
    estimate = _estimate(make_profile("aws", "us-east-1"), batch)
    assert estimate.power_watts[0] == pytest.approx(1306.5 / 15 * 1.33)
    assert [POWER_SOURCES[s] for s in estimate.power_source] == ["rapl", "cloud_linear"]
    # idle keeps the model's idle share of the measured power
    share = estimate.idle_power_watts[1] / estimate.power_watts[1]
    assert estimate.idle_power_watts[0] == pytest.approx(estimate.power_watts[0] * share)


def test_region_intensity_applied_end_to_end():
    # R740 at 50 % for one hour in the East China grid (550.0 g/kWh), on-prem PUE 1.58:
    # 0.224 kWh IT, 0.35392 kWh facility, 194.656 g CO2e.
    profile = make_profile("baremetal", "china-east")
    batch = WindowBatch.of(3600.0, 112, 112 * 3600.0 * 0.5)
    estimate = _estimate(profile, batch)
    assert estimate.grid_intensity_grams_per_kilowatt_hour[0] == 550.0
    assert estimate.energy_joules[0] == pytest.approx(0.224 * 3.6e6)
    assert estimate.facility_energy_joules[0] == pytest.approx(0.35392 * 3.6e6)
    assert estimate.operational_co2e_grams[0] == pytest.approx(194.656)
    # the namespace share follows: one pod with all the busy time gets the dynamic part
    pods = attribute_pods(batch, estimate, [0], [112 * 3600.0 * 0.5])
    assert pods.pod_operational_co2e_grams[0] == pytest.approx(194.656 * (224 - 52.3) / 224)


def test_embodied_carbon_is_the_reference_share_amortised_over_the_lifetime():
    # 56 logical CPUs = half an R740: 1,313 kg / 2 over 4 years of 8,760 h; one hour of it
    estimate = _estimate(make_profile(), WindowBatch.of(3600.0, 56, 0.0))
    assert estimate.embodied_co2e_grams[0] == pytest.approx(1_313_000 / 2 / (4 * 8760))


def test_design_worked_example_1000_avoided_servers():
    # 10,286 busy logical CPUs on 48-CPU servers, u_b 0.15 against 0.50 elastic
    # a real 48-thread result, never another server's watts on 48 threads
    params = ModelParameters(reference_curve=SPECPOWER_INSPUR_NF5280M5)
    dt = 60.0
    logical = np.full(4, 20_572 / 4)  # 50 % of the logical CPUs are busy
    batch = WindowBatch.of(dt, logical, logical * 0.5 * dt)
    profiles = ProfileArrays.from_profiles([make_profile()] * 4, params)
    gauges = fleet_gauges(batch, estimate_windows(batch, profiles, params))
    assert gauges.demand_cpus == pytest.approx(10_286)
    assert gauges.fleet_cpu_usage_ratio == pytest.approx(0.5)
    assert round(gauges.baseline_servers) == 1_429
    assert round(gauges.actual_servers) == 429
    assert round(gauges.avoided_servers) == 1_000


def test_baseline_energy_and_avoided_co2e_per_window():
    # one 112-CPU default node at 50 % for an hour, China national grid (MEE 2023 data,
    # 530.6 g/kWh), PUE_b = its PUE
    params = ModelParameters()
    batch = WindowBatch.of(3600.0, 112, 56 * 3600.0)
    estimate = _estimate(make_profile(None, "china", site="china-average-2021"), batch, params)
    baseline_servers = 56 / (112 * 0.15)
    assert estimate.baseline_servers[0] == pytest.approx(baseline_servers)
    assert estimate.actual_servers[0] == pytest.approx(1.0)
    baseline_joules = baseline_servers * 138.0 * 3600
    assert estimate.baseline_energy_joules[0] == pytest.approx(baseline_joules)
    avoided_joules = baseline_joules - 224.0 * 3600
    assert estimate.avoided_energy_joules[0] == pytest.approx(avoided_joules)
    assert estimate.avoided_operational_co2e_grams[0] == pytest.approx(
        avoided_joules / 3.6e6 * 1.49 * 530.6
    )
    assert estimate.avoided_embodied_co2e_grams[0] == pytest.approx(
        (baseline_servers - 1.0) * 1_313_000 * 3600 / (4 * SECONDS_PER_YEAR)
    )


def test_explicit_baseline_pue_replaces_the_nodes_own():
    batch = WindowBatch.of(3600.0, 112, 56 * 3600.0)
    profile = make_profile(None, "china", site="china-average-2021")
    own = _estimate(profile, batch)
    fixed = _estimate(profile, batch, ModelParameters(baseline_pue=1.58))
    assert fixed.avoided_operational_co2e_grams[0] == pytest.approx(
        own.avoided_operational_co2e_grams[0] * 1.58 / 1.49
    )


def test_hourly_intensity_override_and_nan_fallback():
    profile = make_profile("baremetal", "china-east")
    batch = WindowBatch.of(3600.0, 112, [56 * 3600.0, 56 * 3600.0])
    estimate = estimate_windows(
        batch,
        ProfileArrays.from_profiles([profile] * 2),
        grid_intensity_grams_per_kilowatt_hour=[300.0, np.nan],
    )
    np.testing.assert_allclose(estimate.grid_intensity_grams_per_kilowatt_hour, [300.0, 550.0])
    np.testing.assert_allclose(estimate.operational_co2e_grams, [0.35392 * 300.0, 0.35392 * 550.0])
