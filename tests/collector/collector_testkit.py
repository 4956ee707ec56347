"""Shared helpers for the collector tests: reports in the DESIGN wire format, a settable clock."""

from __future__ import annotations

import copy
import gzip
import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from collector.metadata import NodeInfo, PodInfo, StaticMetadataProvider

T0 = 1_764_072_000.0  # 2025-11-25T12:00:00Z
JSON = {"Content-Type": "application/json"}


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_report(
    node: str = "ip-10-0-1-17",
    seq: int = 1,
    *,
    agent_id: str = "agent-a",
    start: float = T0 - 15.0,
    window_seconds: float = 15.0,
    logical_cpus: int = 16,
    busy_seconds: float = 120.0,
    memory_total_bytes: int = 64 * 2**30,
    pods: list[dict[str, Any]] | None = None,
    rapl: dict[str, float] | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema": 1,
        "node": node,
        "agent_id": agent_id,
        "seq": seq,
        "start": start,
        "end": start + window_seconds,
        "cpu": {"logical_cpus": logical_cpus, "busy_seconds": busy_seconds},
        "memory": {"total_bytes": memory_total_bytes, "used_bytes": memory_total_bytes // 2},
        "containers_running": 3,
        "pods": pods if pods is not None else [
            {"uid": "uid-web-1", "cpu_seconds": 60.0, "containers": 2},
            {"uid": "uid-db-1", "cpu_seconds": 40.0, "containers": 1},
        ],
    }
    if rapl is not None:
        report["rapl"] = rapl
    return report


def full_report() -> dict[str, Any]:
    """A valid report with every optional section, RAPL included."""
    return make_report(seq=100, rapl={"package_joules": 900.0, "dram_joules": 60.0})


def with_field(document: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    """A deep copy of `document` with the field at `path` (keys and list indexes) set to `new`."""
    document = copy.deepcopy(document)
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return document


def body_of(*reports: dict[str, Any]) -> bytes:
    """A request body; the stdlib encoder, so tests can also send huge ints and NaN."""
    return json.dumps({"reports": list(reports)}, separators=(",", ":")).encode()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def metadata_for_tests() -> StaticMetadataProvider:
    """Two nodes with cloud labels, two pods with owners."""
    return StaticMetadataProvider(
        nodes={
            "ip-10-0-1-17": NodeInfo(
                name="ip-10-0-1-17",
                labels={"node.kubernetes.io/instance-type": "m5.4xlarge",
                        "topology.kubernetes.io/region": "us-east-1"},
                provider="aws",
            ),
        },
        pods={
            "uid-web-1": PodInfo("uid-web-1", "shop", "web-7d9f-abc", "Deployment", "web"),
            "uid-db-1": PodInfo("uid-db-1", "shop", "db-0", "StatefulSet", "db"),
        },
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text -> {(sample name, sorted labels): value}, via prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]
