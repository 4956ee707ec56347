"""The effective-request rule (collector/kubernetes/requests.py) on Pod spec shapes, pure.

test_requests.py sends the same shapes through a real API server, which also applies
its defaulting (limits copied into missing requests) and RuntimeClass admission (overhead).
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.kubernetes.objects import node_info_from_object, pod_info_from_object
from collector.kubernetes.requests import Requests, pod_requests

MI = 2**20


def _container(name: str, cpu: str | None = None, memory: str | None = None,
               **extra: object) -> dict[str, object]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": name, "image": "app:1", "resources": {"requests": requests}, **extra}


def test_app_containers_add_up() -> None:
    spec = {"containers": [_container("a", "250m", "64Mi"), _container("b", "1", "1Gi")]}
    assert pod_requests(spec) == Requests(1.25, 64 * MI + 1024 * MI)


def test_the_largest_init_container_wins_per_resource_when_larger_than_the_apps() -> None:
    spec = {
        "initContainers": [_container("migrate", "2", "64Mi"), _container("warm", "100m", "3Gi")],
        "containers": [_container("app", "500m", "1Gi")],
    }
    # cpu from the first init container, memory from the second: each resource on its own
    assert pod_requests(spec) == Requests(2.0, 3 * 1024 * MI)


def test_overhead_is_added_after_the_max() -> None:
    spec = {
        "initContainers": [_container("init", "1")],
        "containers": [_container("app", "500m", "128Mi")],
        "overhead": {"cpu": "250m", "memory": "120Mi"},
    }
    assert pod_requests(spec) == Requests(1.25, 248 * MI)


def test_missing_and_besteffort_requests_are_zero() -> None:
    assert pod_requests({"containers": [{"name": "app", "image": "app:1"}]}) == Requests()
    assert pod_requests({"containers": [_container("a", cpu="300m")]}) == Requests(0.3, 0.0)
    assert pod_requests({}) == Requests()


def test_sidecars_run_beside_the_apps_and_later_init_containers() -> None:
    # 1.28+: a restartable init container keeps running
    spec = {
        "initContainers": [
            _container("proxy", "200m", "100Mi", restartPolicy="Always"),
            _container("migrate", "1", "50Mi"),
        ],
        "containers": [_container("app", "500m", "300Mi")],
    }
    # init phase: proxy + migrate = 1.2 cores, 150Mi; running: proxy + app = 0.7, 400Mi
    assert pod_requests(spec) == Requests(pytest.approx(1.2), 400 * MI)  # type: ignore[arg-type]


def test_an_unparsable_quantity_counts_zero_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="collector.kubernetes"):
        assert pod_requests({"containers": [_container("a", "lots", "1Gi")]}) == Requests(
            0.0, 1024 * MI)
    assert "pod a cpu: ignoring unparsable quantity 'lots'" in caplog.text


CPU_MILLIS = st.integers(min_value=0, max_value=64_000)


@given(apps=st.lists(CPU_MILLIS, min_size=1, max_size=5), inits=st.lists(CPU_MILLIS, max_size=4),
       overhead=CPU_MILLIS)
def test_rule_equals_max_of_app_sum_and_init_peak_plus_overhead(
    apps: list[int], inits: list[int], overhead: int
) -> None:
    spec = {
        "containers": [_container(f"a{i}", f"{m}m") for i, m in enumerate(apps)],
        "initContainers": [_container(f"i{i}", f"{m}m") for i, m in enumerate(inits)],
        "overhead": {"cpu": f"{overhead}m"},
    }
    expected = (max([sum(apps), *inits]) + overhead) / 1000
    assert pod_requests(spec).cpu_cores == pytest.approx(expected)


def test_pod_info_carries_node_requests_and_whether_it_still_holds_them() -> None:
    pod = {
        "metadata": {"name": "web-1", "uid": "u1", "namespace": "shop"},
        "spec": {"nodeName": "n1", "containers": [_container("app", "1500m", "2Gi")]},
        "status": {"phase": "Running"},
    }
    info = pod_info_from_object(pod)
    assert (info.node_name, info.cpu_request_cores, info.memory_request_bytes) == (
        "n1", 1.5, 2048 * MI)
    assert info.holds_requests
    pod["status"] = {"phase": "Succeeded"}
    assert not pod_info_from_object(pod).holds_requests
    del pod["spec"]["nodeName"]  # type: ignore[attr-defined]
    assert pod_info_from_object(pod).node_name is None


def test_node_allocatable() -> None:
    node = {
        "metadata": {"name": "n1"},
        "status": {"capacity": {"cpu": "8", "memory": "32Gi"},
                   "allocatable": {"cpu": "7910m", "memory": "31Gi"}},
    }
    info = node_info_from_object(node)
    assert info.cpu_allocatable == pytest.approx(7.91)
    assert info.memory_allocatable_bytes == 31 * 1024 * MI
    assert node_info_from_object({"metadata": {"name": "n2"}}).cpu_allocatable is None
