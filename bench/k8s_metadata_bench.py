"""Cost of keeping pod metadata: the provider's parse against the client's typed objects.

    .venv/bin/python bench/k8s_metadata_bench.py [--pods 20000] [--repeats 5]

The provider lists and watches every pod of the cluster. It parses the API's JSON
with orjson and keeps one small PodInfo per pod (collector/kubernetes/objects.py). The
reference, measured in the same run on the same bytes, is what the official
client's typed path does (Watch(deserialize=True), SharedInformer):
`ApiClient.deserialize` of the same PodList into V1Pod objects. Both times are
medians of alternating runs; memory is what each keeps per pod after the list
bytes are dropped (tracemalloc). The pod is a real API response
(tests/k8s/fixtures/pod-from-kube-apiserver-1.20.2.json) with a fresh uid and name
per copy.
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from benchkit import alternating_medians
from kubernetes import client

from collector.kubernetes.objects import pod_info_from_object

FIXTURE = (
    Path(__file__).resolve().parents[1]
    / "tests"
    / "k8s"
    / "fixtures"
    / "pod-from-kube-apiserver-1.20.2.json"
)


def pod_list_bytes(pods: int) -> bytes:
    template = json.loads(FIXTURE.read_text())
    items = []
    for index in range(pods):
        pod = json.loads(json.dumps(template))
        pod["metadata"]["uid"] = str(uuid.UUID(int=index))
        pod["metadata"]["name"] = f"checkout-5d4b8c7f9-{index:05d}"
        items.append(pod)
    body = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}}
    return orjson.dumps({**body, "items": items})


def provider_table(data: bytes) -> dict[str, Any]:
    table = {}
    for item in orjson.loads(data)["items"]:
        info = pod_info_from_object(item)
        table[info.uid] = info
    return table


def typed_table(data: bytes) -> dict[str, Any]:
    pod_list = client.ApiClient().deserialize(data.decode(), "V1PodList", "application/json")
    return {pod.metadata.uid: pod for pod in pod_list.items}


def retained_bytes(build: Callable[[bytes], dict[str, Any]], data: bytes) -> int:
    gc.collect()
    tracemalloc.start()
    table = build(data)
    gc.collect()
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(table) > 0
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    data = pod_list_bytes(args.pods)
    assert len(provider_table(data)) == len(typed_table(data)) == args.pods
    ours, reference = alternating_medians(
        lambda: provider_table(data), lambda: typed_table(data), args.repeats,
        warm_up=False, collect_garbage=True,
    )
    ours_bytes = retained_bytes(provider_table, data)
    reference_bytes = retained_bytes(typed_table, data)
    per_pod = len(data) / args.pods
    print(f"PodList: {args.pods} pods, {len(data) / 2**20:.1f} MiB of JSON ({per_pod:.0f} B/pod)")
    print(f"{'case':<44} {'median ms':>10} {'B per pod kept':>15}")
    print(f"{'provider: orjson + PodInfo':<44} {ours * 1e3:>10.1f} {ours_bytes / args.pods:>15.0f}")
    print(
        f"{'reference: ApiClient.deserialize -> V1Pod':<44} {reference * 1e3:>10.1f} "
        f"{reference_bytes / args.pods:>15.0f}"
    )
    print(
        f"ratio provider/reference: time {ours / reference:.3f}, "
        f"memory {ours_bytes / reference_bytes:.3f}"
    )


if __name__ == "__main__":
    main()
