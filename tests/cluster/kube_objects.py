"""Objects in and out of the cluster, the way kubectl does it, with the official client."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient

FIELD_MANAGER = "kubecarbon-test"
MAX_RETRIES = 10  # client-go's for responses with Retry-After
WAIT_SECONDS = 180.0  # generous: the machine is shared; a pass never waits this long


def apply(api_client: client.ApiClient, objects: Iterable[dict[str, Any]]) -> None:
    """`kubectl apply --server-side -f` for each object, in order.

    Like kubectl (client-go), a request the server answers with Retry-After is
    sent again after that many seconds, up to 10 times: a pod created right after
    its namespace meets one until the namespace's default ServiceAccount has a token.
    """
    dynamic = DynamicClient(api_client)
    for obj in objects:
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        metadata = obj["metadata"]
        for attempt in range(MAX_RETRIES + 1):
            try:
                resource.server_side_apply(
                    body=obj, name=metadata["name"],
                    namespace=metadata.get("namespace") if resource.namespaced else None,
                    field_manager=FIELD_MANAGER, force_conflicts=True,
                )
                break
            except ApiException as exc:
                retry_after = (exc.headers or {}).get("Retry-After")
                if retry_after is None or attempt == MAX_RETRIES:
                    raise
                time.sleep(float(retry_after))


def put_secret(core: client.CoreV1Api, namespace: str, name: str, data: dict[str, bytes],
               kind: str = "Opaque") -> None:
    """Create the Secret, or replace its data keeping its metadata (Helm's labels and
    annotations on a Secret of the release)."""
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace), type=kind,
        data={key: base64.b64encode(raw).decode() for key, raw in data.items()})
    try:
        existing = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_secret(namespace, body)
        return
    body.metadata = existing.metadata
    core.replace_namespaced_secret(name, namespace, body)


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_SECONDS,
              interval: float = 0.5, explain: Callable[[], str] = lambda: "") -> Any:
    """Poll `check` until it returns something truthy; raise naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{explain()}")
        time.sleep(interval)


def running_pods(core: client.CoreV1Api, namespace: str | None = None) -> list[client.V1Pod]:
    pods = (core.list_namespaced_pod(namespace) if namespace
            else core.list_pod_for_all_namespaces()).items
    return [p for p in pods if p.status.phase == "Running"]


def ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())


def running_containers(pod: client.V1Pod) -> int:
    """Containers the kubelet reports running in the pod (init containers once done: none)."""
    return sum(1 for status in pod.status.container_statuses or () if status.state.running)


def describe_pods(core: client.CoreV1Api) -> str:
    lines = []
    for pod in core.list_pod_for_all_namespaces().items:
        states = [
            f"{s.name}:{next(k for k, v in s.state.to_dict().items() if v)}"
            for s in pod.status.container_statuses or ()
        ]
        lines.append(f"{pod.metadata.namespace}/{pod.metadata.name} {pod.status.phase} "
                     f"{pod.status.reason or ''} {' '.join(states)}")
    return "\n".join(lines)
