"""A Helm release against a real API server: install, upgrade, uninstall.

Shows what offline renders cannot: the API server accepts the chart's objects, the token
Secret survives an upgrade because the template `lookup`s the installed one, and the chart
installs on the oldest Kubernetes it supports (Chart.yaml `kubeVersion: >=1.20.0-0`).

The API server is the one tests/k8s builds (`make kube-apiserver`: etcd plus a
kube-apiserver 1.20.2 from Debian's sources, started by tests/deploy/conftest.py). It
serves PodDisruptionBudgets as policy/v1beta1 only, which the chart picks from the
cluster's API versions; the operator CRDs are not there. The release has a name and a
namespace of its own, so the plain-manifest install (test_plain_install.py) can share the
server.
"""

from __future__ import annotations

import base64
from pathlib import Path

import helm_python as helm
import pytest
from kubernetes import client, config

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "kubecarbon"
NAMESPACE = "kubecarbon-helm"
RELEASE = "kubecarbon-helm"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _token(core: client.CoreV1Api) -> str:
    secret = core.read_namespaced_secret(f"{RELEASE}-token", NAMESPACE)
    return base64.b64decode(secret.data["token"]).decode()


def test_install_upgrade_keeps_the_token_and_uninstall_cleans_up(admin_kubeconfig):
    api_client = config.new_client_from_config(str(admin_kubeconfig))
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    rbac, objects = client.RbacAuthorizationV1Api(api_client), client.CustomObjectsApi(api_client)
    with helm.Config(kubeconfig_path=admin_kubeconfig, namespace=NAMESPACE) as cluster:
        # The chart itself, unchanged: 1.20 is the floor of its kubeVersion.
        release = cluster.install(CHART_DIR, RELEASE, {}, create_namespace=True)
        assert release["status"] == "deployed" and release["revision"] == 1
        assert f"port-forward svc/{RELEASE}-collector" in release["notes"]
        token = _token(core)
        assert len(token) == 48
        daemonset = apps.read_namespaced_daemon_set(f"{RELEASE}-agent", NAMESPACE)
        assert daemonset.spec.template.spec.automount_service_account_token is False
        assert daemonset.spec.template.spec.containers[0].image == "kubecarbon-agent:0.1.0"
        role = rbac.read_cluster_role(f"{RELEASE}-collector")
        assert [sorted(rule.verbs) for rule in role.rules] == [["get", "list", "watch"]]

        # An upgrade that changes the agents and adds objects keeps the same token; with
        # several collectors the disruption budget comes as the v1beta1 this server serves.
        upgraded = cluster.upgrade(CHART_DIR, RELEASE, {
            "agent": {"intervalSeconds": 30, "cgroupVersion": 1,
                      "collectorAddress": "serviceEnv"},
            "networkPolicy": {"enabled": True},
            "collector": {"config": {"default_profile": {"provider": "baremetal"}},
                          "replicas": 2},
        })
        assert upgraded["revision"] == 2
        assert _token(core) == token
        daemonset = apps.read_namespaced_daemon_set(f"{RELEASE}-agent", NAMESPACE)
        env = {e.name: e.value for e in daemonset.spec.template.spec.containers[0].env}
        assert env["KUBECARBON_INTERVAL"] == "30"
        assert env["KUBECARBON_COLLECTOR_SERVICE_HOST"] == (
            "$(KUBECARBON_HELM_COLLECTOR_SERVICE_HOST)")
        assert core.read_namespaced_config_map(f"{RELEASE}-collector", NAMESPACE).data
        budget = objects.get_namespaced_custom_object(  # any group/version, by path
            "policy", "v1beta1", NAMESPACE, "poddisruptionbudgets", f"{RELEASE}-collector")
        assert budget["spec"]["minAvailable"] == 1

        cluster.uninstall(RELEASE)
        with pytest.raises(client.ApiException) as gone:
            core.read_namespaced_secret(f"{RELEASE}-token", NAMESPACE)
        assert gone.value.status == 404
    api_client.close()
