"""KubernetesMetadataProvider: the MetadataProvider fed by one reflector of nodes, one of pods."""

# The official client ships py.typed but leaves most functions unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from collector.kubernetes.objects import node_entry, pod_entry
from collector.kubernetes.reflector import Reflector, ReflectorState, WatchSettings
from collector.metadata import NodeInfo, NodeRequests, PodInfo, PodRequestIndex, ProviderStatus

log = logging.getLogger("collector.kubernetes")  # one logger for the package


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
        self._requests = PodRequestIndex()
        self._nodes: Reflector[NodeInfo] = Reflector(
            "nodes", core.list_node, node_entry, self._settings, self._stop_event, clock, rng
        )
        self._pods: Reflector[PodInfo] = Reflector(
            "pods",
            core.list_pod_for_all_namespaces,
            pod_entry,
            self._settings,
            self._stop_event,
            clock,
            rng,
            on_removed=self._remember_deleted_pods,
            follower=self._requests,
        )
        self._threads: list[tuple[threading.Thread, Reflector[Any]]] = []

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

    # ClusterInventory
    def nodes(self) -> list[NodeInfo]:
        return self._nodes.values()

    def pods(self) -> list[PodInfo]:
        return self._pods.values()

    def pod_requests(self) -> dict[str, NodeRequests]:
        return self._requests.by_node()

    def pod_generation(self) -> int:
        return self._pods.generation

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
