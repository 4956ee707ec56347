"""One real single-node cluster per test session, with kubecarbon and workloads on it.

By default the session starts the cluster of node_cluster.py (binaries from
`make kube-node`, Debian's containerd, runc and CNI plugins); it needs root.
With KUBECARBON_TEST_KUBECONFIG=/path/to/kubeconfig the same tests run against
that cluster instead; docs/e2e.md says what that cluster must provide, and the
comparisons with the kernel's counters skip unless this machine is its node.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
# Test modules are imported in importlib mode: the harness modules of this
# directory and tests/k8s are made importable by name.
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO_ROOT / "tests" / "k8s"))

from kube_objects import apply  # noqa: E402
from node_cluster import LocalNodeCluster, missing_binaries  # noqa: E402
from oci_image import compile_static, write_image_archive  # noqa: E402
from workloads import BUSYLOOP_IMAGE, manifests  # noqa: E402

pytestmark = pytest.mark.slow


class ExternalCluster:
    """A cluster the user points at: nothing to start, nothing to remove."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def import_images(self, archives: list[Path]) -> None:
        """Images must already be on the nodes (docs/e2e.md)."""


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalNodeCluster | ExternalCluster]:
    external = os.environ.get("KUBECARBON_TEST_KUBECONFIG")
    if external:
        yield ExternalCluster(Path(external))
        return
    missing = missing_binaries()
    if missing:
        pytest.fail(f"missing for the node: {', '.join(missing)}: run `make kube-node` "
                    "(or set KUBECARBON_TEST_KUBECONFIG to test an existing cluster)")
    if os.geteuid() != 0:
        pytest.fail("the local cluster needs root (namespaces, cgroups, iptables)")
    local = LocalNodeCluster()
    closed: list[str] = []

    def close() -> None:
        if not closed:
            closed.extend(local.close() or ["nothing"])

    atexit.register(close)  # also when the session ends without fixture teardown
    try:
        local.start()
        yield local
    finally:
        close()
        atexit.unregister(close)


@pytest.fixture(scope="session")
def kubeconfig(cluster: LocalNodeCluster | ExternalCluster) -> Path:
    if isinstance(cluster, ExternalCluster):
        return cluster.kubeconfig
    return cluster.admin.kubeconfig


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(str(kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def workload_images(cluster: LocalNodeCluster | ExternalCluster,
                    tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("images")
    binary = compile_static(HERE / "busyloop.c", directory / "busyloop")
    archive = write_image_archive(directory / "busyloop.tar", BUSYLOOP_IMAGE,
                                  {"busyloop": binary}, entrypoint=["/busyloop"])
    cluster.import_images([archive])


@pytest.fixture(scope="session")
def workloads(api_client: client.ApiClient, workload_images: None) -> None:
    apply(api_client, manifests())
