"""docs/methodology.md and the built-in tables must agree, value by value."""

import re
from pathlib import Path

import pytest

from collector.model import (
    CLOUD_LINEAR_COEFFICIENTS,
    DEFAULT_GRID_INTENSITY,
    GRID_INTENSITY_BY_REGION,
    PUE_BY_SITE,
    SPECPOWER_DELL_R740,
    ModelParameters,
)
from collector.model.coefficients import PUE_BY_PROVIDER_REGION, SPECPOWER_INSPUR_NF5280M5

DOC = (Path(__file__).parents[2] / "docs" / "methodology.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("region", sorted(GRID_INTENSITY_BY_REGION))
def test_every_grid_region_is_documented_with_its_value(region):
    grams = GRID_INTENSITY_BY_REGION[region].grams_per_kilowatt_hour
    assert re.search(rf"`{re.escape(region)}` {grams:g}\b", DOC), f"{region} {grams:g}"


def test_documented_grid_regions_all_exist_in_the_table():
    # the grid table rows are the lines listing `region` value pairs
    table = DOC.split("| regions and g CO2e/kWh | source |")[1].split("| anything else")[0]
    documented = set(re.findall(r"`([a-z0-9-]+)` [0-9.]+", table))
    assert documented == set(GRID_INTENSITY_BY_REGION)
    assert f"anything else: {DEFAULT_GRID_INTENSITY.grams_per_kilowatt_hour:g}" in DOC


@pytest.mark.parametrize("site", sorted(PUE_BY_SITE))
def test_every_pue_site_is_documented(site):
    assert re.search(rf"\| {re.escape(site)} \| {PUE_BY_SITE[site]:g} \|", DOC)


def test_every_regional_pue_is_documented():
    flat = " ".join(DOC.split())
    for (provider, region), pue in PUE_BY_PROVIDER_REGION.items():
        paragraph = flat.split("(`PUE_BY_PROVIDER_REGION`)")[1].split("An explicit")[0]
        assert provider.capitalize() in paragraph and f"`{region}`" in paragraph
        assert f"{pue:g} (CCF" in paragraph


@pytest.mark.parametrize("provider", sorted(CLOUD_LINEAR_COEFFICIENTS))
def test_cloud_coefficients_are_documented(provider):
    linear = CLOUD_LINEAR_COEFFICIENTS[provider]
    name = {"aws": "AWS", "gcp": "GCP", "azure": "Azure", "alibaba": "Alibaba"}[provider]
    pair = f"{name} {linear.min_watts_per_vcpu:g} / {linear.max_watts_per_vcpu:g}"
    assert pair in " ".join(DOC.split()), pair


def test_reference_curve_and_defaults_are_documented():
    flat = " ".join(DOC.split())
    for curve in (SPECPOWER_DELL_R740, SPECPOWER_INSPUR_NF5280M5):
        assert ", ".join(f"{w:g}" for w in curve.watts) + " W" in flat
        assert curve.source.split(" (published")[0].removeprefix("SPECpower_ssj2008 ") in flat
    params = ModelParameters()
    ranges = params.uncertainty
    assert f"u_b | {params.baseline_utilisation:g} (range" in flat
    assert f"{ranges.baseline_utilisation.low:g} .. {ranges.baseline_utilisation.high:g}" in flat
    assert f"| {params.rapl_platform_factor:g} | Boavizta" in flat
    assert f"{params.memory_watts_per_gibibyte:g} W / GiB" in flat
    assert f"{params.server_lifetime_years:g} years (range" in flat
    for interval in (ranges.cloud_power_multiplier, ranges.rapl_platform_factor,
                     ranges.power_curve_multiplier, ranges.pue_multiplier):
        assert f"{interval.low:g} .. {interval.high:g}" in flat
