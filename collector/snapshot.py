"""State snapshots on disk: atomic writes, and restores that never crash the collector.

A snapshot is one JSON document: a format tag, a version, `Ledger.to_document()` and,
when given, the rightsizing usage history (`UsageHistory.to_document()`; optional, so
older snapshots still load).
Writes go to a temporary file in the same directory, are fsynced and renamed over
the old snapshot, then the directory is fsynced: a crash at any point leaves
either the old or the new snapshot, never a torn one. A snapshot that is missing
or does not pass its schema is reported (log line and metric) and ignored.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from collector.ledger import Ledger
from collector.rightsizing import UsageHistory

FORMAT = "kubecarbon-collector-state"
VERSION = 1
log = logging.getLogger(__name__)

_finite = {"type": "number"}  # orjson never produces NaN or Infinity
_non_negative = {"type": "number", "minimum": 0}
_label = {"type": "string", "maxLength": 1024}


def _row(labels: int, values: list[dict[str, Any]]) -> dict[str, Any]:
    items = [_label] * labels + values
    return {"type": "array", "items": items, "additionalItems": False, "minItems": len(items)}


_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["format", "version", "state"],
    "properties": {
        "format": {"const": FORMAT},
        "version": {"const": VERSION},
        "written_at": _non_negative,
        "rightsizing": {
            "type": "object",
            "required": ["sample_seconds", "workloads"],
            "properties": {
                "sample_seconds": {"type": "number", "exclusiveMinimum": 0},
                # namespace, workload kind, workload, last interval, samples (oldest first)
                "workloads": {"type": "array", "items": _row(3, [
                    {"type": "integer"},
                    {"type": "array", "items": _non_negative}])},
            },
        },
        "state": {
            "type": "object",
            "required": ["nodes", "groups", "pods", "fleet", "reports", "seqs"],
            "properties": {
                # labels, 4 counters, last seen
                "nodes": {"type": "array", "items": _row(4, [_non_negative] * 5)},
                "groups": {"type": "array", "items": _row(3, [_non_negative] * 3)},
                "pods": {"type": "array", "items": _row(2, [_non_negative] * 3)},
                "fleet": {"type": "array", "items": _finite, "minItems": 4, "maxItems": 4},
                "reports": {"type": "array", "items": {"type": "integer", "minimum": 0},
                            "minItems": 2, "maxItems": 2},
                "seqs": {"type": "array", "items": {
                    "type": "array", "minItems": 3, "additionalItems": False,
                    "items": [{"type": "string"}, {"type": "integer", "minimum": 0},
                              {"type": "string", "pattern": "^[0-9a-f]+$"}],
                }},
            },
        },
    },
}
_check = fastjsonschema.compile(_SCHEMA)


def encode(ledger: Ledger, written_at: float, history: UsageHistory | None = None) -> bytes:
    document: dict[str, Any] = {"format": FORMAT, "version": VERSION, "written_at": written_at,
                                "state": ledger.to_document()}
    if history is not None:
        document["rightsizing"] = history.to_document()
    return orjson.dumps(document)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (tmp + fsync + rename + fsync dir); raises OSError."""
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def restore_snapshot(ledger: Ledger, path: Path, history: UsageHistory | None = None) -> str:
    """Load `path` into a new `ledger`; returns "restored", "missing" or "corrupt" (never raises
    on a bad file)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.info("no state snapshot at %s: starting with empty counters", path)
        return "missing"
    except OSError as exc:
        log.error("cannot read state snapshot %s (%s): starting with empty counters", path, exc)
        return "corrupt"
    try:
        document = orjson.loads(data)
        _check(document)
        ledger.load_document(document["state"])
        if history is not None and "rightsizing" in document:
            history.load_document(document["rightsizing"])
    except (orjson.JSONDecodeError, fastjsonschema.JsonSchemaException, ValueError) as exc:
        log.error("state snapshot %s is corrupt (%s): starting with empty counters", path, exc)
        return "corrupt"
    log.info("restored counters from %s", path)
    return "restored"
