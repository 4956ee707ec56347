"""Where the collector learns what a node is and who owns a pod.

The collector asks a `MetadataProvider`; the static one answers from the config
file only, the Kubernetes one (collector/kubernetes/) from one list-then-watch
of nodes and pods. Config-file overrides always take precedence over what a
provider reports; that merge happens in the profile resolver, not here.

Both keep a `PodRequestIndex`: the pods holding requests by node, with their CPU
requests summed by workload, kept up to date pod by pod, so that a scrape reads
sums rather than walking every pod of the cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# A pod's (namespace, workload_kind, workload): the key requests and usage are summed by.
WorkloadKey = tuple[str, str, str]


@dataclass(frozen=True)
class NodeInfo:
    """What the cluster says about one node (all fields optional but the name)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    provider: str | None = None  # "aws", "gcp", "azure", "alibaba", "baremetal", ...
    instance_type: str | None = None
    region: str | None = None
    zone: str | None = None
    cpu_capacity: float | None = None  # logical CPUs
    memory_capacity_bytes: int | None = None
    # what the scheduler may hand out to pods (capacity minus system reservations)
    cpu_allocatable: float | None = None  # cores
    memory_allocatable_bytes: int | None = None


@dataclass(frozen=True)
class PodInfo:
    """Who a pod uid belongs to; workload is the top of its owner chain."""

    uid: str
    namespace: str
    name: str
    workload_kind: str  # Deployment, StatefulSet, DaemonSet, Job, CronJob, or Pod for a bare pod
    workload_name: str
    node_name: str | None = None  # None until scheduled
    # effective requests (collector/kubernetes/requests.py); 0 when none are set
    cpu_request_cores: float = 0.0
    memory_request_bytes: float = 0.0
    holds_requests: bool = True  # False once the pod ended (Succeeded, Failed): it frees them
    ip: str | None = None  # status.podIP; how collector replicas find each other


@dataclass(frozen=True)
class ProviderStatus:
    """Health of a provider, for the readiness probe and a metric."""

    source: str  # "static" or "kubernetes"
    synced: bool  # has a complete view (static: always)
    connected: bool  # currently reaching its source (static: always)
    detail: str = ""


class MetadataProvider(Protocol):
    """The one seam between the model and whatever knows the cluster."""

    def node(self, name: str) -> NodeInfo | None: ...

    def pod(self, uid: str) -> PodInfo | None: ...

    def pod_generation(self) -> int:
        """A number that moves whenever a uid `pod` did not know may have become known.

        Callers may keep what they built from the pods until it moves (replica routing
        keeps its table of peers).
        """
        ...

    def status(self) -> ProviderStatus: ...


@runtime_checkable
class ClusterInventory(Protocol):
    """Every node and pod a provider knows, for the requested-versus-used accounting."""

    def nodes(self) -> list[NodeInfo]: ...

    def pods(self) -> list[PodInfo]: ...

    def pod_requests(self) -> dict[str, NodeRequests]:
        """The pods holding requests, by node: a consistent copy (see PodRequestIndex)."""
        ...


@dataclass(frozen=True)
class NodeRequests:
    """The pods holding requests on one node, and their CPU requests summed by workload
    (added in the pods' order). Never changed once made."""

    pods: tuple[PodInfo, ...]
    cpu_cores: Mapping[WorkloadKey, float]

    @classmethod
    def of(cls, pods: Iterable[PodInfo]) -> NodeRequests:
        held = tuple(pods)
        cores: dict[WorkloadKey, float] = {}
        for pod in held:
            key = (pod.namespace, pod.workload_kind, pod.workload_name)
            cores[key] = cores.get(key, 0.0) + pod.cpu_request_cores
        return cls(held, cores)


class PodRequestIndex:
    """The pods holding requests (scheduled, not ended) by node, kept up to date one pod
    at a time by whoever owns the pods (a provider's pod watch, on its thread).

    A change sums its node's pods again (about a hundred), never adds or subtracts a
    difference, so the sums stay those of a full walk however long the watch runs. The
    lock makes each change whole to `by_node()`, which any thread may call: a pod that
    moves is seen on one node, never on none or two.
    """

    def __init__(self, pods: Iterable[PodInfo] = ()) -> None:
        self._lock = threading.Lock()
        self._node_of: dict[str, str] = {}  # uid -> node, of the pods held
        # a node's pods, in arrival order, are its NodeRequests' tuple: no other copy
        self._by_node: dict[str, NodeRequests] = {}
        self.replace(pods)

    def replace(self, pods: Iterable[PodInfo]) -> None:
        """Hold exactly these pods (a table's values after a list: one per uid)."""
        fresh: dict[str, list[PodInfo]] = {}
        node_of: dict[str, str] = {}
        for pod in pods:
            node = _holding_node(pod)
            if node is not None:
                fresh.setdefault(node, []).append(pod)
                node_of[pod.uid] = node
        by_node = {node: NodeRequests.of(held) for node, held in fresh.items()}
        with self._lock:
            self._node_of, self._by_node = node_of, by_node

    def put(self, pod: PodInfo) -> None:
        """Add or replace one pod; one that is not scheduled or has ended is dropped."""
        node = _holding_node(pod)
        with self._lock:
            held_on = self._node_of.get(pod.uid)
            if held_on is not None and held_on != node:
                self._drop_locked(pod.uid, held_on)
            if node is None:
                return
            held = self._by_node[node].pods if node in self._by_node else ()
            if held_on == node:  # replaced on its node: keeps its place in the node's order
                held = tuple(pod if p.uid == pod.uid else p for p in held)
            else:
                held = (*held, pod)
            self._node_of[pod.uid] = node
            self._by_node[node] = NodeRequests.of(held)

    def remove(self, uid: str) -> None:
        with self._lock:
            node = self._node_of.get(uid)
            if node is not None:
                self._drop_locked(uid, node)

    def by_node(self) -> dict[str, NodeRequests]:
        """A copy, taken whole: later changes do not show in it."""
        with self._lock:
            return dict(self._by_node)

    def _drop_locked(self, uid: str, node: str) -> None:
        del self._node_of[uid]
        held = tuple(p for p in self._by_node[node].pods if p.uid != uid)
        if held:
            self._by_node[node] = NodeRequests.of(held)
        else:
            del self._by_node[node]


def _holding_node(pod: PodInfo) -> str | None:
    """The node whose room the pod's requests take; None if unscheduled or ended."""
    return pod.node_name if pod.holds_requests else None


class StaticMetadataProvider:
    """Answers from fixed tables (the config file); knows no pods unless given."""

    def __init__(
        self,
        nodes: Mapping[str, NodeInfo] | None = None,
        pods: Mapping[str, PodInfo] | None = None,
    ) -> None:
        self._nodes = dict(nodes or {})
        self._pods = dict(pods or {})
        self._requests = PodRequestIndex(self._pods.values())

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def pod(self, uid: str) -> PodInfo | None:
        return self._pods.get(uid)

    def pod_generation(self) -> int:
        return 0  # fixed tables

    def status(self) -> ProviderStatus:
        return ProviderStatus(source="static", synced=True, connected=True)

    def nodes(self) -> list[NodeInfo]:
        return list(self._nodes.values())

    def pods(self) -> list[PodInfo]:
        return list(self._pods.values())

    def pod_requests(self) -> dict[str, NodeRequests]:
        return self._requests.by_node()
