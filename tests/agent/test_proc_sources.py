"""Node CPU (/proc/stat) and memory (/proc/meminfo) on fixture files and edge cases."""

from pathlib import Path

import pytest
from agent_testkit import CGROUP_TREES, FIXTURES

from agent.sources import SourceError
from agent.sources.meminfo import MeminfoSource, parse_meminfo
from agent.sources.proc_stat import CpuTimes, ProcStatSource, parse_proc_stat


@pytest.mark.parametrize("tree", [*CGROUP_TREES, "v2-no-pods", "broken"])
def test_proc_stat_on_every_fixture_node(tree):
    # user+nice+system+irq+softirq+steal; total adds idle and iowait; guest columns excluded
    busy = 1382841 + 2207 + 402118 + 0 + 31559 + 1611
    assert ProcStatSource(FIXTURES / tree / "proc").sample() == CpuTimes(
        busy_ticks=busy, total_ticks=busy + 25873530 + 20744, logical_cpus=4
    )


def test_guest_time_is_not_counted_twice():
    # guest (col 9) and guest_nice (col 10) are already inside user and nice
    text = "cpu  100 10 50 800 5 1 2 3 40 4\ncpu0 100 10 50 800 5 1 2 3 40 4\n"
    assert parse_proc_stat(text) == CpuTimes(busy_ticks=166, total_ticks=971, logical_cpus=1)


def test_old_kernels_with_four_columns_are_read():
    text = "cpu  100 10 50 800\ncpu0 50 5 25 400\ncpu1 50 5 25 400\n"
    assert parse_proc_stat(text) == CpuTimes(busy_ticks=160, total_ticks=960, logical_cpus=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("intr 1 2 3\nctxt 4\n", "no aggregate 'cpu' line"),
        ("cpu  1 2 x 4\ncpu0 1 2 3 4\n", "malformed cpu line"),
        ("cpu  1 2\ncpu0 1 2\n", "need >= 4"),
        ("cpu  1 2 3 4 5 6 7 8 0 0\n", "no per-CPU"),
    ],
)
def test_malformed_proc_stat_is_a_clear_error(text, message):
    with pytest.raises(SourceError, match=message):
        parse_proc_stat(text)


def test_meminfo_used_is_total_minus_available():
    memory = MeminfoSource(FIXTURES / "v2-no-pods" / "proc").sample()
    assert memory.total_bytes == 24683656 * 1024
    assert memory.used_bytes == (24683656 - 24195332) * 1024


def test_meminfo_without_memavailable_falls_back_like_free():
    text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"
    memory = parse_meminfo(text)
    assert (memory.total_bytes, memory.used_bytes) == (1024000, 600 * 1024)


def test_meminfo_without_total_is_a_clear_error():
    with pytest.raises(SourceError, match="no MemTotal"):
        parse_meminfo("MemFree: 1 kB\n")


def test_missing_meminfo_names_the_path():
    with pytest.raises(SourceError, match=r"cannot read .*broken/proc/meminfo: No such file"):
        MeminfoSource(FIXTURES / "broken" / "proc").sample()


@pytest.mark.parametrize("path", [FIXTURES / "v2-no-pods/proc/meminfo", Path("/proc/meminfo")])
def test_meminfo_read_from_its_first_lines_equals_the_whole_parse(path):
    # the usual layout is read from its first three lines; any other from every line
    text = path.read_text()
    first, second, *rest = text.splitlines(keepends=True)
    assert parse_meminfo(text) == parse_meminfo("".join([second, first, *rest]))
