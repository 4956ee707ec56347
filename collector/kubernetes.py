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
"""

# The official client ships py.typed but leaves most functions unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.incluster_config import InClusterConfigLoader
from kubernetes.utils import parse_quantity
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector.metadata import NodeInfo, PodInfo, ProviderStatus

log = logging.getLogger(__name__)

INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")

# spec.providerID scheme -> provider name used by the model's coefficient tables
PROVIDER_ID_SCHEMES = {
    "aws": "aws",
    "gce": "gcp",
    "azure": "azure",
    "alicloud": "alibaba",
}
# Labels that managed node pools set even when providerID is empty (checked in order).
PROVIDER_LABEL_PREFIXES = (
    ("eks.amazonaws.com/", "aws"),
    ("cloud.google.com/gke-", "gcp"),
    ("kubernetes.azure.com/", "azure"),
    ("alibabacloud.com/", "alibaba"),
)

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
# The CronJob controller names each Job <cronjob>-<scheduled time since the epoch>: in
# minutes since Kubernetes 1.21 (CronJobControllerV2), in seconds before (the 1.20
# controller's getTimeHash; schedules are whole minutes, so a multiple of 60). Accept
# times between 2014 (Kubernetes' first release) and 2200.
CRONJOB_SUFFIX_MINUTES_RANGE = (23_140_800, 121_190_400)
CRONJOB_SUFFIX_SECONDS_RANGE = (23_140_800 * 60, 121_190_400 * 60)
BARE_POD_KIND = "Pod"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


# ----------------------------------------------------------------------------
# Parsing: API JSON (dicts as the server sends them) -> NodeInfo / PodInfo


def _first_label(labels: Mapping[str, str], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = labels.get(key)
        if value:
            return value
    return None


def provider_of_node(provider_id: str | None, labels: Mapping[str, str]) -> str | None:
    """Cloud provider from `spec.providerID` ("aws:///eu-west-1a/i-0abc"), else from pool labels.

    An unknown scheme is passed through ("openstack", "kind"), so the profile
    resolver can match it; None when nothing identifies the provider.
    """
    if provider_id and "://" in provider_id:
        scheme = provider_id.split("://", 1)[0].lower()
        if scheme:
            return PROVIDER_ID_SCHEMES.get(scheme, scheme)
    for prefix, provider in PROVIDER_LABEL_PREFIXES:
        if any(key.startswith(prefix) for key in labels):
            return provider
    return None


def _quantity(value: object, what: str, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        log.warning("node %s: ignoring unparsable %s quantity %r", name, what, value)
        return None


def node_info_from_object(obj: Mapping[str, Any]) -> NodeInfo:
    """The fields of a Node object (as JSON) that select a power profile."""
    metadata = obj.get("metadata") or {}
    name = metadata["name"]
    labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
    spec = obj.get("spec") or {}
    capacity = (obj.get("status") or {}).get("capacity") or {}
    memory = _quantity(capacity.get("memory"), "memory", name)
    return NodeInfo(
        name=name,
        labels=labels,
        provider=provider_of_node(spec.get("providerID"), labels),
        instance_type=_first_label(labels, INSTANCE_TYPE_LABELS),
        region=_first_label(labels, REGION_LABELS),
        zone=_first_label(labels, ZONE_LABELS),
        cpu_capacity=_quantity(capacity.get("cpu"), "cpu", name),
        memory_capacity_bytes=int(memory) if memory is not None else None,
    )


def _is_cronjob_suffix(suffix: str) -> bool:
    if not suffix.isdigit():
        return False
    value = int(suffix)
    low, high = CRONJOB_SUFFIX_MINUTES_RANGE
    if low <= value <= high:
        return True
    low, high = CRONJOB_SUFFIX_SECONDS_RANGE
    return low <= value <= high and value % 60 == 0


def workload_of_pod(
    pod_name: str, labels: Mapping[str, str], owner_references: Sequence[Mapping[str, Any]]
) -> tuple[str, str]:
    """(kind, name) at the top of a pod's owner chain, from the pod alone.

    Watching ReplicaSets and Jobs would need more RBAC and more memory, so the
    step above them is inferred from names the controllers generate:
    a ReplicaSet named <deployment>-<pod-template-hash> belongs to Deployment
    <deployment>; a Job named <cronjob>-<minutes (or, before 1.21, seconds) since
    the epoch> to CronJob <cronjob>. Other controller kinds are reported as
    themselves; a pod without a controller, or a static pod (owned by its Node), is
    its own workload (kind "Pod").
    """
    owner = next((ref for ref in owner_references if ref.get("controller")), None)
    if owner is None and owner_references:
        owner = owner_references[0]
    if owner is None:
        job_name = _first_label(labels, JOB_NAME_LABELS)
        if job_name is None:
            return BARE_POD_KIND, pod_name
        owner = {"kind": "Job", "name": job_name}
    kind = str(owner.get("kind") or BARE_POD_KIND)
    name = str(owner.get("name") or pod_name)
    if kind == "Node":  # the mirror of a static pod: the pod is the workload
        return BARE_POD_KIND, pod_name
    if kind == "ReplicaSet":
        template_hash = labels.get(POD_TEMPLATE_HASH_LABEL)
        if template_hash and name.endswith("-" + template_hash):
            return "Deployment", name[: -len(template_hash) - 1]
    elif kind == "Job":
        base, dash, suffix = name.rpartition("-")
        if dash and base and _is_cronjob_suffix(suffix):
            return "CronJob", base
    return kind, name


def pod_info_from_object(obj: Mapping[str, Any]) -> PodInfo:
    """uid, namespace, name and workload of a Pod object (as JSON)."""
    metadata = obj.get("metadata") or {}
    name = metadata["name"]
    labels = metadata.get("labels") or {}
    kind, workload = workload_of_pod(name, labels, metadata.get("ownerReferences") or ())
    # Many pods share namespace and workload strings; interning keeps one copy.
    return PodInfo(
        uid=metadata["uid"],
        namespace=sys.intern(str(metadata.get("namespace") or "default")),
        name=name,
        workload_kind=sys.intern(kind),
        workload_name=sys.intern(workload),
    )


def _node_entry(obj: Mapping[str, Any]) -> tuple[str, NodeInfo, tuple[str, ...]]:
    info = node_info_from_object(obj)
    return info.name, info, ()


def _pod_entry(obj: Mapping[str, Any]) -> tuple[str, PodInfo, tuple[str, ...]]:
    info = pod_info_from_object(obj)
    # A static pod runs (and has its cgroup) under the uid in this annotation; the
    # API only shows its mirror pod, whose own uid differs.
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    static_uid = annotations.get(MIRROR_POD_ANNOTATION)
    return info.uid, info, (static_uid,) if static_uid else ()


# ----------------------------------------------------------------------------
# Reflector: list, then watch, for one resource


@dataclass(frozen=True)
class WatchSettings:
    """How the provider talks to the API server; defaults follow client-go's reflector."""

    initial_backoff_seconds: float = 0.8  # first retry delay after an error
    max_backoff_seconds: float = 30.0  # retry delays double up to this, with jitter
    # Each watch asks the server to end it after this many seconds times 1..2 (random,
    # so many collectors do not reconnect together); a silent dead connection is
    # also noticed by the read timeout a little later.
    watch_timeout_seconds: int = 300
    connect_timeout_seconds: float = 10.0
    list_read_timeout_seconds: float = 60.0
    list_page_size: int = 500  # items per list page, to bound the server's and our memory
    # Deleted pods stay resolvable this long: agents report a pod's last window
    # after it is gone.
    deleted_pod_retention_seconds: float = 600.0


