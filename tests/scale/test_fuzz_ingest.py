"""Hostile input at scale: hypothesis-generated mutations of valid batches against the real app.

Each example is a valid batch bent one way: wrong types, out-of-range numbers,
NaN/Infinity, deep nesting, huge strings, truncated or broken gzip, gzip bombs, bad
UTF-8, wrong content types or encodings, cross-field violations, random bytes. The
collector app (create_app, as `kubecarbon collector` builds it) serves on a loopback
port from a thread; requests go over real HTTP. For every example:

* no crash and no 5xx;
* a refused request changes nothing in /metrics but the rejection counters;
* an accepted one answers {"accepted": n, "duplicates": m} with n + m reports.

`make test` runs 500 examples; `make fuzz` runs the full 10,000
(KUBECARBON_FUZZ_EXAMPLES sets the count).
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import http.client
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from collector.app import create_app
from collector.settings import Settings

FUZZ_EXAMPLES = int(os.environ.get("KUBECARBON_FUZZ_EXAMPLES", "500"))
T0 = 1_764_072_000.0
SENTINEL = "__kubecarbon_fuzz__"
REJECTION_SERIES = ('kubecarbon_collector_reports_total{result="rejected"}',
                    "kubecarbon_collector_rejected_requests_total")
PROCESS_SERIES = ("process_", "python_")  # the process's own metrics move by themselves


class ServedApp:
    """The app on 127.0.0.1 (kernel-chosen port) in a thread with its own event loop."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = int(self.runner.addresses[0][1])
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-collector")
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()


class Client:
    """Keep-alive HTTP/1.1 to the served app; reconnects when the server closes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                self.connection.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def counted_state(self) -> tuple[list[str], dict[str, float]]:
        """/metrics without the process's own series, split off the rejection counters."""
        status, body = self.request("GET", "/metrics")
        assert status == 200
        kept, rejections = [], {}
        for line in body.decode().splitlines():
            if line.startswith(PROCESS_SERIES) or line.startswith("#"):
                continue
            if line.startswith(REJECTION_SERIES):
                name, value = line.rsplit(" ", 1)
                rejections[name] = float(value)
            else:
                kept.append(line)
        return kept, rejections


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    app = create_app(Settings(kubernetes="off"), clock=lambda: T0,
                     registry=CollectorRegistry(), status_page=False)
    served = ServedApp(app)
    try:
        yield Client(served.port)
    finally:
        served.close()


# --- the payloads ---------------------------------------------------------------------

agent_ids = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,20}\Z")
node_names = st.sampled_from(["ip-10-0-1-17", "node-a", "rack7.b-12", "worker-0"])


@st.composite
def valid_report(draw: st.DrawFn) -> dict[str, Any]:
    window = draw(st.floats(1.0, 3600.0))
    start = T0 + draw(st.floats(-1e6, 1e6))
    cpus = draw(st.integers(1, 256))
    busy = draw(st.floats(0.0, 1.0)) * cpus * window
    pods = [{"uid": f"pod-{i}", "cpu_seconds": busy / 8, "containers": draw(st.integers(0, 9))}
            for i in range(draw(st.integers(0, 4)))]
    total_bytes = draw(st.integers(0, 2**40))
    report = {
        "schema": 1, "node": draw(node_names), "agent_id": draw(agent_ids),
        "seq": draw(st.integers(0, 2**40)), "start": start, "end": start + window,
        "cpu": {"logical_cpus": cpus, "busy_seconds": busy},
        "memory": {"total_bytes": total_bytes, "used_bytes": total_bytes // 2},
        "containers_running": draw(st.integers(0, 500)), "pods": pods,
    }
    if draw(st.booleans()):
        report["rapl"] = {"package_joules": 100.0 * window, "dram_joules": 5.0 * window}
    return report


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path into a JSON value, containers included."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += paths(item, (*prefix, index))
    return out


def replace_at(document: Any, path: tuple, new: Any) -> Any:
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return document


def delete_at(document: Any, path: tuple) -> Any:
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return document


hostile_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(-1e308, 1e308),
    st.sampled_from([-1, -0.0, 0, 1e15 + 1, 2**63, 2**64, 1e-320, 1e300, 65_537, 10**7 + 1]),
    st.text(max_size=40), st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(),
                                                         max_size=3),
    st.integers(1_000, 3_000_000).map(lambda n: "x" * n),  # huge strings, under the body cap
)
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain",
                 "application/x-www-form-urlencoded", "", "application/jsonx", "json",
                 "multipart/form-data; boundary=x", "APPLICATION/JSON"]
