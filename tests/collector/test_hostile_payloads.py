"""Malformed, hostile and oversized requests: always 4xx, and nothing but rejection counters moves.

The corpus is hand-written cases plus systematic ones generated in loops (every field
of the wire format set to every wrong kind of value, every required field removed)
and seeded random mutations of a valid batch. It runs against one collector that
already holds a report, and /metrics must be byte-identical afterwards apart from
the two rejection counters.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from collector_testkit import JSON, body_of, gzipped, make_report, metadata_for_tests
from collector_testkit import full_report as _valid_report
from collector_testkit import with_field as _set
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from collector.app import create_app
from collector.settings import IngestLimits
from collector.validation import BatchValidator, IngestError

MIB = 1024 * 1024
REJECTION_LINES = ('kubecarbon_collector_reports_total{result="rejected"}',
                   "kubecarbon_collector_rejected_requests_total{")

# (path to a field, values it must refuse)
WRONG_VALUES: list[Any] = [None, True, False, "1", [], {}, -1, -0.5, 1e300, 2**64]
FIELDS: list[tuple[str, ...]] = [
    ("schema",), ("node",), ("agent_id",), ("seq",), ("start",), ("end",),
    ("cpu",), ("cpu", "logical_cpus"), ("cpu", "busy_seconds"),
    ("memory",), ("memory", "total_bytes"), ("memory", "used_bytes"),
    ("containers_running",), ("pods",), ("pods", 0), ("pods", 0, "uid"),
    ("pods", 0, "cpu_seconds"), ("pods", 0, "containers"),
    ("rapl", "package_joules"), ("rapl", "dram_joules"),
]


def _delete(document: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    target = document
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return document


def _post(body: bytes, **headers: str) -> tuple[bytes, dict[str, str]]:
    return body, {**JSON, **headers}


def field_cases() -> Iterator[tuple[str, bytes, dict[str, str]]]:
    report = _valid_report()
    for path in FIELDS:
        for wrong in WRONG_VALUES:
            if path == ("pods",) and wrong == []:
                continue  # a node without pods is valid
            if isinstance(wrong, str) and path[-1] in ("node", "agent_id", "uid"):
                continue  # "1" is a valid name
            yield (f"{'.'.join(map(str, path))}={wrong!r}",
                   *_post(body_of(_set(report, path, wrong))))
    for path in FIELDS:
        if path in (("rapl", "dram_joules"), ("pods", 0), ("pods",), ("containers_running",),
                    ("memory",)):
            continue  # optional, or leaves a valid report
        yield f"without {'.'.join(map(str, path))}", *_post(body_of(_delete(report, path)))
    for extra in (("surprise",), ("cpu", "surprise"), ("pods", 0, "surprise"),
                  ("memory", "surprise"), ("rapl", "surprise")):
        yield f"extra {extra}", *_post(body_of(_set(report, extra, 1)))


def hand_written_cases() -> Iterator[tuple[str, bytes, dict[str, str]]]:
    report = _valid_report()
    valid = body_of(report)
    yield "empty body", *_post(b"")
    for raw in (b"null", b"[]", b"{}", b"1", b'"reports"', b'{"reports": {}}',
                b'{"reports": []}', b'{"reports": null}', b'{"reports": [null]}',
                b'{"reports": [1, 2]}', b"{", b'{"reports": [', b"\xff\xfe",
                b"\xef\xbb\xbf" + valid, valid + b"garbage", b"[" * 100_000,
                b'{"reports": [{"schema": NaN}]}', b'{"reports": [{"seq": Infinity}]}'):
        yield f"raw {raw[:30]!r}", *_post(raw)
    text = valid.decode()
    for literal in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400",
                    "123456789012345678901234567890"):
        yield f"busy_seconds {literal}", *_post(
            text.replace('"busy_seconds":120.0', f'"busy_seconds":{literal}').encode())
    cases: dict[str, dict[str, Any]] = {
        "window zero": _set(report, ("end",), report["start"]),
        "window negative": _set(report, ("end",), report["start"] - 10),
        "window below 1 s": _set(report, ("end",), report["start"] + 0.5),
        "window above 1 h": _set(report, ("end",), report["start"] + 3601),
        "busy above capacity": _set(report, ("cpu", "busy_seconds"), 16 * 15 * 1.06),
        "pods above capacity": _set(report, ("pods", 0, "cpu_seconds"), 16 * 15 * 1.1),
        "zero cpus": _set(report, ("cpu", "logical_cpus"), 0),
        "fractional cpus": _set(report, ("cpu", "logical_cpus"), 1.5),
        "used above total": _set(report, ("memory", "used_bytes"), 2**40),
        "schema 2": _set(report, ("schema",), 2),
        "seq fractional": _set(report, ("seq",), 1.5),
        "rapl implausible": _set(report, ("rapl", "package_joules"), 1e12),
        "duplicate pod uid": _set(report, ("pods",), [report["pods"][0]] * 2),
        "empty pod uid": _set(report, ("pods", 0, "uid"), ""),
        "long pod uid": _set(report, ("pods", 0, "uid"), "u" * 129),
        "long agent id": _set(report, ("agent_id",), "a" * 129),
        "agent id with spaces": _set(report, ("agent_id",), "a b"),
    }
    for name in ("", "UPPER", "under_score", "-leading", "trailing-", "a..b", ".a", "a b",
                 "x" * 254, "é", "node\n", "a/b"):
        cases[f"node {name!r}"] = _set(report, ("node",), name)
    for name, document in cases.items():
        yield name, *_post(body_of(document))
    # one bad report rejects the whole batch, the good one included
    good_then_bad = [make_report(seq=500), _set(report, ("cpu", "busy_seconds"), -1)]
    yield "good and bad together", *_post(body_of(*good_then_bad))
    # media types and encodings
    yield "no content type", valid, {}
    yield "text/plain", valid, {"Content-Type": "text/plain"}
    yield "form", valid, {"Content-Type": "application/x-www-form-urlencoded"}
    yield "brotli", valid, {**JSON, "Content-Encoding": "br"}
    yield "deflate", zlib.compress(valid), {**JSON, "Content-Encoding": "deflate"}
    yield "gzip header, plain body", valid, {**JSON, "Content-Encoding": "gzip"}
    yield "truncated gzip", gzipped(valid)[:-12], {**JSON, "Content-Encoding": "gzip"}
    yield "gzip then junk", gzipped(valid) + b"junk", {**JSON, "Content-Encoding": "gzip"}
    yield "gzip of garbage", gzipped(b"not json"), {**JSON, "Content-Encoding": "gzip"}
    # sizes
    bomb = gzip.compress(b" " * (64 * MIB), compresslevel=9)  # 64 MiB of spaces, ~64 KiB
    yield "gzip bomb", bomb, {**JSON, "Content-Encoding": "gzip"}
    padded = b'{"reports": [' + b" " * (4 * MIB) + valid[13:]
    yield "body above 4 MiB", padded, JSON
    yield "gzip above 4 MiB inflated", gzipped(padded), {**JSON, "Content-Encoding": "gzip"}
    many_pods = [{"uid": f"p{i}", "cpu_seconds": 0.01, "containers": 1} for i in range(2001)]
    yield "2001 pods", *_post(body_of(_set(report, ("pods",), many_pods)))
    yield "501 reports", *_post(body_of(*[make_report(seq=1000 + i) for i in range(501)]))


def random_mutations(count: int, seed: int = 20251125) -> Iterator[tuple[str, bytes, dict]]:
    """Seeded random damage to a valid batch: a leaf replaced by a wrong-typed value."""
    rng = random.Random(seed)
    report = _valid_report()
    leaves = [path for path in FIELDS if len(path) > 1 or path[0] not in ("cpu", "memory", "pods")]
    wrong_kinds = [lambda: rng.choice(["", "x", "0", "NaN"]), lambda: None,
                   lambda: rng.choice([True, False]), lambda: [rng.random()],
                   lambda: {"v": rng.random()}, lambda: -rng.uniform(1e-9, 1e9)]
    for index in range(count):
        path = rng.choice(leaves)
        wrong = rng.choice(wrong_kinds)()
        if isinstance(wrong, str) and path[-1] in ("node", "agent_id", "uid"):
            wrong = ""  # other strings may be valid names
        yield f"mutation {index}: {path}={wrong!r}", *_post(body_of(_set(report, path, wrong)))


def corpus() -> list[tuple[str, bytes, dict[str, str]]]:
    return [*hand_written_cases(), *field_cases(), *random_mutations(150)]


def test_corpus_is_large():
    assert len(corpus()) >= 300


@pytest.mark.slow
async def test_every_hostile_request_is_refused_and_changes_nothing(aiohttp_client, clock):
    registry = CollectorRegistry()  # no process metrics: they change between scrapes
    app = create_app(metadata=metadata_for_tests(), clock=clock, registry=registry,
                     status_page=False)
    client = await aiohttp_client(app)
    seed_report = await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    assert seed_report.status == 200
    before = await (await client.get("/metrics")).text()

    cases = corpus()
    for name, body, headers in cases:
        response = await client.post("/api/v1/reports", data=body, headers=headers)
        assert 400 <= response.status < 500, (name, response.status, await response.text())
        error = (await response.json())["error"]
        field, _, reason = error.partition(": ")
        assert field and reason, (name, error)

    after = await (await client.get("/metrics")).text()
    strip = lambda text: [line for line in text.splitlines()  # noqa: E731
                          if not line.startswith(REJECTION_LINES)]
    assert strip(after) == strip(before)
    assert f'kubecarbon_collector_reports_total{{result="rejected"}} {len(cases)}' in after
    assert 'kubecarbon_collector_reports_total{result="accepted"} 1' in after


async def test_status_codes_name_the_problem(aiohttp_client, clock):
    client = await aiohttp_client(create_app(clock=clock, status_page=False))
    expectations = {
        "body above 4 MiB": (413, "body"),
        "gzip bomb": (413, "body"),
        "2001 pods": (413, "reports[0].pods"),
        "501 reports": (413, "reports"),
        "text/plain": (415, "Content-Type"),
        "brotli": (415, "Content-Encoding"),
        "empty body": (400, "body"),
        "raw b'{'": (400, "body"),
        "truncated gzip": (400, "body"),
        "window above 1 h": (422, "reports[0].end"),
        "busy above capacity": (422, "reports[0].cpu.busy_seconds"),
        "duplicate pod uid": (422, "reports[0].pods[1].uid"),
        "node 'UPPER'": (422, "reports[0].node"),
        "good and bad together": (422, "reports[1].cpu.busy_seconds"),
        "busy_seconds NaN": (400, "body"),
        "busy_seconds 1e400": (400, "body"),
        "busy_seconds 123456789012345678901234567890": (422, "reports[0].cpu.busy_seconds"),
    }
    found = {name: (body, headers) for name, body, headers in hand_written_cases()}
    for name, (status, field) in expectations.items():
        body, headers = found[name]
        response = await client.post("/api/v1/reports", data=body, headers=headers)
        error = (await response.json())["error"]
        assert (response.status, error.split(": ")[0]) == (status, field), (name, error)


VALIDATOR = BatchValidator.for_limits(IngestLimits())  # compiling the schema takes a while
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["reports", "schema", "node", "seq", "cpu", "pods", "x"])
                      | st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_values)
def test_any_json_document_is_refused_with_a_4xx(document):
    validator = VALIDATOR
    with pytest.raises(IngestError) as refused:
        validator.parse(json.dumps(document).encode())
    assert 400 <= refused.value.status < 500


@settings(max_examples=300)
@given(st.sampled_from(FIELDS), st.one_of(st.none(), st.booleans(), st.text(max_size=3),
                                          st.floats(max_value=-1e-9), st.lists(st.integers())))
def test_any_wrong_typed_field_is_refused(path, wrong):
    validator = VALIDATOR
    if path == ("pods",) and wrong == []:
        return  # a report without pods is valid
    if isinstance(wrong, str) and wrong and path[-1] in ("node", "agent_id", "uid"):
        return  # many strings are valid names; the corpus covers the invalid ones
    with pytest.raises(IngestError):
        validator.parse(body_of(_set(_valid_report(), path, wrong)))
