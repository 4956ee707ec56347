"""The agent -> collector wire contract: one home for what both sides must agree on.

`POST REPORTS_PATH` with a JSON body `{"reports": [Report, ...]}` (DESIGN.md, wire
format). The collector checks every report against these rules (collector/validation.py)
and rejects a batch whole for one bad report; the agent builds its reports and sizes its
batches by the same rules, so what it sends is never refused for a limit it could know.
The limits here are the collector's defaults; an operator may change them there.
"""

import re
from typing import Final, NotRequired, TypedDict

SCHEMA_VERSION: Final = 1
REPORTS_PATH: Final = "/api/v1/reports"

# A node name is what Kubernetes accepts as one (k8s.io/apimachinery IsDNS1123Subdomain):
# at most 253 characters of lowercase letters, digits, '-' and '.', every dot-separated
# part starting and ending with a letter or a digit. Kubernetes sets no per-part length
# for subdomains, so neither do we: a node whose name has a part longer than 63
# characters is a valid node and must be counted.
NODE_NAME_MAX_CHARS: Final = 253
NODE_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
NODE_NAME_RULE: Final = (
    "a DNS-1123 subdomain (at most 253 characters: lowercase letters, digits, '-' and '.')"
)
_NODE_NAME = re.compile(NODE_NAME_PATTERN)

# Window length (end - start) in seconds.
MIN_WINDOW_SECONDS: Final = 1.0
MAX_WINDOW_SECONDS: Final = 3600.0
# busy_seconds, and the pods' cpu_seconds summed, may exceed logical_cpus * window by
# this factor: the tick counters and the window come from different clocks.
BUSY_TOLERANCE: Final = 1.05

MEBIBYTE: Final = 1024 * 1024
MAX_BODY_BYTES: Final = 4 * MEBIBYTE  # a request body, before and after gunzip
MAX_REPORTS_PER_BATCH: Final = 500
MAX_PODS_PER_REPORT: Final = 2000


def is_node_name(text: str) -> bool:
    """Whether `text` is a node name the collector accepts (NODE_NAME_RULE)."""
    return len(text) <= NODE_NAME_MAX_CHARS and _NODE_NAME.fullmatch(text) is not None


# The records below are evaluated at import (no `from __future__ import annotations`),
# so that their required and optional keys can be read at run time, as tests do.


class CpuSection(TypedDict):
    logical_cpus: int  # online logical CPUs at the end of the window
    busy_seconds: float  # core-seconds busy in the window


class MemorySection(TypedDict):
    total_bytes: int  # levels at the end of the window
    used_bytes: int


class PodRow(TypedDict):
    uid: str  # as the API server spells it
    cpu_seconds: float  # CPU time the pod used in the window
    containers: int  # its running containers at the end of the window


class RaplSection(TypedDict):
    package_joules: float  # energy in the window
    dram_joules: NotRequired[float]  # absent on CPUs without a DRAM domain


class Window(TypedDict):
    """What one node measured in one window, less the node's CPU time."""

    schema: int  # SCHEMA_VERSION
    node: str  # is_node_name
    start: float  # unix seconds
    end: float
    memory: NotRequired[MemorySection]  # absent when the node's memory could not be read
    containers_running: NotRequired[int]  # absent on a host outside Kubernetes
    pods: NotRequired[list[PodRow]]  # likewise
    rapl: NotRequired[RaplSection]  # opt-in


class WindowReport(Window):
    """A window ready to be sent: the estimate starts from the node's CPU time."""

    cpu: CpuSection


class Report(WindowReport):
    """One report on the wire: a window and the identity that makes a retry count once."""

    agent_id: str  # random per agent process start
    seq: int  # 1 for an agent's first report, +1 for each next one


class Batch(TypedDict):
    reports: list[Report]