ENCODINGS = ["gzip", "identity", "deflate", "br", "gzip, gzip", "x-gzip", "GZIP", ""]
NONFINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"nan", b"inf",
             b"0x10", b"+1", b"01", b"1.", b".5", b"1e", b"--1"]
BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80\x80",
            b"\\ud800", b"\\udfff\\ud800", b"\x00", b"\\u0000"]


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """(kind of mutation, body, headers)."""
    batch = {"reports": draw(st.lists(valid_report(), min_size=1, max_size=3))}
    headers = {"Content-Type": "application/json"}
    # hypothesis leans towards the first choices: the plain valid batch comes last
    kind = draw(st.sampled_from([
        "value", "delete", "extra", "nonfinite", "nesting", "utf8", "gzip", "content-type",
        "encoding", "batch", "truncate", "bytes", "cross-field", "valid"]))
    body = orjson.dumps(batch)
    report_paths = paths(batch)
    if kind == "value":
        path = draw(st.sampled_from(report_paths))
        body = json.dumps(replace_at(batch, path, draw(hostile_values))).encode()
    elif kind == "delete":
        path = draw(st.sampled_from([p for p in report_paths if isinstance(p[-1], str)]))
        body = orjson.dumps(delete_at(batch, path))
    elif kind == "extra":
        path = draw(st.sampled_from([p[:-1] for p in report_paths if isinstance(p[-1], str)]))
        target = batch
        for key in path:
            target = target[key]
        target[draw(st.text(min_size=1, max_size=10))] = draw(hostile_values)
        body = json.dumps(batch).encode()
    elif kind in ("nonfinite", "utf8"):
        path = draw(st.sampled_from(report_paths))
        text = orjson.dumps(replace_at(batch, path, SENTINEL))
        token = draw(st.sampled_from(NONFINITE)) if kind == "nonfinite" else (
            b'"' + draw(st.sampled_from(BAD_UTF8)) + b'"')
        body = text.replace(b'"' + SENTINEL.encode() + b'"', token)
    elif kind == "nesting":
        depth = draw(st.integers(2, 200_000))
        path = draw(st.sampled_from(report_paths))
        nested = b"[" * depth + b"1" + b"]" * depth
        text = orjson.dumps(replace_at(batch, path, SENTINEL))
        body = text.replace(b'"' + SENTINEL.encode() + b'"', nested)
    elif kind == "gzip":
        headers["Content-Encoding"] = "gzip"
        how = draw(st.sampled_from(["truncate", "flip", "trailing", "bomb", "plain", "double"]))
        packed = gzip.compress(body, mtime=0)
        if how == "truncate":
            body = packed[:draw(st.integers(0, len(packed) - 1))]
        elif how == "flip":
            at = draw(st.integers(0, len(packed) - 1))
            body = packed[:at] + bytes([packed[at] ^ draw(st.integers(1, 255))]) + packed[at + 1:]
        elif how == "trailing":
            body = packed + draw(st.binary(min_size=1, max_size=64))
        elif how == "bomb":  # small on the wire, far over the 4 MiB cap unpacked
            body = gzip.compress(b"{" + b" " * draw(st.integers(5, 64)) * 2**20 + b"}", mtime=0)
        elif how == "plain":
            pass  # a claimed gzip body that is not gzip
        else:
            body = gzip.compress(packed, mtime=0)
    elif kind == "content-type":
        headers["Content-Type"] = draw(st.one_of(st.sampled_from(CONTENT_TYPES),
                                                 st.from_regex(r"\A[ -~]{0,40}\Z")))
    elif kind == "encoding":
        headers["Content-Encoding"] = draw(st.sampled_from(ENCODINGS))
    elif kind == "batch":
        body = draw(st.sampled_from([
            b"", b"null", b"[]", b"{}", b'{"reports": []}', b'{"reports": {}}', b"1", b'"x"',
            b'{"reports": null}', orjson.dumps([batch]),
            orjson.dumps({"reports": batch["reports"] * 200}),  # up to 600: over the limit
            orjson.dumps({**batch, "more": 1}),
        ]))
    elif kind == "truncate":
        body = body[:draw(st.integers(0, len(body) - 1))]
    elif kind == "bytes":
        body = draw(st.binary(max_size=256))
    elif kind == "cross-field":
        report = batch["reports"][0]
        window = report["end"] - report["start"]
        field, value = draw(st.sampled_from([
            (("end",), report["start"] - 1.0), (("end",), report["start"] + 0.5),
            (("end",), report["start"] + 3600.5),
            (("cpu", "busy_seconds"), report["cpu"]["logical_cpus"] * window * 1.06),
            (("memory", "used_bytes"), report["memory"]["total_bytes"] + 1),
            (("pods",), [{"uid": "same", "cpu_seconds": 0.0, "containers": 1}] * 2),
            (("pods",), [{"uid": "a", "cpu_seconds": report["cpu"]["logical_cpus"] * window * 2,
                          "containers": 1}]),
            (("rapl",), {"package_joules": 1e5 * window * 1.01}),
        ]))
        body = orjson.dumps(replace_at(batch, (
            "reports", 0, *field), value))
    return kind, body, headers


