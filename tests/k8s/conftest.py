"""Fixtures: one real API server per test session, clients, and tidy test objects.

By default the session starts etcd and the kube-apiserver built by
`make kube-apiserver` (tests/k8s/build-apiserver.sh). With
KUBECARBON_TEST_KUBECONFIG=/path/to/kubeconfig the same tests run against that
cluster instead (outage tests skip: a real cluster is not ours to stop).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

# Test modules are imported in importlib mode: the harness next to this file is
# made importable for them (and for this conftest) by name.
sys.path.insert(0, str(Path(__file__).parent))

from k8s_harness import (
    APISERVER_VERSION,
    FAST_WATCH,
    ClusterObjects,
    CuttableProxy,
    ExternalCluster,
    LocalCluster,
    ProviderFactory,
    find_etcd,
    local_cluster,
    write_kubeconfig,
)

from collector.kubernetes import KubernetesMetadataProvider, WatchSettings, load_api_client


def _apiserver_binary() -> Path:
    explicit = os.environ.get("KUBECARBON_KUBE_APISERVER")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("KUBECARBON_APISERVER_CACHE", "/var/cache/kubecarbon"))
    return cache / f"kube-apiserver-{APISERVER_VERSION}" / "kube-apiserver"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster | ExternalCluster]:
    external = os.environ.get("KUBECARBON_TEST_KUBECONFIG")
    if external:
        yield ExternalCluster(Path(external))
        return
    binary = _apiserver_binary()
    etcd = find_etcd()
    if not binary.is_file() or etcd is None:
        pytest.fail(
            f"no kube-apiserver at {binary} or no etcd on PATH: run `make kube-apiserver` "
            "(or set KUBECARBON_TEST_KUBECONFIG to test an existing cluster)"
        )
    with local_cluster(tmp_path_factory.mktemp("k8s"), binary, etcd) as running:
        yield running


@pytest.fixture
def local(cluster: LocalCluster | ExternalCluster) -> LocalCluster:
    """The local API server, for tests that stop it or cut its network."""
    if not isinstance(cluster, LocalCluster):
        pytest.skip("stops the API server: only with the local test cluster")
    return cluster


@pytest.fixture(scope="session")
def core(cluster: LocalCluster | ExternalCluster) -> Iterator[client.CoreV1Api]:
    api_client = config.new_client_from_config(str(cluster.admin.kubeconfig))
    yield client.CoreV1Api(api_client)
    api_client.close()


@pytest.fixture(scope="session")
def rbac(core: client.CoreV1Api) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(core.api_client)


@pytest.fixture
def objects(core: client.CoreV1Api) -> Iterator[ClusterObjects]:
    made = ClusterObjects(core)
    yield made
    made.cleanup()


@pytest.fixture
def start_provider() -> Iterator[ProviderFactory]:
    """Starts providers from a kubeconfig; stops them and checks no watch thread is left."""
    started: list[KubernetesMetadataProvider] = []

    def start(
        kubeconfig: Path, settings: WatchSettings = FAST_WATCH, **options: Any
    ) -> KubernetesMetadataProvider:
        api_client, _ = load_api_client(str(kubeconfig))
        provider = KubernetesMetadataProvider(api_client, settings, **options)
        provider.start()
        started.append(provider)
        return provider

    yield start
    for provider in started:
        provider.stop()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("kubecarbon-watch")]
    assert leftover == [], f"watch threads left running: {leftover}"


@pytest.fixture
def proxied_kubeconfig(local: LocalCluster, tmp_path: Path) -> Iterator[tuple[Path, CuttableProxy]]:
    """Admin kubeconfig that reaches the API server through a proxy the test can cut."""
    proxy = CuttableProxy("127.0.0.1", local.apiserver_port)
    path = write_kubeconfig(
        tmp_path / "proxied.kubeconfig",
        f"https://127.0.0.1:{proxy.port}",
        local.ca_file,
        local.admin.token,
        local.admin.name,
    )
    yield path, proxy
    proxy.close()
