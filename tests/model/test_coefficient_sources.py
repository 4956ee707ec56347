"""Every built-in coefficient against its source, in the source's own unit.

The grid tables below are copied from the sources as published (CCF in t CO2e/kWh, MEE in
kg CO2/kWh), so a unit slip in collector/model/coefficients.py (Azure brazilsouth was once
1.2 g/kWh for CCF's 0.0000617 t/kWh) fails here. CCF is
github.com/cloud-carbon-footprint/cloud-carbon-footprint at commit b7a049c7 (2024-03-25).
"""

import pytest

from collector.model import make_profile
from collector.model.coefficients import (
    CLOUD_LINEAR_COEFFICIENTS,
    DEFAULT_GRID_INTENSITY,
    GRID_INTENSITY_BY_REGION,
    PLAUSIBLE_GRID_GRAMS_PER_KILOWATT_HOUR,
    PUE_BY_PROVIDER_REGION,
    PUE_BY_SITE,
    GridIntensity,
)

GRAMS_PER_TONNE = 1e6
GRAMS_PER_KILOGRAM = 1e3
# The table keeps CCF's factors in g/kWh to 0.1 g (379.069 -> 379.1).
ROUNDING_GRAMS = 0.05

# packages/aws/src/domain/AwsFootprintEstimationConstants.ts; the US regions name NERC
# regions, whose factors are in packages/core/src/FootprintEstimationConstants.ts
# (SERC 0.000379069, RFC 0.000410608, WECC 0.000322167).
CCF_AWS_TONNES_PER_KWH = {
    "us-east-1": 0.000379069,
    "us-east-2": 0.000410608,
    "us-west-1": 0.000322167,
    "us-west-2": 0.000322167,
    "af-south-1": 0.0009006,
    "ap-east-1": 0.00071,
    "ap-south-1": 0.0007082,
    "ap-northeast-3": 0.0004658,
    "ap-northeast-2": 0.0004156,
    "ap-southeast-1": 0.000408,
    "ap-southeast-2": 0.00076,
    "ap-southeast-3": 0.0007177,
    "ap-northeast-1": 0.0004658,
    "ca-central-1": 0.00012,
    "cn-north-1": 0.0005374,
    "cn-northwest-1": 0.0005374,
    "eu-central-1": 0.000311,
    "eu-west-1": 0.0002786,
    "eu-west-2": 0.000225,
    "eu-south-1": 0.0002134,
    "eu-west-3": 0.0000511,
    "eu-north-1": 0.0000088,
    "me-south-1": 0.0005059,
    "me-central-1": 0.0004041,
    "sa-east-1": 0.0000617,
}
CCF_AWS_UNKNOWN_TONNES_PER_KWH = 0.00039278188  # "Average of the above regions"

# microsite/docs/HowItWorks/Methodology.md, Appendix V, GCP table 2 (without CFE %).
CCF_GCP_TONNES_PER_KWH = {
    "us-central1": 0.000454,
    "us-east1": 0.00048,
    "us-east4": 0.000361,
    "us-west1": 0.000078,
    "us-west2": 0.000253,
    "us-west3": 0.000533,
    "us-west4": 0.000455,
    "asia-east1": 0.00054,
    "asia-east2": 0.000453,
    "asia-northeast1": 0.000554,
    "asia-northeast2": 0.000442,
    "asia-northeast3": 0.000457,
    "asia-south1": 0.000721,
    "asia-south2": 0.000657,
    "asia-southeast1": 0.000493,
    "asia-southeast2": 0.000647,
    "australia-southeast1": 0.000727,
    "australia-southeast2": 0.000691,
    "europe-central2": 0.000622,
    "europe-north1": 0.000133,
    "europe-west1": 0.000212,
    "europe-west2": 0.000231,
    "europe-west3": 0.000293,
    "europe-west4": 0.00041,
    "europe-west6": 0.000087,
    "northamerica-northeast1": 0.000027,
    "southamerica-east1": 0.000103,
}

# packages/azure/src/domain/AzureFootprintEstimationConstants.ts (US regions: NERC MRO
# 0.000426254, SERC, RFC, TRE 0.000373231, WECC). The methodology page lists UK West at
# 0.000228; the code, and the page's own UK and UK South rows, have 0.000225 for the same
# national grid: the code's value is kept.
CCF_AZURE_TONNES_PER_KWH = {
    "centralus": 0.000426254,
    "eastus": 0.000379069,
    "eastus2": 0.000379069,
    "northcentralus": 0.000410608,
    "southcentralus": 0.000373231,
    "westcentralus": 0.000322167,
    "westus": 0.000322167,
    "westus2": 0.000322167,
    "westus3": 0.000322167,
    "eastasia": 0.00071,
    "southeastasia": 0.000408,
    "northeurope": 0.0002786,
    "westeurope": 0.0003284,
    "uksouth": 0.000225,
    "ukwest": 0.000225,
    "francecentral": 0.00005128,
    "germanywestcentral": 0.00033866,
    "japaneast": 0.0004658,
    "japanwest": 0.0004658,
    "koreacentral": 0.0004156,
    "centralindia": 0.0007082,
    "canadacentral": 0.00012,
    "brazilsouth": 0.0000617,
}

