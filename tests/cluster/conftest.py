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
sys.path.insert(0, str(REPO_ROOT / "tests" / "pki"))

import release  # noqa: E402
from kernel_truth import GROUND_TRUTH_TABLES, CollectorRecorder, KernelRecorder  # noqa: E402
from kube_objects import apply, describe_pods, ready, wait_for  # noqa: E402
from node_cluster import LocalNodeCluster, missing_binaries  # noqa: E402
from node_sandbox import leftovers  # noqa: E402
from oci_image import compile_static, write_image_archive  # noqa: E402
from prometheus_host import (  # noqa: E402
    PROMETHEUS,
    VMAGENT,
    PrometheusServer,
    Scraper,
    running_prometheus,
    scrape_configs,
    setup_monitoring,
)
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
    # the release's service accounts: their LIST and WATCH requests are audited
    # (test_watch_load.py counts the collector's load on the API server)
    local = LocalNodeCluster(audited_groups=[f"system:serviceaccounts:{release.NAMESPACE}"])
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
    left = leftovers(local.slot, local.sandbox.hierarchies)
    assert not left, f"the node left these behind: {left}"


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


@pytest.fixture(scope="session")
def kubecarbon(cluster: LocalNodeCluster | ExternalCluster, kubeconfig: Path,
               core: client.CoreV1Api, workloads: None) -> dict[str, object]:
    """The chart installed with Helm and its pods Ready; returns the release."""
    try:
        archives = release.image_archives()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    cluster.import_images(archives)
    installed = release.install(kubeconfig, release.CHART_DIR, release.release_values())
    wait_for("kubecarbon's agent and collector Ready", lambda: _kubecarbon_ready(core),
             explain=lambda: describe_pods(core))
    return installed


def _kubecarbon_ready(core: client.CoreV1Api) -> bool:
    pods = core.list_namespaced_pod(release.NAMESPACE).items
    components = {p.metadata.labels.get("app.kubernetes.io/component") for p in pods if ready(p)}
    return {"agent", "collector"} <= components


@pytest.fixture(scope="session")
def collector_url(core: client.CoreV1Api, kubecarbon: dict[str, object]) -> str:
    """The collector's Service, reached from the host through its ClusterIP (kube-proxy's rules)."""
    service = core.read_namespaced_service("kubecarbon-collector", release.NAMESPACE)
    port = service.spec.ports[0].port
    return f"http://{service.spec.cluster_ip}:{port}"


@pytest.fixture(scope="session")
def node_name(core: client.CoreV1Api) -> str:
    (node,) = core.list_node().items
    return str(node.metadata.name)


@pytest.fixture(scope="session")
def recording(cluster: LocalNodeCluster | ExternalCluster, api_client: client.ApiClient,
              core: client.CoreV1Api, collector_url: str,
              node_name: str) -> Iterator[tuple[KernelRecorder, CollectorRecorder]]:
    """The kernel's counters and the collector's, recorded side by side from now on."""
    if not isinstance(cluster, LocalNodeCluster):
        pytest.skip("the kernel's counters are read on the node: only with the local cluster")
    batch = client.BatchV1Api(api_client)

    def cronjob_of(namespace: str, job: str) -> str | None:
        owners = batch.read_namespaced_job(job, namespace).metadata.owner_references or ()
        return next((o.name for o in owners if o.kind == "CronJob"), None)

    kernel = KernelRecorder(cluster.sandbox.cgroup("cpuacct") / "kubepods",
                            client.AppsV1Api(api_client), cronjob_of, core)
    kubelet = (f"https://{cluster.slot.node_ip}:10250", cluster.admin.token,
               cluster.kubelet_ca_file)
    collector = CollectorRecorder(f"{collector_url}/metrics", node_name, kubelet)
    kernel.start()
    collector.start()
    yield kernel, collector
    collector.stop()
    kernel.stop()


@pytest.fixture(scope="session")
def prometheus(cluster: LocalNodeCluster | ExternalCluster, api_client: client.ApiClient,
               kubecarbon: dict[str, object],
               tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[PrometheusServer, Scraper]]:
    for program in (PROMETHEUS, VMAGENT):
        if not os.access(program, os.X_OK):
            pytest.fail(f"{program} is missing: `make apt-deps` installs the Debian packages")
    directory = tmp_path_factory.mktemp("prometheus")
    token = setup_monitoring(api_client, directory)
    configuration = api_client.configuration
    ca_file = Path(configuration.ssl_ca_cert)
    scrape = scrape_configs(configuration.host, token, ca_file, release.NAMESPACE, release.RELEASE)
    with running_prometheus(directory, scrape, release.rule_groups_watching_inputs()) as servers:
        yield servers


# Modules that leave the release in a shape no later upgrade can take in place (a
# StatefulSet with claim templates) run after every other test of the session.
RUN_LAST = ("test_sharded_replicas.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster's tests after all others, RUN_LAST last of all.

    The session's cluster (its workloads spin, its recorders poll) stays up from the
    first cluster test to the end of the session: run last, it takes no CPU from the
    rest of the suite. The sort is stable, so each group keeps its order.
    """
    items.sort(key=lambda item: (HERE in item.path.parents, item.path.name in RUN_LAST))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The ground-truth table ends the run's output (tests/cluster/test_kernel_truth.py)."""
    for table in GROUND_TRUTH_TABLES:
        terminalreporter.write_sep("=", "kubecarbon against the kernel (tests/cluster)")
        terminalreporter.write_line(table)
