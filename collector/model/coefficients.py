"""Built-in coefficient tables, each with its source (docs/methodology.md lists them all).

Units are in the names: watts, grams per kilowatt-hour, kilograms, years. Every value
here is only a default: `ModelParameters`, `make_profile` and the config file override it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

# SPECpower_ssj2008 measures at 0 % (active idle) and 10 % .. 100 % of load; every curve in
# kubecarbon uses these 11 points, so curves of different servers stack into one array.
SPECPOWER_UTILISATION_POINTS: tuple[float, ...] = tuple(i / 10 for i in range(11))

# Cloud Carbon Footprint (CCF) uses 8,760 h a year (35,040 h for 4 years).
SECONDS_PER_YEAR = 365 * 24 * 3600
SECONDS_PER_HOUR = 3600
JOULES_PER_KILOWATT_HOUR = 3.6e6


@dataclass(frozen=True)
class Range:
    """A closed interval [low, high]; draws are uniform inside it."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"range: low {self.low} is above high {self.high}")


@dataclass(frozen=True)
class LinearPowerCoefficients:
    """CCF's linear model for a cloud VM: watts per vCPU at 0 % and at 100 % CPU."""

    min_watts_per_vcpu: float
    max_watts_per_vcpu: float
    source: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.min_watts_per_vcpu <= self.max_watts_per_vcpu:
            raise ValueError(
                "linear power coefficients: need 0 <= min_watts_per_vcpu <= max_watts_per_vcpu, "
                f"got {self.min_watts_per_vcpu} and {self.max_watts_per_vcpu}"
            )


@dataclass(frozen=True)
class PowerCurve:
    """Whole-server wall power at the 11 SPECpower load points (0 %, 10 %, .., 100 %).

    `logical_cpus` is the server's hardware thread count: a node with fewer logical CPUs
    on the default profile is charged that share of the curve. `memory_gibibytes` is the
    memory installed in the measured server, whose power is inside the curve (0: unknown).
    """

    name: str
    watts: tuple[float, ...]
    logical_cpus: int
    source: str = ""
    memory_gibibytes: float = 0.0

    @property
    def memory_gibibytes_per_logical_cpu(self) -> float:
        return self.memory_gibibytes / self.logical_cpus

    def __post_init__(self) -> None:
        if len(self.watts) != len(SPECPOWER_UTILISATION_POINTS):
            raise ValueError(
                f"power curve {self.name!r}: needs {len(SPECPOWER_UTILISATION_POINTS)} watt "
                f"values (0 %, 10 %, .., 100 %), got {len(self.watts)}"
            )
        if any(not (w >= 0 and w < float("inf")) for w in self.watts):
            raise ValueError(f"power curve {self.name!r}: watts must be finite and >= 0")
        if any(b < a for a, b in zip(self.watts, self.watts[1:], strict=False)):
            raise ValueError(f"power curve {self.name!r}: watts must not decrease with load")
        if self.logical_cpus <= 0:
            raise ValueError(f"power curve {self.name!r}: logical_cpus must be > 0")
        if not 0 <= self.memory_gibibytes < float("inf"):
            raise ValueError(f"power curve {self.name!r}: memory_gibibytes must be finite, >= 0")


# --- power -----------------------------------------------------------------------------