# packages/ali/src/domain/AliFootprintEstimationConstants.ts (its region keys are the
# Chinese names of packages/ali/src/lib/AliRegions.ts: CN_BEIJING is Beijing, North China 2).
CCF_ALIBABA_TONNES_PER_KWH = {
    "cn-hangzhou": 0.000626,
    "cn-shanghai": 0.000626,
    "cn-nanjing": 0.000626,
    "cn-shenzhen": 0.000585,
    "cn-heyuan": 0.000585,
    "cn-guangzhou": 0.000585,
    "cn-qingdao": 0.000665,
    "cn-beijing": 0.000665,
    "cn-zhangjiakou": 0.000665,
    "cn-huhehaote": 0.000665,
    "cn-wulanchabu": 0.000665,
}

# MEE and NBS, announcement on the 2023 electricity CO2 emission factors (2023 data), as
# reported by Guangming Daily and China Electric Power News in January 2026: national
# 0.5306 kg CO2/kWh (2022: 0.5366); regional averages for North, Northeast, East, Central,
# Northwest 0.6361, 0.5122, 0.5500, 0.5271, 0.5543; South and Southwest 0.4042, 0.2472.
MEE_2023_KILOGRAMS_CO2_PER_KWH = {
    "china": 0.5306,
    "china-north": 0.6361,
    "china-northeast": 0.5122,
    "china-east": 0.5500,
    "china-central": 0.5271,
    "china-northwest": 0.5543,
    "china-south": 0.4042,
    "china-southwest": 0.2472,
}
# MEE notice on 2023-2025 power-sector GHG reporting (February 2023): "2022 national grid
# average emission factor 0.5703 tCO2/MWh", the factor for enterprise reporting to MEE.
MEE_REPORTING_2022_TONNES_CO2_PER_MWH = 0.5703


def _ccf_rows():
    for table in (
        CCF_AWS_TONNES_PER_KWH,
        CCF_GCP_TONNES_PER_KWH,
        CCF_AZURE_TONNES_PER_KWH,
        CCF_ALIBABA_TONNES_PER_KWH,
    ):
        yield from table.items()


def test_every_grid_row_has_a_pinned_source_value():
    pinned = {region for region, _ in _ccf_rows()}
    pinned |= set(MEE_2023_KILOGRAMS_CO2_PER_KWH) | {"china-mee-reporting-2022"}
    assert pinned == set(GRID_INTENSITY_BY_REGION)


@pytest.mark.parametrize(("region", "tonnes_per_kwh"), list(_ccf_rows()))
def test_ccf_rows_equal_ccfs_values_in_grams(region, tonnes_per_kwh):
    row = GRID_INTENSITY_BY_REGION[region]
    assert row.grams_per_kilowatt_hour == pytest.approx(
        tonnes_per_kwh * GRAMS_PER_TONNE, abs=ROUNDING_GRAMS
    )
    assert "Cloud Carbon Footprint @ b7a049c7" in row.source


def test_brazil_south_is_ccfs_61_7_grams_not_1_2():
    assert GRID_INTENSITY_BY_REGION["brazilsouth"].grams_per_kilowatt_hour == 61.7
    assert GRID_INTENSITY_BY_REGION["sa-east-1"].grams_per_kilowatt_hour == 61.7


def test_default_intensity_is_ccfs_unknown_aws_region():
    assert DEFAULT_GRID_INTENSITY.grams_per_kilowatt_hour == pytest.approx(
        CCF_AWS_UNKNOWN_TONNES_PER_KWH * GRAMS_PER_TONNE, abs=ROUNDING_GRAMS
    )


def test_mee_2023_national_and_regional_table():
    for region, kilograms in MEE_2023_KILOGRAMS_CO2_PER_KWH.items():
        row = GRID_INTENSITY_BY_REGION[region]
        assert row.grams_per_kilowatt_hour == pytest.approx(kilograms * GRAMS_PER_KILOGRAM)
        assert "2023 electricity CO2 emission factors (2023 data" in row.source
        assert "CO2 only, not CO2e" in row.source


