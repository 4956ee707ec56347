"""One resource kept in sync with the API server: a paginated list, then a watch (client-go's
reflector pattern), resumed from the last version seen, relisted after 410 Gone, retried with
backoff on any other error. The official client is synchronous: each reflector runs in a thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson
from kubernetes.client.exceptions import ApiException

from kubecarbon.backoff import Backoff

log = logging.getLogger("collector.kubernetes")  # one logger for the package

# Each retry delay is drawn from [d/2, d] ("equal jitter"): spread out, never sooner
# than half the ceiling d.
RETRY_JITTER = 0.5
# A watch that ends sooner than this without delivering anything is treated as failed
# (client-go's "very short watch"): a server closing every watch at once is not asked
# again at once.
SHORT_WATCH_SECONDS = 1.0

# Why a LIST request was sent: the first list, the watch's resourceVersion gone (410),
# or the previous list attempt failed. Every page of a list counts under its list's reason.
LIST_REASONS = ("initial", "expired", "retry")
# Why a WATCH request was sent: right after a complete list, the previous watch ended
# normally (its timeout), or the previous watch request failed.
WATCH_REASONS = ("listed", "ended", "retry")


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
    list_requests: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(LIST_REASONS, 0))
    watch_requests: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(WATCH_REASONS, 0))
    last_sync_timestamp_seconds: float | None = None  # end of the last complete list
    disconnected_since_seconds: float | None = None
    last_error: str = ""


class _RelistNeeded(Exception):
    """The watch's resourceVersion is gone (410): only a fresh list can resume."""


V = TypeVar("V")
V_contra = TypeVar("V_contra", contravariant=True)


class TableFollower(Protocol[V_contra]):
    """Kept equal to a reflector's table change by change, on the reflector's thread
    (collector.metadata.PodRequestIndex follows the pods)."""

    def replace(self, values: Iterable[V_contra]) -> None: ...

    def put(self, value: V_contra) -> None: ...

    def remove(self, key: str) -> None: ...


class Reflector(Generic[V]):
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
        follower: TableFollower[V] | None = None,
    ) -> None:
        self.resource = resource
        self.table: dict[str, V] = {}
        self.aliases: dict[str, str] = {}  # other names of an object -> its key in `table`
        # moves whenever a name `get` did not know may have become known (readers cache
        # misses until it moves); written by the watch thread only
        self.generation = 0
        self._list_function = list_function
        self._entry = entry
        self._settings = settings
        self._stop_event = stop_event
        self._clock = clock
        self._rng = rng
        self._on_removed = on_removed
        self._follower = follower
        self._lock = threading.Lock()
        self._state = ReflectorState(resource=resource)
        self._response: Any = None  # the open watch response, for interrupt()
        self._backoff = Backoff(
            settings.initial_backoff_seconds, settings.max_backoff_seconds,
            jitter=RETRY_JITTER, rng=rng,
        )

    def state(self) -> ReflectorState:
        with self._lock:
            snapshot = dataclasses.replace(
                self._state,
                list_requests=dict(self._state.list_requests),
                watch_requests=dict(self._state.watch_requests),
            )
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
        list_reason, watch_reason = "initial", "listed"
        while not self._stop_event.is_set():
            # The backoff resets only when a watch delivers something: a list that succeeds
            # is no proof, since a server in trouble may expire every version it lists.
            try:
                if resource_version is None:
                    resource_version = self._list(list_reason)
                    watch_reason = "listed"
                opened = self._clock()
                resource_version, delivered = self._watch_from(resource_version, watch_reason)
                watch_reason = "ended"
                if not delivered and self._clock() - opened < SHORT_WATCH_SECONDS:
                    self._stop_event.wait(self._backoff.next_delay_seconds())
            except _RelistNeeded as exc:
                log.info("%s: %s; relisting", self.resource, exc)
                if watch_reason == "listed":
                    # the version of the list just made is already gone: relisting at
                    # once could loop; wait as after an error
                    self._stop_event.wait(self._backoff.next_delay_seconds())
                resource_version, list_reason = None, "expired"
            except Exception as exc:
                if self._stop_event.is_set():
                    break
                self._failed(exc)
                if resource_version is None:
                    list_reason = "retry"
                else:
                    watch_reason = "retry"
                self._stop_event.wait(self._backoff.next_delay_seconds())
        with self._lock:
            self._state.connected = False

    # one paginated list: a consistent snapshot at one resourceVersion
    def _list(self, reason: str) -> str:
        fresh: dict[str, V] = {}
        fresh_aliases: dict[str, str] = {}
        continue_token: str | None = None
        while True:
            self._count(self._state.list_requests, reason)
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
        self.generation += 1
        if self._follower is not None:
            self._follower.replace(fresh.values())
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

    def values(self) -> list[V]:
        """A copy of the objects; list() of a dict's values runs without releasing the GIL,
        so the watch thread cannot change the table halfway through."""
        return list(self.table.values())

    def _put(self, table: dict[str, V], aliases: dict[str, str], obj: Mapping[str, Any]
             ) -> tuple[V, bool] | None:
        """Add or replace one object: its value, and whether it brought a name the table
        did not have; None when it was malformed (and skipped)."""
        try:
            key, value, other_names = self._entry(obj)
        except (KeyError, TypeError, AttributeError) as exc:
            # One malformed object must not stop the watch of all the others.
            log.warning("%s: skipping an object without %s", self.resource, exc)
            return None
        new = key not in table or any(name not in aliases for name in other_names)
        table[key] = value
        for name in other_names:
            aliases[name] = key
        return value, new

    def _watch_from(self, resource_version: str, reason: str) -> tuple[str, bool]:
        """Watch until the server ends it; the last version seen, and whether any event
        or bookmark came."""
        timeout_seconds = int(self._settings.watch_timeout_seconds * (1 + self._rng.random()))
        self._count(self._state.watch_requests, reason)
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
        delivered = False
        try:
            # urllib3 yields the chunked body line by line: one JSON event per line
            for line in response:
                if self._stop_event.is_set():
                    break
                if line.strip():
                    resource_version = self._apply(orjson.loads(line), resource_version)
                    delivered = True
                    self._backoff.reset()
        finally:
            self._response = None
            response.close()
            response.release_conn()
        return resource_version, delivered

    def _apply(self, event: Mapping[str, Any], resource_version: str) -> str:
        event_type = event.get("type")
        obj = event.get("object") or {}
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
        if event_type in ("ADDED", "MODIFIED"):
            put = self._put(self.table, self.aliases, obj)
            if put is not None:
                value, new = put
                if new:
                    self.generation += 1
                if self._follower is not None:
                    self._follower.put(value)
        elif event_type == "DELETED":
            try:
                key, value, other_names = self._entry(obj)
            except (KeyError, TypeError, AttributeError):
                return new_version
            for name in other_names:
                self.aliases.pop(name, None)
            if self.table.pop(key, None) is not None:
                if self._on_removed is not None:
                    self._on_removed({key: value, **dict.fromkeys(other_names, value)})
                if self._follower is not None:
                    self._follower.remove(key)
        elif event_type == "ERROR":
            # A Status object; 410 means the watch cache no longer has our version.
            if obj.get("code") == 410:
                raise _RelistNeeded(
                    f"resourceVersion {resource_version} expired: {obj.get('message')}"
                )
            raise ApiException(status=obj.get("code"), reason=str(obj.get("message")))
        return new_version

    def _count(self, requests: dict[str, int], reason: str) -> None:
        with self._lock:
            requests[reason] += 1

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
