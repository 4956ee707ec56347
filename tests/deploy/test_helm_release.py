"""A Helm release against a real API server: install, upgrade, uninstall.

Shows what offline renders cannot: the API server accepts the chart's objects, and the
token Secret survives an upgrade because the template `lookup`s the installed one.

The API server is the one tests/k8s builds (`make kube-apiserver`: etcd plus a
kube-apiserver 1.20.2 from Debian's sources, reused through tests/k8s/k8s_harness.py).
It is older than the chart's `kubeVersion: >=1.25.0-0`, so the release is made from a
copy of the chart with only that line removed; the objects installed here use no API
newer than 1.20 (policy/v1 PodDisruptionBudgets need replicas > 1, which is not installed,
and the operator CRDs are not there).
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import helm_python as helm
import pytest
from kubernetes import client, config

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "k8s"))

from k8s_harness import APISERVER_VERSION, find_etcd, local_cluster  # noqa: E402

NAMESPACE = "kubecarbon"
RELEASE = "kubecarbon"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def admin_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = Path(os.environ.get("KUBECARBON_APISERVER_CACHE", "/var/cache/kubecarbon"))
    binary = cache / f"kube-apiserver-{APISERVER_VERSION}" / "kube-apiserver"
    etcd = find_etcd()
    if not binary.is_file() or etcd is None:
        pytest.fail(f"no kube-apiserver at {binary} or no etcd on PATH: run `make kube-apiserver`")
    with local_cluster(tmp_path_factory.mktemp("k8s"), binary, etcd) as cluster:
        yield cluster.admin.kubeconfig


@pytest.fixture(scope="module")
def chart_for_old_server(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("chart") / "kubecarbon"
    shutil.copytree(REPO_ROOT / "helm" / "kubecarbon", copy)
    chart_yaml = copy / "Chart.yaml"
    lines = chart_yaml.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("kubeVersion:")]
    assert len(kept) == len(lines) - 1
    chart_yaml.write_text("".join(kept))
    return copy


def _token(core: client.CoreV1Api) -> str:
    secret = core.read_namespaced_secret(f"{RELEASE}-token", NAMESPACE)
    return base64.b64decode(secret.data["token"]).decode()


def test_install_upgrade_keeps_the_token_and_uninstall_cleans_up(admin_kubeconfig,
                                                                  chart_for_old_server):
    api_client = config.new_client_from_config(str(admin_kubeconfig))
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    with helm.Config(kubeconfig_path=admin_kubeconfig, namespace=NAMESPACE) as cluster:
        # The real chart is refused by this old server with a clear reason ...
        with pytest.raises(helm.HelmReleaseError, match="requires kubeVersion"):
            cluster.install(REPO_ROOT / "helm" / "kubecarbon", RELEASE, {},
                            create_namespace=True)
        # ... the copy installs, and the server accepts every object.
        release = cluster.install(chart_for_old_server, RELEASE, {}, create_namespace=True)
        assert release["status"] == "deployed" and release["revision"] == 1
        assert "port-forward svc/kubecarbon-collector" in release["notes"]
        token = _token(core)
        assert len(token) == 48
        daemonset = apps.read_namespaced_daemon_set(f"{RELEASE}-agent", NAMESPACE)
        assert daemonset.spec.template.spec.automount_service_account_token is False
        role = rbac.read_cluster_role(f"{RELEASE}-collector")
        assert [sorted(rule.verbs) for rule in role.rules] == [["get", "list", "watch"]]

        # An upgrade that changes the agents and adds objects keeps the same token.
        upgraded = cluster.upgrade(chart_for_old_server, RELEASE, {
            "agent": {"intervalSeconds": 30},
            "networkPolicy": {"enabled": True},
            "collector": {"config": {"default_profile": {"provider": "baremetal"}}},
        })
        assert upgraded["revision"] == 2
        assert _token(core) == token
        daemonset = apps.read_namespaced_daemon_set(f"{RELEASE}-agent", NAMESPACE)
        env = {e.name: e.value for e in daemonset.spec.template.spec.containers[0].env}
        assert env["KUBECARBON_INTERVAL"] == "30"
        assert core.read_namespaced_config_map(f"{RELEASE}-collector", NAMESPACE).data

        cluster.uninstall(RELEASE)
        with pytest.raises(client.ApiException) as gone:
            core.read_namespaced_secret(f"{RELEASE}-token", NAMESPACE)
        assert gone.value.status == 404
    api_client.close()
