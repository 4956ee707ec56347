"""Where the collector learns what a node is and who owns a pod.

The collector asks a `MetadataProvider`; the static one answers from the config
file only, the Kubernetes one (collector/kubernetes/) from one list-then-watch
of nodes and pods. Config-file overrides always take precedence over what a
provider reports; that merge happens in the profile resolver, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


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

        Callers may remember that a uid is unknown until it moves (ingest does).
        """
        ...

    def status(self) -> ProviderStatus: ...


@runtime_checkable
class ClusterInventory(Protocol):
    """Every node and pod a provider knows, for the requested-versus-used accounting."""

    def nodes(self) -> list[NodeInfo]: ...

    def pods(self) -> list[PodInfo]: ...


class StaticMetadataProvider:
    """Answers from fixed tables (the config file); knows no pods unless given."""

    def __init__(
        self,
        nodes: Mapping[str, NodeInfo] | None = None,
        pods: Mapping[str, PodInfo] | None = None,
    ) -> None:
        self._nodes = dict(nodes or {})
        self._pods = dict(pods or {})

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
