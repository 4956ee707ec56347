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
    on the default profile is charged that share of the curve.
    """

    name: str
    watts: tuple[float, ...]
    logical_cpus: int
    source: str = ""

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


# --- power -----------------------------------------------------------------------------

_CCF = "Cloud Carbon Footprint methodology (cloudcarbonfootprint.org/docs/methodology), average"
CLOUD_LINEAR_COEFFICIENTS: MappingProxyType[str, LinearPowerCoefficients] = MappingProxyType(
    {
        "aws": LinearPowerCoefficients(0.74, 3.5, f"{_CCF} AWS min/max watts per vCPU"),
        "gcp": LinearPowerCoefficients(0.71, 4.26, f"{_CCF} GCP min/max watts per vCPU"),
        "azure": LinearPowerCoefficients(0.78, 3.76, f"{_CCF} Azure min/max watts per vCPU"),
        # CCF's Alibaba package (packages/ali, AliFootprintEstimationConstants) uses the
        # same averages as AWS: MIN_WATTS_AVG 0.74, MAX_WATTS_AVG 3.5.
        "alibaba": LinearPowerCoefficients(0.74, 3.5, f"{_CCF} Alibaba min/max watts per vCPU"),
    }
)

# CCF: 0.000392 kWh per GB-hour. Cloud instance sizes are GiB, which CCF takes as given.
MEMORY_WATTS_PER_GIBIBYTE = 0.392

SPECPOWER_DELL_R740 = PowerCurve(
    name="dell-r740-2x-xeon-8180",
    watts=(52.3, 129.0, 147.0, 170.0, 195.0, 224.0, 255.0, 292.0, 344.0, 408.0, 457.0),
    logical_cpus=112,
    source="SPECpower_ssj2008 result 2017-08-29-00780, Dell PowerEdge R740, 2x Xeon Platinum 8180",
)

# RAPL sees CPU packages and DRAM only; Boavizta's default for the rest of the server.
RAPL_PLATFORM_FACTOR = 1.33

# --- facility ----------------------------------------------------------------------------

PUE_BY_SITE: MappingProxyType[str, float] = MappingProxyType(
    {
        "aws": 1.135,  # CCF, AWS average
        "gcp": 1.1,  # CCF, Google average
        "azure": 1.185,  # CCF, Azure average
        "alibaba": 1.3,  # CCF packages/ali PUE_AVG (1.2 in northern regions, 1.3 elsewhere)
        "onprem": 1.58,  # Uptime Institute Global Data Center Survey 2023, average
        "china-average-2021": 1.49,  # China data-centre average PUE, 2021
    }
)
# A node nobody described sits, by assumption, in an average enterprise data centre.
DEFAULT_PUE = PUE_BY_SITE["onprem"]

# --- grid carbon intensity (g CO2e per kWh) ---------------------------------------------


@dataclass(frozen=True)
class GridIntensity:
    grams_per_kilowatt_hour: float
    source: str


_MEE_NATIONAL = "China MEE, national grid average emission factor (2022 data, published 2023)"
_MEE_REGIONAL = "China MEE, regional grid emission factor (2023 data)"
_CCF_AWS = "CCF methodology, AWS region table"
_CCF_GCP = "CCF methodology, Google region table (grid factor, no CFE)"
_CCF_AZURE = "CCF methodology, Azure region table"
_CCF_ALI = "CCF packages/ali, Alibaba region table"


def _table(source: str, **grams: float) -> dict[str, GridIntensity]:
    return {name.replace("_", "-"): GridIntensity(value, source) for name, value in grams.items()}


GRID_INTENSITY_BY_REGION: MappingProxyType[str, GridIntensity] = MappingProxyType(
    {
        "china": GridIntensity(570.3, _MEE_NATIONAL),
        **_table(
            _MEE_REGIONAL,
            china_north=636.1,
            china_northeast=512.2,
            china_east=550.0,
            china_central=527.1,
            china_northwest=554.3,
            china_south=404.2,
            china_southwest=247.2,
        ),
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
            ukwest=228.0,
            francecentral=51.3,
            germanywestcentral=338.7,
            japaneast=465.8,
            japanwest=465.8,
            koreacentral=415.6,
            centralindia=708.2,
            canadacentral=120.0,
            brazilsouth=1.2,
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
DEFAULT_GRID_INTENSITY = GridIntensity(392.8, "CCF methodology, AWS unknown-region average")

# --- embodied carbon and baseline ----------------------------------------------------------

# Dell PowerEdge R740 product carbon footprint, manufacturing share, per 2-socket server.
EMBODIED_KILOGRAMS_PER_SERVER = 1313.0
SERVER_LIFETIME_YEARS = 4.0  # CCF
# NRDC (2014) found 12-18 % average utilisation in traditional, dedicated-server estates.
BASELINE_UTILISATION = 0.15