# Cloud Carbon Footprint (CCF), github.com/cloud-carbon-footprint/cloud-carbon-footprint at
# commit b7a049c7 (2024-03-25): its methodology page is microsite/docs/HowItWorks/Methodology.md,
# its code packages/<provider>/src/domain/<Provider>FootprintEstimationConstants.ts.
_CCF = "Cloud Carbon Footprint @ b7a049c7"
_CCF_PAGE = f"{_CCF}, microsite/docs/HowItWorks/Methodology.md"
# Cloud watts feed the actual (elastic) fleet, never the baseline: where CCF's page and code
# differ, the higher pair is kept, so the actual fleet is not made to look cheaper than CCF
# says it may be and avoided energy is not overstated (docs/methodology.md, section 2).
CLOUD_LINEAR_COEFFICIENTS: MappingProxyType[str, LinearPowerCoefficients] = MappingProxyType(
    {
        "aws": LinearPowerCoefficients(
            0.74,
            3.5,
            f"{_CCF}, packages/aws AwsFootprintEstimationConstants.ts MIN_WATTS_AVG, "
            "MAX_WATTS_AVG (the methodology page agrees)",
        ),
        "gcp": LinearPowerCoefficients(
            0.71,
            4.26,
            f"{_CCF_PAGE}, GCP median min/max watts; CCF's code has 0.68 / 4.11 "
            "(GcpFootprintEstimationConstants.ts MIN/MAX_WATTS_MEDIAN since commit 7c6b24c5, "
            "2021-10-31, which added AMD EPYC 3rd gen): the higher page pair is kept",
        ),
        "azure": LinearPowerCoefficients(
            0.78,
            3.76,
            f"{_CCF_PAGE}, Azure average min/max watts; CCF's code has 0.74 / 3.54 "
            "(AzureFootprintEstimationConstants.ts MIN/MAX_WATTS_AVG since commit e7d1a712, "
            "2021-10-09, which added AMD EPYC 3rd gen): the higher page pair is kept",
        ),
        "alibaba": LinearPowerCoefficients(
            0.74,
            3.5,
            f"{_CCF}, packages/ali AliFootprintEstimationConstants.ts MIN_WATTS_AVG, "
            "MAX_WATTS_AVG (the AWS averages; the page has no Alibaba section)",
        ),
    }
)

# CCF: 0.000392 kWh per GB-hour. Cloud instance sizes are GiB, which CCF takes as given.
# Charged only to memory above the reference server's memory per logical CPU: the
# per-vCPU watts come from whole SPECpower servers, memory included (CCF's own rule,
# methodology page "Memory", with the reference result in place of the database average).
MEMORY_WATTS_PER_GIBIBYTE = 0.392

# The 11 "Average Active Power (W)" values of each result, as published (3 significant
# figures); tests/model/test_reference_results.py rebuilds each result's overall score.
SPECPOWER_DELL_R740 = PowerCurve(
    name="dell-r740-2x-xeon-8180",
    watts=(52.3, 129.0, 147.0, 170.0, 195.0, 224.0, 255.0, 292.0, 344.0, 408.0, 457.0),
    logical_cpus=112,
    source="SPECpower_ssj2008 result power_ssj2008-20170829-00780 (published 2017-09-13), "
    "Dell PowerEdge R740, 2x Xeon Platinum 8180, 112 threads, 192 GB; 11,790 overall ssj_ops/W",
    memory_gibibytes=192.0,  # DIMM sizes are binary: the published "GB" are GiB
)
# A real 48-thread server, for references of that size (never R740 watts on 48 threads).
SPECPOWER_INSPUR_NF5280M5 = PowerCurve(
    name="inspur-nf5280m5-2x-xeon-silver-4214",
    watts=(112.0, 138.0, 150.0, 161.0, 175.0, 184.0, 198.0, 212.0, 242.0, 261.0, 289.0),
    logical_cpus=48,
    source="SPECpower_ssj2008 result power_ssj2008-20210707-01115 (published 2021-08-19), "
    "Inspur NF5280M5, 2x Xeon Silver 4214, 48 threads, 384 GB; 5,116 overall ssj_ops/W",
    memory_gibibytes=384.0,
)

# Every built-in SPECpower result by name: what a reference_server label names.
SPECPOWER_RESULTS: MappingProxyType[str, PowerCurve] = MappingProxyType(
    {curve.name: curve for curve in (SPECPOWER_DELL_R740, SPECPOWER_INSPUR_NF5280M5)}
)

# RAPL sees CPU packages and DRAM only; Boavizta's default for the rest of the server,
# and its range: the rest of the server adds 20-60 % to what RAPL measures.
RAPL_PLATFORM_FACTOR = 1.33
RAPL_PLATFORM_FACTOR_RANGE = Range(1.2, 1.6)

# How far one VM's per-vCPU watts may be from CCF's average: CCF's own per-processor max
# watts for the processors AWS runs today (Broadwell and newer, AMD EPYC 1st/2nd gen,
# Graviton2: 1.69 .. 4.26, AwsFootprintEstimationConstants.ts MAX_WATTS_BY_COMPUTE_PROCESSOR
# @ b7a049c7) over MAX_WATTS_AVG 3.5.
CLOUD_POWER_MULTIPLIER_RANGE = Range(0.48, 1.22)

# --- facility ----------------------------------------------------------------------------

