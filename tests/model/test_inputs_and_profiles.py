"""Bad input gets a clear error naming the field; profiles resolve from the tables."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.model import (
    CLOUD_LINEAR_COEFFICIENTS,
    DEFAULT_GRID_INTENSITY,
    DEFAULT_PROFILE,
    DEFAULT_PUE,
    GRID_INTENSITY_BY_REGION,
    SPECPOWER_DELL_R740,
    LinearPowerCoefficients,
    ModelParameters,
    NodeProfile,
    PowerCurve,
    ProfileArrays,
    Range,
    WindowBatch,
    attribute_pods,
    estimate_windows,
    fleet_gauges,
    group_totals,
    make_profile,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_seconds": [0.0]}, r"duration_seconds\[0\]: must be finite and > 0"),
        ({"duration_seconds": [np.nan]}, r"duration_seconds\[0\]"),
        ({"logical_cpus": [-1.0]}, r"logical_cpus\[0\]"),
        ({"busy_seconds": [np.inf]}, r"busy_seconds\[0\]"),
        ({"memory_total_bytes": [-1.0]}, r"memory_total_bytes\[0\]"),
        ({"rapl_joules": [-2.0]}, r"rapl_joules\[0\]"),
        ({"rapl_joules": [np.inf]}, r"rapl_joules\[0\]"),
        ({"busy_seconds": [1.0, 2.0]}, r"busy_seconds: length 2, expected 1"),
        ({"busy_seconds": [[1.0]]}, r"busy_seconds: expected a 1-d array"),
    ],
)
def test_window_batch_rejects_bad_values_naming_field_and_index(kwargs, message):
    fields = {
        "duration_seconds": [15.0],
        "logical_cpus": [4.0],
        "busy_seconds": [10.0],
        "memory_total_bytes": [1e9],
        "rapl_joules": [np.nan],
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        WindowBatch(**{k: np.asarray(v, dtype=float) for k, v in fields.items()})


def test_profiles_must_match_the_batch_length():
    batch = WindowBatch.of(15.0, [4, 4], [1.0, 1.0])
    with pytest.raises(ValueError, match="profiles: 1 elements for a batch of 2"):
        estimate_windows(batch, ProfileArrays.from_profiles([DEFAULT_PROFILE]))


def test_bad_intensity_override_is_refused():
    batch = WindowBatch.of(15.0, 4, 1.0)
    with pytest.raises(ValueError, match=r"grid_intensity_grams_per_kilowatt_hour\[0\]"):
        estimate_windows(batch, ProfileArrays.from_profiles([DEFAULT_PROFILE]), None, [-1.0])


def test_attribution_rejects_bad_pod_rows():
    batch = WindowBatch.of(15.0, 4, 1.0)
    estimate = estimate_windows(batch, ProfileArrays.from_profiles([DEFAULT_PROFILE]))
    with pytest.raises(ValueError, match=r"pod_window_index: must be integers in 0\.\.0"):
        attribute_pods(batch, estimate, [1], [0.5])
    with pytest.raises(ValueError, match=r"pod_cpu_seconds\[0\]"):
        attribute_pods(batch, estimate, [0], [-0.5])
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        attribute_pods(batch, estimate, [0, 0], [0.5])
    with pytest.raises(ValueError, match="group_codes"):
        group_totals([1.0], [3], 2)


def test_busy_seconds_above_capacity_are_clipped_to_full_load():
    # the wire format allows 5 % over capacity (clock skew); the model never exceeds 100 %
    batch = WindowBatch.of(10.0, 112, 112 * 10.0 * 1.05)
    estimate = estimate_windows(batch, ProfileArrays.from_profiles([make_profile("baremetal")]))
    assert estimate.utilisation[0] == 1.0
    assert estimate.power_watts[0] == pytest.approx(457.0)
    # nor does the skew count as work the baseline would have needed servers for
    assert estimate.baseline_servers[0] == pytest.approx(112 / (112 * 0.15))
    assert fleet_gauges(batch, estimate).fleet_cpu_usage_ratio == 1.0


def test_zero_busy_window_is_all_idle_and_attributes_nothing():
    batch = WindowBatch.of(10.0, 8, 0.0, 8 * 2**30, rapl_joules=[500.0])
    estimate = estimate_windows(batch, ProfileArrays.from_profiles([make_profile("aws")]))
    assert estimate.idle_energy_joules[0] == pytest.approx(estimate.energy_joules[0])
    pods = attribute_pods(batch, estimate, [0], [0.2])  # cgroup skew: pod saw some CPU
    assert pods.pod_energy_joules[0] == pytest.approx(0.0)


def test_pods_over_node_busy_share_exactly_the_dynamic_energy():
    batch = WindowBatch.of(10.0, 4, 20.0)
    estimate = estimate_windows(batch, ProfileArrays.from_profiles([make_profile("gcp")]))
    pods = attribute_pods(batch, estimate, [0, 0], [15.0, 10.0])  # 25 s > 20 s busy
    np.testing.assert_allclose(
        pods.pod_energy_joules, estimate.dynamic_energy_joules[0] * np.array([0.6, 0.4])
    )
    assert pods.unattributed_energy_joules[0] == pytest.approx(0.0, abs=1e-9)


def test_group_totals_sums_pods_by_namespace():
    np.testing.assert_allclose(group_totals([1.0, 2.0, 4.0], [1, 0, 1], 3), [2.0, 5.0, 0.0])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PowerCurve("x", (1.0,) * 10, 8), "needs 11 watt values"),
        (lambda: PowerCurve("x", (2.0, 1.0) + (3.0,) * 9, 8), "must not decrease"),
        (lambda: PowerCurve("x", (1.0,) * 11, 0), "logical_cpus must be > 0"),
        (lambda: PowerCurve("x", (float("nan"),) * 11, 8), "finite"),
        (lambda: LinearPowerCoefficients(3.0, 1.0), "min_watts_per_vcpu <= max_watts_per_vcpu"),
        (lambda: ModelParameters(baseline_utilisation=0.0), "baseline_utilisation: must be in"),
        (lambda: ModelParameters(baseline_utilisation=0.3), "outside its uncertainty range"),
        (lambda: ModelParameters(server_lifetime_years=0.0), "server_lifetime_years"),
        (lambda: ModelParameters(baseline_pue=0.9), "baseline_pue"),
        (lambda: ModelParameters(rapl_platform_factor=-1.0), "rapl_platform_factor"),
        (lambda: Range(2.0, 1.0), "low 2.0 is above high 1.0"),
        (lambda: make_profile("aws", pue=0.5), "pue: must be finite and >= 1"),
        (lambda: make_profile("aws", site="mars"), "site: unknown 'mars'"),
        (lambda: make_profile("oracle", kind="cloud"), "no built-in power coefficients"),
        (lambda: make_profile(grid_intensity_grams_per_kilowatt_hour=-1.0), "grid_intensity"),
        (
            lambda: NodeProfile("aws", "", "cloud", 1.1, 300.0),
            "a cloud profile needs linear power coefficients",
        ),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_profile_resolution_from_the_tables():
    aws = make_profile("AWS", "eu-west-1", "m5.large")
    assert (aws.kind, aws.pue, aws.linear) == ("cloud", 1.135, CLOUD_LINEAR_COEFFICIENTS["aws"])
    assert aws.grid_intensity_grams_per_kilowatt_hour == 278.6
    assert aws.grid_intensity_source == "table"
    metal = make_profile("baremetal", "china-southwest", site="china-average-2021")
    assert (metal.kind, metal.curve, metal.pue) == ("baremetal", SPECPOWER_DELL_R740, 1.49)
    assert metal.grid_intensity_grams_per_kilowatt_hour == 247.2
    unknown = make_profile("hetzner", "fsn1")
    assert (unknown.kind, unknown.pue) == ("default", DEFAULT_PUE)
    assert unknown.grid_intensity_source == "default"
    assert (
        unknown.grid_intensity_grams_per_kilowatt_hour
        == DEFAULT_GRID_INTENSITY.grams_per_kilowatt_hour
    )
    given = make_profile("gcp", "us-central1", pue=1.2, grid_intensity_grams_per_kilowatt_hour=10.0)
    assert (given.pue, given.grid_intensity_grams_per_kilowatt_hour) == (1.2, 10.0)
    assert given.grid_intensity_source == "config"
    custom = make_profile("acme", linear=LinearPowerCoefficients(1.0, 5.0))
    assert custom.kind == "cloud"


def test_design_table_values_are_in_the_grid_table():
    expected = {
        "china": 530.6,
        "china-mee-reporting-2022": 570.3,
        "china-north": 636.1,
        "china-northeast": 512.2,
        "china-east": 550.0,
        "china-central": 527.1,
        "china-northwest": 554.3,
        "china-south": 404.2,
        "china-southwest": 247.2,
        "us-east-1": 379.1,
        "eu-west-1": 278.6,
        "eu-central-1": 311.0,
    }
    for region, grams in expected.items():
        assert GRID_INTENSITY_BY_REGION[region].grams_per_kilowatt_hour == grams
        assert GRID_INTENSITY_BY_REGION[region].source


def test_profile_arrays_refuse_mismatched_shapes_and_unknown_kinds():
    good = ProfileArrays.from_profiles([DEFAULT_PROFILE, make_profile("aws")])
    fields = {name: getattr(good, name) for name in good.__dataclass_fields__}
    with pytest.raises(ValueError, match=r"pue: shape \(1,\), expected \(2,\)"):
        ProfileArrays(**{**fields, "pue": fields["pue"][:1]})
    with pytest.raises(ValueError, match=r"curve_watts: shape \(2, 10\)"):
        ProfileArrays(**{**fields, "curve_watts": fields["curve_watts"][:, :10]})
    with pytest.raises(ValueError, match=r"kind: codes must be 0\.\.2"):
        ProfileArrays(**{**fields, "kind": np.array([0, 7], dtype=np.int8)})


_ODD_VALUES = [0.0, -0.0, -1.0, 1.0, 15.0, np.nan, np.inf, -np.inf, 1e300]


def _first_problem_field_by_field(fields):
    """The rule WindowBatch states, one field and one element at a time (the reference for
    its one-pass check): the first bad element of the first bad field, in field order."""
    for name, positive in (("duration_seconds", True), ("logical_cpus", True),
                           ("busy_seconds", False), ("memory_total_bytes", False)):
        for index, value in enumerate(fields[name]):
            if not (np.isfinite(value) and (value > 0 if positive else value >= 0)):
                return f"{name}[{index}]"
    for index, value in enumerate(fields["rapl_joules"]):
        if not np.isnan(value) and not (np.isfinite(value) and value >= 0):
            return f"rapl_joules[{index}]"
    return None


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4).flatmap(lambda n: st.fixed_dictionaries({
    name: st.lists(st.sampled_from(_ODD_VALUES), min_size=n, max_size=n)
    for name in ("duration_seconds", "logical_cpus", "busy_seconds", "memory_total_bytes",
                 "rapl_joules")})))
def test_window_batch_refuses_exactly_what_a_field_by_field_check_refuses(fields):
    expected = _first_problem_field_by_field(fields)
    if expected is None:
        WindowBatch(**{k: np.asarray(v, dtype=float) for k, v in fields.items()})
        return
    with pytest.raises(ValueError) as refused:
        WindowBatch(**{k: np.asarray(v, dtype=float) for k, v in fields.items()})
    assert str(refused.value).startswith(expected + ":")


def test_profile_arrays_of_a_mixed_fleet_hold_each_nodes_own_profile_row():
    """Rows are filled once per distinct profile and repeated by index: every node still
    gets its own profile's row, in the nodes' order, equal (profiles alike but distinct
    objects included) to the arrays of that profile alone."""
    aws, baremetal = make_profile("aws"), make_profile("baremetal")
    another_aws = make_profile("aws", pue=1.4)
    profiles = [baremetal, aws, DEFAULT_PROFILE, aws, another_aws, baremetal, aws]
    mixed = ProfileArrays.from_profiles(profiles)
    for index, profile in enumerate(profiles):
        alone = ProfileArrays.from_profiles([profile])
        for name in alone.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(mixed, name)[index], getattr(alone, name)[0],
                                          err_msg=f"{name}[{index}]")
    assert mixed.pue[4] == 1.4 and mixed.pue[1] != 1.4
