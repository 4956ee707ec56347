"""The avoided-CO2e band: its point, its spread and its reproducibility."""

import numpy as np
import pytest

from collector.model import (
    FleetTotals,
    ModelParameters,
    ProfileArrays,
    Range,
    UncertaintyRanges,
    WindowBatch,
    avoided_band,
    avoided_co2e_point_grams,
    avoided_co2e_quantiles,
    avoided_co2e_rate_quantiles,
    estimate_windows,
    fleet_gauges,
    make_profile,
)
from collector.model.coefficients import SPECPOWER_INSPUR_NF5280M5


def _mixed_fleet(params=None):
    profiles = [
        make_profile("aws", "us-east-1"),
        make_profile("alibaba", "cn-shanghai"),
        make_profile("baremetal", "china-south"),
        make_profile(None, "china"),
        make_profile("gcp", "asia-east1"),
    ]
    dt = np.array([15.0, 30.0, 60.0, 15.0, 20.0])
    cpus = np.array([8.0, 16.0, 112.0, 48.0, 4.0])
    load = np.array([0.6, 0.4, 0.55, 0.35, 0.9])
    rapl = np.array([np.nan, np.nan, 9000.0, np.nan, np.nan])
    batch = WindowBatch(dt, cpus, load * cpus * dt, cpus * 4 * 2**30, rapl)
    return batch, estimate_windows(batch, ProfileArrays.from_profiles(profiles, params), params)


def _collapsed_ranges():
    # every range shrunk to the point value: the band must be the point estimate
    return UncertaintyRanges(
        baseline_utilisation=Range(0.15, 0.15),
        pue_multiplier=Range(1.0, 1.0),
        power_curve_multiplier=Range(1.0, 1.0),
        cloud_power_multiplier=Range(1.0, 1.0),
        rapl_platform_factor=Range(1.33, 1.33),
        grid_intensity_multiplier=Range(1.0, 1.0),
        embodied_kilograms_per_server=Range(1313.0, 1313.0),
        server_lifetime_years=Range(4.0, 4.0),
    )


def test_collapsed_ranges_give_the_point_estimate_of_the_gauges():
    params = ModelParameters(uncertainty=_collapsed_ranges(), reference_alternatives=())
    batch, estimate = _mixed_fleet(params)
    band = avoided_co2e_rate_quantiles(batch, estimate, params, draws=50, seed=7)
    point = fleet_gauges(batch, estimate).avoided_co2e_grams_per_hour
    assert band.p05 == pytest.approx(point, rel=1e-9)
    assert band.p50 == pytest.approx(point, rel=1e-9)
    assert band.p95 == pytest.approx(point, rel=1e-9)
    totals = FleetTotals.per_hour(batch, estimate, params)
    assert avoided_co2e_point_grams(totals, params) == pytest.approx(point, rel=1e-9)


def test_default_band_brackets_the_point_estimate_and_has_width():
    batch, estimate = _mixed_fleet()
    band = avoided_co2e_rate_quantiles(batch, estimate, seed=1)
    point = fleet_gauges(batch, estimate).avoided_co2e_grams_per_hour
    assert band.p05 < point < band.p95
    assert band.p95 - band.p05 > 0.2 * abs(point)


def test_same_seed_same_band_other_seed_other_band():
    batch, estimate = _mixed_fleet()
    first = avoided_co2e_rate_quantiles(batch, estimate, seed=42)
    assert avoided_co2e_rate_quantiles(batch, estimate, seed=42) == first
    assert avoided_co2e_rate_quantiles(batch, estimate, seed=43) != first


def test_lower_baseline_utilisation_range_means_more_avoided():
    batch, estimate = _mixed_fleet()
    low = ModelParameters(
        baseline_utilisation=0.10,
        uncertainty=UncertaintyRanges(baseline_utilisation=Range(0.08, 0.12)),
    )
    high = ModelParameters(
        baseline_utilisation=0.30,
        uncertainty=UncertaintyRanges(baseline_utilisation=Range(0.28, 0.32)),
    )
    assert (
        avoided_co2e_rate_quantiles(batch, estimate, low, seed=3).p50
        > avoided_co2e_rate_quantiles(batch, estimate, high, seed=3).p50
    )


