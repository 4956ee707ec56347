"""Published reference results, reproduced with the model's own code.

- Cloud Carbon Footprint's unit-test vectors for its compute and embodied estimators
  (github.com/cloud-carbon-footprint/cloud-carbon-footprint @ b7a049c7,
  packages/core/src/compute/__tests__/ComputeEstimator.test.ts and
  packages/core/src/embodiedEmissions/__tests__/EmbodiedEmissionsEstimator.test.ts).
- The SPECpower_ssj2008 results behind the built-in power curves: the overall score
  "sum of ssj_ops / sum of power" over the 10 load levels and active idle.
"""

import numpy as np
import pytest

from collector.model import (
    LinearPowerCoefficients,
    ModelParameters,
    PowerCurve,
    ProfileArrays,
    WindowBatch,
    curve_watts_at,
    estimate_windows,
    make_profile,
)
from collector.model.coefficients import (
    JOULES_PER_KILOWATT_HOUR,
    SPECPOWER_DELL_R740,
    SPECPOWER_INSPUR_NF5280M5,
    SPECPOWER_UTILISATION_POINTS,
)

GRAMS_PER_TONNE = 1e6
HOUR = 3600.0


def _one_window(profile, batch, params=None):
    return estimate_windows(batch, ProfileArrays.from_profiles([profile], params), params)


@pytest.mark.parametrize(
    ("min_watts", "max_watts", "pue", "tonnes_per_kwh", "replication", "kwh", "tonnes"),
    [
        # "do estimates for AWS US East 1 region": minWatts 0.71, maxWatts 3.46, PUE 1.135,
        # replicationFactor 2, 0.000415755 t/kWh
        (0.71, 3.46, 1.135, 0.000415755, 2, 0.0016741249999999998, 6.960258393749999e-7),
        # "... with default replication factor and average watts": averageWatts 350 replaces
        # the min/max line, so a flat 350 W per vCPU; 0.000928 t/kWh
        (350.0, 350.0, 1.135, 0.000928, 1, 0.39725, 0.000368648),
    ],
)
def test_ccf_compute_estimator_vectors(
    min_watts, max_watts, pue, tonnes_per_kwh, replication, kwh, tonnes
):
    # CCF's input: cpuUtilizationAverage 1.0 (a percentage: 1 %), vCpuHours 1.0.
    profile = make_profile(
        "ccf-vector",
        linear=LinearPowerCoefficients(min_watts, max_watts),
        pue=pue,
        grid_intensity_grams_per_kilowatt_hour=tonnes_per_kwh * GRAMS_PER_TONNE,
    )
    estimate = _one_window(profile, WindowBatch.of(HOUR, 1, busy_seconds=0.01 * HOUR))
    # CCF multiplies by a replication factor (copies of the data kept by a managed service);
    # kubecarbon has no such factor (a node is counted once), so the test applies it.
    facility_kwh = float(estimate.facility_energy_joules[0]) / JOULES_PER_KILOWATT_HOUR
    assert facility_kwh * replication == pytest.approx(kwh, rel=1e-6)
    co2e_tonnes = float(estimate.operational_co2e_grams[0]) / GRAMS_PER_TONNE
    assert co2e_tonnes * replication == pytest.approx(tonnes, rel=1e-6)


def test_ccf_embodied_estimator_vector():
    # "does estimates for GCP US Central 1 region": usageTimePeriod 24 h, instancevCpu 1,
    # largestInstancevCpu 96, scopeThreeEmissions 1.7957 t, lifespan 35,040 h.
    # kubecarbon's terms: the reference server has 96 logical CPUs and 1,795.7 kg embodied
    # over 4 years of 8,760 h. Its power curve plays no part in embodied carbon (zeros).
    reference = PowerCurve("ccf-vector-largest-instance", (0.0,) * 11, logical_cpus=96)
    params = ModelParameters(
        reference_curve=reference, embodied_kilograms_per_server=1795.7, server_lifetime_years=4
    )
    estimate = _one_window(make_profile(), WindowBatch.of(24 * HOUR, 1, 0.0), params)
    co2e_tonnes = float(estimate.embodied_co2e_grams[0]) / GRAMS_PER_TONNE
    assert co2e_tonnes == pytest.approx(0.000012811786529680366, rel=1e-6)
    # CCF also reports kilowattHours 0.028219794118238693 (co2e divided by the grid factor
    # 0.000454 t/kWh); kubecarbon does not turn embodied carbon into energy.
    assert co2e_tonnes / 0.000454 == pytest.approx(0.028219794118238693, rel=1e-6)


