"""How often a reflector asks the API server, against a scripted fake API: no storm of lists.

The reflector's only sleep is a wait on its stop event; the fake event records each wait
and returns at once, so the spacing of the requests is read, not timed. The requests are
counted by the reflector's own reasons (`kubecarbon_kubernetes_list_requests_total`,
`..._watch_requests_total`), which the cluster suite compares with the real API
server's audit log (tests/cluster/test_watch_load.py).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
from kubernetes.client.exceptions import ApiException

from collector.kubernetes.objects import node_entry
from collector.kubernetes.reflector import Reflector, WatchSettings
from kubecarbon.backoff import Backoff

SETTINGS = WatchSettings()


class RecordedWaits(threading.Event):
    """A stop event whose waits return at once and are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        return self.is_set()


class ListResponse:
    def __init__(self, names: list[str], resource_version: str) -> None:
        self.data = orjson.dumps({
            "metadata": {"resourceVersion": resource_version},
            "items": [_node(name, resource_version) for name in names],
        })

    def release_conn(self) -> None:
        pass


class WatchResponse:
    """A watch stream: one JSON event per line, as urllib3 yields a chunked body."""

    def __init__(self, events: list[Mapping[str, Any]]) -> None:
        self._lines = [orjson.dumps(event) + b"\n" for event in events]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._lines)

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def _node(name: str, resource_version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}",
                         "resourceVersion": resource_version}}


def added(name: str, resource_version: str) -> dict[str, Any]:
    return {"type": "ADDED", "object": _node(name, resource_version)}


def expired(resource_version: str) -> dict[str, Any]:
    """What a 1.20 watch cache sends for a version older than its window."""
    return {"type": "ERROR", "object": {
        "kind": "Status", "code": 410, "reason": "Expired",
        "message": f"too old resource version: {resource_version} (9000)"}}


class ScriptedApi:
    """Answers each list and each watch request with the next answer of its script: a
    response, or an exception to raise. Stops the reflector when a script runs out."""

    def __init__(self, stop: threading.Event, lists: list[Any], watches: list[Any]) -> None:
        self._stop = stop
        self._scripts = {"list": lists, "watch": watches}
        self.requests: list[tuple[str, str | None]] = []  # (verb, resourceVersion)

    def __call__(self, **kwargs: Any) -> Any:
        verb = "watch" if kwargs.get("watch") else "list"
        self.requests.append((verb, kwargs.get("resource_version")))
        script = self._scripts[verb]
        if not script:
            self._stop.set()
            raise InterruptedError("script done")
        answer = script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(lists: list[Any], watches: list[Any], seconds_per_clock_read: float = 0.0,
        ) -> tuple[Reflector[Any], ScriptedApi, RecordedWaits]:
    stop = RecordedWaits()
    api = ScriptedApi(stop, lists, watches)
    reads = itertools.count()
    reflector: Reflector[Any] = Reflector(
        "nodes", api, node_entry, SETTINGS, stop,
        clock=lambda: next(reads) * seconds_per_clock_read, rng=random.Random(7))
    reflector.run()
    return reflector, api, stop


def backoff_ceilings(count: int) -> list[float]:
    """The first `count` ceilings of the reflector's backoff: each delay lies in [c/2, c]."""
    ceiling = Backoff(SETTINGS.initial_backoff_seconds, SETTINGS.max_backoff_seconds, jitter=0.0)
    return [ceiling.next_delay_seconds() for _ in range(count)]


def refused() -> ConnectionRefusedError:
    return ConnectionRefusedError(111, "Connection refused")


def assert_backoff(waits: list[float]) -> None:
    ceilings = backoff_ceilings(len(waits))
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert ceiling / 2 <= wait <= ceiling, (waits, ceilings)


