"""Requested versus used CPU, per node, namespace and workload, of the live nodes.

The scheduler places pods by their requests, so a node's requested cores are what
keeps it in the fleet; the agents' per-pod CPU seconds say how much of that is used.
`PodUsageTracker` (fed by the ingest step) keeps each node's latest window of pod CPU
use by workload; `capacity_view` joins it with the requests the metadata provider
keeps summed by node and workload (collector.metadata.PodRequestIndex) for the nodes
live at the scrape: a scrape walks live nodes and their workloads, never every pod.

Requested-but-idle cores are max(requested - used, 0) per workload on each node, then
summed: one workload using more than it asked for does not fill another's idle request.
Every term is a sum over this collector's live nodes, so several replicas add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collector.ledger import OTHER, NodeLabels, NodeLatest
from collector.metadata import NodeInfo, NodeRequests, PodInfo, WorkloadKey


@dataclass(frozen=True)
class NodeUsage:
    """Pod CPU use of one node's latest window (cores, by workload)."""

    window_end: float
    cores: Mapping[WorkloadKey, float]


class PodUsageTracker:
    """The latest window of pod CPU use of every node, by workload. Written by ingest only;
    readers take `latest()`, whose entries are never changed after they are stored."""

    def __init__(self) -> None:
        self._latest: dict[str, NodeUsage] = {}

    def observe(self, reports: Sequence[Mapping[str, Any]],
                cores_by_workload: Sequence[Mapping[WorkloadKey, float]]) -> None:
        """Record each report's pod use: its cores (CPU seconds over the window's length)
        by workload, of the pods the metadata provider knows (others have no requests to
        compare with)."""
        for report, cores in zip(reports, cores_by_workload, strict=True):
            previous = self._latest.get(report["node"])
            if previous is None or previous.window_end <= report["end"]:
                self._latest[report["node"]] = NodeUsage(report["end"], cores)

    def latest(self) -> dict[str, NodeUsage]:
        return dict(self._latest)

    def __len__(self) -> int:
        return len(self._latest)

    def forget_before(self, window_end: float) -> None:
        """Drop nodes whose latest window ended before `window_end` (silent ones)."""
        for node in [n for n, u in self._latest.items() if u.window_end < window_end]:
            del self._latest[node]


@dataclass(frozen=True)
class CpuAccount:
    """Requested, used and requested-but-idle cores of one node, namespace or workload."""

    requested: float = 0.0
    used: float = 0.0
    idle_requested: float = 0.0

    def __add__(self, other: CpuAccount) -> CpuAccount:
        return CpuAccount(self.requested + other.requested, self.used + other.used,
                          self.idle_requested + other.idle_requested)


NOTHING_KNOWN = CpuAccount()  # a node none of whose pods holds requests or has known use


@dataclass(frozen=True)
class NodeCapacity:
    """A live node's room for pods, as the scheduler sees it."""

    labels: NodeLabels
    allocatable_cpu: float  # cores; the node's logical CPUs when the cluster does not say
    allocatable_memory: float  # bytes; the node's memory when the cluster does not say


@dataclass(frozen=True)
class CapacityView:
    nodes: dict[NodeLabels, CpuAccount]
    capacity: list[NodeCapacity]
    namespaces: dict[str, CpuAccount]
    workloads: dict[WorkloadKey, CpuAccount]
    requests: dict[str, NodeRequests]  # of the live nodes that have requesting pods

    @property
    def pods(self) -> list[PodInfo]:
        """The pods holding requests on live nodes (for the packing of rightsizing); a
        new list at each read."""
        return [pod for node in self.requests.values() for pod in node.pods]


def capacity_view(
    live: Sequence[NodeLatest],
    node_infos: Iterable[NodeInfo],
    requests: Mapping[str, NodeRequests],
    usage: Mapping[str, NodeUsage],
    named_workloads: Iterable[WorkloadKey],
) -> CapacityView:
    """Requested, used and idle cores of the live nodes; workloads outside
    `named_workloads` (the ledger's capped set) add up under (namespace, other, other)."""
    by_name = {n.labels[0]: n for n in live}
    infos = {info.name: info for info in node_infos}
    on_live_nodes = {name: requests[name] for name in by_name if name in requests}
    named = set(named_workloads)
    nodes: dict[NodeLabels, CpuAccount] = {}
    # requested, used and idle cores of each workload as plain floats: a CpuAccount per
    # node and workload cost a scrape about 0.1 s at 20,000 nodes. Same additions, same order.
    workload_sums: dict[WorkloadKey, list[float]] = {}
    # each workload's row of workload_sums, found once a scrape: this loop runs for every
    # workload on every live node (tens a node with Kubernetes metadata)
    row_of: dict[WorkloadKey, list[float]] = {}
    capacity = []
    for name, latest in by_name.items():
        used = usage[name].cores if name in usage else {}
        wanted = on_live_nodes[name].cpu_cores if name in on_live_nodes else {}
        info = infos.get(name)
        capacity.append(NodeCapacity(
            latest.labels,
            _or(info.cpu_allocatable if info else None, latest.logical_cpus),
            _or(info.memory_allocatable_bytes if info else None, latest.memory_total_bytes),
        ))
        if not used and not wanted:  # no pods the provider knows: every pod row unknown
            nodes[latest.labels] = NOTHING_KNOWN
            continue
        node_requested = node_used = node_idle = 0.0
        for key in wanted.keys() | used.keys():
            want, use = wanted.get(key, 0.0), used.get(key, 0.0)
            idle = want - use
            if idle < 0.0:  # max(want - use, 0.0) without the call
                idle = 0.0
            node_requested, node_used, node_idle = (
                node_requested + want, node_used + use, node_idle + idle)
            sums = row_of.get(key)
            if sums is None:
                shown = key if key in named else (key[0], OTHER, OTHER)
                sums = row_of[key] = workload_sums.setdefault(shown, [0.0, 0.0, 0.0])
            sums[0] += want
            sums[1] += use
            sums[2] += idle
        nodes[latest.labels] = CpuAccount(node_requested, node_used, node_idle)
    workloads = {key: CpuAccount(*sums) for key, sums in workload_sums.items()}
    namespaces: dict[str, CpuAccount] = {}
    for key, account in workloads.items():
        namespaces[key[0]] = namespaces.get(key[0], CpuAccount()) + account
    return CapacityView(nodes, capacity, namespaces, workloads, on_live_nodes)


def _or(value: float | None, fallback: float) -> float:
    return float(value) if value is not None else float(fallback)