PUE_BY_SITE: MappingProxyType[str, float] = MappingProxyType(
    {
        "aws": 1.135,  # CCF AWS PUE_AVG (page: "a conservative guess")
        "gcp": 1.1,  # CCF GCP PUE_AVG, Google's fleet average
        "azure": 1.185,  # CCF Azure PUE_AVG, Microsoft's trailing 12-month fleet average
        "alibaba": 1.3,  # CCF packages/ali PUE_AVG (its regions outside the north)
        "onprem": 1.58,  # Uptime Institute Global Data Center Survey 2023, average
        "china-average-2021": 1.49,  # China data-centre average PUE, 2021 (CAICT)
    }
)
# A provider's own value for a region, used when a profile names neither `site` nor `pue`.
# CCF packages/ali PUE_TRAILING_TWELVE_MONTH: 1.2 in the five northern regions.
PUE_BY_PROVIDER_REGION: MappingProxyType[tuple[str, str], float] = MappingProxyType(
    {
        ("alibaba", region): 1.2
        for region in (
            "cn-qingdao",
            "cn-beijing",
            "cn-zhangjiakou",
            "cn-huhehaote",
            "cn-wulanchabu",
        )
    }
)
# A node nobody described sits, by assumption, in an average enterprise data centre.
DEFAULT_PUE = PUE_BY_SITE["onprem"]

# --- grid carbon intensity (g CO2e per kWh) ---------------------------------------------

# A sanity band for an annual grid average, not a law: CCF's own region averages run from
# 5.67 g/kWh (Azure swedencentral) to 960 g/kWh (Azure australiasoutheast); 1,200 leaves room
# for lignite and oil shale. It catches unit slips (brazilsouth once read 1.2); a row
# outside it must say why.
PLAUSIBLE_GRID_GRAMS_PER_KILOWATT_HOUR = (5.0, 1200.0)


@dataclass(frozen=True)
class GridIntensity:
    grams_per_kilowatt_hour: float
    source: str
    # why the value is right although it lies outside PLAUSIBLE_GRID_GRAMS_PER_KILOWATT_HOUR
    outside_plausible_band_because: str = ""


# China's Ministry of Ecology and Environment (MEE) publishes CO2 factors, not CO2e: the CH4
# and N2O of fossil generation are left out, so using them as CO2e (kubecarbon does, without
# adjustment) slightly understates both emissions and avoided emissions.
# Default: one series, MEE and NBS "2023 electricity CO2 emission factors" (2023 data,
# announcement reported in January 2026): national and regional averages of one calculation.
_MEE_2023 = "China MEE and NBS, 2023 electricity CO2 emission factors (2023 data, reported 2026-01)"
_MEE_2023_NATIONAL = f"{_MEE_2023}, national average; CO2 only, not CO2e"
_MEE_2023_REGIONAL = f"{_MEE_2023}, regional grid averages; CO2 only, not CO2e"
# The factor MEE prescribes for enterprise GHG reporting, under its own name so it is never
# mixed with the series above: "2022 national grid average emission factor", MEE notice on
# 2023-2025 power-sector GHG reporting (February 2023).
_MEE_REPORTING_2022 = (
    "China MEE, national grid average emission factor for enterprise GHG reporting, 2022 "
    "(MEE notice of February 2023 on 2023-2025 reporting); CO2 only, not CO2e"
)
# CCF tables in t/kWh, here times 1e6 and rounded to 0.1 g (tests/model/test_coefficient_sources.py
# holds CCF's own values and checks every row against them).
_CCF_AWS = f"{_CCF}, packages/aws AWS_EMISSIONS_FACTORS_METRIC_TON_PER_KWH"
_CCF_GCP = (
    f"{_CCF_PAGE}, GCP grid factors without carbon-free energy (the values CCF's code used "
    "from commit d7fd8fda, 2021-08, to 7fd0e620, 2023-05)"
)
_CCF_AZURE = f"{_CCF}, packages/azure AZURE_EMISSIONS_FACTORS_METRIC_TON_PER_KWH"
_CCF_ALI = f"{_CCF}, packages/ali ALI_EMISSIONS_FACTORS_METRIC_TON_PER_KWH"


def _table(source: str, **grams: float) -> dict[str, GridIntensity]:
    return {name.replace("_", "-"): GridIntensity(value, source) for name, value in grams.items()}


