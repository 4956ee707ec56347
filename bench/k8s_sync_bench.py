"""Time for the provider's first complete view of a cluster, against the raw list it needs.

    .venv/bin/python bench/k8s_sync_bench.py [--pods 3000] [--repeats 5]

Starts the test cluster of tests/k8s (etcd + the kube-apiserver built by
`make kube-apiserver`), creates `--pods` pods on 50 nodes, then measures,
alternately:

- provider: a fresh KubernetesMetadataProvider (default WatchSettings: pages of
  500) from start() until status().synced, both resources listed and parsed;
- reference: the same paginated GETs of nodes and pods with the same client,
  reading the bytes and parsing nothing: what the API server and the network cost
  before any of the provider's work.

The ratio is what the provider adds on top of fetching the data.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "k8s"))

from k8s_harness import APISERVER_VERSION, find_etcd, local_cluster
from kubernetes import client, config

from collector.kubernetes import KubernetesMetadataProvider, load_api_client

APISERVER = Path(f"/var/cache/kubecarbon/kube-apiserver-{APISERVER_VERSION}/kube-apiserver")
NODES = 50


def populate(core: client.CoreV1Api, pods: int) -> None:
    core.create_namespace({"metadata": {"name": "bench"}})
    for index in range(NODES):
        core.create_node(
            {
                "metadata": {
                    "name": f"node-{index}",
                    "labels": {"node.kubernetes.io/instance-type": "m5.2xlarge"},
                }
            }
        )

    def create(index: int) -> None:
        core.create_namespaced_pod(
            "bench",
            {
                "metadata": {
                    "name": f"web-5d4b8c7f9-{index:05d}",
                    "labels": {"app": "web", "pod-template-hash": "5d4b8c7f9"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": "web-5d4b8c7f9",
                            "uid": "0b7e2c9a-5a1d-4c2b-8f3e-6d9a1b2c3d4e",
                            "controller": True,
                        }
                    ],
                },
                "spec": {
                    "nodeName": f"node-{index % NODES}",
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.example.com/shop/web:2.14.1",
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        }
                    ],
                },
            },
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(pods)))


def provider_sync_seconds(kubeconfig: Path) -> float:
    api_client, _ = load_api_client(str(kubeconfig))
    provider = KubernetesMetadataProvider(api_client)
    start = time.perf_counter()
    provider.start()
    if not provider.wait_synced(120):
        raise RuntimeError(provider.status().detail)
    elapsed = time.perf_counter() - start
    provider.stop()
    return elapsed


def raw_list_seconds(core: client.CoreV1Api) -> float:
    start = time.perf_counter()
    for list_function in (core.list_node, core.list_pod_for_all_namespaces):
        token = None
        while True:
            response = list_function(limit=500, _continue=token, _preload_content=False)
            body = response.data
            response.release_conn()
            # the continue token is the one field read: finding it is not parsing
            marker = body.find(b'"continue":"')
            if marker < 0:
                break
            token = body[marker + 12 : body.index(b'"', marker + 12)].decode()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    etcd = find_etcd()
    if not APISERVER.is_file() or etcd is None:
        raise SystemExit(f"needs {APISERVER} and etcd: run `make kube-apiserver`")
    workdir = Path(tempfile.mkdtemp(prefix="kubecarbon-sync-bench-"))
    try:
        with local_cluster(workdir, APISERVER, etcd) as cluster:
            api_client = config.new_client_from_config(str(cluster.admin.kubeconfig))
            core = client.CoreV1Api(api_client)
            started = time.perf_counter()
            populate(core, args.pods)
            created_seconds = time.perf_counter() - started
            print(f"created {NODES} nodes and {args.pods} pods in {created_seconds:.1f} s")
            provider_times, raw_times = [], []
            for _ in range(args.repeats):
                provider_times.append(provider_sync_seconds(cluster.admin.kubeconfig))
                raw_times.append(raw_list_seconds(core))
            ours, reference = statistics.median(provider_times), statistics.median(raw_times)
            print(f"provider start -> synced: median {ours * 1e3:.0f} ms")
            print(f"reference raw paginated lists: median {reference * 1e3:.0f} ms")
            print(f"ratio provider/reference: {ours / reference:.2f}")
            api_client.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
