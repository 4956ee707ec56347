"""Validation units: the fast pod check agrees with its schema, gzip caps, seq dedupe."""

from __future__ import annotations

import gzip
import math

import fastjsonschema
import pytest
from collector_testkit import body_of, make_report
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.dedupe import SeqTracker
from collector.settings import IngestLimits
from collector.validation import (
    POD_SCHEMA,
    BatchValidator,
    IngestError,
    _check_pods,
    gunzip_capped,
)

check_pod_schema = fastjsonschema.compile(POD_SCHEMA)

pod_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-5, max_value=200_000),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=2e15),
    st.text(max_size=130), st.lists(st.integers(), max_size=2),
)
pods = st.one_of(
    st.fixed_dictionaries({"uid": pod_values, "cpu_seconds": pod_values,
                           "containers": pod_values}),
    st.fixed_dictionaries({"uid": st.text(min_size=1, max_size=5),
                           "cpu_seconds": st.floats(min_value=0, max_value=10),
                           "containers": st.integers(0, 5)}),
    st.dictionaries(st.sampled_from(["uid", "cpu_seconds", "containers", "other"]), pod_values),
    pod_values,
)


@settings(max_examples=500)
@given(pods)
def test_fast_pod_check_agrees_with_the_schema(pod):
    try:
        check_pod_schema(pod)
        schema_ok = True
    except fastjsonschema.JsonSchemaValueException:
        schema_ok = False
    try:
        _check_pods([pod], "reports[0]")
        fast_ok = True
    except IngestError as exc:
        fast_ok = False
        assert exc.field.startswith("reports[0].pods[0]")
    assert fast_ok == schema_ok, pod


def test_a_valid_report_passes():
    reports = BatchValidator.for_limits().parse(body_of(make_report()))
    assert reports[0]["node"] == "ip-10-0-1-17"


def test_limits_are_configurable():
    validator = BatchValidator.for_limits(IngestLimits(max_pods_per_report=1,
                                                       max_reports_per_batch=2))
    with pytest.raises(IngestError) as too_many_pods:
        validator.parse(body_of(make_report()))
    assert too_many_pods.value.status == 413
    with pytest.raises(IngestError) as too_many_reports:
        validator.parse(body_of(*[make_report(seq=i, pods=[]) for i in range(3)]))
    assert too_many_reports.value.status == 413


def test_busy_tolerance_edge():
    validator = BatchValidator.for_limits()
    validator.parse(body_of(make_report(busy_seconds=16 * 15 * 1.05)))
    with pytest.raises(IngestError):
        validator.parse(body_of(make_report(busy_seconds=16 * 15 * 1.05 + 0.01)))


def test_gunzip_stops_at_the_cap():
    data = b"x" * 10_000
    assert gunzip_capped(gzip.compress(data), 10_000) == data
    with pytest.raises(IngestError) as too_big:
        gunzip_capped(gzip.compress(data), 9_999)
    assert too_big.value.status == 413


def test_gunzip_bomb_uses_bounded_memory():
    import tracemalloc

    bomb = gzip.compress(b"\0" * (256 * 1024 * 1024), compresslevel=9)  # 256 MiB inflated
    tracemalloc.start()
    with pytest.raises(IngestError):
        gunzip_capped(bomb, 4 * 1024 * 1024)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


# --- dedupe ---------------------------------------------------------------------------------

def test_seq_tracker_basics():
    tracker = SeqTracker(max_agents=2, seq_window=8)
    assert not tracker.seen("a", 5)
    tracker.mark("a", 5)
    assert tracker.seen("a", 5)
    assert not tracker.seen("a", 4)  # below the highest but never applied
    tracker.mark("a", 4)
    assert tracker.seen("a", 4)
    tracker.mark("a", 20)
    assert tracker.seen("a", 5)  # more than the window behind: treated as seen
    assert not tracker.seen("a", 19)
    tracker.mark("b", 1)
    tracker.mark("c", 1)  # evicts the least recently seen agent, "a"
    assert tracker.evictions == 1
    assert not tracker.seen("a", 20)
    assert len(tracker) == 2


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 300)), max_size=200))
def test_seq_tracker_matches_a_set_within_the_window(events):
    """Never applies a seq twice; forgets only seqs more than the window behind."""
    window = 64
    tracker = SeqTracker(max_agents=10, seq_window=window)
    applied: set[tuple[str, int]] = set()
    highest: dict[str, int] = {}
    for agent, seq in events:
        too_old = agent in highest and highest[agent] - seq >= window
        expected_seen = (agent, seq) in applied or too_old
        assert tracker.seen(agent, seq) == expected_seen
        if not expected_seen:
            tracker.mark(agent, seq)
            applied.add((agent, seq))
            highest[agent] = max(highest.get(agent, seq), seq)


def test_seq_tracker_export_restore_round_trip():
    tracker = SeqTracker(seq_window=16)
    for seq in (1, 2, 5, 9):
        tracker.mark("agent", seq)
    copy = SeqTracker(seq_window=16)
    copy.restore(tracker.export())
    assert [copy.seen("agent", s) for s in range(12)] == [
        tracker.seen("agent", s) for s in range(12)]
    with pytest.raises(ValueError):
        copy.restore([["agent", "high", "1"]])


def test_window_bounds_are_finite_numbers():
    validator = BatchValidator.for_limits()
    report = make_report()
    report["start"] = math.inf
    with pytest.raises(IngestError):
        validator.parse(body_of(report))