@pytest.mark.parametrize("failures", [1, 4, 9])
def test_an_unreachable_api_server_gets_one_list_per_backoff_delay(failures: int) -> None:
    reflector, api, stop = run(
        lists=[refused() for _ in range(failures)] + [ListResponse(["a"], "10")],
        watches=[WatchResponse([added("b", "11")])],
    )
    # one list request per failure and one that succeeded, each after its delay
    assert [verb for verb, _ in api.requests] == ["list"] * (failures + 1) + ["watch", "watch"]
    assert len(stop.waits) == failures
    assert_backoff(stop.waits)  # 9 refusals in a row: over a minute (70 s at least), no burst
    state = reflector.state()
    assert state.list_requests == {"initial": 1, "expired": 0, "retry": failures}
    assert state.watch_requests == {"listed": 1, "ended": 1, "retry": 0}
    assert state.errors_total == failures and state.relists_total == 1


def test_an_outage_after_the_list_retries_the_watch_and_never_lists() -> None:
    reflector, api, stop = run(
        lists=[ListResponse(["a"], "10")],
        watches=[WatchResponse([added("b", "11")])] + [refused() for _ in range(6)]
        + [WatchResponse([added("c", "12")])],
    )
    # every retry resumes from the last version seen
    assert api.requests == [("list", None), ("watch", "10")] + [("watch", "11")] * 7 + [
        ("watch", "12")]
    assert_backoff(stop.waits)
    assert len(stop.waits) == 6
    state = reflector.state()
    assert state.list_requests == {"initial": 1, "expired": 0, "retry": 0}
    assert state.watch_requests == {"listed": 1, "ended": 2, "retry": 6}
    assert sorted(reflector.table) == ["a", "b", "c"]


@pytest.mark.parametrize("gone", [
    WatchResponse([expired("11")]),  # a watch cache's answer: 200, then an ERROR event
    ApiException(status=410, reason="Gone"),  # etcd's, when the watch cache is off
])
def test_an_expired_version_costs_exactly_one_list(gone: Any) -> None:
    reflector, api, stop = run(
        lists=[ListResponse(["a"], "10"), ListResponse(["a", "b"], "20")],
        watches=[WatchResponse([added("b", "11")]), gone, WatchResponse([added("c", "21")])],
    )
    assert [verb for verb, _ in api.requests] == [
        "list", "watch", "watch", "list", "watch", "watch"]
    assert stop.waits == []  # the watch had worked: relisted at once
    state = reflector.state()
    assert state.list_requests == {"initial": 1, "expired": 1, "retry": 0}
    assert state.watch_requests == {"listed": 2, "ended": 2, "retry": 0}
    assert state.relists_total == 2 and state.errors_total == 0
    assert sorted(reflector.table) == ["a", "b", "c"]


def test_a_server_that_expires_every_version_it_lists_is_relisted_with_backoff() -> None:
    relists = 8
    reflector, api, stop = run(
        lists=[ListResponse(["a"], str(version)) for version in range(1 + relists)],
        watches=[WatchResponse([expired(str(version))]) for version in range(1 + relists)],
    )
    # the initial list, the relists, and one more that ran out of script
    assert [verb for verb, _ in api.requests].count("list") == 1 + relists + 1
    # no event ever reset the backoff: each relist waited longer, up to the cap
    assert len(stop.waits) == relists + 1
    assert_backoff(stop.waits)
    assert reflector.state().list_requests == {"initial": 1, "expired": relists + 1, "retry": 0}


def test_watches_that_end_without_an_event_are_reopened_with_backoff() -> None:
    reflector, api, stop = run(
        lists=[ListResponse(["a"], "10")],
        watches=[WatchResponse([]) for _ in range(5)] + [WatchResponse([added("b", "11")])],
    )
    assert [verb for verb, _ in api.requests] == ["list"] + ["watch"] * 7
    assert len(stop.waits) == 5
    assert_backoff(stop.waits)
    assert reflector.state().watch_requests == {"listed": 1, "ended": 6, "retry": 0}


def test_a_quiet_watch_that_ran_its_course_is_renewed_at_once() -> None:
    # each watch takes 400 s of the reflector's clock (a quiet resource, no bookmark)
    reflector, api, stop = run(
        lists=[ListResponse(["a"], "10")], watches=[WatchResponse([]) for _ in range(3)],
        seconds_per_clock_read=400.0)
    assert [verb for verb, _ in api.requests] == ["list"] + ["watch"] * 4
    assert stop.waits == []
    assert reflector.state().watch_requests == {"listed": 1, "ended": 3, "retry": 0}