@dataclass
class ReflectorState:
    """What one reflector reports about itself (a copy; safe to read from any thread)."""

    resource: str
    synced: bool = False
    connected: bool = False
    objects: int = 0
    relists_total: int = 0
    reconnects_total: int = 0
    errors_total: int = 0
    last_sync_timestamp_seconds: float | None = None  # end of the last complete list
    disconnected_since_seconds: float | None = None
    last_error: str = ""


class _Backoff:
    """Exponential backoff with jitter: delay in [d/2, d], d doubling up to a cap."""

    def __init__(self, initial_seconds: float, max_seconds: float, rng: random.Random) -> None:
        self._initial_seconds = initial_seconds
        self._max_seconds = max_seconds
        self._rng = rng
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay_seconds(self) -> float:
        ceiling = min(self._max_seconds, self._initial_seconds * 2.0 ** min(self._attempt, 30))
        self._attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


class _RelistNeeded(Exception):
    """The watch's resourceVersion is gone (410): only a fresh list can resume."""


V = TypeVar("V")


class _Reflector(Generic[V]):
    """Keeps `table` equal to the server's collection of one resource."""

    def __init__(
        self,
        resource: str,
        list_function: Callable[..., Any],
        entry: Callable[[Mapping[str, Any]], tuple[str, V, tuple[str, ...]]],
        settings: WatchSettings,
        stop_event: threading.Event,
        clock: Callable[[], float],
        rng: random.Random,
        # called with {key or alias: value} of objects that left the collection
        on_removed: Callable[[dict[str, V]], None] | None = None,
    ) -> None:
        self.resource = resource
        self.table: dict[str, V] = {}
        self.aliases: dict[str, str] = {}  # other names of an object -> its key in `table`
        self._list_function = list_function
        self._entry = entry
        self._settings = settings
        self._stop_event = stop_event
        self._clock = clock
        self._rng = rng
        self._on_removed = on_removed
        self._lock = threading.Lock()
        self._state = ReflectorState(resource=resource)
        self._response: Any = None  # the open watch response, for interrupt()
        self._backoff = _Backoff(
            settings.initial_backoff_seconds, settings.max_backoff_seconds, rng
        )

    def state(self) -> ReflectorState:
        with self._lock:
            snapshot = ReflectorState(**vars(self._state))
        snapshot.objects = len(self.table)
        return snapshot

    def interrupt(self) -> None:
        """Unblock a running watch (called from another thread at shutdown).

        Shutting the socket down wakes the blocked read; closing the response from
        this thread could wait on the TLS object the reading thread holds.
        """
        response = self._response
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> None:
        resource_version: str | None = None
        while not self._stop_event.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                    self._backoff.reset()
                resource_version = self._watch_from(resource_version)
            except _RelistNeeded as exc:
                log.info("%s: %s; relisting", self.resource, exc)
                resource_version = None
            except Exception as exc:
                if self._stop_event.is_set():
                    break
                self._failed(exc)
                self._stop_event.wait(self._backoff.next_delay_seconds())
        with self._lock:
            self._state.connected = False

    # one paginated list: a consistent snapshot at one resourceVersion
    def _list(self) -> str:
        fresh: dict[str, V] = {}
        fresh_aliases: dict[str, str] = {}
        continue_token: str | None = None
        while True:
            response = self._list_function(
                limit=self._settings.list_page_size,
                _continue=continue_token,
                _preload_content=False,
                _request_timeout=(
                    self._settings.connect_timeout_seconds,
                    self._settings.list_read_timeout_seconds,
                ),
            )
            try:
                page = orjson.loads(response.data)
            finally:
                response.release_conn()
            for item in page.get("items") or ():
                self._put(fresh, fresh_aliases, item)
            list_metadata = page.get("metadata") or {}
            continue_token = list_metadata.get("continue") or None
            if continue_token is None:
                resource_version = str(list_metadata.get("resourceVersion") or "")
                break
            if self._stop_event.is_set():
                raise InterruptedError("stopping")
        # Gone since the last list, under every name they had (for on_removed)
        removed = {key: value for key, value in self.table.items() if key not in fresh}
        removed.update((name, removed[key]) for name, key in self.aliases.items() if key in removed)
        self.table, self.aliases = fresh, fresh_aliases
        if removed and self._on_removed is not None:
            self._on_removed(removed)
        now = self._clock()
        with self._lock:
            state = self._state
            state.synced = True
            state.relists_total += 1
            state.last_sync_timestamp_seconds = now
            self._mark_connected_locked()
        log.info("%s: listed %d at resourceVersion %s", self.resource, len(fresh), resource_version)
        return resource_version

    def get(self, key: str) -> V | None:
        value = self.table.get(key)
        if value is None and key in self.aliases:
            value = self.table.get(self.aliases[key])
        return value

    def _put(self, table: dict[str, V], aliases: dict[str, str], obj: Mapping[str, Any]) -> None:
        try:
            key, value, other_names = self._entry(obj)
        except (KeyError, TypeError, AttributeError) as exc:
            # One malformed object must not stop the watch of all the others.
            log.warning("%s: skipping an object without %s", self.resource, exc)
            return
        table[key] = value
        for name in other_names:
            aliases[name] = key

    def _watch_from(self, resource_version: str) -> str:
        timeout_seconds = int(self._settings.watch_timeout_seconds * (1 + self._rng.random()))
        try:
            response = self._list_function(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=(
                    self._settings.connect_timeout_seconds,
                    timeout_seconds + self._settings.connect_timeout_seconds,
                ),
            )
        except ApiException as exc:
            if exc.status == 410:
                raise _RelistNeeded(f"resourceVersion {resource_version} expired") from exc
            raise
        self._response = response
        with self._lock:
            self._mark_connected_locked()
        try:
            # urllib3 yields the chunked body line by line: one JSON event per line
            for line in response:
                if self._stop_event.is_set():
                    break
                if line.strip():
                    resource_version = self._apply(orjson.loads(line), resource_version)
                    self._backoff.reset()
        finally:
            self._response = None
            response.close()
            response.release_conn()
        return resource_version

    def _apply(self, event: Mapping[str, Any], resource_version: str) -> str:
        event_type = event.get("type")
        obj = event.get("object") or {}
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
        if event_type in ("ADDED", "MODIFIED"):
            self._put(self.table, self.aliases, obj)
        elif event_type == "DELETED":
            try:
                key, value, other_names = self._entry(obj)
            except (KeyError, TypeError, AttributeError):
                return new_version
            for name in other_names:
                self.aliases.pop(name, None)
            if self.table.pop(key, None) is not None and self._on_removed is not None:
                self._on_removed({key: value, **dict.fromkeys(other_names, value)})
        elif event_type == "ERROR":
            # A Status object; 410 means the watch cache no longer has our version.
            if obj.get("code") == 410:
                raise _RelistNeeded(
                    f"resourceVersion {resource_version} expired: {obj.get('message')}"
                )
            raise ApiException(status=obj.get("code"), reason=str(obj.get("message")))
        return new_version

    def _mark_connected_locked(self) -> None:
        if not self._state.connected and self._state.errors_total:
            self._state.reconnects_total += 1
            log.info("%s: connected again to the API server", self.resource)
        self._state.connected = True
        self._state.disconnected_since_seconds = None
        self._state.last_error = ""

    def _failed(self, exc: Exception) -> None:
        reason = _describe_error(exc)
        with self._lock:
            state = self._state
            state.errors_total += 1
            if state.connected or state.disconnected_since_seconds is None:
                state.disconnected_since_seconds = self._clock()
            # One warning per outage or change of cause; the retries in between are debug.
            repeated = not state.connected and reason == state.last_error
            state.connected = False
            state.last_error = reason
        log.log(
            logging.DEBUG if repeated else logging.WARNING,
            "%s: %s; retrying with backoff",
            self.resource,
            reason,
        )


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        if exc.status == 0 or exc.status is None:
            return f"API error: {exc.reason}"
        return f"API server answered {exc.status} {exc.reason}"
    text = str(exc)
    # urllib3's MaxRetryError repeats the URL and wraps the cause; the cause is what helps.
    cause = getattr(exc, "reason", None)
    if isinstance(cause, Exception):
        text = str(cause)
    return f"{type(exc).__name__}: {text}"[:300]