def test_china_default_is_one_series_and_the_reporting_factor_has_its_own_name():
    # the default "china" is the national value of the same series as the regions
    sources = {GRID_INTENSITY_BY_REGION[r].source for r in MEE_2023_KILOGRAMS_CO2_PER_KWH}
    assert len({s.split(",")[0] for s in sources}) == 1
    assert GRID_INTENSITY_BY_REGION["china"].grams_per_kilowatt_hour == 530.6
    reporting = GRID_INTENSITY_BY_REGION["china-mee-reporting-2022"]
    assert reporting.grams_per_kilowatt_hour == pytest.approx(
        MEE_REPORTING_2022_TONNES_CO2_PER_MWH * GRAMS_PER_KILOGRAM
    )
    assert "enterprise GHG reporting" in reporting.source
    assert "CO2 only, not CO2e" in reporting.source
    # a user who reports to MEE picks it by its region key
    profile = make_profile(None, "china-mee-reporting-2022")
    assert profile.grid_intensity_grams_per_kilowatt_hour == 570.3


def _outside_plausible_band(table):
    low, high = PLAUSIBLE_GRID_GRAMS_PER_KILOWATT_HOUR
    return sorted(
        region
        for region, row in table.items()
        if not low <= row.grams_per_kilowatt_hour <= high and not row.outside_plausible_band_because
    )


def test_every_grid_value_is_physically_plausible_or_says_why():
    table = {**GRID_INTENSITY_BY_REGION, "(default)": DEFAULT_GRID_INTENSITY}
    assert _outside_plausible_band(table) == []
    assert all(row.source for row in table.values())


def test_the_band_check_catches_the_old_brazil_slip_unless_justified():
    slip = {"brazilsouth": GridIntensity(1.2, "the value the table once had")}
    assert _outside_plausible_band(slip) == ["brazilsouth"]
    explained = {"hydro-only": GridIntensity(1.2, "a private grid", "run-of-river hydro only")}
    assert _outside_plausible_band(explained) == []


# CCF's per-vCPU watts (min, max): the methodology page and the code differ for GCP and Azure.
CCF_PAGE_WATTS = {"aws": (0.74, 3.5), "gcp": (0.71, 4.26), "azure": (0.78, 3.76)}
CCF_CODE_WATTS = {
    "aws": (0.74, 3.5),  # AWS_CLOUD_CONSTANTS MIN_WATTS_AVG, MAX_WATTS_AVG
    "gcp": (0.68, 4.11),  # GCP_CLOUD_CONSTANTS MIN_WATTS_MEDIAN, MAX_WATTS_MEDIAN
    "azure": (0.74, 3.54),  # AZURE_CLOUD_CONSTANTS MIN_WATTS_AVG, MAX_WATTS_AVG
    "alibaba": (0.74, 3.5),  # ALI_CLOUD_CONSTANTS MIN_WATTS_AVG, MAX_WATTS_AVG
}


@pytest.mark.parametrize("provider", sorted(CCF_CODE_WATTS))
def test_cloud_watts_are_the_higher_of_ccfs_page_and_code(provider):
    # these watts power the actual fleet: the higher pair never overstates avoided energy
    page = CCF_PAGE_WATTS.get(provider, CCF_CODE_WATTS[provider])
    expected = tuple(max(a, b) for a, b in zip(page, CCF_CODE_WATTS[provider], strict=True))
    linear = CLOUD_LINEAR_COEFFICIENTS[provider]
    assert (linear.min_watts_per_vcpu, linear.max_watts_per_vcpu) == expected
    assert linear.source


def test_pue_by_site_against_ccf_and_the_survey_figures():
    assert dict(PUE_BY_SITE) == {
        "aws": 1.135,  # CCF AWS PUE_AVG
        "gcp": 1.1,  # CCF GCP PUE_AVG
        "azure": 1.185,  # CCF Azure PUE_AVG
        "alibaba": 1.3,  # CCF Alibaba PUE_AVG
        "onprem": 1.58,  # Uptime Institute survey 2023
        "china-average-2021": 1.49,  # China's data centres, 2021
    }


ALIBABA_NORTH = ("cn-qingdao", "cn-beijing", "cn-zhangjiakou", "cn-huhehaote", "cn-wulanchabu")


def test_alibaba_pue_is_ccfs_regional_value():
    # CCF ALI_CLOUD_CONSTANTS.PUE_TRAILING_TWELVE_MONTH: 1.2 north, 1.3 elsewhere
    assert dict(PUE_BY_PROVIDER_REGION) == {("alibaba", region): 1.2 for region in ALIBABA_NORTH}
    for region in ALIBABA_NORTH:
        assert make_profile("alibaba", region).pue == 1.2
    for region in ("cn-hangzhou", "cn-shanghai", "cn-nanjing", "cn-shenzhen", "cn-heyuan"):
        assert make_profile("alibaba", region).pue == 1.3
    assert make_profile("alibaba", None).pue == 1.3
    # an explicit site or PUE still wins over the provider's regional value
    assert make_profile("alibaba", "cn-beijing", site="onprem").pue == 1.58
    assert make_profile("alibaba", "cn-beijing", pue=1.4).pue == 1.4
    # the regional value belongs to Alibaba's data centres, not to anything in that region
    assert make_profile("baremetal", "cn-beijing").pue == PUE_BY_SITE["onprem"]
