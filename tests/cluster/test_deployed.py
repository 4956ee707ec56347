"""The real node, its workloads, and kubecarbon installed with Helm, as a user would have them.

The first test also starts the recorders and Prometheus, so that they gather
data while the rest of the suite runs.
"""

from __future__ import annotations

import urllib.request

import pytest
import release
from kube_objects import running_containers, running_pods, wait_for
from kubernetes import client
from workloads import WORKLOADS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_node_is_a_real_kubelet_on_containerd(core, node_name, recording, prometheus):
    node = core.read_node(node_name)
    info = node.status.node_info
    assert info.kubelet_version == "v1.20.2"
    assert info.container_runtime_version.startswith("containerd://1.")
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def test_deployment_pods_carry_their_replicasets_real_pod_template_hash(api_client, core):
    apps = client.AppsV1Api(api_client)
    (replica_set,) = [rs for rs in apps.list_namespaced_replica_set("kc-shop").items
                      if rs.metadata.owner_references[0].name == "web"]
    template_hash = replica_set.metadata.labels["pod-template-hash"]
    assert replica_set.metadata.name == f"web-{template_hash}"
    assert replica_set.metadata.owner_references[0].kind == "Deployment"
    pods = [p for p in running_pods(core, "kc-shop") if p.metadata.name.startswith("web-")]
    assert len(pods) == 2
    for pod in pods:
        assert pod.metadata.labels["pod-template-hash"] == template_hash
        (owner,) = pod.metadata.owner_references
        assert (owner.kind, owner.name) == ("ReplicaSet", replica_set.metadata.name)


def test_every_qos_class_runs(core, workloads):
    for workload in WORKLOADS:
        if workload.kind == "CronJob":
            continue
        pods = wait_for(f"{workload.namespace}/{workload.name} running", lambda w=workload: [
            p for p in running_pods(core, w.namespace) if p.metadata.name.startswith(w.name)
        ])
        assert {p.status.qos_class for p in pods} == {workload.qos_class}
        assert {running_containers(p) for p in pods} == {workload.containers}


def test_the_cronjob_starts_jobs_on_schedule(api_client, core, workloads):
    batch = client.BatchV1Api(api_client)

    def jobs() -> list[client.V1Job]:
        return batch.list_namespaced_job("kc-batch").items

    # the schedule fires at the next minute: up to ~70 s after the CronJob was created
    (job, *_) = wait_for("a Job of CronJob kc-batch/report", jobs, timeout=150)
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name) == ("CronJob", "report")
    base, _, scheduled = job.metadata.name.rpartition("-")
    assert base == "report" and int(scheduled) % 60 == 0  # 1.20 names Jobs in epoch seconds
    pod = wait_for("the Job's pod", lambda: core.list_namespaced_pod(
        "kc-batch", label_selector=f"job-name={job.metadata.name}").items)[0]
    assert pod.status.qos_class == "Burstable"


def test_the_chart_runs_its_daemonset_statefulset_rbac_service_and_secret(api_client, core,
                                                                        kubecarbon):
    assert kubecarbon["status"] == "deployed"
    apps = client.AppsV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    namespace = release.NAMESPACE
    daemonset = apps.read_namespaced_daemon_set("kubecarbon-agent", namespace)
    assert daemonset.status.number_ready == daemonset.status.desired_number_scheduled == 1
    (agent_container,) = daemonset.spec.template.spec.containers
    assert agent_container.image.startswith("kubecarbon-agent:")
    statefulset = apps.read_namespaced_stateful_set("kubecarbon-collector", namespace)
    assert statefulset.status.ready_replicas == 1
    assert statefulset.spec.template.spec.containers[0].image.startswith("kubecarbon:")
    assert rbac.read_cluster_role("kubecarbon-collector").rules
    assert rbac.read_cluster_role_binding("kubecarbon-collector").subjects[0].name == \
        "kubecarbon-collector"
    service = core.read_namespaced_service("kubecarbon-collector", namespace)
    assert service.spec.type == "ClusterIP" and service.spec.cluster_ip
    secret = core.read_namespaced_secret("kubecarbon-token", namespace)
    assert len(secret.data["token"]) > 40


def test_agents_deliver_to_the_collector_through_its_service(core, collector_url, node_name):
    # The agent's own counters (scraped at its pod IP, as Prometheus would) and the
    # collector's view of the node agree that reports flow.
    (agent,) = [p for p in running_pods(core, release.NAMESPACE)
                if p.metadata.labels.get("app.kubernetes.io/component") == "agent"]

    def delivered() -> bool:
        with urllib.request.urlopen(f"http://{agent.status.pod_ip}:9881/metrics",
                                    timeout=5) as reply:
            text = reply.read().decode()
        sent = [line for line in text.splitlines()
                if line.startswith("kubecarbon_agent_reports_sent_total ")]
        return bool(sent) and float(sent[0].split()[1]) >= 2

    wait_for("the agent's reports to be accepted", delivered, timeout=60)
    with urllib.request.urlopen(f"{collector_url}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    assert f'kubecarbon_node_logical_cpus{{node="{node_name}"' in metrics
