"""Effective requests and allocatable through a real kube-apiserver (see conftest.py).

The server defaults and admits the objects as a cluster would: a container with only
limits gets requests equal to them, and the RuntimeClass admission plugin sets a pod's
overhead from its RuntimeClass. The provider must read what the server stored.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from k8s_harness import ClusterObjects, ProviderFactory, unique, wait_for
from kubernetes import client

from collector.metadata import ClusterInventory

MI = 2**20


def _container(name: str, requests: dict[str, str] | None = None,
               limits: dict[str, str] | None = None) -> dict[str, object]:
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {"name": name, "image": "app:1", "resources": resources}


@pytest.fixture
def runtime_class(core: client.CoreV1Api) -> Iterator[str]:
    """A RuntimeClass with a fixed pod overhead, as Kata or gVisor installs define."""
    node_api = client.NodeV1Api(core.api_client)
    name = unique("kc-sandboxed")
    node_api.create_runtime_class({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": name}, "handler": "runsc",
        "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}},
    })
    yield name
    node_api.delete_runtime_class(name)


def test_effective_requests_of_real_pod_shapes(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory,
    runtime_class: str,
) -> None:
    node = objects.node(capacity={"cpu": "8", "memory": "32Gi", "pods": "110"},
                        allocatable={"cpu": "7910m", "memory": "30Gi", "pods": "110"})
    namespace = objects.namespace()
    two_apps = objects.pod(namespace, node, spec={"containers": [
        _container("app", {"cpu": "250m", "memory": "64Mi"}),
        _container("sidecar", {"cpu": "100m", "memory": "32Mi"}),
    ]})
    big_init = objects.pod(namespace, node, spec={
        "initContainers": [_container("migrate", {"cpu": "2", "memory": "16Mi"}),
                           _container("warm", {"cpu": "100m", "memory": "1Gi"})],
        "containers": [_container("app", {"cpu": "500m", "memory": "256Mi"})],
    })
    limits_only = objects.pod(namespace, node, spec={"containers": [
        _container("app", limits={"cpu": "1500m", "memory": "2Gi"}),
    ]})
    besteffort = objects.pod(namespace, node)
    with_overhead = objects.pod(namespace, node, spec={
        "runtimeClassName": runtime_class,
        "containers": [_container("app", {"cpu": "1", "memory": "128Mi"})],
    })

    provider = start_provider(cluster.admin.kubeconfig)  # type: ignore[attr-defined]
    wait_for(lambda: provider.pod(with_overhead) is not None, "the pods")

    def requests(uid: str) -> tuple[float, float]:
        info = provider.pod(uid)
        assert info is not None and info.node_name == node and info.holds_requests
        return info.cpu_request_cores, info.memory_request_bytes

    assert requests(two_apps) == (pytest.approx(0.35), 96 * MI)
    assert requests(big_init) == (2.0, 1024 * MI)  # per resource, the larger side
    assert requests(limits_only) == (1.5, 2048 * MI)  # the server copied limits into requests
    assert requests(besteffort) == (0.0, 0.0)
    assert requests(with_overhead) == (1.25, 248 * MI)  # admission added the overhead

    node_info = provider.node(node)
    assert node_info is not None
    assert (node_info.cpu_allocatable, node_info.memory_allocatable_bytes) == (
        pytest.approx(7.91), 30 * 1024 * MI)

    assert isinstance(provider, ClusterInventory)
    mine = {p.uid for p in provider.pods() if p.namespace == namespace}
    assert mine == {two_apps, big_init, limits_only, besteffort, with_overhead}
    assert node in {n.name for n in provider.nodes()}


def test_a_finished_pod_no_longer_holds_its_requests(
    cluster: object, core: client.CoreV1Api, objects: ClusterObjects,
    start_provider: ProviderFactory,
) -> None:
    node = objects.node(capacity={"cpu": "4", "memory": "8Gi"})
    namespace = objects.namespace()
    uid = objects.pod(namespace, node, name="batch", spec={
        "restartPolicy": "Never", "containers": [_container("app", {"cpu": "1"})]})
    provider = start_provider(cluster.admin.kubeconfig)  # type: ignore[attr-defined]
    wait_for(lambda: provider.pod(uid) is not None, "the pod")
    assert provider.pod(uid).holds_requests  # type: ignore[union-attr]
    # the kubelet reports the end of the pod through the status subresource
    core.patch_namespaced_pod_status("batch", namespace, {"status": {"phase": "Succeeded"}})
    wait_for(lambda: not provider.pod(uid).holds_requests,  # type: ignore[union-attr]
             "the phase change")
