"""The pods holding requests by node, kept up to date pod by pod (collector/metadata.py).

A scrape reads `PodRequestIndex.by_node()` instead of walking every pod; each test holds it
against a full walk of the pods the provider knows, the walk the scrape used to make.
Requests are multiples of 1/8 core, so sums in any order are exact and compared with ==.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.metadata import PodInfo, PodRequestIndex, StaticMetadataProvider

Walked = dict[str, tuple[set[str], dict[tuple[str, str, str], float]]]


def walked(pods: Iterable[PodInfo]) -> Walked:
    """Per node: the uids holding requests there and their CPU requests by workload."""
    table: Walked = {}
    for pod in pods:
        if not pod.holds_requests or pod.node_name is None:
            continue
        uids, cores = table.setdefault(pod.node_name, (set(), {}))
        uids.add(pod.uid)
        key = (pod.namespace, pod.workload_kind, pod.workload_name)
        cores[key] = cores.get(key, 0.0) + pod.cpu_request_cores
    return table


def indexed(index: PodRequestIndex) -> Walked:
    return {node: ({p.uid for p in requests.pods}, dict(requests.cpu_cores))
            for node, requests in index.by_node().items()}


def pod(uid: str, node: str | None, cores: float, workload: str = "web",
        holds_requests: bool = True) -> PodInfo:
    return PodInfo(uid, "shop", f"{workload}-{uid}", "Deployment", workload, node, cores,
                   2**30, holds_requests=holds_requests)


def test_sums_follow_pods_that_appear_change_requests_move_end_and_vanish() -> None:
    known: dict[str, PodInfo] = {}  # the provider's pods, as its watch leaves them
    index = PodRequestIndex()

    def put(info: PodInfo) -> None:
        known[info.uid] = info
        index.put(info)
        assert indexed(index) == walked(known.values())

    put(pod("a", None, 1.0))  # not scheduled yet: takes no node's room
    assert index.by_node() == {}
    put(pod("a", "n1", 1.0))  # bound to n1
    put(pod("b", "n1", 0.5))
    put(pod("c", "n1", 0.25, workload="db"))
    assert indexed(index) == {"n1": ({"a", "b", "c"},
                                     {("shop", "Deployment", "web"): 1.5,
                                      ("shop", "Deployment", "db"): 0.25})}
    put(pod("b", "n1", 2.0))  # its request resized in place
    put(pod("a", "n2", 1.0))  # on another node (a pod's node does not change in Kubernetes,
    # but a table keyed by uid must not keep it on both)
    put(pod("c", "n1", 0.25, workload="db", holds_requests=False))  # Succeeded: frees its room
    assert indexed(index) == {"n1": ({"b"}, {("shop", "Deployment", "web"): 2.0}),
                              "n2": ({"a"}, {("shop", "Deployment", "web"): 1.0})}
    del known["b"]
    index.remove("b")
    assert indexed(index) == walked(known.values())
    assert set(index.by_node()) == {"n2"}  # a node left without pods is dropped, not zeroed
    index.remove("never-seen")
    assert indexed(index) == walked(known.values())


def test_a_relist_replaces_the_whole_set() -> None:
    index = PodRequestIndex([pod("a", "n1", 1.0), pod("b", "n2", 0.5)])
    relisted = [pod("b", "n2", 0.75), pod("c", "n3", 0.125), pod("d", None, 4.0)]
    index.replace(relisted)
    assert indexed(index) == walked(relisted)
    assert "n1" not in index.by_node()
    index.remove("a")  # gone with the relist: nothing left to remove
    index.put(pod("c", "n3", 0.25))  # the watch goes on from the relisted set
    assert indexed(index) == walked([pod("b", "n2", 0.75), pod("c", "n3", 0.25)])


def test_a_copy_taken_does_not_change_with_later_pods() -> None:
    index = PodRequestIndex([pod("a", "n1", 1.0)])
    before = index.by_node()
    index.put(pod("b", "n1", 0.5))
    index.remove("a")
    assert [p.uid for p in before["n1"].pods] == ["a"]
    assert dict(before["n1"].cpu_cores) == {("shop", "Deployment", "web"): 1.0}


def test_the_static_provider_answers_the_walk_of_its_pods() -> None:
    pods = {p.uid: p for p in (pod("a", "n1", 1.0), pod("b", "n1", 0.5, workload="db"),
                               pod("c", "n2", 2.0, holds_requests=False), pod("d", None, 1.0))}
    provider = StaticMetadataProvider(pods=pods)
    assert {node: ({p.uid for p in r.pods}, dict(r.cpu_cores))
            for node, r in provider.pod_requests().items()} == walked(pods.values())
    # the order a node's pods are summed and packed in is the provider's order
    assert [p.uid for p in provider.pod_requests()["n1"].pods] == ["a", "b"]


uids = st.sampled_from([f"p{k}" for k in range(8)])
pod_states = st.builds(
    pod, uid=uids, node=st.sampled_from([None, "n1", "n2", "n3"]),
    cores=st.integers(0, 32).map(lambda eighths: eighths / 8),
    workload=st.sampled_from(["web", "db", "batch"]), holds_requests=st.booleans())
changes = st.one_of(
    st.tuples(st.just("put"), pod_states),
    st.tuples(st.just("remove"), uids),
    st.tuples(st.just("relist"), st.lists(pod_states, max_size=8)),
)


@settings(max_examples=200)
@given(st.lists(changes, max_size=40))
def test_any_sequence_of_watch_changes_equals_a_full_walk(sequence: list[tuple]) -> None:
    known: dict[str, PodInfo] = {}
    index = PodRequestIndex()
    for what, argument in sequence:
        if what == "put":
            known[argument.uid] = argument
            index.put(argument)
        elif what == "remove":
            known.pop(argument, None)
            index.remove(argument)
        else:
            known = {p.uid: p for p in argument}
            index.replace(known.values())
        assert indexed(index) == walked(known.values())


def test_a_reader_sees_a_moving_pod_on_exactly_one_node() -> None:
    """The watch thread moves pods between nodes while another thread takes copies: each
    copy holds every pod once, and each node's sums are those of its pods."""
    pods = [pod(f"p{k}", "n1" if k % 2 else "n2", 0.5) for k in range(20)]
    index = PodRequestIndex(pods)
    moves = 20_000
    done = threading.Event()

    def watch() -> None:
        for step in range(moves):
            moved = pods[step % len(pods)]
            index.put(pod(moved.uid, f"n{step % 3 + 1}", 0.5))
        done.set()

    copies = torn = 0
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the interpreter over as often as it can
    try:
        writer = threading.Thread(target=watch)
        writer.start()
        while not done.is_set():
            copy = index.by_node()
            held = [p.uid for requests in copy.values() for p in requests.pods]
            sums_match = all(
                sum(requests.cpu_cores.values()) == 0.5 * len(requests.pods)
                for requests in copy.values())
            torn += sorted(held) != sorted(p.uid for p in pods) or not sums_match
            copies += 1
        writer.join()
    finally:
        sys.setswitchinterval(switch)
    assert copies > 1 and torn == 0
