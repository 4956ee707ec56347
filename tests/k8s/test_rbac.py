"""The chart's ClusterRole is all the collector needs, and no more than it gets.

The ClusterRole is rendered from helm/kubecarbon with the real Helm engine
(helm-python-sdk) and applied to the API server. On the local test cluster a
token-file user with no groups is bound to exactly that role; on a cluster
given by KUBECARBON_TEST_KUBECONFIG the chart's own ServiceAccount and
ClusterRoleBinding are applied and a token is requested for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from k8s_harness import (
    ClusterObjects,
    ExternalCluster,
    LocalCluster,
    ProviderFactory,
    unique,
    wait_for,
    write_kubeconfig,
)
from kubernetes import client, config

CHART = Path(__file__).resolve().parents[2] / "helm" / "kubecarbon"
RBAC_TEMPLATE = "templates/collector-rbac.yaml"


def render_collector_rbac(release: str, namespace: str) -> dict[str, dict[str, Any]]:
    """The chart's collector RBAC documents by kind (ServiceAccount, ClusterRole, binding)."""
    rendered = helm.Chart.load(str(CHART)).render(name=release, namespace=namespace)
    text = next(body for path, body in rendered.items() if path.endswith(RBAC_TEMPLATE))
    return {doc["kind"]: doc for doc in yaml.safe_load_all(text) if doc}


class CollectorIdentity:
    """A kubeconfig for an identity bound to exactly the chart's ClusterRole."""

    def __init__(self, kubeconfig: Path, role: dict[str, Any]) -> None:
        self.kubeconfig = kubeconfig
        self.role = role


@pytest.fixture
def unbound_identity(
    cluster: LocalCluster | ExternalCluster,
    objects: ClusterObjects,
    rbac: client.RbacAuthorizationV1Api,
    tmp_path: Path,
) -> Iterator[tuple[CollectorIdentity, Any]]:
    """(identity, bind): the identity holds no permissions until `bind()` is called."""
    namespace = objects.namespace()
    documents = render_collector_rbac(unique("kc"), namespace)
    role, binding = documents["ClusterRole"], documents["ClusterRoleBinding"]
    if isinstance(cluster, LocalCluster):
        kubeconfig = cluster.collector.kubeconfig
        binding["subjects"] = [
            {
                "kind": "User",
                "name": cluster.collector.name,
                "apiGroup": "rbac.authorization.k8s.io",
            }
        ]
    else:
        account = documents["ServiceAccount"]
        objects.core.create_namespaced_service_account(namespace, account)
        kubeconfig = _service_account_kubeconfig(
            cluster, objects.core, account["metadata"]["name"], namespace, tmp_path
        )
    created: list[tuple[str, str]] = []

    def bind() -> None:
        rbac.create_cluster_role(role)
        created.append(("role", role["metadata"]["name"]))
        rbac.create_cluster_role_binding(binding)
        created.append(("binding", binding["metadata"]["name"]))

    yield CollectorIdentity(kubeconfig, role), bind
    for kind, name in reversed(created):
        if kind == "binding":
            rbac.delete_cluster_role_binding(name)
        else:
            rbac.delete_cluster_role(name)


def _service_account_kubeconfig(
    cluster: ExternalCluster, core: client.CoreV1Api, account: str, namespace: str, tmp_path: Path
) -> Path:
    admin = client.Configuration()
    config.load_kube_config(str(cluster.admin.kubeconfig), client_configuration=admin)
    token = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    ca_file = Path(admin.ssl_ca_cert) if admin.ssl_ca_cert else None
    return write_kubeconfig(tmp_path / "collector.kubeconfig", admin.host, ca_file, token, account)


def test_chart_role_is_read_only_on_nodes_and_pods() -> None:
    role = render_collector_rbac("kubecarbon", "monitoring")["ClusterRole"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }
    assert granted == {
        ("", resource, verb) for resource in ("nodes", "pods") for verb in ("get", "list", "watch")
    }


def test_provider_runs_with_exactly_the_chart_role(
    unbound_identity: tuple[CollectorIdentity, Any],
    objects: ClusterObjects,
    start_provider: ProviderFactory,
) -> None:
    identity, bind = unbound_identity
    namespace = objects.namespace()
    node = objects.node(labels={"node.kubernetes.io/instance-type": "r5.large"})
    uid = objects.pod(
        namespace, node, labels={"pod-template-hash": "7c9d"}, owner=("ReplicaSet", "web-7c9d")
    )

    provider = start_provider(identity.kubeconfig)
    # Before the binding the API server refuses, and the status says so.
    refused = wait_for(lambda: "403" in provider.status().detail, "a 403 in the status")
    assert refused and not provider.status().synced

    bind()
    wait_for(lambda: provider.status().synced, "the list once the role is bound")
    assert provider.status().connected
    info = provider.pod(uid)
    assert info is not None and (info.namespace, info.workload_kind, info.workload_name) == (
        namespace,
        "Deployment",
        "web",
    )
    node_info = provider.node(node)
    assert node_info is not None and node_info.instance_type == "r5.large"

    # The identity really is limited to that role: anything else is forbidden.
    limited = client.CoreV1Api(config.new_client_from_config(str(identity.kubeconfig)))
    try:
        assert limited.read_node(node).metadata.name == node
        for forbidden in (
            lambda: limited.list_secret_for_all_namespaces(),
            lambda: limited.list_namespace(),
            lambda: limited.delete_namespaced_pod("any", namespace),
            lambda: limited.patch_node(node, {"metadata": {"labels": {"x": "y"}}}),
        ):
            with pytest.raises(client.ApiException) as refused_call:
                forbidden()
            assert refused_call.value.status == 403
    finally:
        limited.api_client.close()
