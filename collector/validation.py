"""Decoding and validating a batch of agent reports against the wire contract (kubecarbon.wire).

Pure functions over bytes and parsed JSON, no I/O. Shape and types are stated once,
as a JSON schema (`batch_schema`). Two checkers apply it. msgspec decodes a body and
checks it in one pass, in C, against typed dicts translated from the schema
(`batch_type`); it drops keys the schema does not name, so a count of the body's keys
(`_names_every_key`) must match. A body either refuses is decoded again by orjson and
checked by fastjsonschema and `_check_pods`, which name the field (or accept one of
the rare valid bodies the fast check is stricter about, such as a count written 2.0).
What a schema cannot say (window length, CPU time against CPU capacity, duplicate pod
uids) is checked after either. The first problem found rejects the whole batch with an
`IngestError` naming the field, so the caller never applies part of a batch.

Pod rows come out as `PodRecord` structs, not dicts, whichever path checked them: a
report holds a hundred of them or more, and msgspec builds a struct in about half the
time of a dict (no keys to hash), which is most of what decoding a batch costs.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Literal, NotRequired, TypedDict, cast

import fastjsonschema
import msgspec
import orjson

from collector.settings import IngestLimits
from kubecarbon.wire import (
    NODE_NAME_MAX_CHARS,
    NODE_NAME_PATTERN,
    NODE_NAME_RULE,
    SCHEMA_VERSION,
    Report,
)

AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
# Upper bounds keep every number finite and far from float precision trouble;
# the cross-field checks below are the tight ones.
MAX_TIMESTAMP_SECONDS = 1e11  # year 5138
MAX_QUANTITY = 1e15
MAX_LOGICAL_CPUS = 65_536
MAX_SEQ = 2**63 - 1
MAX_RAPL_WATTS = 100_000.0  # far above any single server; catches counter-wrap garbage


class IngestError(Exception):
    """A rejected request: HTTP status and a message of the form '<field>: <reason>'."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.status = status
        self.field = field
        self.reason = reason


def _number(maximum: float = MAX_QUANTITY) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": maximum}


def _integer(maximum: float) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": maximum}


