"""DESIGN's check of the 2021 claim ("over a thousand" servers saved, 4,459 tCO2e cut).

Every number docs/methodology.md quotes for the claim is computed here with the
model's own functions and pinned, so the doc and the code cannot drift apart.
"""

import numpy as np
import pytest

from collector.model import (
    GRID_INTENSITY_BY_REGION,
    SPECPOWER_DELL_R740,
    FleetTotals,
    ModelParameters,
    PowerCurve,
    ProfileArrays,
    WindowBatch,
    avoided_co2e_quantiles,
    estimate_windows,
    fleet_gauges,
    make_profile,
)
from collector.model.coefficients import SECONDS_PER_YEAR

TONNE = 1e6  # grams
CLAIMED_TONNES = 4_459
# The worked example: 48-logical-CPU servers (R740 watts), 10,286 busy CPUs, 50 % elastic.
REFERENCE = PowerCurve("r740-watts-48-cpus", SPECPOWER_DELL_R740.watts, 48)
PARAMS = ModelParameters(reference_curve=REFERENCE)
BUSY_CPUS = 10_286
LOGICAL_CPUS = BUSY_CPUS / 0.5
# The factor a Chinese company reports to MEE with (2022 national grid average for enterprise
# reporting), by its own region key; the default "china" row is the 2023-data series (530.6).
MEE_REPORTING_FACTOR = GRID_INTENSITY_BY_REGION["china-mee-reporting-2022"].grams_per_kilowatt_hour


def _one_year(grid_intensity):
    profile = make_profile(
        None,
        "china-mee-reporting-2022",
        site="china-average-2021",
        grid_intensity_grams_per_kilowatt_hour=grid_intensity,
    )
    batch = WindowBatch.of(SECONDS_PER_YEAR, LOGICAL_CPUS, BUSY_CPUS * SECONDS_PER_YEAR)
    estimate = estimate_windows(batch, ProfileArrays.from_profiles([profile], PARAMS), PARAMS)
    return batch, estimate


def test_a_thousand_avoided_servers_for_one_year_at_chinas_grid_factor():
    assert MEE_REPORTING_FACTOR == 570.3
    batch, estimate = _one_year(MEE_REPORTING_FACTOR)
    gauges = fleet_gauges(batch, estimate)
    assert gauges.avoided_servers == pytest.approx(1000.03, abs=0.01)
    # 1,428.6 servers at 138 W against 428.6 at 224 W: 101.1 kW, 886.0 MWh a year
    assert estimate.avoided_energy_joules[0] / 3.6e9 == pytest.approx(886.04, abs=0.01)
    assert estimate.avoided_operational_co2e_grams[0] / TONNE == pytest.approx(752.9, abs=0.05)
    # amortised manufacturing: 1,000 servers * 1,313 kg / 4 years
    assert estimate.avoided_embodied_co2e_grams[0] / TONNE == pytest.approx(328.26, abs=0.01)


def test_designs_767_tonnes_come_from_the_earlier_581_g_factor():
    _, estimate = _one_year(581.0)
    assert estimate.avoided_operational_co2e_grams[0] / TONNE == pytest.approx(767.0, abs=0.05)


def test_fleets_and_spans_that_reach_the_claimed_4459_tonnes():
    _, estimate = _one_year(MEE_REPORTING_FACTOR)
    operational = float(estimate.avoided_operational_co2e_grams[0]) / TONNE
    embodied_per_year = float(estimate.avoided_embodied_co2e_grams[0]) / TONNE
    servers = 1000.03
    manufacturing_per_server = 1.313  # tonnes, counted once when the server is never bought

    # (a) the 1,000 avoided servers over their 4-year life: operations plus manufacturing
    lifetime = 4 * (operational + embodied_per_year)
    assert lifetime == pytest.approx(4324.7, abs=0.1)
    assert lifetime / CLAIMED_TONNES == pytest.approx(0.970, abs=0.001)

    # (b) one year, amortised embodied: the model is linear in fleet size at fixed
    # utilisations, so the avoided servers needed scale the 1,000-server result
    needed_amortised = servers * CLAIMED_TONNES / (operational + embodied_per_year)
    assert round(needed_amortised) == 4124

    # (c) one year of operations plus the whole manufacturing footprint of the avoided servers
    needed_one_off = CLAIMED_TONNES / (operational / servers + manufacturing_per_server)
    assert round(needed_one_off) == 2158


def test_uncertainty_band_of_the_thousand_server_year():
    _, estimate = _one_year(MEE_REPORTING_FACTOR)
    totals = FleetTotals.for_period(
        busy_cpu_seconds=BUSY_CPUS * SECONDS_PER_YEAR,
        logical_cpu_seconds=LOGICAL_CPUS * SECONDS_PER_YEAR,
        energy_joules=float(estimate.energy_joules[0]),
        pue=1.49,
        grid_intensity_grams_per_kilowatt_hour=MEE_REPORTING_FACTOR,
    )
    band = avoided_co2e_quantiles(totals, PARAMS, draws=1000, seed=2021)
    tonnes = np.array([band.p05, band.p50, band.p95]) / TONNE
    point = float(
        estimate.avoided_operational_co2e_grams[0] + estimate.avoided_embodied_co2e_grams[0]
    )
    assert point / TONNE == pytest.approx(1081.2, abs=0.1)
    np.testing.assert_allclose(tonnes, [695.2, 1016.0, 1467.5], atol=0.5)