GRID_INTENSITY_BY_REGION: MappingProxyType[str, GridIntensity] = MappingProxyType(
    {
        "china": GridIntensity(530.6, _MEE_2023_NATIONAL),
        **_table(
            _MEE_2023_REGIONAL,
            china_north=636.1,
            china_northeast=512.2,
            china_east=550.0,
            china_central=527.1,
            china_northwest=554.3,
            china_south=404.2,
            china_southwest=247.2,
        ),
        "china-mee-reporting-2022": GridIntensity(570.3, _MEE_REPORTING_2022),
        # AWS: US regions use the EPA eGRID NERC factors CCF applies (SERC, RFC, WECC).
        **_table(
            _CCF_AWS,
            us_east_1=379.1,
            us_east_2=410.6,
            us_west_1=322.2,
            us_west_2=322.2,
            af_south_1=900.6,
            ap_east_1=710.0,
            ap_south_1=708.2,
            ap_northeast_1=465.8,
            ap_northeast_2=415.6,
            ap_northeast_3=465.8,
            ap_southeast_1=408.0,
            ap_southeast_2=760.0,
            ap_southeast_3=717.7,
            ca_central_1=120.0,
            cn_north_1=537.4,
            cn_northwest_1=537.4,
            eu_central_1=311.0,
            eu_west_1=278.6,
            eu_west_2=225.0,
            eu_west_3=51.1,
            eu_south_1=213.4,
            eu_north_1=8.8,
            me_south_1=505.9,
            me_central_1=404.1,
            sa_east_1=61.7,
        ),
        **_table(
            _CCF_GCP,
            us_central1=454.0,
            us_east1=480.0,
            us_east4=361.0,
            us_west1=78.0,
            us_west2=253.0,
            us_west3=533.0,
            us_west4=455.0,
            asia_east1=540.0,
            asia_east2=453.0,
            asia_northeast1=554.0,
            asia_northeast2=442.0,
            asia_northeast3=457.0,
            asia_south1=721.0,
            asia_south2=657.0,
            asia_southeast1=493.0,
            asia_southeast2=647.0,
            australia_southeast1=727.0,
            australia_southeast2=691.0,
            europe_central2=622.0,
            europe_north1=133.0,
            europe_west1=212.0,
            europe_west2=231.0,
            europe_west3=293.0,
            europe_west4=410.0,
            europe_west6=87.0,
            northamerica_northeast1=27.0,
            southamerica_east1=103.0,
        ),
        # Azure's node label values (topology.kubernetes.io/region) are lower-case names.
        **_table(
            _CCF_AZURE,
            centralus=426.3,
            eastus=379.1,
            eastus2=379.1,
            northcentralus=410.6,
            southcentralus=373.2,
            westcentralus=322.2,
            westus=322.2,
            westus2=322.2,
            westus3=322.2,
            eastasia=710.0,
            southeastasia=408.0,
            northeurope=278.6,
            westeurope=328.4,
            uksouth=225.0,
            ukwest=225.0,
            francecentral=51.3,
            germanywestcentral=338.7,
            japaneast=465.8,
            japanwest=465.8,
            koreacentral=415.6,
            centralindia=708.2,
            canadacentral=120.0,
            brazilsouth=61.7,
        ),
        **_table(
            _CCF_ALI,
            cn_hangzhou=626.0,
            cn_shanghai=626.0,
            cn_nanjing=626.0,
            cn_shenzhen=585.0,
            cn_heyuan=585.0,
            cn_guangzhou=585.0,
            cn_qingdao=665.0,
            cn_beijing=665.0,
            cn_zhangjiakou=665.0,
            cn_huhehaote=665.0,
            cn_wulanchabu=665.0,
        ),
    }
)
# Unknown region: CCF's own fallback for AWS, the mean of its AWS region factors
# (0.00039278188 t/kWh). Set the region (or a value) in the config to do better.
DEFAULT_GRID_INTENSITY = GridIntensity(392.8, f"{_CCF_AWS}, UNKNOWN (average of its regions)")

# --- embodied carbon and baseline ----------------------------------------------------------

# Dell PowerEdge R740 product carbon footprint, manufacturing share, per 2-socket server.
EMBODIED_KILOGRAMS_PER_SERVER = 1313.0
SERVER_LIFETIME_YEARS = 4.0  # CCF
# NRDC (2014) found 12-18 % average utilisation in traditional, dedicated-server estates.
BASELINE_UTILISATION = 0.15
