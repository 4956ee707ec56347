"""Properties of the ledger over arbitrary valid report sequences (no HTTP)."""

from __future__ import annotations

from collector_testkit import T0, FakeClock, make_report, metadata_for_tests
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import Ingestor
from collector.ledger import Ledger

reports = st.builds(
    lambda node, agent, seq, cpus, busy_share, window, pod_shares, rapl: make_report(
        node=node, seq=seq, agent_id=agent, logical_cpus=cpus, window_seconds=window,
        start=T0 + seq * 15.0,
        busy_seconds=cpus * window * busy_share,
        pods=[{"uid": uid, "cpu_seconds": cpus * window * busy_share * share / 2,
               "containers": 1} for uid, share in zip(("uid-web-1", "uid-db-1", "x"),
                                                       pod_shares, strict=False)],
        rapl=None if rapl is None else {"package_joules": rapl * window},
    ),
    node=st.sampled_from(["ip-10-0-1-17", "rack-1", "n3"]),
    agent=st.sampled_from(["a", "b"]),
    seq=st.integers(0, 40),
    cpus=st.integers(1, 128),
    busy_share=st.floats(0, 1.05),
    window=st.floats(1, 3600),
    pod_shares=st.lists(st.floats(0, 1), max_size=3),
    rapl=st.none() | st.floats(0, 2000),
)


def totals(state: Ledger) -> dict[tuple, float]:
    """Every counter, keyed by (table, series key, field index)."""
    values: dict[tuple, float] = {}
    for table, rows in (("node", state.nodes), ("namespace", state.namespaces),
                        ("workload", state.workloads)):
        for key, counters in rows.items():
            for index, value in enumerate(counters.as_list()):
                values[(table, key, index)] = value
    values[("fleet", "baseline", 0)] = state.fleet.baseline_energy_joules
    return values


@settings(max_examples=150)
@given(st.lists(st.lists(reports, min_size=1, max_size=5), min_size=1, max_size=8))
def test_counters_never_decrease_and_replays_change_nothing(batches):
    ingestor = Ingestor(Ledger(), metadata=metadata_for_tests(), clock=FakeClock())
    state = ingestor.ledger
    for batch in batches:
        before = totals(state)
        result = ingestor.ingest(batch)
        after = totals(state)
        assert before.keys() <= after.keys()
        assert all(after[key] >= value - 1e-9 for key, value in before.items())
        assert result.accepted + result.duplicates == len(batch)
        # sending the same batch again is a no-op
        again = ingestor.ingest(batch)
        assert again.accepted == 0 and totals(state) == after
    # pods never get more than the nodes' dynamic energy
    dynamic = sum(c.energy_joules - c.idle_energy_joules for c in state.nodes.values())
    attributed = sum(c.energy_joules for c in state.namespaces.values())
    assert attributed <= dynamic * (1 + 1e-9) + 1e-9