def _object(properties: Mapping[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": required,
        "additionalProperties": False,
    }


MAX_POD_UID_CHARS = 128
MAX_POD_CONTAINERS = 100_000
# One pod row. Reports carry up to 2,000 of them, so _check_pods applies these rules in a
# tight loop instead; tests check that both agree.
POD_SCHEMA = _object(
    {
        "uid": {"type": "string", "minLength": 1, "maxLength": MAX_POD_UID_CHARS},
        "cpu_seconds": _number(),
        "containers": _integer(MAX_POD_CONTAINERS),
    },
    ["uid", "cpu_seconds", "containers"],
)
_POD_KEYS = frozenset(POD_SCHEMA["required"])


def batch_schema(limits: IngestLimits) -> dict[str, Any]:
    """JSON schema of a batch under the given limits."""
    report = _object(
        {
            "schema": {"const": SCHEMA_VERSION},
            "node": {"type": "string", "minLength": 1, "maxLength": NODE_NAME_MAX_CHARS,
                     "pattern": NODE_NAME_PATTERN},
            "agent_id": {"type": "string", "minLength": 1, "maxLength": 128,
                         "pattern": AGENT_ID_PATTERN},
            "seq": _integer(MAX_SEQ),
            "start": _number(MAX_TIMESTAMP_SECONDS),
            "end": _number(MAX_TIMESTAMP_SECONDS),
            "cpu": _object(
                {
                    "logical_cpus": {"type": "integer", "minimum": 1,
                                     "maximum": MAX_LOGICAL_CPUS},
                    "busy_seconds": _number(),
                },
                ["logical_cpus", "busy_seconds"],
            ),
            "memory": _object(
                {"total_bytes": _integer(2**62), "used_bytes": _integer(2**62)},
                ["total_bytes", "used_bytes"],
            ),
            "containers_running": _integer(10_000_000),
            # items: checked by _check_pods (same rules as POD_SCHEMA, several times faster)
            "pods": {"type": "array", "maxItems": limits.max_pods_per_report},
            "rapl": _object({"package_joules": _number(), "dram_joules": _number()},
                            ["package_joules"]),
        },
        # pods and containers_running are optional: a host outside Kubernetes has neither;
        # memory too: an agent whose meminfo source fails keeps reporting the rest
        ["schema", "node", "agent_id", "seq", "start", "end", "cpu"],
    )
    return _object(
        {"reports": {"type": "array", "minItems": 1,
                     "maxItems": limits.max_reports_per_batch, "items": report}},
        ["reports"],
    )


def batch_type(limits: IngestLimits) -> Any:
    """`batch_schema(limits)` as typed dicts for msgspec, pod rows (POD_SCHEMA) as `PodRecord`.

    Translated from the schema, so that both say the same, but for one thing: msgspec
    drops keys a typed dict or struct does not name instead of refusing them
    (`_names_every_key`).
    """
    schema = batch_schema(limits)
    reports = schema["properties"]["reports"]["items"]
    reports["properties"]["pods"] = {**reports["properties"]["pods"], "items": POD_SCHEMA}
    return _record_type(schema, "Batch")


def _record_type(schema: Mapping[str, Any], name: str) -> Any:
    if schema is POD_SCHEMA:
        return PodRecord
    if "const" in schema:
        return Literal[schema["const"]]
    kind = schema["type"]
    if kind == "object":
        required = set(schema["required"])
        fields = {}
        for key, field_schema in schema["properties"].items():
            field_type = _record_type(field_schema, f"{name}_{key}")
            fields[key] = field_type if key in required else NotRequired[field_type]
        return TypedDict(name, fields)  # type: ignore[operator]
    if kind == "array":
        bounds = msgspec.Meta(min_length=schema.get("minItems"), max_length=schema.get("maxItems"))
        return Annotated[list[_record_type(schema["items"], name)], bounds]  # type: ignore[misc]
    if kind == "string":
        pattern = schema.get("pattern")
        if pattern is not None:
            # msgspec searches with Python's re, where "$" also matches before a final
            # newline; the schema's "$" means the end of the text, as in fastjsonschema
            pattern = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        text = msgspec.Meta(min_length=schema.get("minLength"), max_length=schema.get("maxLength"),
                            pattern=pattern)
        return Annotated[str, text]
    number = msgspec.Meta(ge=schema.get("minimum"), le=schema.get("maximum"))
    number_type = int if kind == "integer" else float
    return Annotated[number_type, number]


PodRecord = msgspec.defstruct(
    "PodRecord",
    [(key, _record_type(POD_SCHEMA["properties"][key], f"PodRecord_{key}"))
     for key in POD_SCHEMA["required"]],
    gc=False,  # str and number fields only: nothing for the cycle collector to find
)
"""A checked pod row (kubecarbon.wire.PodRow) as the collector holds it: `row.uid`,
`row.cpu_seconds`, `row.containers`."""


def pod_records(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Pod rows given as dicts (the wire's PodRow) as `PodRecord`s; no check."""
    return [PodRecord(row["uid"], row["cpu_seconds"], row["containers"]) for row in rows]


# the report's object-valued fields (cpu, memory, rapl); no limit changes which they are
_SECTIONS = tuple(
    key for key, field in batch_schema(IngestLimits())["properties"]["reports"]["items"][
        "properties"].items() if field.get("type") == "object"
)


def _names_every_key(body: bytes, reports: list[Any]) -> bool:
    """Whether the typed dicts msgspec made hold every key of `body` (it drops unknown ones).

    Every key of a JSON text is followed by one colon; other colons can only be inside
    strings. So the text has at least as many colons as keys, and as many as the dicts
    hold keys only if none was dropped or repeated. Agents send no colon in a value;
    a body that does (or any mismatch) goes to the slower path, which decides.
    """
    keys = 1  # "reports"
    for report in reports:
        keys += len(report)
        for section in _SECTIONS:
            value = report.get(section)
            if value is not None:
                keys += len(value)
        keys += len(_POD_KEYS) * len(report.get("pods", ()))
    return body.count(b":") == keys


# a PodRecord's fields, read a row at a time (here and by the ingest step)
POD_UID = attrgetter("uid")
POD_CPU_SECONDS = attrgetter("cpu_seconds")


def decode_body(
    body: bytes, content_type: str | None, content_encoding: str | None, limits: IngestLimits
) -> bytes:
    """Check media type and encoding, gunzip with a hard cap; returns the JSON bytes."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise IngestError(415, "Content-Type", f"expected application/json, got {media_type!r}")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        body = gunzip_capped(body, limits.max_body_bytes)
    elif encoding != "identity":
        raise IngestError(415, "Content-Encoding", f"expected gzip or identity, got {encoding!r}")
    if not body:
        raise IngestError(400, "body", "empty")
    return body


def gunzip_capped(data: bytes, max_bytes: int) -> bytes:
    """Decompress one gzip member without ever producing more than max_bytes (gzip bombs)."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise IngestError(400, "body", f"not valid gzip: {exc}") from None
    if len(out) > max_bytes:
        raise IngestError(413, "body", f"more than {max_bytes} bytes after gunzip")
    if not decompressor.eof:
        raise IngestError(400, "body", "truncated gzip stream")
    if decompressor.unused_data:
        raise IngestError(400, "body", "trailing data after the gzip stream")
    return out


def _schema_error(exc: fastjsonschema.JsonSchemaValueException) -> IngestError:
    # fastjsonschema names the value "data", "data.reports[0].seq", ...; its message repeats it
    name = exc.name or "data"
    field = name.removeprefix("data").lstrip(".") or "body"
    reason = exc.message.removeprefix(name).strip()
    if exc.rule == "pattern" and field.endswith(".node"):
        reason = f"must be {NODE_NAME_RULE}"
    status = 413 if exc.rule == "maxItems" else 422
    return IngestError(status, field, reason)


@dataclass(frozen=True)
class BatchValidator:
    """Turns request bytes into a list of checked reports, or raises IngestError."""

    limits: IngestLimits
    check_schema: Callable[[Any], Any]
    decoder: msgspec.json.Decoder[Any]

    @classmethod
    def for_limits(cls, limits: IngestLimits | None = None) -> BatchValidator:
        limits = limits if limits is not None else IngestLimits()
        return cls(limits=limits, check_schema=fastjsonschema.compile(batch_schema(limits)),
                   decoder=msgspec.json.Decoder(batch_type(limits)))

    def parse(self, body: bytes) -> list[Report]:
        try:
            reports = cast(list[Report], self.decoder.decode(body)["reports"])
        except msgspec.DecodeError:  # ValidationError too
            return self._parse_and_name_the_problem(body)
        if not _names_every_key(body, reports):
            return self._parse_and_name_the_problem(body)
        for index, report in enumerate(reports):
            self._check_report(report, f"reports[{index}]", rows_checked=True)
        return reports

    def _parse_and_name_the_problem(self, body: bytes) -> list[Report]:
        """The slower path: orjson, fastjsonschema and `_check_pods`, which name the field."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise IngestError(400, "body", f"not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise IngestError(422, "body", f"must be a JSON object, got {_json_type(document)}")
        reports = document.get("reports")
        if isinstance(reports, list) and len(reports) > self.limits.max_reports_per_batch:
            raise IngestError(
                413, "reports", f"{len(reports)} reports, limit {self.limits.max_reports_per_batch}"
            )
        try:
            self.check_schema(document)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _schema_error(exc) from None
        reports = cast(list[Report], document["reports"])
        for index, report in enumerate(reports):
            self._check_report(report, f"reports[{index}]", rows_checked=False)
            if "pods" in report:
                report["pods"] = pod_records(report["pods"])
        return reports

    def _check_report(self, report: Report, where: str, rows_checked: bool) -> None:
        limits = self.limits
        window = report["end"] - report["start"]
        if not limits.min_window_seconds <= window <= limits.max_window_seconds:
            raise IngestError(
                422,
                f"{where}.end",
                f"window end - start = {window:g} s, must be "
                f"{limits.min_window_seconds:g} .. {limits.max_window_seconds:g} s",
            )
        cpu_capacity_seconds = report["cpu"]["logical_cpus"] * window * limits.busy_tolerance
        busy = report["cpu"]["busy_seconds"]
        if busy > cpu_capacity_seconds:
            raise IngestError(
                422,
                f"{where}.cpu.busy_seconds",
                f"{busy:g} exceeds logical_cpus * window * {limits.busy_tolerance:g} "
                f"= {cpu_capacity_seconds:g}",
            )
        memory = report.get("memory")
        if memory is not None and memory["used_bytes"] > memory["total_bytes"]:
            raise IngestError(422, f"{where}.memory.used_bytes", "exceeds total_bytes")
        pods = report.get("pods", ())
        pod_cpu_seconds = (_unique_rows_cpu_seconds(pods, where) if rows_checked
                           else _check_pods(pods, where))
        if pod_cpu_seconds > cpu_capacity_seconds:
            raise IngestError(
                422,
                f"{where}.pods",
                f"cpu_seconds sum {pod_cpu_seconds:g} exceeds logical_cpus * window "
                f"* {limits.busy_tolerance:g} = {cpu_capacity_seconds:g}",
            )
        rapl = report.get("rapl")
        if rapl is not None:
            joules = rapl["package_joules"] + rapl.get("dram_joules", 0.0)
            if joules > MAX_RAPL_WATTS * window or not math.isfinite(joules):
                raise IngestError(
                    422, f"{where}.rapl", f"{joules:g} J in {window:g} s is not a plausible power"
                )


def _unique_rows_cpu_seconds(pods: Sequence[Any], where: str) -> float:
    """For rows msgspec checked (`PodRecord`s): unique uids, else an error naming the first
    repeat; the rows' CPU seconds sum."""
    if len(set(map(POD_UID, pods))) != len(pods):
        seen: set[str] = set()
        for index, uid in enumerate(map(POD_UID, pods)):
            if uid in seen:
                raise _duplicate_uid(f"{where}.pods[{index}]")
            seen.add(uid)
    return float(sum(map(POD_CPU_SECONDS, pods)))


def _check_pods(pods: Sequence[Any], where: str) -> float:
    """POD_SCHEMA for every row, plus unique uids; returns the rows' CPU seconds sum.

    The loop does the least per row that decides validity; a row that fails it is looked
    at again by _pod_problem, which names the field (or lets an unusual valid row pass).
    """
    seen: set[str] = set()
    total = 0.0
    for index, pod in enumerate(pods):
        # type() rather than isinstance(): JSON true/false must not pass as 1/0
        if type(pod) is dict and pod.keys() == _POD_KEYS:
            uid, cpu, containers = pod["uid"], pod["cpu_seconds"], pod["containers"]
            if (
                type(uid) is str
                and 0 < len(uid) <= MAX_POD_UID_CHARS
                and (type(cpu) is float or type(cpu) is int)
                and 0 <= cpu <= MAX_QUANTITY
                and type(containers) is int
                and 0 <= containers <= MAX_POD_CONTAINERS
                and uid not in seen
            ):
                seen.add(uid)
                total += cpu
                continue
        problem = _pod_problem(pod, f"{where}.pods[{index}]", seen)
        if problem is not None:
            raise problem
        seen.add(pod["uid"])
        total += pod["cpu_seconds"]
    return total


def _pod_problem(pod: Any, at: str, seen: set[str]) -> IngestError | None:
    """What is wrong with one pod row, or None when it is valid after all."""
    if type(pod) is not dict:
        return IngestError(422, at, f"must be object, got {_json_type(pod)}")
    if pod.keys() != _POD_KEYS:
        missing = sorted(_POD_KEYS - pod.keys())
        if missing:
            return IngestError(422, at, f"must contain {missing} properties")
        return IngestError(422, at, f"must not contain {sorted(pod.keys() - _POD_KEYS)} "
                                    "properties")
    uid, cpu, containers = pod["uid"], pod["cpu_seconds"], pod["containers"]
    if type(uid) is not str or not 0 < len(uid) <= MAX_POD_UID_CHARS:
        return IngestError(422, f"{at}.uid",
                           f"must be a string of 1 to {MAX_POD_UID_CHARS} characters")
    if (type(cpu) is not float and type(cpu) is not int) or not 0 <= cpu <= MAX_QUANTITY:
        return IngestError(422, f"{at}.cpu_seconds",
                           f"must be a number between 0 and {MAX_QUANTITY:g}")
    # JSON Schema counts 2.0 as an integer; so does this check, to agree with the schema
    integral = type(containers) is int or (type(containers) is float and containers.is_integer())
    if not integral or not 0 <= containers <= MAX_POD_CONTAINERS:
        return IngestError(422, f"{at}.containers",
                           f"must be an integer between 0 and {MAX_POD_CONTAINERS}")
    if uid in seen:
        return _duplicate_uid(at)
    return None


def _duplicate_uid(at: str) -> IngestError:
    return IngestError(422, f"{at}.uid", "duplicate pod uid")


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
