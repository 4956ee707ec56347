"""The workloads the cluster suite runs, with the CPU each should use.

Three namespaces, each workload kind the collector names differently, all
three QoS classes, and CPU busy loops under CPU limits, so a limit gives the
exact rate a pod must use (its CFS quota) and the kernel's counters give the
rest:

    kc-shop   Deployment web (2 replicas, Guaranteed, 150m each: 0.30 CPU)
              Deployment cache (1 replica, BestEffort, two idle containers)
    kc-batch  CronJob report (every minute, Burstable: 50m request, 250m limit;
              each Job spins 15 s, then idles 12 s so its last counter is read)
    kc-tools  Pod probe (bare, Burstable: 100m CPU request and limit, no memory limit)

Every image is the suite's own static busy loop, imported into the node
(`imagePullPolicy: Never`: there is no registry to pull from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BUSYLOOP_IMAGE = "localhost/kubecarbon-test/busyloop:1"
JOB_SPIN_SECONDS = 15
JOB_IDLE_SECONDS = 12


@dataclass(frozen=True)
class Workload:
    namespace: str
    kind: str  # as the collector names it: Deployment, CronJob or Pod
    name: str
    qos_class: str
    containers: int  # app containers per pod
    pods: int  # running pods when settled (a CronJob: at most one Job at a time)
    cpu_limit_cores: float | None  # per pod; None: no limit
    spins: bool  # burns CPU up to its limit


WORKLOADS = (
    Workload("kc-shop", "Deployment", "web", "Guaranteed", 1, 2, 0.150, True),
    Workload("kc-shop", "Deployment", "cache", "BestEffort", 2, 1, None, False),
    Workload("kc-batch", "CronJob", "report", "Burstable", 1, 1, 0.250, True),
    Workload("kc-tools", "Pod", "probe", "Burstable", 1, 1, 0.100, True),
)
NAMESPACES = sorted({w.namespace for w in WORKLOADS})


def _container(name: str, args: list[str], resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "image": BUSYLOOP_IMAGE,
        "imagePullPolicy": "Never",
        "args": args,
        "resources": resources,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": 65534},
    }


def _guaranteed(cpu: str) -> dict[str, Any]:
    both = {"cpu": cpu, "memory": "16Mi"}
    return {"requests": both, "limits": both}


def manifests() -> list[dict[str, Any]]:
    """The objects to create, namespaces first."""
    labels = {"app.kubernetes.io/part-of": "kubecarbon-test"}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        for name in NAMESPACES
    ]
    web_labels = {"app": "web"}
    objects.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "kc-shop"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": web_labels},
            "template": {"metadata": {"labels": web_labels}, "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [_container("spin", ["spin"], _guaranteed("150m"))],
            }},
        },
    })
    cache_labels = {"app": "cache"}
    objects.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cache", "namespace": "kc-shop"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": cache_labels},
            "template": {"metadata": {"labels": cache_labels}, "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [_container("main", ["sleep"], {}),
                               _container("sidecar", ["sleep"], {})],
            }},
        },
    })
    objects.append({
        "apiVersion": "batch/v1beta1", "kind": "CronJob",  # batch/v1 arrives in 1.21
        "metadata": {"name": "report", "namespace": "kc-batch"},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 2,
                "containers": [_container(
                    "spin", ["spin", str(JOB_SPIN_SECONDS), str(JOB_IDLE_SECONDS)],
                    {"requests": {"cpu": "50m", "memory": "16Mi"},
                     "limits": {"cpu": "250m", "memory": "16Mi"}},
                )],
            }}}},
        },
    })
    objects.append({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probe", "namespace": "kc-tools"},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [_container("spin", ["spin"], {
                "requests": {"cpu": "100m", "memory": "16Mi"}, "limits": {"cpu": "100m"}})],
        },
    })
    return objects


# Short-lived bare pods for tests/cluster/test_pod_churn.py, in a namespace of their own.
CHURN_NAMESPACE = "kc-churn"
CHURN_CPU_LIMIT_CORES = 0.1


def churn_pod(name: str, burn_cpu_seconds: float) -> dict[str, Any]:
    """A Burstable pod that burns a known amount of CPU under a 100m limit, then exits."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": CHURN_NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "kubecarbon-test"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [_container("burn", ["burn", str(burn_cpu_seconds)], {
                "requests": {"cpu": "20m", "memory": "16Mi"},
                "limits": {"cpu": f"{CHURN_CPU_LIMIT_CORES * 1000:.0f}m", "memory": "16Mi"}})],
        },
    }
