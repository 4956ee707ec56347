"""Node and pod metadata from the Kubernetes API: one list-then-watch per resource.

`KubernetesMetadataProvider` keeps two in-memory tables, nodes by name and pods
by uid, in sync with the whole cluster through one reflector per resource (the
client-go pattern): a paginated list, then a watch from the list's
resourceVersion, resumed from the last seen version after a disconnect and
restarted with a full relist when the server answers 410 Gone. While the API
server is unreachable the tables keep their last known content and `status()`
says so. Only get/list/watch on nodes and pods are used.

The official client is synchronous, so each reflector runs in its own thread.
Objects are kept as raw JSON dicts only long enough to parse the few fields the
collector needs: a cluster of 100k pods costs one small `PodInfo` per pod.
`kubernetes.informer.SharedInformer` was not used: it keeps whole typed objects,
retries on a fixed 5 s period without backoff and does not report its state.

    objects      API JSON -> NodeInfo / PodInfo (pure)
    reflector    list, then watch, one resource; WatchSettings, ReflectorState
    provider     KubernetesMetadataProvider: the two reflectors behind MetadataProvider
    metrics      WATCH_METRICS and KubernetesWatchMetrics, which serves them
    metrics_doc  their section of docs/kubernetes.md
    credentials  load_api_client: in-cluster, else kubeconfig
"""

from collector.kubernetes.credentials import (
    ConnectionChoice,
    KubernetesUnavailable,
    load_api_client,
)
from collector.kubernetes.metrics import KubernetesWatchMetrics
from collector.kubernetes.provider import KubernetesMetadataProvider
from collector.kubernetes.reflector import WatchSettings

__all__ = [
    "ConnectionChoice",
    "KubernetesMetadataProvider",
    "KubernetesUnavailable",
    "KubernetesWatchMetrics",
    "WatchSettings",
    "load_api_client",
]
