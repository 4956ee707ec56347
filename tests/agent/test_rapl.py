"""RAPL: package + DRAM only, each joule once, wrap-around at max_energy_range_uj."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from agent_testkit import FIXTURES

from agent.sampler import Sample, window_report
from agent.sources import SourceError
from agent.sources.rapl import EnergyCounter, RaplSource, zone_kind

MAX_PACKAGE = 262143328850
MAX_DRAM = 65712999613


def set_energy(root: Path, zone: str, microjoules: int) -> None:
    (root / "sys/class/powercap" / zone / "energy_uj").write_text(f"{microjoules}\n")


def test_server_reads_packages_and_their_dram_but_not_the_mmio_duplicate():
    assert RaplSource(FIXTURES / "rapl-server" / "sys").sample() == {
        "intel-rapl:0": EnergyCounter("package", 183_004_522_117, MAX_PACKAGE),
        "intel-rapl:0:0": EnergyCounter("dram", 20_531_882_003, MAX_DRAM),
        "intel-rapl:1": EnergyCounter("package", 179_900_001_250, MAX_PACKAGE),
        "intel-rapl:1:0": EnergyCounter("dram", 19_875_400_000, MAX_DRAM),
    }


def test_laptop_leaves_out_core_uncore_and_psys():
    assert RaplSource(FIXTURES / "rapl-laptop" / "sys").sample() == {
        "intel-rapl:0": EnergyCounter("package", 262_140_000_000, MAX_PACKAGE),
        "intel-rapl:0:2": EnergyCounter("dram", 9_000_000_000, MAX_PACKAGE),
    }


@pytest.mark.parametrize(
    ("dir_name", "zone_name", "kind"),
    [
        ("intel-rapl:0", "package-0", "package"),
        ("intel-rapl:3", "package-3", "package"),
        ("intel-rapl:0:0", "dram", "dram"),
        ("intel-rapl:2", "dram", "dram"),  # some servers expose DRAM as a top-level zone
        ("intel-rapl:0:0", "core", None),
        ("intel-rapl:0:1", "uncore", None),
        ("intel-rapl:1", "psys", None),
        ("intel-rapl-mmio:0", "package-0", None),
        ("intel-rapl", "", None),
    ],
)
def test_zone_kinds(dir_name, zone_name, kind):
    assert zone_kind(dir_name, zone_name) == kind


def test_energy_in_a_window_counts_each_joule_once(node_copy):
    root = node_copy("rapl-server")
    source = RaplSource(root / "sys")
    before = source.sample()
    set_energy(root, "intel-rapl:0", 183_004_522_117 + 1_500_000_000)  # 1500 J
    set_energy(root, "intel-rapl:1", 179_900_001_250 + 1_250_000_000)  # 1250 J
    set_energy(root, "intel-rapl:0:0", 20_531_882_003 + 60_000_000)  # 60 J
    set_energy(root, "intel-rapl:1:0", 19_875_400_000 + 36_000_000)  # 36 J
    set_energy(root, "intel-rapl-mmio:0", 183_004_522_117 + 1_500_000_000)  # same as :0
    report = window_report(
        "n", Sample(0.0, rapl=before), Sample(15.0, rapl=source.sample()), user_hz=100
    )
    assert report["rapl"] == {"package_joules": 2750.0, "dram_joules": 96.0}


def test_a_counter_that_wraps_gives_the_energy_through_the_wrap(node_copy):
    root = node_copy("rapl-laptop")
    source = RaplSource(root / "sys")
    before = source.sample()  # package-0 at 262,140,000,000 of 262,143,328,850 uJ
    set_energy(root, "intel-rapl:0", 1_000_000_000)
    set_energy(root, "intel-rapl:0:0", 1_000)  # core wraps too: ignored
    set_energy(root, "intel-rapl:0:2", 9_050_000_000)
    set_energy(root, "intel-rapl:1", 1)  # psys: ignored
    report = window_report(
        "n", Sample(0.0, rapl=before), Sample(15.0, rapl=source.sample()), user_hz=100
    )
    # (262,143,328,850 - 262,140,000,000) + 1,000,000,000 uJ
    assert report["rapl"] == {"package_joules": 1003.32885, "dram_joules": 50.0}


def test_no_dram_domain_means_no_dram_field_not_zero():
    before = {"intel-rapl:0": EnergyCounter("package", 10, 100)}
    after = {"intel-rapl:0": EnergyCounter("package", 2_000_010, 100_000_000)}
    report = window_report("n", Sample(0.0, rapl=before), Sample(1.0, rapl=after), 100)
    assert report["rapl"] == {"package_joules": 2.0}


def test_host_without_powercap_says_why(tmp_path):
    with pytest.raises(SourceError, match="no powercap driver"):
        RaplSource(tmp_path).sample()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_root_only_counters_read_without_privilege_say_what_to_do(node_copy):
    # Since CVE-2020-8694 energy_uj is readable by its owner only. The source runs
    # in a process without the capability to override file permissions, on
    # counters owned by someone else: the kernel refuses it exactly as it
    # refuses an unprivileged agent on a real host.
    root = node_copy("rapl-server")
    for zone in ("intel-rapl:0", "intel-rapl:1"):
        counter = root / "sys/class/powercap" / zone / "energy_uj"
        os.chown(counter, 65534, 65534)
        counter.chmod(0o400)
    code = (
        "import sys; from pathlib import Path; from agent.sources.rapl import RaplSource\n"
        "from agent.sources import SourceError\n"
        "try:\n    RaplSource(Path(sys.argv[1])).sample()\n"
        "except SourceError as exc:\n    print(exc)\n"
    )
    unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
    done = subprocess.run(
        [*unprivileged, sys.executable, "-c", code, str(root / "sys")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "intel-rapl:0/energy_uj: Permission denied" in done.stdout
    assert "readable by root only" in done.stdout
