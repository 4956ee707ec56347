"""The collector service with Kubernetes metadata from the real API server.

Agents' reports go in over real HTTP (aiohttp test server); what the watch
learnt about nodes and pods must come out of /metrics as node instance_type and
region labels and as namespace and workload series, and keep doing so while
the API server is down.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from k8s_harness import (
    FAST_WATCH,
    ClusterObjects,
    LocalCluster,
    free_loopback_port,
    wait_for,
    wait_for_async,
)
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector.app import create_app
from collector.kubernetes import (
    KubernetesMetadataProvider,
    KubernetesUnavailable,
    KubernetesWatchMetrics,
    load_api_client,
)
from collector.main import build_metadata_provider
from collector.metadata import ProviderStatus, StaticMetadataProvider
from collector.options import parse_settings
from collector.profiles import parse_profile_document
from collector.settings import Settings

# Deleted pods stay attributable for this long (the production default)
RETAINING_WATCH = dataclasses.replace(FAST_WATCH, deleted_pod_retention_seconds=600.0)


class Agent:
    """Sends reports for one node, the way the agent does (one window per call)."""

    def __init__(self, client: Any, node: str) -> None:
        self.client = client
        self.node = node
        self.agent_id = uuid.uuid4().hex
        self.seq = 0

    async def report(self, pods: dict[str, float], busy_seconds: float = 60.0) -> None:
        self.seq += 1
        end = time.time()
        report = {
            "schema": 1,
            "node": self.node,
            "agent_id": self.agent_id,
            "seq": self.seq,
            "start": end - 15.0,
            "end": end,
            "cpu": {"logical_cpus": 8, "busy_seconds": busy_seconds},
            "memory": {"total_bytes": 32 * 2**30, "used_bytes": 8 * 2**30},
            "containers_running": len(pods),
            "pods": [
                {"uid": uid, "cpu_seconds": cpu, "containers": 1} for uid, cpu in pods.items()
            ],
        }
        response = await self.client.post("/api/v1/reports", json={"reports": [report]})
        assert response.status == 200, await response.text()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label pairs: value} of one metric in a Prometheus text exposition."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def labelled(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def metrics(client: Any) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return str(await response.text())


async def readiness(client: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


AppFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
def collector_client(aiohttp_client: Any) -> AppFactory:
    async def start(provider: KubernetesMetadataProvider, settings: Settings | None = None) -> Any:
        registry = CollectorRegistry()
        registry.register(KubernetesWatchMetrics(provider))
        # The app starts the provider with itself and stops it on shutdown.
        return await aiohttp_client(
            create_app(
                settings or Settings(), metadata=provider, registry=registry, status_page=False
            )
        )

    return start


def _provider(kubeconfig: Any, settings: Any = RETAINING_WATCH) -> KubernetesMetadataProvider:
    api_client, _ = load_api_client(str(kubeconfig))
    return KubernetesMetadataProvider(api_client, settings)


async def test_watched_nodes_and_pods_label_the_collector_metrics(
    cluster: Any, objects: ClusterObjects, collector_client: AppFactory
) -> None:
    namespace = objects.namespace()
    node = objects.node(
        labels={
            "node.kubernetes.io/instance-type": "m5.2xlarge",
            "topology.kubernetes.io/region": "eu-west-1",
        },
        provider_id="aws:///eu-west-1a/i-0abc",
        capacity={"cpu": "8", "memory": "32Gi"},
    )
    web = objects.pod(
        namespace, node, labels={"pod-template-hash": "6f7c9"}, owner=("ReplicaSet", "web-6f7c9")
    )
    db = objects.pod(namespace, node, name="db-0", owner=("StatefulSet", "db"))
    provider = _provider(cluster.admin.kubeconfig)
    client = await collector_client(provider)
    await wait_for_async(lambda: _ready(client), "/readyz 200 once both lists are done")

    agent = Agent(client, node)
    await agent.report({web: 30.0, db: 20.0, "uid-never-seen": 10.0})
    text = await metrics(client)
    node_energy = samples(text, "kubecarbon_node_energy_joules_total")
    assert set(node_energy) == {
        labelled(
            node=node, region="eu-west-1", instance_type="m5.2xlarge", power_source="cloud_linear"
        )
    }
    workloads = samples(text, "kubecarbon_workload_cpu_seconds_total")
    assert (
        workloads[labelled(namespace=namespace, workload_kind="Deployment", workload="web")] == 30
    )
    assert (
        workloads[labelled(namespace=namespace, workload_kind="StatefulSet", workload="db")] == 20
    )
    namespaces = samples(text, "kubecarbon_namespace_cpu_seconds_total")
    assert namespaces[labelled(namespace=namespace)] == 50
    assert namespaces[labelled(namespace="unknown")] == 10
    assert samples(text, "kubecarbon_kubernetes_watch_up") == {
        labelled(resource="nodes"): 1.0,
        labelled(resource="pods"): 1.0,
    }
    assert samples(text, "kubecarbon_collector_metadata_synced") == {
        labelled(source="kubernetes"): 1.0
    }

    # While the collector runs: a new pod, a relabelled node, a deleted pod.
    pods_before = provider.reflector_states()[1].objects
    batch = objects.pod(
        namespace,
        node,
        labels={"job-name": "report-29401830"},
        owner=("Job", "report-29401830"),
    )
    objects.core.patch_node(
        node, {"metadata": {"labels": {"node.kubernetes.io/instance-type": "m6i.2xlarge"}}}
    )
    objects.delete_pod(namespace, "db-0")
    await wait_for_async(
        lambda: (
            provider.pod(batch) is not None
            and getattr(provider.node(node), "instance_type", None) == "m6i.2xlarge"
            and provider.reflector_states()[1].objects == pods_before
        ),  # one added, one deleted
        "the new pod, the relabel and the delete",
    )
    await agent.report({batch: 12.0, db: 3.0})
    text = await metrics(client)
    workloads = samples(text, "kubecarbon_workload_cpu_seconds_total")
    assert (
        workloads[labelled(namespace=namespace, workload_kind="CronJob", workload="report")] == 12
    )
    # db-0 is gone from the API, but its last window still goes to its StatefulSet
    assert (
        workloads[labelled(namespace=namespace, workload_kind="StatefulSet", workload="db")] == 23
    )
    node_series = {
        dict(labels)["instance_type"]
        for labels in samples(text, "kubecarbon_node_energy_joules_total")
    }
    assert node_series == {"m5.2xlarge", "m6i.2xlarge"}


async def _ready(client: Any) -> bool:
    status, _ = await readiness(client)
    return status == 200


async def test_collector_keeps_attributing_while_the_api_server_is_down(
    local: LocalCluster, objects: ClusterObjects, collector_client: AppFactory
) -> None:
    namespace = objects.namespace()
    node = objects.node(labels={"topology.kubernetes.io/region": "cn-east-1"})
    worker = objects.pod(namespace, node, owner=("DaemonSet", "log-shipper"))
    provider = _provider(local.admin.kubeconfig)
    client = await collector_client(provider)
    await wait_for_async(lambda: _ready(client), "/readyz 200")
    agent = Agent(client, node)

    local.stop_apiserver()
    try:
        await wait_for_async(lambda: not provider.status().connected, "the outage to be noticed")
        status, body = await readiness(client)
        # Still ready: it serves its last known state, and says so.
        assert status == 200 and body["metadata"]["connected"] is False
        assert "API unreachable" in body["metadata"]["detail"]
        await agent.report({worker: 40.0})
        text = await metrics(client)
        assert samples(text, "kubecarbon_kubernetes_watch_up")[labelled(resource="pods")] == 0
        assert samples(text, "kubecarbon_collector_metadata_connected") == {
            labelled(source="kubernetes"): 0.0
        }
        workloads = samples(text, "kubecarbon_workload_cpu_seconds_total")
        key = labelled(namespace=namespace, workload_kind="DaemonSet", workload="log-shipper")
        assert workloads[key] == 40
        regions = {dict(k)["region"] for k in samples(text, "kubecarbon_node_energy_joules_total")}
        assert regions == {"cn-east-1"}
    finally:
        local.start_apiserver()

    await wait_for_async(lambda: provider.status().connected, "the reconnect")
    later = objects.pod(namespace, node, owner=("StatefulSet", "after"))
    await wait_for_async(lambda: provider.pod(later) is not None, "a pod created after the restart")
    await agent.report({later: 5.0})
    text = await metrics(client)
    workloads = samples(text, "kubecarbon_workload_cpu_seconds_total")
    assert (
        workloads[labelled(namespace=namespace, workload_kind="StatefulSet", workload="after")] == 5
    )
    assert samples(text, "kubecarbon_kubernetes_watch_up")[labelled(resource="pods")] == 1


def test_kubernetes_auto_uses_the_kubeconfig_and_off_does_not(
    cluster: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod
    monkeypatch.setenv("KUBECONFIG", str(cluster.admin.kubeconfig))
    registry = CollectorRegistry()
    provider = build_metadata_provider(Settings(kubernetes="auto"), registry)
    assert isinstance(provider, KubernetesMetadataProvider)
    status = provider.status()  # not started: nothing listed yet
    assert status == ProviderStatus(
        "kubernetes", synced=False, connected=False, detail=status.detail
    )
    # its health metrics are on the registry the app serves
    assert registry.get_sample_value("kubecarbon_kubernetes_synced", {"resource": "pods"}) == 0
    provider.stop()

    # --kubeconfig (or KUBECARBON_KUBECONFIG) instead of $KUBECONFIG
    monkeypatch.delenv("KUBECONFIG")
    flagged = build_metadata_provider(
        parse_settings(["--kubeconfig", str(cluster.admin.kubeconfig)], env={}),
        CollectorRegistry(),
    )
    assert isinstance(flagged, KubernetesMetadataProvider)
    flagged.stop()
    from_env = parse_settings([], env={"KUBECARBON_KUBECONFIG": str(cluster.admin.kubeconfig)})
    assert from_env.kubeconfig == cluster.admin.kubeconfig

    off = build_metadata_provider(Settings(kubernetes="off"), CollectorRegistry())
    assert isinstance(off, StaticMetadataProvider)

    monkeypatch.setenv("KUBECONFIG", str(cluster.admin.kubeconfig) + ".missing")
    with caplog.at_level(logging.INFO, logger="collector"):
        fallback = build_metadata_provider(Settings(kubernetes="auto"), CollectorRegistry())
    assert isinstance(fallback, StaticMetadataProvider)
    assert "no Kubernetes credentials" in caplog.text


async def test_config_file_profiles_override_what_the_cluster_says(
    cluster: Any, objects: ClusterObjects, collector_client: AppFactory
) -> None:
    # A rack of on-prem servers that its labels call a cloud VM type; the config knows better.
    labels = {
        "node.kubernetes.io/instance-type": "m5.2xlarge",
        "topology.kubernetes.io/region": "eu-west-1",
        "topology.kubernetes.io/zone": "dc1-rack7",
    }
    overridden = objects.node(labels=labels, provider_id="aws:///eu-west-1a/i-0def")
    untouched = objects.node(labels={**labels, "topology.kubernetes.io/zone": "eu-west-1a"})
    profiles = parse_profile_document(
        {
            "profiles": [
                {
                    "match": {"labels": {"topology.kubernetes.io/zone": "dc1-rack7"}},
                    "provider": "baremetal",
                    "instance_type": "r740",
                    "region": "china-east",
                }
            ]
        }
    )
    provider = _provider(cluster.admin.kubeconfig)
    client = await collector_client(provider, Settings(profiles=profiles))
    await wait_for_async(lambda: _ready(client), "/readyz 200")
    for node in (overridden, untouched):
        await Agent(client, node).report({})
    series = samples(await metrics(client), "kubecarbon_node_energy_joules_total")
    by_node = {dict(labels)["node"]: dict(labels) for labels in series}
    assert (by_node[overridden]["instance_type"], by_node[overridden]["region"]) == (
        "r740",
        "china-east",
    )
    assert (by_node[untouched]["instance_type"], by_node[untouched]["region"]) == (
        "m5.2xlarge",
        "eu-west-1",
    )


def test_kubecarbon_collector_process_watches_the_cluster(
    cluster: Any, objects: ClusterObjects
) -> None:
    """The real command line: flags -> provider -> /metrics and /readyz; SIGTERM stops it."""
    objects.node(labels={"node.kubernetes.io/instance-type": "c5.xlarge"})
    port = free_loopback_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECARBON_", "KUBE"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector",
            "--listen",
            f"127.0.0.1:{port}",
            "--kubeconfig",
            str(cluster.admin.kubeconfig),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = wait_for(
            lambda: (reply := _http_get(port, "/readyz")) and reply[0] == 200 and reply,
            "the collector's /readyz to say 200",
        )
        assert json.loads(ready[1])["metadata"]["source"] == "kubernetes"
        text = wait_for(lambda: _http_get(port, "/metrics"), "/metrics")[1].decode()
        assert samples(text, "kubecarbon_kubernetes_watch_up") == {
            labelled(resource="nodes"): 1.0,
            labelled(resource="pods"): 1.0,
        }
        known = samples(text, "kubecarbon_kubernetes_objects")[labelled(resource="nodes")]
        assert known >= 1  # at least the node this test made
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    assert process.returncode == 0, output.decode(errors="replace")
    assert b"node and pod metadata from the Kubernetes API (kubeconfig)" in output


def _http_get(port: int, path: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return (exc.code, exc.read()) if exc.code == 503 else None
    except OSError:
        return None


def test_in_cluster_credentials_are_the_default(
    local: LocalCluster, objects: ClusterObjects, tmp_path: Path
) -> None:
    """What a pod has: KUBERNETES_SERVICE_HOST/PORT and a mounted service-account token + CA."""
    node = objects.node(labels={"topology.kubernetes.io/region": "cn-north-1"})
    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    (mounted / "token").write_text(local.admin.token)
    (mounted / "ca.crt").write_bytes(local.ca_file.read_bytes())
    environ = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(local.apiserver_port),
    }
    api_client, choice = load_api_client(environ=environ, service_account_dir=mounted)
    assert choice.source == "in-cluster"
    provider = KubernetesMetadataProvider(api_client, FAST_WATCH)
    provider.start()
    try:
        wait_for(lambda: provider.node(node), "the node through in-cluster credentials")
        assert getattr(provider.node(node), "region", None) == "cn-north-1"
    finally:
        provider.stop()

    # Outside a pod it says why it could not use in-cluster credentials.
    with pytest.raises(KubernetesUnavailable, match="in-cluster: Service host/port is not set"):
        load_api_client(environ={"KUBECONFIG": str(tmp_path / "absent")})
