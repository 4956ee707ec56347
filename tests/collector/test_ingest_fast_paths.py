"""What the fast ingest paths rely on: they agree with the slow ones they stand in for.

- msgspec's check of a body (with the count of its keys) accepts nothing the JSON
  schema refuses, and a body parses to the same reports, or the same error, either way;
- the table of pod uids: a known uid is asked about once, an unknown one at every batch,
  so a uid the provider learns later is attributed to its namespace from then on, and
  unknown uids never fill the table;
- a batch books what the same reports booked one by one would;
- pod use by workload, summed per report and per sampling interval with numpy, is what a
  loop over every pod row asking the provider gives, also across a clear of the uid table;
  the table that stands in for np.unique there gives what np.unique gives;
- a batch refused for its last report moves no counter;
- pod rows come out of either path as `PodRecord` structs, which the ingestor books as it
  books dict rows and a forwarded share encodes as the JSON objects they came from.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import numpy as np
import pytest
from collector_testkit import (
    JSON,
    T0,
    body_of,
    full_report,
    make_report,
    metadata_for_tests,
    with_field,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from collector import ingest as ingest_module
from collector.app import create_app
from collector.capacity import PodUsageTracker
from collector.ingest import Ingestor, distinct_values
from collector.ledger import Ledger
from collector.metadata import NodeInfo, PodInfo, ProviderStatus, StaticMetadataProvider
from collector.rightsizing import UsageHistory
from collector.settings import IngestLimits
from collector.sharding import encode_part
from collector.validation import (
    BatchValidator,
    IngestError,
    PodRecord,
    _check_pods,
    _names_every_key,
)

VALIDATOR = BatchValidator.for_limits(IngestLimits())
PATHS: list[tuple[Any, ...]] = [
    ("schema",), ("node",), ("agent_id",), ("seq",), ("start",), ("end",), ("surprise",),
    ("cpu",), ("cpu", "logical_cpus"), ("cpu", "busy_seconds"), ("cpu", "surprise"),
    ("memory",), ("memory", "total_bytes"), ("memory", "used_bytes"),
    ("containers_running",), ("pods",), ("pods", 0), ("pods", 1, "uid"),
    ("pods", 0, "cpu_seconds"), ("pods", 0, "containers"), ("pods", 0, "surprise"),
    ("rapl",), ("rapl", "package_joules"), ("rapl", "dram_joules"), ("rapl", "surprise"),
]
values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-3, max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, 2.0, 0.0, 1e15, 1e15 + 1, 2**63 - 1, 2**63, 1e11, 0.5]),
    st.sampled_from(["", "uid-web-1", "node\n", "ip-10-0-1-17", "Agent.b:1", "-x", "a" * 254]),
    st.text(max_size=4), st.lists(st.integers(), max_size=2),
    st.fixed_dictionaries({"package_joules": st.floats(min_value=0, max_value=2e6)}),
)


def _outcome(parse: Any, body: bytes) -> Any:
    try:
        return parse(body)
    except IngestError as exc:
        return (exc.status, str(exc))


@settings(max_examples=600)
@given(st.sampled_from(PATHS), values, st.booleans())
def test_the_fast_check_accepts_only_what_the_schema_path_accepts(path, new, second_report):
    reports = [with_field(full_report(), path, new)]
    if second_report:
        reports.insert(0, make_report(seq=99))
    body = body_of(*reports)
    try:
        fast_ok = _names_every_key(body, VALIDATOR.decoder.decode(body)["reports"])
    except msgspec.DecodeError:
        fast_ok = False
    if fast_ok:  # the fast check accepted: so do the schema and the pod-row check
        document = json.loads(body)
        VALIDATOR.check_schema(document)
        for index, report in enumerate(document["reports"]):
            for pod in report.get("pods", ()):  # row by row: uniqueness is not the schema's
                _check_pods([pod], f"reports[{index}]")
    assert _outcome(VALIDATOR.parse, body) == _outcome(VALIDATOR._parse_and_name_the_problem,
                                                       body)


@pytest.mark.parametrize("text", [
    b'{"reports":[REPORT],"extra":1}',
    b'{"reports":[REPORT], "extra" :1}',
    b'{"reports":[REPORT],"reports":[REPORT]}',
    b'{"reports":[REPORT],"x\\u003a":1}',
])
def test_keys_msgspec_drops_send_the_body_to_the_slow_path(text):
    body = text.replace(b"REPORT", json.dumps(make_report(), separators=(",", ":")).encode())
    assert not _names_every_key(body, VALIDATOR.decoder.decode(body)["reports"])
    assert _outcome(VALIDATOR.parse, body) == _outcome(VALIDATOR._parse_and_name_the_problem,
                                                       body)


def test_a_node_name_with_a_final_newline_is_refused_by_both_checks():
    body = body_of(make_report(node="ip-10-0-1-17\n"))
    with pytest.raises(msgspec.ValidationError):
        VALIDATOR.decoder.decode(body)
    with pytest.raises(IngestError) as refused:
        VALIDATOR.parse(body)
    assert refused.value.field == "reports[0].node"


class LearningProvider:
    """A provider whose pods arrive later, like a watch that has not seen a new pod yet."""

    def __init__(self) -> None:
        self.pods: dict[str, PodInfo] = {}
        self.asked: list[str] = []

    def node(self, name: str) -> NodeInfo | None:
        return None

    def pod(self, uid: str) -> PodInfo | None:
        self.asked.append(uid)
        return self.pods.get(uid)

    def status(self) -> ProviderStatus:
        return ProviderStatus("test", synced=True, connected=True)

    def learn(self, info: PodInfo) -> None:
        self.pods[info.uid] = info


def test_an_unknown_uid_is_attributed_to_its_namespace_once_the_provider_knows_it():
    provider = LearningProvider()
    ingestor = Ingestor(Ledger(), metadata=provider, clock=lambda: T0)
    pods = [{"uid": "uid-new", "cpu_seconds": 30.0, "containers": 1}]

    ingestor.ingest([make_report(seq=1, pods=pods)])
    ingestor.ingest([make_report(seq=2, pods=pods, start=T0 - 10)])
    assert provider.asked == ["uid-new", "uid-new"]  # an unknown uid is asked about again
    assert set(ingestor.ledger.namespaces) == {"unknown"}
    unknown_cpu = ingestor.ledger.namespaces["unknown"].cpu_seconds
    assert unknown_cpu == pytest.approx(60.0)

    provider.learn(PodInfo("uid-new", "shop", "new-1", "Deployment", "new"))
    ingestor.ingest([make_report(seq=3, pods=pods, start=T0 - 5)])
    ingestor.ingest([make_report(seq=4, pods=pods, start=T0 - 3)])
    assert provider.asked == ["uid-new"] * 3  # once known, it is not asked about again
    namespaces = ingestor.ledger.namespaces
    assert namespaces["shop"].cpu_seconds == pytest.approx(60.0)
    assert namespaces["unknown"].cpu_seconds == pytest.approx(unknown_cpu)  # not moved
    assert ("shop", "Deployment", "new") in ingestor.ledger.workloads


def test_only_unknown_uids_are_asked_about_again_and_they_never_fill_the_table(monkeypatch):
    # a table with room for two uids: were unknown uids kept, the 20 below would fill it
    # and clear it at every report, and the known uid would be asked about each time
    monkeypatch.setattr(ingest_module, "MAX_CACHED_POD_UIDS", 2)
    provider = LearningProvider()
    provider.learn(PodInfo("uid-web-1", "shop", "web-1", "Deployment", "web"))
    ingestor = Ingestor(Ledger(), metadata=provider, clock=lambda: T0)
    pods = [{"uid": "uid-web-1", "cpu_seconds": 10.0, "containers": 1}] + [
        {"uid": f"uid-gone-{k}", "cpu_seconds": 0.5, "containers": 1} for k in range(20)]
    for seq in range(1, 4):
        ingestor.ingest([make_report(seq=seq, pods=pods, start=T0 - 10 * seq)])
    assert provider.asked.count("uid-web-1") == 1
    assert provider.asked.count("uid-gone-7") == 3
    assert ingestor.ledger.namespaces["unknown"].cpu_seconds == pytest.approx(30.0)
    assert ingestor.ledger.namespaces["shop"].cpu_seconds == pytest.approx(30.0)


def _reports(count: int) -> list[dict[str, Any]]:
    uids = ["uid-web-1", "uid-db-1", "uid-stranger"]
    return [
        make_report(node=f"node-{k % 7}", seq=1 + k // 7, agent_id=f"agent-{k % 7}",
                    start=T0 - 15.0 * (1 + k // 7), busy_seconds=50.0 + k,
                    pods=[{"uid": f"{uid}-{k % 3}" if k % 2 else uid,
                           "cpu_seconds": 1.0 + (k * 7 + p) % 11, "containers": 1 + p}
                          for p, uid in enumerate(uids)])
        for k in range(50)
    ]


def test_a_batch_books_what_its_reports_booked_one_by_one_would():
    reports = _reports(50)
    together = Ingestor(Ledger(), metadata=metadata_for_tests(), clock=lambda: T0)
    one_by_one = Ingestor(Ledger(), metadata=metadata_for_tests(), clock=lambda: T0)
    result = together.ingest(copy.deepcopy(reports) + copy.deepcopy(reports[:3]))
    assert (result.accepted, result.duplicates) == (50, 3)
    for report in reports:
        one_by_one.ingest([report])
    a, b = together.ledger.to_document(), one_by_one.ledger.to_document()
    assert (a["reports"], b["reports"]) == ([50, 3], [50, 0])
    assert a["seqs"] == b["seqs"]
    for key in ("nodes", "groups"):
        assert len(a[key]) == len(b[key]) > 0
        for row_a, row_b in zip(a[key], b[key], strict=True):
            labels = [v for v in row_a if isinstance(v, str)]
            assert labels == [v for v in row_b if isinstance(v, str)]
            numbers = [v for v in row_a if not isinstance(v, str)]
            assert numbers == pytest.approx([v for v in row_b if not isinstance(v, str)],
                                            rel=1e-12)
    assert a["fleet"] == pytest.approx(b["fleet"], rel=1e-12)
    assert together.ledger.namespaces.keys() == {"shop", "unknown"}


async def test_a_batch_refused_for_its_last_report_moves_no_counter(aiohttp_client, clock):
    app = create_app(metadata=metadata_for_tests(), clock=clock, registry=CollectorRegistry(),
                     status_page=False)
    client = await aiohttp_client(app)
    assert (await client.post("/api/v1/reports", data=body_of(make_report()),
                              headers=JSON)).status == 200
    before = await (await client.get("/metrics")).text()
    batch = _reports(50)
    batch[-1]["pods"][2]["containers"] = -1
    response = await client.post("/api/v1/reports", data=body_of(*batch), headers=JSON)
    assert response.status == 422
    assert (await response.json())["error"].startswith("reports[49].pods[2].containers: ")
    after = await (await client.get("/metrics")).text()
    changed = [line for line in set(after.splitlines()) ^ set(before.splitlines())
               if "rejected" not in line]
    assert changed == []
    assert 'kubecarbon_collector_reports_total{result="accepted"} 1\n' in after


@settings(max_examples=200)
@given(st.integers(1, 300).flatmap(lambda bound: st.tuples(
    st.just(bound), st.lists(st.integers(0, bound - 1), min_size=1, max_size=60))))
def test_distinct_values_are_what_np_unique_gives_by_either_way(bound_and_values):
    bound, values = bound_and_values
    array = np.array(values, dtype=np.intp)
    expected = np.unique(array, return_index=True, return_inverse=True)
    saved = ingest_module.TABLE_SLOTS_PER_VALUE
    try:
        for slots in (0, bound):  # np.unique's way, then the table's (bound >= slots * 1)
            ingest_module.TABLE_SLOTS_PER_VALUE = slots
            got = distinct_values(array, bound)
            for part, wanted in zip(got, expected, strict=True):
                assert part.dtype == wanted.dtype
                assert part.tolist() == wanted.tolist()
    finally:
        ingest_module.TABLE_SLOTS_PER_VALUE = saved


WORKLOADS = [("shop", "Deployment", "web"), ("shop", "StatefulSet", "db"),
             ("ops", "Job", "backup")]


def _usage_by_looping_over_rows(reports, provider):
    """Per report, {workload: CPU seconds} of its known pods, one row at a time."""
    per_report = []
    for report in reports:
        seconds: dict[tuple[str, str, str], float] = {}
        for pod in report["pods"]:
            info = provider.pod(pod["uid"])
            if info is not None:
                key = (info.namespace, info.workload_kind, info.workload_name)
                seconds[key] = seconds.get(key, 0.0) + pod["cpu_seconds"]
        per_report.append(seconds)
    return per_report


@settings(max_examples=60)
@given(st.lists(st.lists(st.tuples(st.integers(0, 11), st.floats(0, 50)), max_size=8,
                         unique_by=lambda row: row[0]), min_size=1, max_size=12),
       st.lists(st.integers(0, 5), min_size=12, max_size=12),
       st.integers(1, 30))
def test_pod_use_by_workload_is_what_a_loop_over_the_rows_gives(rows, intervals, uid_limit):
    # uids 0-8 are known (three workloads), 9-11 are not; a small uid table is cleared
    # between batches whenever it fills
    provider = StaticMetadataProvider(pods={
        f"uid-{k}": PodInfo(f"uid-{k}", WORKLOADS[k % 3][0], f"pod-{k}", *WORKLOADS[k % 3][1:])
        for k in range(9)})
    reports = [make_report(node=f"node-{k % 4}", seq=1 + k, agent_id=f"agent-{k % 4}",
                           start=T0 + 600.0 * intervals[k] + k, busy_seconds=500.0,
                           pods=[{"uid": f"uid-{uid}", "cpu_seconds": cpu, "containers": 1}
                                 for uid, cpu in pod_rows])
               for k, pod_rows in enumerate(rows)]
    expected_history = UsageHistory()
    expected_tracker = PodUsageTracker()
    expected = _usage_by_looping_over_rows(reports, provider)
    tracker = PodUsageTracker()
    history = UsageHistory()
    ingestor = Ingestor(Ledger(), metadata=provider, clock=lambda: T0 + 10_000.0,
                        pod_usage=tracker, usage_history=history)
    original_limit = ingest_module.MAX_CACHED_POD_UIDS
    ingest_module.MAX_CACHED_POD_UIDS = uid_limit
    try:
        for offset in range(0, len(reports), 5):
            batch = reports[offset:offset + 5]
            ingestor.ingest(copy.deepcopy(batch))
            expected_tracker.observe(batch, [
                {key: seconds / (r["end"] - r["start"]) for key, seconds in use.items()}
                for r, use in zip(batch, expected[offset:offset + 5], strict=True)])
            # the history as it would be, report after report
            expected_history.add([r["end"] for r in batch], expected[offset:offset + 5])
    finally:
        ingest_module.MAX_CACHED_POD_UIDS = original_limit
    assert tracker.latest() == expected_tracker.latest()  # exact: same rows, same order
    assert set(history.recommendations) == set(expected_history.recommendations)
    assert history._open.keys() == expected_history._open.keys()
    for interval, table in expected_history._open.items():
        assert list(history._open[interval]) == list(table)  # workloads in first-seen order
        assert list(history._open[interval].values()) == pytest.approx(list(table.values()),
                                                                       rel=1e-12)
    for key in expected_history._rings:
        assert history.samples_of(key) == pytest.approx(expected_history.samples_of(key),
                                                        rel=1e-6)


def test_pod_rows_come_out_as_records_from_either_path():
    rows = [{"uid": "a", "cpu_seconds": 1.5, "containers": 1},
            {"uid": "b", "cpu_seconds": 0, "containers": 2}]
    fast = body_of(make_report(pods=rows))
    # a count written 2.0 is valid JSON Schema; msgspec refuses it, so the slow path decides
    slow = fast.replace(b'"containers":2', b'"containers":2.0')
    assert slow != fast
    with pytest.raises(msgspec.ValidationError):
        VALIDATOR.decoder.decode(slow)
    for body in (fast, slow):
        pods = VALIDATOR.parse(body)[0]["pods"]
        assert [type(row) for row in pods] == [PodRecord, PodRecord]
        assert [(row.uid, row.cpu_seconds, row.containers) for row in pods] == [
            ("a", 1.5, 1), ("b", 0, 2)]


def test_a_repeated_uid_is_named_at_its_repeat_by_either_path():
    pods = [{"uid": uid, "cpu_seconds": 1.0, "containers": 1} for uid in "abcb"]
    body = body_of(make_report(seq=1), make_report(seq=2, pods=pods))
    fast, slow = _outcome(VALIDATOR.parse, body), _outcome(
        VALIDATOR._parse_and_name_the_problem, body)
    assert fast == slow == (422, "reports[1].pods[3].uid: duplicate pod uid")


def test_records_and_dict_rows_book_the_same():
    reports = _reports(20)
    parsed = VALIDATOR.parse(body_of(*reports))
    assert all(type(row) is PodRecord for report in parsed for row in report["pods"])
    from_records = Ingestor(Ledger(), metadata=metadata_for_tests(), clock=lambda: T0,
                            pod_usage=PodUsageTracker())
    from_dicts = Ingestor(Ledger(), metadata=metadata_for_tests(), clock=lambda: T0,
                          pod_usage=PodUsageTracker())
    assert from_records.ingest(parsed) == from_dicts.ingest(copy.deepcopy(reports))
    assert from_records.ledger.to_document() == from_dicts.ledger.to_document()
    assert from_records.pod_usage.latest() == from_dicts.pod_usage.latest()  # type: ignore[union-attr]
    assert from_dicts.ledger.to_document()["groups"]  # the rows were booked


def test_a_forwarded_share_encodes_records_as_the_objects_they_came_from():
    reports = _reports(3)
    assert json.loads(encode_part(VALIDATOR.parse(body_of(*reports)))) == {"reports": reports}
