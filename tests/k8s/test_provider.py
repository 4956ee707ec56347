"""KubernetesMetadataProvider against a real kube-apiserver (see conftest.py)."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from k8s_harness import (
    FAST_WATCH,
    ClusterObjects,
    CuttableProxy,
    LocalCluster,
    ProviderFactory,
    free_loopback_port,
    unique,
    wait_for,
    write_kubeconfig,
)
from prometheus_client import CollectorRegistry, generate_latest

from collector.kubernetes import KubernetesMetadataProvider, KubernetesWatchMetrics
from collector.metadata import MetadataProvider, PodInfo, ProviderStatus

# 2025-11-25 10:30 UTC in minutes since the epoch, as the CronJob controller names Jobs
CRONJOB_SCHEDULED_MINUTES = 29_401_830


def _workload(provider: KubernetesMetadataProvider, uid: str) -> tuple[str, str] | None:
    info = provider.pod(uid)
    return (info.workload_kind, info.workload_name) if info is not None else None


def test_lists_existing_nodes_with_their_profile_fields(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory
) -> None:
    aws = objects.node(
        labels={
            "node.kubernetes.io/instance-type": "m5.2xlarge",
            "topology.kubernetes.io/region": "eu-west-1",
            "topology.kubernetes.io/zone": "eu-west-1a",
        },
        provider_id="aws:///eu-west-1a/i-0123456789abcdef0",
        capacity={"cpu": "8", "memory": "32408564Ki", "pods": "58"},
    )
    # Only the deprecated beta labels, and a provider known from pool labels alone
    gke = objects.node(
        labels={
            "beta.kubernetes.io/instance-type": "e2-standard-4",
            "failure-domain.beta.kubernetes.io/region": "europe-west4",
            "cloud.google.com/gke-nodepool": "default-pool",
        },
        capacity={"cpu": "3920m", "memory": "16Gi"},
    )
    bare = objects.node()

    provider = start_provider(cluster.admin.kubeconfig)  # type: ignore[attr-defined]
    wait_for(lambda: provider.status().synced, "the first list")

    aws_info = provider.node(aws)
    assert aws_info is not None
    assert (aws_info.provider, aws_info.instance_type) == ("aws", "m5.2xlarge")
    assert (aws_info.region, aws_info.zone) == ("eu-west-1", "eu-west-1a")
    assert aws_info.cpu_capacity == 8.0
    assert aws_info.memory_capacity_bytes == 32408564 * 1024
    assert aws_info.labels["topology.kubernetes.io/zone"] == "eu-west-1a"

    gke_info = provider.node(gke)
    assert gke_info is not None
    assert (gke_info.provider, gke_info.instance_type, gke_info.region) == (
        "gcp",
        "e2-standard-4",
        "europe-west4",
    )
    assert gke_info.cpu_capacity == pytest.approx(3.92)
    assert gke_info.memory_capacity_bytes == 16 * 2**30

    bare_info = provider.node(bare)
    assert bare_info is not None
    assert (bare_info.provider, bare_info.instance_type, bare_info.cpu_capacity) == (
        None,
        None,
        None,
    )
    assert provider.node("no-such-node") is None
    status = provider.status()
    assert (status.source, status.synced, status.connected) == ("kubernetes", True, True)
    assert "nodes: watching" in status.detail and "pods: watching" in status.detail


def test_pods_resolve_to_the_top_of_their_owner_chain(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory
) -> None:
    namespace = objects.namespace()
    node = objects.node()
    expected = {
        objects.pod(
            namespace,
            node,
            labels={"pod-template-hash": "5d4b8c7f9"},
            owner=("ReplicaSet", "checkout-5d4b8c7f9"),
        ): ("Deployment", "checkout"),
        # A ReplicaSet whose name does not end in the pod's hash was made by hand
        objects.pod(
            namespace, node, labels={"pod-template-hash": "abc"}, owner=("ReplicaSet", "legacy-rs")
        ): ("ReplicaSet", "legacy-rs"),
        objects.pod(namespace, node, owner=("StatefulSet", "ledger")): ("StatefulSet", "ledger"),
        objects.pod(namespace, node, owner=("DaemonSet", "fluent-bit")): (
            "DaemonSet",
            "fluent-bit",
        ),
        objects.pod(
            namespace,
            node,
            labels={"job-name": f"nightly-settlement-{CRONJOB_SCHEDULED_MINUTES}"},
            owner=("Job", f"nightly-settlement-{CRONJOB_SCHEDULED_MINUTES}"),
        ): ("CronJob", "nightly-settlement"),
        # Digits that are not a plausible schedule time: a Job someone named
        objects.pod(namespace, node, owner=("Job", "migrate-42")): ("Job", "migrate-42"),
        objects.pod(namespace, node, name="debug-shell"): ("Pod", "debug-shell"),
    }

    provider = start_provider(cluster.admin.kubeconfig)  # type: ignore[attr-defined]
    wait_for(lambda: provider.status().synced, "the first list")

    for uid, workload in expected.items():
        assert _workload(provider, uid) == workload
        info = provider.pod(uid)
        assert info is not None and info.namespace == namespace
    debug = next(uid for uid, w in expected.items() if w == ("Pod", "debug-shell"))
    assert provider.pod(debug) == PodInfo(debug, namespace, "debug-shell", "Pod", "debug-shell",
                                          node_name=node)
    assert provider.pod("00000000-0000-0000-0000-000000000000") is None


def test_changes_while_watching_show_up(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory
) -> None:
    provider = start_provider(cluster.admin.kubeconfig)  # type: ignore[attr-defined]
    wait_for(lambda: provider.status().synced, "the first list")

    namespace = objects.namespace()
    node = objects.node(labels={"node.kubernetes.io/instance-type": "c5.large"})
    uid = objects.pod(namespace, node, owner=("StatefulSet", "db"))
    wait_for(lambda: provider.node(node), "the new node")
    wait_for(lambda: _workload(provider, uid) == ("StatefulSet", "db"), "the new pod")

    # Relabel: a node pool moved to another instance type and region
    objects.core.patch_node(
        node,
        {
            "metadata": {
                "labels": {
                    "node.kubernetes.io/instance-type": "c6i.xlarge",
                    "topology.kubernetes.io/region": "us-east-1",
                }
            }
        },
    )
    wait_for(
        lambda: (
            (info := provider.node(node)) is not None
            and (info.instance_type, info.region) == ("c6i.xlarge", "us-east-1")
        ),
        "the relabelled node",
    )

    pod_name = objects.core.list_namespaced_pod(namespace).items[0].metadata.name
    objects.delete_pod(namespace, pod_name)
    wait_for(lambda: provider.pod(uid) is None, "the deleted pod to disappear")
    objects.core.delete_node(node)
    wait_for(lambda: provider.node(node) is None, "the deleted node to disappear")
    assert provider.reflector_states()[1].relists_total == 1  # all of it through the watch


def test_deleted_pods_stay_resolvable_for_the_retention_period(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory
) -> None:
    # Agents report a pod's last window after the pod is gone from the API.
    settings = dataclasses.replace(FAST_WATCH, deleted_pod_retention_seconds=600.0)
    clock = [time.time()]
    provider = start_provider(
        cluster.admin.kubeconfig,  # type: ignore[attr-defined]
        settings,
        clock=lambda: clock[0],
    )
    namespace = objects.namespace()
    node = objects.node()
    uid = objects.pod(namespace, node, name="short-lived", owner=("DaemonSet", "agent"))
    wait_for(lambda: provider.pod(uid), "the new pod")
    live_before = provider.reflector_states()[1].objects
    objects.delete_pod(namespace, "short-lived")
    wait_for(lambda: provider.reflector_states()[1].objects == live_before - 1, "the delete event")
    clock[0] += 599
    assert _workload(provider, uid) == ("DaemonSet", "agent")
    clock[0] += 2  # and not longer
    assert provider.pod(uid) is None


def _status_if(
    provider: MetadataProvider, condition: Callable[[ProviderStatus], bool]
) -> ProviderStatus | None:
    status = provider.status()
    return status if condition(status) else None


def test_api_server_stopped_and_restarted_keeps_serving_and_reconnects(
    local: LocalCluster,
    objects: ClusterObjects,
    start_provider: ProviderFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    namespace = objects.namespace()
    node = objects.node(labels={"node.kubernetes.io/instance-type": "m6i.large"})
    uid = objects.pod(namespace, node, owner=("DaemonSet", "node-exporter"))
    provider = start_provider(local.admin.kubeconfig)
    wait_for(lambda: provider.status().synced and provider.pod(uid), "the first list")

    caplog.set_level(logging.INFO, logger="collector.kubernetes")
    local.stop_apiserver()
    try:
        wait_for(
            lambda: all(s.errors_total >= 4 for s in provider.reflector_states()),
            "several failed retries",
        )
        status = provider.status()
        assert not status.connected
        assert status.synced  # the last complete view is still there...
        assert "API unreachable" in status.detail and "serving last known" in status.detail
        # ...and it answers from it
        assert _workload(provider, uid) == ("DaemonSet", "node-exporter")
        node_info = provider.node(node)
        assert node_info is not None and node_info.instance_type == "m6i.large"
        assert not any(s.connected for s in provider.reflector_states())
    finally:
        local.start_apiserver()
    # The log warns once per outage and cause, not once per retry
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 <= len(warnings) < sum(s.errors_total for s in provider.reflector_states())

    wait_for(lambda: provider.status().connected, "the reconnect")
    later = objects.pod(namespace, node, owner=("StatefulSet", "after-restart"))
    wait_for(
        lambda: _workload(provider, later) == ("StatefulSet", "after-restart"),
        "a pod created after the restart",
    )
    assert all(s.reconnects_total >= 1 for s in provider.reflector_states())
    assert "pods: connected again to the API server" in caplog.text


def test_partition_resumes_the_watch_without_relisting(
    cluster: object,
    objects: ClusterObjects,
    start_provider: ProviderFactory,
    proxied_kubeconfig: tuple[Path, CuttableProxy],
) -> None:
    kubeconfig, proxy = proxied_kubeconfig
    namespace = objects.namespace()
    node = objects.node()
    doomed = objects.pod(namespace, node, name="doomed", owner=("DaemonSet", "a"))
    provider = start_provider(kubeconfig)
    wait_for(lambda: provider.status().synced and provider.pod(doomed), "the first list")

    proxy.cut()
    wait_for(lambda: not provider.status().connected, "the provider to notice the partition")
    objects.delete_pod(namespace, "doomed")
    born = objects.pod(namespace, node, owner=("StatefulSet", "b"))
    assert provider.pod(doomed) is not None  # last known state while cut off
    proxy.resume()

    wait_for(lambda: provider.pod(born) and provider.pod(doomed) is None, "the missed events")
    wait_for(lambda: provider.status().connected, "both watches back")
    # The API server's watch cache still had the events: resumed, not relisted.
    assert [s.relists_total for s in provider.reflector_states()] == [1, 1]


def test_expired_resource_version_triggers_a_full_relist(
    local: LocalCluster,
    objects: ClusterObjects,
    start_provider: ProviderFactory,
    proxied_kubeconfig: tuple[Path, CuttableProxy],
) -> None:
    kubeconfig, proxy = proxied_kubeconfig
    namespace = objects.namespace()
    node = objects.node()
    doomed = objects.pod(namespace, node, name="doomed", owner=("DaemonSet", "a"))
    provider = start_provider(kubeconfig)
    wait_for(lambda: provider.status().synced and provider.pod(doomed), "the first list")

    proxy.cut()
    objects.delete_pod(namespace, "doomed")
    born = objects.pod(namespace, node, owner=("StatefulSet", "b"))
    # A restarted API server's watch cache starts after these writes, so resuming
    # from the provider's resourceVersion is answered with 410 Gone.
    local.stop_apiserver()
    local.start_apiserver()
    proxy.resume()

    wait_for(lambda: provider.reflector_states()[1].relists_total >= 2, "a relist of pods")
    wait_for(lambda: provider.pod(born) and provider.pod(doomed) is None, "the relisted state")
    wait_for(lambda: provider.status().connected, "both watches back")


def test_watch_metrics_and_status_through_a_registry(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory
) -> None:
    node = objects.node()
    provider = start_provider(cluster.admin.kubeconfig)  # type: ignore[attr-defined]
    # both reflectors listed and connected: the pods' list may end after the nodes'
    wait_for(lambda: provider.node(node) and provider.status().connected, "both first lists")
    registry = CollectorRegistry()
    registry.register(KubernetesWatchMetrics(provider))
    text = generate_latest(registry).decode()
    assert 'kubecarbon_kubernetes_watch_up{resource="nodes"} 1.0' in text
    assert 'kubecarbon_kubernetes_watch_up{resource="pods"} 1.0' in text
    assert 'kubecarbon_kubernetes_relists_total{resource="nodes"} 1.0' in text
    assert 'kubecarbon_kubernetes_synced{resource="pods"} 1.0' in text
    synced_at = registry.get_sample_value(
        "kubecarbon_kubernetes_last_sync_timestamp_seconds", {"resource": "nodes"}
    )
    assert synced_at is not None and abs(synced_at - time.time()) < 600
    known = registry.get_sample_value("kubecarbon_kubernetes_objects", {"resource": "nodes"})
    assert known is not None and known >= 1


def test_unreachable_api_server_reports_why_and_stops_cleanly(
    tmp_path: Path, start_provider: ProviderFactory
) -> None:

    nowhere = write_kubeconfig(
        tmp_path / "nowhere.kubeconfig",
        f"https://127.0.0.1:{free_loopback_port()}",
        None,
        "token",
        "nobody",
    )
    provider: MetadataProvider = start_provider(nowhere)
    status = wait_for(
        lambda: _status_if(provider, lambda s: "refused" in s.detail.lower()),
        "an error in the status",
    )
    assert (status.synced, status.connected) == (False, False)
    assert "not listed yet" in status.detail
    assert provider.node(unique("x")) is None


def test_view_converges_to_the_server_through_churn_and_partitions(
    local: LocalCluster,
    objects: ClusterObjects,
    start_provider: ProviderFactory,
    proxied_kubeconfig: tuple[Path, CuttableProxy],
) -> None:
    """Random creates, relabels and deletes, with the network cut now and then and one
    API server restart during a cut: afterwards the provider's tables equal the server's,
    and its requests by node (kept event by event and across the relist) a walk of its pods."""
    kubeconfig, proxy = proxied_kubeconfig
    rng = random.Random(20251125)
    namespace = objects.namespace()
    provider = start_provider(kubeconfig)
    wait_for(lambda: provider.status().synced, "the first list")
    nodes: list[str] = []
    pods: dict[str, str] = {}  # name -> uid
    deleted: list[str] = []  # uids
    instance_types = ["m5.large", "c6i.xlarge", "r5.2xlarge"]
    for step in range(60):
        if step in (15, 30, 45):
            proxy.cut()
        if step in (20, 35, 50):
            if step == 35:  # resuming after this one needs a relist (410)
                local.stop_apiserver()
                local.start_apiserver()
            proxy.resume()
        action = rng.random()
        if not nodes or action < 0.15:
            nodes.append(objects.node(labels={"node.kubernetes.io/instance-type": "m5.large"}))
        elif action < 0.3:
            objects.core.patch_node(
                rng.choice(nodes),
                {
                    "metadata": {
                        "labels": {"node.kubernetes.io/instance-type": rng.choice(instance_types)}
                    }
                },
            )
        elif action < 0.75 or not pods:
            name = unique("churn")
            cpu = ("125m", "250m", "500m")[step % 3]  # eighths of a core: sums exact in any order
            pods[name] = objects.pod(
                namespace, rng.choice(nodes), name=name, owner=("StatefulSet", f"s{step % 4}"),
                spec={"containers": [{"name": "app", "image": "app:1",
                                      "resources": {"requests": {"cpu": cpu}}}]},
            )
        else:
            name = rng.choice(sorted(pods))
            objects.delete_pod(namespace, name)
            deleted.append(pods.pop(name))

    def server_view() -> tuple[dict[str, str | None], set[str]]:
        listed_nodes = objects.core.list_node().items
        listed_pods = objects.core.list_namespaced_pod(namespace).items
        return (
            {
                n.metadata.name: (n.metadata.labels or {}).get("node.kubernetes.io/instance-type")
                for n in listed_nodes
                if n.metadata.name in nodes
            },
            {p.metadata.uid for p in listed_pods},
        )

    def provider_matches() -> bool:
        expected_nodes, expected_uids = server_view()
        seen_nodes = {name: getattr(provider.node(name), "instance_type", None) for name in nodes}
        seen_uids = {uid for uid in pods.values() if provider.pod(uid) is not None}
        return (
            seen_nodes == expected_nodes
            and seen_uids == expected_uids
            and all(provider.pod(uid) is None for uid in deleted)
            and provider.status().connected
        )

    wait_for(provider_matches, "the provider's view to equal the server's")
    assert set(pods.values()) == server_view()[1] and deleted  # the test did delete some

    def requests_match_a_walk() -> bool:
        walked: dict[str, dict[tuple[str, str, str], float]] = {}
        for info in provider.pods():
            if info.node_name in nodes and info.holds_requests:
                cores = walked.setdefault(info.node_name, {})
                key = (info.namespace, info.workload_kind, info.workload_name)
                cores[key] = cores.get(key, 0.0) + info.cpu_request_cores
        kept = {node: dict(requests.cpu_cores)
                for node, requests in provider.pod_requests().items() if node in nodes}
        return kept == walked and sum(map(len, kept.values())) > 0

    wait_for(requests_match_a_walk, "the requests by node to equal a walk of the pods")
    assert provider.reflector_states()[1].relists_total >= 2  # the restart forced one


def test_static_pods_resolve_under_the_uid_they_run_with(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory
) -> None:
    # The kubelet runs a static pod under the uid in its mirror pod's
    # kubernetes.io/config.mirror annotation (its cgroup carries that uid, so the
    # agent reports it); the API shows the mirror pod with a uid of its own.
    namespace = objects.namespace()
    node = objects.node()
    static_uid = uuid.uuid4().hex  # the kubelet's config hash: 32 hex digits
    mirror_uid = objects.pod(
        namespace,
        node,
        name=f"etcd-{node}",
        owner=("Node", node),
        annotations={"kubernetes.io/config.mirror": static_uid},
    )
    provider = start_provider(cluster.admin.kubeconfig)  # type: ignore[attr-defined]
    wait_for(lambda: provider.status().synced, "the first list")
    expected = PodInfo(mirror_uid, namespace, f"etcd-{node}", "Pod", f"etcd-{node}",
                       node_name=node)
    assert provider.pod(static_uid) == expected
    assert provider.pod(mirror_uid) == expected
    assert provider.reflector_states()[1].objects == len(provider._pods.table)

    objects.delete_pod(namespace, f"etcd-{node}")
    wait_for(lambda: provider.pod(static_uid) is None, "the alias to go with the pod")


def test_deleted_static_pods_stay_resolvable_under_both_uids(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory
) -> None:
    namespace = objects.namespace()
    node = objects.node()
    static_uid = uuid.uuid4().hex
    mirror_uid = objects.pod(
        namespace,
        node,
        name="kube-proxy-static",
        owner=("Node", node),
        annotations={"kubernetes.io/config.mirror": static_uid},
    )
    settings = dataclasses.replace(FAST_WATCH, deleted_pod_retention_seconds=600.0)
    provider = start_provider(cluster.admin.kubeconfig, settings)  # type: ignore[attr-defined]
    wait_for(lambda: provider.pod(static_uid), "the first list")
    live_before = provider.reflector_states()[1].objects
    objects.delete_pod(namespace, "kube-proxy-static")
    wait_for(lambda: provider.reflector_states()[1].objects == live_before - 1, "the delete")
    assert (
        _workload(provider, static_uid)
        == _workload(provider, mirror_uid)
        == (
            "Pod",
            "kube-proxy-static",
        )
    )


def test_a_pod_uid_unknown_to_ingest_is_attributed_once_the_watch_brings_it(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory
) -> None:
    # Ingest asks the provider again about a uid it did not know, at every report; the
    # pod arriving through the watch also moves the pod generation (replica routing
    # rebuilds its table of peers by it).
    from collector.ingest import Ingestor
    from collector.ledger import Ledger

    provider = start_provider(cluster.admin.kubeconfig)  # type: ignore[attr-defined]
    wait_for(lambda: provider.status().synced, "the first list")
    namespace = objects.namespace()
    node = objects.node()
    static_uid = uuid.uuid4().hex  # chosen here, so a report can name it before the pod exists
    now = time.time()
    ingestor = Ingestor(Ledger(), metadata=provider, clock=lambda: now)

    def report(seq: int) -> dict[str, object]:
        return {"schema": 1, "node": node, "agent_id": "agent-k8s", "seq": seq,
                "start": now - 15.0 * (3 - seq), "end": now - 15.0 * (2 - seq),
                "cpu": {"logical_cpus": 4, "busy_seconds": 10.0},
                "pods": [{"uid": static_uid, "cpu_seconds": 6.0, "containers": 1}]}

    ingestor.ingest([report(1)])  # type: ignore[list-item]
    assert set(ingestor.ledger.namespaces) == {"unknown"}
    before = provider.pod_generation()
    objects.pod(namespace, node, name=f"kube-proxy-{node}", owner=("Node", node),
                annotations={"kubernetes.io/config.mirror": static_uid})
    wait_for(lambda: provider.pod(static_uid) is not None, "the static pod")
    assert provider.pod_generation() != before
    ingestor.ingest([report(2)])  # type: ignore[list-item]
    assert ingestor.ledger.namespaces[namespace].cpu_seconds == 6.0
    assert ingestor.ledger.namespaces["unknown"].cpu_seconds == 6.0  # the first window stays
