"""The pure parts of collector/kubernetes/: API JSON in, NodeInfo/PodInfo out (objects.py),
and the reflector's backoff.

Object shapes are those the 1.20 API server returns (see test_provider.py for
the same objects through a real server).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.kubernetes.objects import (
    CRONJOB_SUFFIX_MINUTES_RANGE,
    CRONJOB_SUFFIX_SECONDS_RANGE,
    node_info_from_object,
    pod_info_from_object,
    provider_of_node,
    workload_of_pod,
)
from collector.kubernetes.reflector import RETRY_JITTER
from collector.metadata import PodInfo
from kubecarbon.backoff import Backoff

DNS_LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)
POD_TEMPLATE_HASH = st.text(alphabet="bcdfghjklmnpqrstvwxz2456789", min_size=5, max_size=10)


@pytest.mark.parametrize(
    ("provider_id", "labels", "expected"),
    [
        ("aws:///eu-west-1a/i-0123456789abcdef0", {}, "aws"),
        ("gce://my-project/europe-west4-a/gke-pool-1-abcd", {}, "gcp"),
        (
            "azure:///subscriptions/0000/resourceGroups/mc_rg/providers/Microsoft.Compute/"
            "virtualMachineScaleSets/aks-nodepool1-123-vmss/virtualMachines/0",
            {},
            "azure",
        ),
        ("alicloud://cn-hangzhou.i-bp1abcdefgh", {}, "alibaba"),
        ("AWS:///us-east-1a/i-1", {}, "aws"),
        ("kind://docker/kind/kind-control-plane", {}, "kind"),  # passed through, not guessed
        ("", {"eks.amazonaws.com/nodegroup": "ng-1"}, "aws"),
        (None, {"cloud.google.com/gke-nodepool": "default-pool"}, "gcp"),
        (None, {"kubernetes.azure.com/agentpool": "nodepool1"}, "azure"),
        (None, {"alibabacloud.com/nodepool-id": "np1"}, "alibaba"),
        (None, {"kubernetes.io/hostname": "rack3-17"}, None),
        ("not-a-provider-id", {}, None),
    ],
)
def test_provider_of_node(provider_id: str | None, labels: dict[str, str], expected: str) -> None:
    assert provider_of_node(provider_id, labels) == expected


def test_node_capacity_quantities_and_unparsable_values(caplog: pytest.LogCaptureFixture) -> None:
    node = {
        "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "cn-shanghai-b"}},
        "status": {"capacity": {"cpu": "7910m", "memory": "64Gi"}},
    }
    info = node_info_from_object(node)
    assert info.cpu_capacity == pytest.approx(7.91)
    assert info.memory_capacity_bytes == 64 * 2**30
    assert info.zone == "cn-shanghai-b" and info.region is None

    node["status"] = {"capacity": {"cpu": "lots", "memory": "12Q"}}
    with caplog.at_level(logging.WARNING, logger="collector.kubernetes"):
        info = node_info_from_object(node)
    assert (info.cpu_capacity, info.memory_capacity_bytes) == (None, None)
    assert "node n1: ignoring unparsable cpu quantity 'lots'" in caplog.text
    assert "unparsable memory quantity '12Q'" in caplog.text


def test_objects_without_a_name_or_uid_are_rejected() -> None:
    with pytest.raises(KeyError):
        node_info_from_object({"metadata": {}})
    with pytest.raises(KeyError):
        pod_info_from_object({"metadata": {"name": "p", "namespace": "ns"}})


@given(deployment=DNS_LABEL, template_hash=POD_TEMPLATE_HASH)
def test_replicaset_named_after_the_pod_template_hash_is_a_deployment(
    deployment: str, template_hash: str
) -> None:
    owner = [{"kind": "ReplicaSet", "name": f"{deployment}-{template_hash}", "controller": True}]
    labels = {"pod-template-hash": template_hash}
    assert workload_of_pod("p", labels, owner) == ("Deployment", deployment)
    # Without the matching label it stays a ReplicaSet: no guessing from names alone
    assert workload_of_pod("p", {}, owner) == ("ReplicaSet", f"{deployment}-{template_hash}")


@given(
    cronjob=DNS_LABEL,
    minutes=st.integers(CRONJOB_SUFFIX_MINUTES_RANGE[0], CRONJOB_SUFFIX_MINUTES_RANGE[1]),
    other=st.one_of(
        st.integers(0, CRONJOB_SUFFIX_MINUTES_RANGE[0] - 1),
        st.integers(CRONJOB_SUFFIX_MINUTES_RANGE[1] + 1, CRONJOB_SUFFIX_SECONDS_RANGE[0] - 1),
        st.integers(CRONJOB_SUFFIX_SECONDS_RANGE[1] + 1, 10**12),
        # within the seconds range but not a whole minute: no schedule makes it
        st.integers(*CRONJOB_SUFFIX_SECONDS_RANGE).filter(lambda value: value % 60 != 0),
    ),
)
def test_job_named_after_a_schedule_time_is_a_cronjob(
    cronjob: str, minutes: int, other: int
) -> None:
    scheduled = [{"kind": "Job", "name": f"{cronjob}-{minutes}", "controller": True}]
    assert workload_of_pod("p", {}, scheduled) == ("CronJob", cronjob)
    # Kubernetes 1.20 and older name the Job after the scheduled time in seconds
    scheduled_before_1_21 = [{"kind": "Job", "name": f"{cronjob}-{minutes * 60}",
                              "controller": True}]
    assert workload_of_pod("p", {}, scheduled_before_1_21) == ("CronJob", cronjob)
    hand_named = [{"kind": "Job", "name": f"{cronjob}-{other}", "controller": True}]
    assert workload_of_pod("p", {}, hand_named) == ("Job", f"{cronjob}-{other}")


def test_owner_chain_edge_cases() -> None:
    # A Job's pod whose owner reference was removed still names its Job in a label
    assert workload_of_pod("p", {"batch.kubernetes.io/job-name": "backup"}, []) == ("Job", "backup")
    # The controller reference wins over other owners
    owners = [
        {"kind": "ConfigMap", "name": "cm"},
        {"kind": "StatefulSet", "name": "kafka", "controller": True},
    ]
    assert workload_of_pod("kafka-0", {}, owners) == ("StatefulSet", "kafka")
    # A custom controller is reported as itself
    assert workload_of_pod("p", {}, [{"kind": "Rollout", "name": "shop", "controller": True}]) == (
        "Rollout",
        "shop",
    )
    assert workload_of_pod("static-etcd", {}, []) == ("Pod", "static-etcd")
    # A static pod's mirror is owned by its Node: the pod is the workload
    mirror_owner = [{"kind": "Node", "name": "cp-1", "controller": True}]
    assert workload_of_pod("kube-apiserver-cp-1", {}, mirror_owner) == (
        "Pod",
        "kube-apiserver-cp-1",
    )


@given(
    name=st.text(min_size=1, max_size=20),
    labels=st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=4),
    owners=st.lists(
        st.dictionaries(
            st.sampled_from(["kind", "name", "controller", "uid"]),
            st.one_of(st.text(max_size=12), st.booleans(), st.none()),
        ),
        max_size=3,
    ),
)
def test_any_owner_references_give_a_workload(
    name: str, labels: dict[str, str], owners: list[dict[str, object]]
) -> None:
    kind, workload = workload_of_pod(name, labels, owners)
    assert kind and workload


def test_pod_info_interns_repeated_strings() -> None:
    def pod(uid: str) -> dict[str, object]:
        return {
            "metadata": {
                "name": f"web-{uid}",
                "uid": uid,
                "namespace": "".join(["pay", "ments"]),  # a fresh string object each time
                "labels": {"pod-template-hash": "5d4b8"},
                "ownerReferences": [
                    {"kind": "ReplicaSet", "name": "web-5d4b8", "controller": True}
                ],
            }
        }

    first, second = pod_info_from_object(pod("a")), pod_info_from_object(pod("b"))
    assert (first.namespace, first.workload_kind, first.workload_name) == (
        "payments",
        "Deployment",
        "web",
    )
    assert first.namespace is second.namespace and first.workload_name is second.workload_name


@given(seed=st.integers(0, 2**32), initial=st.floats(0.01, 5), cap=st.floats(5, 120))
def test_backoff_doubles_with_jitter_up_to_the_cap(seed: int, initial: float, cap: float) -> None:
    backoff = Backoff(initial, cap, jitter=RETRY_JITTER, rng=random.Random(seed))
    for attempt in range(40):
        ceiling = min(cap, initial * 2**attempt)
        assert ceiling / 2 <= backoff.next_delay_seconds() <= ceiling
    backoff.reset()
    assert initial / 2 <= backoff.next_delay_seconds() <= initial


def test_backoff_jitter_spreads_reconnects() -> None:
    delays = {
        round(Backoff(1.0, 30.0, jitter=RETRY_JITTER, rng=random.Random(seed))
              .next_delay_seconds(), 6)
        for seed in range(50)
    }
    assert len(delays) > 40  # 50 collectors do not all retry at the same instant


FIXTURES = Path(__file__).parent / "fixtures"


def test_real_api_responses_parse_to_profile_and_owner() -> None:
    # Objects as kube-apiserver 1.20.2 returned them (managedFields and all)
    node = json.loads((FIXTURES / "node-from-kube-apiserver-1.20.2.json").read_text())
    info = node_info_from_object(node)
    assert (info.name, info.provider, info.instance_type) == (
        "ip-10-0-1-17.eu-west-1.compute.internal",
        "aws",
        "m5.2xlarge",
    )
    assert (info.region, info.zone) == ("eu-west-1", "eu-west-1a")
    assert (info.cpu_capacity, info.memory_capacity_bytes) == (8.0, 32408564 * 1024)

    pod = json.loads((FIXTURES / "pod-from-kube-apiserver-1.20.2.json").read_text())
    assert pod_info_from_object(pod) == PodInfo(
        uid=pod["metadata"]["uid"],
        namespace="payments",
        name="checkout-5d4b8c7f9-x7k2p",
        workload_kind="Deployment",
        workload_name="checkout",
        node_name="ip-10-0-1-17.eu-west-1.compute.internal",
        cpu_request_cores=0.6,  # checkout 500m + envoy 100m
        memory_request_bytes=float(1024 * 2**20 + 128 * 2**20),
        ip="10.0.1.143",  # status.podIP: how collector replicas find each other
    )
    assert (info.cpu_allocatable, info.memory_allocatable_bytes) == (
        7.91, 31391732 * 1024)
