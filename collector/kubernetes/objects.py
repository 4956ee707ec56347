"""Node and pod objects as the API server sends them (JSON dicts) -> NodeInfo and PodInfo.

Pure: no I/O. The fields read are the ones docs/kubernetes.md lists.
"""

# The official client ships py.typed but leaves most functions unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.utils import parse_quantity

from collector.kubernetes.requests import pod_requests
from collector.metadata import NodeInfo, PodInfo

log = logging.getLogger("collector.kubernetes")  # one logger for the package

INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")

# spec.providerID scheme -> provider name used by the model's coefficient tables
PROVIDER_ID_SCHEMES = {
    "aws": "aws",
    "gce": "gcp",
    "azure": "azure",
    "alicloud": "alibaba",
}
# Labels that managed node pools set even when providerID is empty (checked in order).
PROVIDER_LABEL_PREFIXES = (
    ("eks.amazonaws.com/", "aws"),
    ("cloud.google.com/gke-", "gcp"),
    ("kubernetes.azure.com/", "azure"),
    ("alibabacloud.com/", "alibaba"),
)

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
# The CronJob controller names each Job <cronjob>-<scheduled time since the epoch>: in
# minutes since Kubernetes 1.21 (CronJobControllerV2), in seconds before (the 1.20
# controller's getTimeHash; schedules are whole minutes, so a multiple of 60). Accept
# times between 2014 (Kubernetes' first release) and 2200.
CRONJOB_SUFFIX_MINUTES_RANGE = (23_140_800, 121_190_400)
CRONJOB_SUFFIX_SECONDS_RANGE = (23_140_800 * 60, 121_190_400 * 60)
BARE_POD_KIND = "Pod"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
# A pod in one of these phases has ended and no longer holds its requests on its node.
ENDED_POD_PHASES = frozenset({"Succeeded", "Failed"})