def test_period_variant_matches_the_window_estimate_for_a_uniform_fleet():
    # a year of one 112-CPU node at 50 % in the China grid, as a report would see it
    params = ModelParameters(uncertainty=_collapsed_ranges(), reference_alternatives=())
    year = 365 * 24 * 3600.0
    batch = WindowBatch.of(year, 112, 56 * year)
    profile = make_profile(None, "china", site="china-average-2021")
    estimate = estimate_windows(batch, ProfileArrays.from_profiles([profile], params), params)
    totals = FleetTotals.for_period(
        busy_cpu_seconds=56 * year,
        logical_cpu_seconds=112 * year,
        energy_joules=float(estimate.energy_joules[0]),
        pue=1.49,
        grid_intensity_grams_per_kilowatt_hour=530.6,
    )
    expected = float(
        estimate.avoided_operational_co2e_grams[0] + estimate.avoided_embodied_co2e_grams[0]
    )
    assert avoided_co2e_point_grams(totals, params) == pytest.approx(expected, rel=1e-12)
    band = avoided_co2e_quantiles(totals, params, draws=10, seed=0)
    assert band.p50 == pytest.approx(expected, rel=1e-12)


def test_empty_fleet_has_a_zero_band():
    batch = WindowBatch.of(np.zeros(0) + 1.0, np.ones(0), np.zeros(0))
    estimate = estimate_windows(batch, ProfileArrays.from_profiles([]))
    band = avoided_co2e_rate_quantiles(batch, estimate, seed=0)
    assert (band.p05, band.p50, band.p95) == (0.0, 0.0, 0.0)
    assert fleet_gauges(batch, estimate).fleet_cpu_usage_ratio == 0.0


@pytest.mark.parametrize("draws", [0, -5])
def test_draw_count_must_be_positive(draws):
    totals = FleetTotals.for_period(1.0, 2.0, 3.0, 1.2, 400.0)
    with pytest.raises(ValueError, match="draws"):
        avoided_co2e_quantiles(totals, draws=draws)


def test_monte_carlo_noise_between_seeds_at_1000_draws():
    """How far the band's quantiles move between seeds (docs/methodology.md, section 8).

    Run with -s to print the numbers the doc quotes. The worked example's year on the
    R740 curve at 50 %, 200 seeds.
    """
    year = 365 * 24 * 3600.0
    totals = FleetTotals.for_period(10_286 * year, 20_572 * year, 20_572 / 112 * 224.0 * year,
                                    1.49, 570.3)
    noise = {}
    for draws in (1000, 4000):
        bands = [avoided_band(totals, year, draws=draws, seed=seed) for seed in range(200)]
        for name in ("p05", "p50", "p95"):
            values = np.array([getattr(b.co2e_grams, name) for b in bands])
            noise[draws, name] = float(values.std() / abs(values.mean()))
            print(f"{draws} draws {name}: {100 * noise[draws, name]:.2f} % relative std")
    # about 1-2 % at 1,000 draws, halving with 4 times the draws
    assert all(0.003 < noise[1000, name] < 0.03 for name in ("p05", "p50", "p95"))
    assert all(noise[4000, name] < 0.7 * noise[1000, name] for name in ("p05", "p50", "p95"))
    # drawing the reference between two real servers makes two humps: the median jumps
    two_servers = ModelParameters(reference_alternatives=(SPECPOWER_INSPUR_NF5280M5,))
    medians = np.array([avoided_band(totals, year, two_servers, seed=seed).co2e_grams.p50
                        for seed in range(200)])
    median_noise = float(medians.std() / medians.mean())
    print(f"1000 draws p50, R740 or NF5280M5 drawn: {100 * median_noise:.2f} % relative std")
    assert median_noise > 5 * noise[1000, "p50"]