# The published results, from their "Benchmark Results Summary": ssj_ops at 10 % .. 100 %
# target load, the performance-to-power ratio at each level, and the overall score.
SPECPOWER_RESULTS = {
    # power_ssj2008-20170829-00780, Dell PowerEdge R740, 2x Xeon Platinum 8180
    SPECPOWER_DELL_R740: {
        "ssj_ops": (573_385, 1_142_864, 1_721_411, 2_297_407, 2_870_902,
                    3_436_701, 4_014_137, 4_590_909, 5_158_830, 5_727_798),
        "ratio": (4_447, 7_770, 10_105, 11_753, 12_797, 13_487, 13_736, 13_337, 12_637, 12_541),
        "overall": 11_790,
        "threads": 112,
    },
    # power_ssj2008-20210707-01115, Inspur NF5280M5, 2x Xeon Silver 4214
    SPECPOWER_INSPUR_NF5280M5: {
        "ssj_ops": (197_711, 395_511, 592_887, 791_246, 987_478,
                    1_186_970, 1_383_861, 1_584_929, 1_778_231, 1_968_840),
        "ratio": (1_428, 2_632, 3_672, 4_532, 5_359, 5_989, 6_524, 6_550, 6_801, 6_804),
        "overall": 5_116,
        "threads": 48,
    },
}


def _curve_points(curve):
    """The curve's watts at SPECpower's 11 load levels, through the model's interpolation."""
    return curve_watts_at(curve.watts, np.array(SPECPOWER_UTILISATION_POINTS))


def test_r740_overall_score_from_its_eleven_points():
    result = SPECPOWER_RESULTS[SPECPOWER_DELL_R740]
    watts = _curve_points(SPECPOWER_DELL_R740)
    # active idle adds power and no ssj_ops
    assert (sum(result["ssj_ops"]), watts.sum()) == (31_534_344, pytest.approx(2673.3))
    overall = sum(result["ssj_ops"]) / watts.sum()
    assert overall == pytest.approx(result["overall"], rel=1e-3)
    assert round(overall) == 11_796  # 0.05 % above 11,790: the published watts are rounded
    assert overall / result["overall"] - 1 == pytest.approx(0.0005, abs=0.00005)


@pytest.mark.parametrize("curve", list(SPECPOWER_RESULTS), ids=lambda curve: curve.name)
def test_each_curve_point_is_its_results_power_to_the_published_precision(curve):
    # ssj_ops / (ssj_ops per watt) recovers each level's average power; the published
    # watts are that power rounded to 3 significant figures, so within 0.5 W.
    result = SPECPOWER_RESULTS[curve]
    watts = _curve_points(curve)
    measured = np.array(result["ssj_ops"]) / np.array(result["ratio"])
    np.testing.assert_allclose(watts[1:], measured, atol=0.5)
    assert curve.logical_cpus == result["threads"]
    # the overall score follows from the unrounded powers and the published active idle
    overall = sum(result["ssj_ops"]) / (measured.sum() + watts[0])
    assert overall == pytest.approx(result["overall"], rel=1e-3)


def test_the_48_thread_curve_reproduces_its_score_within_its_rounding():
    # 11 watt values, each rounded by up to 0.5 W, move the sum of power by up to 5.5 W
    result = SPECPOWER_RESULTS[SPECPOWER_INSPUR_NF5280M5]
    watts = _curve_points(SPECPOWER_INSPUR_NF5280M5)
    assert (sum(result["ssj_ops"]), watts.sum()) == (10_867_664, pytest.approx(2122.0))
    overall = sum(result["ssj_ops"]) / watts.sum()
    rounding = 5.5 / watts.sum()
    assert rounding == pytest.approx(0.0026, abs=0.00005)
    assert abs(overall / result["overall"] - 1) <= rounding
    assert round(overall) == 5_121  # 0.11 % above 5,116: rounding, not a wrong point
    assert overall / result["overall"] - 1 == pytest.approx(0.0011, abs=0.00005)
