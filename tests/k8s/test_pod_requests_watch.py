"""The pod watch keeps the requests by node equal to its table, event by event and across a
relist, against a scripted fake API (the real API server's churn test is in
test_provider.py). After every change the index is held against a full walk of the
reflector's pods, as a scrape used to make it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import orjson
from test_reflector_retries import SETTINGS, RecordedWaits, ScriptedApi, WatchResponse

from collector.kubernetes.objects import pod_entry
from collector.kubernetes.reflector import Reflector
from collector.metadata import PodInfo, PodRequestIndex

WEB = ("shop", "Deployment", "web")


def pod(name: str, node: str | None, cpu: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "namespace": "shop",
                     "resourceVersion": "1", "labels": {"pod-template-hash": "5d9c7"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d9c7",
                                          "controller": True}]},
        "spec": {"nodeName": node, "containers": [
            {"name": "app", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
        "status": {"phase": phase},
    }


class PodList:
    def __init__(self, pods: list[dict[str, Any]], resource_version: str) -> None:
        self.data = orjson.dumps({"metadata": {"resourceVersion": resource_version},
                                  "items": pods})

    def release_conn(self) -> None:
        pass


def walked(pods: Iterable[PodInfo]) -> dict[str, tuple[set[str], dict[Any, float]]]:
    table: dict[str, tuple[set[str], dict[Any, float]]] = {}
    for info in pods:
        if info.holds_requests and info.node_name is not None:
            uids, cores = table.setdefault(info.node_name, (set(), {}))
            uids.add(info.uid)
            key = (info.namespace, info.workload_kind, info.workload_name)
            cores[key] = cores.get(key, 0.0) + info.cpu_request_cores
    return table


class CheckedIndex:
    """The provider's index as the reflector's follower, compared with a walk of the
    reflector's table after each change (the reflector changes its table first)."""

    def __init__(self) -> None:
        self.index = PodRequestIndex()
        self.reflector: Reflector[PodInfo] | None = None
        self.seen: list[dict[str, tuple[set[str], dict[Any, float]]]] = []

    def _check(self) -> None:
        assert self.reflector is not None
        now = {node: ({p.uid for p in r.pods}, dict(r.cpu_cores))
               for node, r in self.index.by_node().items()}
        assert now == walked(self.reflector.table.values())
        self.seen.append(now)

    def replace(self, values: Iterable[PodInfo]) -> None:
        self.index.replace(values)
        self._check()

    def put(self, value: PodInfo) -> None:
        self.index.put(value)
        self._check()

    def remove(self, key: str) -> None:
        self.index.remove(key)
        self._check()


def test_events_and_a_relist_keep_the_requests_equal_to_the_table() -> None:
    lists = [
        PodList([pod("a", "n1", "1"), pod("b", "n1", "500m"), pod("c", None, "250m")], "10"),
        PodList([pod("b", "n1", "750m"), pod("d", "n2", "2"), pod("e", "n3", "125m")], "20"),
    ]
    watches = [
        WatchResponse([
            {"type": "ADDED", "object": pod("d", "n2", "2")},
            {"type": "MODIFIED", "object": pod("c", "n2", "250m")},  # bound by the scheduler
            {"type": "MODIFIED", "object": pod("b", "n1", "500m", phase="Succeeded")},
            {"type": "MODIFIED", "object": pod("d", "n2", "1500m")},  # resized in place
            {"type": "DELETED", "object": pod("a", "n1", "1")},
            {"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                         "message": "too old resource version: 10 (15)"}},
        ]),
        WatchResponse([{"type": "DELETED", "object": pod("e", "n3", "125m")}]),
    ]
    stop = RecordedWaits()
    index = CheckedIndex()
    reflector: Reflector[PodInfo] = Reflector(
        "pods", ScriptedApi(stop, lists, watches), pod_entry, SETTINGS, stop,
        clock=lambda: 0.0, rng=random.Random(7), follower=index)
    index.reflector = reflector
    reflector.run()
    uid = "uid-{}".format
    assert index.seen == [
        {"n1": ({uid("a"), uid("b")}, {WEB: 1.5})},  # the first list
        {"n1": ({uid("a"), uid("b")}, {WEB: 1.5}), "n2": ({uid("d")}, {WEB: 2.0})},
        {"n1": ({uid("a"), uid("b")}, {WEB: 1.5}), "n2": ({uid("d"), uid("c")}, {WEB: 2.25})},
        {"n1": ({uid("a")}, {WEB: 1.0}), "n2": ({uid("d"), uid("c")}, {WEB: 2.25})},
        {"n1": ({uid("a")}, {WEB: 1.0}), "n2": ({uid("d"), uid("c")}, {WEB: 1.75})},
        {"n2": ({uid("d"), uid("c")}, {WEB: 1.75})},
        # the relist: b is back with a new request, c is gone with no event of its own
        {"n1": ({uid("b")}, {WEB: 0.75}), "n2": ({uid("d")}, {WEB: 2.0}),
         "n3": ({uid("e")}, {WEB: 0.125})},
        {"n1": ({uid("b")}, {WEB: 0.75}), "n2": ({uid("d")}, {WEB: 2.0})},
    ]
