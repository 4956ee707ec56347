"""Node CPU (/proc/stat) and memory (/proc/meminfo) on fixture files and edge cases."""

from pathlib import Path

import pytest
from agent_testkit import CGROUP_TREES, FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from agent.sources import SourceError
from agent.sources.meminfo import MeminfoSource, parse_meminfo
from agent.sources.proc_stat import CpuTimes, ProcStatSource, parse_proc_stat


@pytest.mark.parametrize("tree", [*CGROUP_TREES, "v2-no-pods", "broken"])
def test_proc_stat_on_every_fixture_node(tree):
    # busy is user+nice+system+irq+softirq; total adds idle, iowait and steal (1611);
    # guest columns excluded
    busy = 1382841 + 2207 + 402118 + 0 + 31559
    assert ProcStatSource(FIXTURES / tree / "proc").sample() == CpuTimes(
        busy_ticks=busy, steal_ticks=1611, total_ticks=busy + 25873530 + 20744 + 1611,
        logical_cpus=4,
    )


# This suite's VM's /proc/stat (Linux 6.18, 2 vCPUs) as read on 2026-12-01, its intr
# line cut short; steal is about 3 % of all ticks since boot
VM_PROC_STAT = (
    "cpu  4250813 188641 735679 2229159 30506 0 35728 235966 0 0\n"
    "cpu0 2089037 91150 353342 1176290 11311 0 13800 117532 0 0\n"
    "cpu1 2161775 97491 382337 1052869 19194 0 21928 118433 0 0\n"
    "intr 127920489 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 17 0 0 0 0 7677 2216 0"
    " 637 1 4894\n"
    "ctxt 313063624\nbtime 1796115271\nprocesses 1942281\nprocs_running 2\nprocs_blocked 0\n"
    "softirq 42083258 0 4753664 6422 17034304 4893881 0 336 3300664 194499 11899488\n"
)


def test_steal_on_a_virtual_machine_is_not_busy():
    # steal is time the hypervisor ran another tenant: no work of this node's
    assert parse_proc_stat(VM_PROC_STAT) == CpuTimes(
        busy_ticks=4250813 + 188641 + 735679 + 0 + 35728,
        steal_ticks=235966,
        total_ticks=4250813 + 188641 + 735679 + 2229159 + 30506 + 0 + 35728 + 235966,
        logical_cpus=2,
    )


@given(
    columns=st.lists(st.integers(0, 2**62), min_size=8, max_size=8),
    stolen=st.integers(0, 2**40),
)
def test_more_steal_moves_steal_and_total_never_busy(columns, stolen):
    def parsed(steal: int) -> CpuTimes:
        line = " ".join(map(str, [*columns[:7], steal, 0, 0]))
        return parse_proc_stat(f"cpu  {line}\ncpu0 {line}\n")

    before, after = parsed(columns[7]), parsed(columns[7] + stolen)
    assert after.busy_ticks == before.busy_ticks == sum(columns[:3]) + sum(columns[5:7])
    assert after.steal_ticks - before.steal_ticks == stolen
    assert after.total_ticks - before.total_ticks == stolen


def test_guest_time_is_not_counted_twice():
    # guest (col 9) and guest_nice (col 10) are already inside user and nice
    text = "cpu  100 10 50 800 5 1 2 3 40 4\ncpu0 100 10 50 800 5 1 2 3 40 4\n"
    assert parse_proc_stat(text) == CpuTimes(
        busy_ticks=163, steal_ticks=3, total_ticks=971, logical_cpus=1
    )


def test_old_kernels_with_four_columns_are_read():
    text = "cpu  100 10 50 800\ncpu0 50 5 25 400\ncpu1 50 5 25 400\n"
    assert parse_proc_stat(text) == CpuTimes(
        busy_ticks=160, steal_ticks=0, total_ticks=960, logical_cpus=2
    )


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