# --- the property ---------------------------------------------------------------------


@pytest.mark.slow
def test_hostile_payloads_never_crash_and_rejected_ones_change_nothing(client: Client):
    outcomes: Counter[tuple[str, int]] = Counter()
    state = {"before": client.counted_state()}

    @settings(max_examples=FUZZ_EXAMPLES, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(payloads())
    def post(payload: tuple[str, bytes, dict[str, str]]) -> None:
        kind, body, headers = payload
        status, reply = client.request("POST", "/api/v1/reports", body, headers)
        outcomes[kind, status] += 1
        assert status < 500, (kind, status, reply[:300])
        before_kept, before_rejections = state["before"]
        after = client.counted_state()
        after_kept, after_rejections = after
        if status == 200:
            answer = orjson.loads(reply)
            assert answer["accepted"] + answer["duplicates"] == len(orjson.loads(
                gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
            )["reports"])
            assert after_rejections == before_rejections
        else:
            assert set(orjson.loads(reply)) == {"error"}
            assert after_kept == before_kept, (kind, status, reply[:300])
            rejected = REJECTION_SERIES[0]
            assert after_rejections[rejected] == before_rejections.get(rejected, 0) + 1
        state["before"] = after

    post()
    sent = sum(outcomes.values())
    rejected = sum(count for (_, status), count in outcomes.items() if status != 200)
    summary = ", ".join(f"{kind} {status}: {count}"
                        for (kind, status), count in sorted(outcomes.items()))
    print(f"\nfuzz: {sent} payloads, {rejected} rejected, {sent - rejected} accepted; {summary}")
    assert sent >= FUZZ_EXAMPLES
    assert rejected > sent / 2 and sent - rejected > 0  # the mutations do both
    _, rejections = client.counted_state()
    assert rejections[REJECTION_SERIES[0]] == rejected
    assert client.request("GET", "/healthz")[0] == 200