# ----------------------------------------------------------------------------
# The provider


class KubernetesMetadataProvider:
    """MetadataProvider answering from a live watch of all nodes and pods.

    Call `start()` once; `stop()` ends both threads and closes connections.
    Lookups are dict reads and never block on the network.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        settings: WatchSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._api_client = api_client
        self._settings = settings or WatchSettings()
        self._clock = clock
        self._stop_event = threading.Event()
        rng = rng or random.Random()
        core = client.CoreV1Api(api_client)
        self._deleted_pods: dict[str, tuple[float, PodInfo]] = {}
        self._deleted_lock = threading.Lock()
        self._nodes: _Reflector[NodeInfo] = _Reflector(
            "nodes", core.list_node, _node_entry, self._settings, self._stop_event, clock, rng
        )
        self._pods: _Reflector[PodInfo] = _Reflector(
            "pods",
            core.list_pod_for_all_namespaces,
            _pod_entry,
            self._settings,
            self._stop_event,
            clock,
            rng,
            on_removed=self._remember_deleted_pods,
        )
        self._threads: list[tuple[threading.Thread, _Reflector[Any]]] = []

    # MetadataProvider
    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def pod(self, uid: str) -> PodInfo | None:
        info = self._pods.get(uid)
        if info is not None:
            return info
        with self._deleted_lock:
            deleted = self._deleted_pods.get(uid)
        if deleted is None:
            return None
        deleted_at, info = deleted
        if self._clock() - deleted_at > self._settings.deleted_pod_retention_seconds:
            return None
        return info

    def status(self) -> ProviderStatus:
        states = self.reflector_states()
        synced = all(state.synced for state in states)
        connected = all(state.connected for state in states)
        return ProviderStatus(
            source="kubernetes",
            synced=synced,
            connected=connected,
            detail="; ".join(self._describe(state) for state in states),
        )

    # lifecycle
    def start(self) -> None:
        if self._threads:
            raise RuntimeError("KubernetesMetadataProvider.start() called twice")
        for reflector in (self._nodes, self._pods):
            thread = threading.Thread(
                target=reflector.run, name=f"kubecarbon-watch-{reflector.resource}", daemon=True
            )
            thread.start()
            self._threads.append((thread, reflector))

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop watching; returns when both threads ended (or the timeout passed)."""
        self._stop_event.set()
        deadline = time.monotonic() + timeout_seconds
        for thread, reflector in self._threads:
            # A watch opened just before stop() may not be interruptible yet: retry.
            while thread.is_alive() and time.monotonic() < deadline:
                reflector.interrupt()
                thread.join(0.1)
            if thread.is_alive():
                log.warning("%s watch thread did not stop in time", reflector.resource)
        self._api_client.close()

    def wait_synced(self, timeout_seconds: float) -> bool:
        """Block until both resources were listed once; False on timeout."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.status().synced:
                return True
            self._stop_event.wait(0.05)
        return self.status().synced

    def __enter__(self) -> KubernetesMetadataProvider:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # observability
    def reflector_states(self) -> tuple[ReflectorState, ReflectorState]:
        return self._nodes.state(), self._pods.state()

    def _remember_deleted_pods(self, removed: dict[str, PodInfo]) -> None:
        retention = self._settings.deleted_pod_retention_seconds
        if retention <= 0:
            return
        now = self._clock()
        with self._deleted_lock:
            for uid, info in removed.items():
                self._deleted_pods[uid] = (now, info)
            expired = [uid for uid, (at, _) in self._deleted_pods.items() if now - at > retention]
            for uid in expired:
                del self._deleted_pods[uid]

    def _describe(self, state: ReflectorState) -> str:
        if state.connected:
            return f"{state.resource}: watching, {state.objects} known"
        if not state.synced:
            return f"{state.resource}: not listed yet ({state.last_error or 'connecting'})"
        since = state.disconnected_since_seconds
        ago = f" for {self._clock() - since:.0f}s" if since is not None else ""
        return (
            f"{state.resource}: API unreachable{ago} ({state.last_error or 'reconnecting'}); "
            f"serving last known {state.objects}"
        )


class KubernetesWatchMetrics:
    """Prometheus collector for the provider's own health; register it on a registry.

    Values are read at scrape time from the reflectors, so nothing can go stale.
    """

    def __init__(self, provider: KubernetesMetadataProvider) -> None:
        self._provider = provider

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: families are only known at collect time

    def collect(self) -> Iterator[Metric]:
        states = self._provider.reflector_states()
        up = GaugeMetricFamily(
            "kubecarbon_kubernetes_watch_up",
            "1 while the watch of this resource is connected to the API server",
            labels=["resource"],
        )
        synced = GaugeMetricFamily(
            "kubecarbon_kubernetes_synced",
            "1 once this resource was listed completely (the metadata may be stale if not up)",
            labels=["resource"],
        )
        objects = GaugeMetricFamily(
            "kubecarbon_kubernetes_objects",
            "Objects of this resource currently known to the collector",
            labels=["resource"],
        )
        last_sync = GaugeMetricFamily(
            "kubecarbon_kubernetes_last_sync_timestamp_seconds",
            "Unix time at which the last complete list of this resource finished",
            labels=["resource"],
        )
        relists = CounterMetricFamily(
            "kubecarbon_kubernetes_relists",
            "Complete lists of this resource (the first one, and after 410 Gone)",
            labels=["resource"],
        )
        restarts = CounterMetricFamily(
            "kubecarbon_kubernetes_watch_reconnects",
            "Watches of this resource reopened after the connection was lost",
            labels=["resource"],
        )
        errors = CounterMetricFamily(
            "kubecarbon_kubernetes_watch_errors",
            "Failed list or watch requests for this resource",
            labels=["resource"],
        )
        for state in states:
            labels = [state.resource]
            up.add_metric(labels, 1.0 if state.connected else 0.0)
            synced.add_metric(labels, 1.0 if state.synced else 0.0)
            objects.add_metric(labels, float(state.objects))
            if state.last_sync_timestamp_seconds is not None:
                last_sync.add_metric(labels, state.last_sync_timestamp_seconds)
            relists.add_metric(labels, float(state.relists_total))
            restarts.add_metric(labels, float(state.reconnects_total))
            errors.add_metric(labels, float(state.errors_total))
        yield from (up, synced, objects, last_sync, relists, restarts, errors)


# ----------------------------------------------------------------------------
# Connecting


@dataclass(frozen=True)
class ConnectionChoice:
    """Which credentials `load_api_client` used, for the startup log line."""

    source: str  # "in-cluster" or "kubeconfig"
    detail: str = ""


class KubernetesUnavailable(Exception):
    """No in-cluster service account and no usable kubeconfig."""


def load_api_client(
    kubeconfig: str | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> tuple[client.ApiClient, ConnectionChoice]:
    """An API client from an explicit kubeconfig, else in-cluster config, else the kubeconfig
    that $KUBECONFIG names (colon-separated files are merged) or ~/.kube/config.

    In-cluster means KUBERNETES_SERVICE_HOST/PORT in `environ` and the pod's service
    account token and CA in `service_account_dir`; the token file is re-read every
    minute, so rotated tokens are picked up. Raises KubernetesUnavailable (one clear
    line) when nothing works.
    """
    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            InClusterConfigLoader(
                token_filename=str(service_account_dir / "token"),
                cert_filename=str(service_account_dir / "ca.crt"),
                environ=environ,
            ).load_and_set(configuration)
            return _api_client(configuration), ConnectionChoice(source="in-cluster")
        except config.ConfigException as exc:
            in_cluster_error = str(exc)
        # Read here, not at import: the client's own default is fixed when it is imported.
        kubeconfig = environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    else:
        in_cluster_error = "not tried: a kubeconfig was given"
    try:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (config.ConfigException, OSError, TypeError) as exc:
        raise KubernetesUnavailable(
            f"no Kubernetes credentials: in-cluster: {in_cluster_error}; "
            f"kubeconfig {kubeconfig}: {exc}"
        ) from None
    return _api_client(configuration), ConnectionChoice(source="kubeconfig", detail=kubeconfig)


def _api_client(configuration: client.Configuration) -> client.ApiClient:
    # The reflectors back off themselves; urllib3's immediate retries would only
    # hide the first error behind three more attempts.
    configuration.retries = False
    return client.ApiClient(configuration)