def _first_label(labels: Mapping[str, str], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = labels.get(key)
        if value:
            return value
    return None


def provider_of_node(provider_id: str | None, labels: Mapping[str, str]) -> str | None:
    """Cloud provider from `spec.providerID` ("aws:///eu-west-1a/i-0abc"), else from pool labels.

    An unknown scheme is passed through ("openstack", "kind"), so the profile
    resolver can match it; None when nothing identifies the provider.
    """
    if provider_id and "://" in provider_id:
        scheme = provider_id.split("://", 1)[0].lower()
        if scheme:
            return PROVIDER_ID_SCHEMES.get(scheme, scheme)
    for prefix, provider in PROVIDER_LABEL_PREFIXES:
        if any(key.startswith(prefix) for key in labels):
            return provider
    return None


def _quantity(value: object, what: str, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        log.warning("node %s: ignoring unparsable %s quantity %r", name, what, value)
        return None


def node_info_from_object(obj: Mapping[str, Any]) -> NodeInfo:
    """The fields of a Node object (as JSON) that select a power profile."""
    metadata = obj.get("metadata") or {}
    name = metadata["name"]
    labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    capacity = status.get("capacity") or {}
    allocatable = status.get("allocatable") or {}
    memory = _quantity(capacity.get("memory"), "memory", name)
    allocatable_memory = _quantity(allocatable.get("memory"), "allocatable memory", name)
    return NodeInfo(
        name=name,
        labels=labels,
        provider=provider_of_node(spec.get("providerID"), labels),
        instance_type=_first_label(labels, INSTANCE_TYPE_LABELS),
        region=_first_label(labels, REGION_LABELS),
        zone=_first_label(labels, ZONE_LABELS),
        cpu_capacity=_quantity(capacity.get("cpu"), "cpu", name),
        memory_capacity_bytes=int(memory) if memory is not None else None,
        cpu_allocatable=_quantity(allocatable.get("cpu"), "allocatable cpu", name),
        memory_allocatable_bytes=(
            int(allocatable_memory) if allocatable_memory is not None else None),
    )


def _is_cronjob_suffix(suffix: str) -> bool:
    if not suffix.isdigit():
        return False
    value = int(suffix)
    low, high = CRONJOB_SUFFIX_MINUTES_RANGE
    if low <= value <= high:
        return True
    low, high = CRONJOB_SUFFIX_SECONDS_RANGE
    return low <= value <= high and value % 60 == 0


def workload_of_pod(
    pod_name: str, labels: Mapping[str, str], owner_references: Sequence[Mapping[str, Any]]
) -> tuple[str, str]:
    """(kind, name) at the top of a pod's owner chain, from the pod alone.

    Watching ReplicaSets and Jobs would need more RBAC and more memory, so the
    step above them is inferred from names the controllers generate:
    a ReplicaSet named <deployment>-<pod-template-hash> belongs to Deployment
    <deployment>; a Job named <cronjob>-<minutes (or, before 1.21, seconds) since
    the epoch> to CronJob <cronjob>. Other controller kinds are reported as
    themselves; a pod without a controller, or a static pod (owned by its Node), is
    its own workload (kind "Pod").
    """
    owner = next((ref for ref in owner_references if ref.get("controller")), None)
    if owner is None and owner_references:
        owner = owner_references[0]
    if owner is None:
        job_name = _first_label(labels, JOB_NAME_LABELS)
        if job_name is None:
            return BARE_POD_KIND, pod_name
        owner = {"kind": "Job", "name": job_name}
    kind = str(owner.get("kind") or BARE_POD_KIND)
    name = str(owner.get("name") or pod_name)
    if kind == "Node":  # the mirror of a static pod: the pod is the workload
        return BARE_POD_KIND, pod_name
    if kind == "ReplicaSet":
        template_hash = labels.get(POD_TEMPLATE_HASH_LABEL)
        if template_hash and name.endswith("-" + template_hash):
            return "Deployment", name[: -len(template_hash) - 1]
    elif kind == "Job":
        base, dash, suffix = name.rpartition("-")
        if dash and base and _is_cronjob_suffix(suffix):
            return "CronJob", base
    return kind, name


def pod_info_from_object(obj: Mapping[str, Any]) -> PodInfo:
    """uid, namespace, name, workload, node and effective requests of a Pod object (as JSON)."""
    metadata = obj.get("metadata") or {}
    name = metadata["name"]
    labels = metadata.get("labels") or {}
    kind, workload = workload_of_pod(name, labels, metadata.get("ownerReferences") or ())
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    requests = pod_requests(spec, f"pod {name}")
    # Many pods share namespace and workload strings; interning keeps one copy.
    return PodInfo(
        uid=metadata["uid"],
        namespace=sys.intern(str(metadata.get("namespace") or "default")),
        name=name,
        workload_kind=sys.intern(kind),
        workload_name=sys.intern(workload),
        node_name=spec.get("nodeName") or None,
        cpu_request_cores=requests.cpu_cores,
        memory_request_bytes=requests.memory_bytes,
        holds_requests=status.get("phase") not in ENDED_POD_PHASES,
        ip=status.get("podIP") or None,
    )


def node_entry(obj: Mapping[str, Any]) -> tuple[str, NodeInfo, tuple[str, ...]]:
    """A node's table entry: (name, NodeInfo, no other names)."""
    info = node_info_from_object(obj)
    return info.name, info, ()


def pod_entry(obj: Mapping[str, Any]) -> tuple[str, PodInfo, tuple[str, ...]]:
    """A pod's table entry: (uid, PodInfo, the uid a static pod runs under, if any)."""
    info = pod_info_from_object(obj)
    # A static pod runs (and has its cgroup) under the uid in this annotation; the
    # API only shows its mirror pod, whose own uid differs.
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    static_uid = annotations.get(MIRROR_POD_ANNOTATION)
    return info.uid, info, (static_uid,) if static_uid else ()
