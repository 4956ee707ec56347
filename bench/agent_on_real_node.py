"""The agent's cost on a real node with ~100 pods, next to node_exporter's, in the same run.

Starts the cluster suite's single-node Kubernetes (tests/cluster/node_cluster.py:
kubelet 1.20 on containerd, cgroup v1), installs the chart with the agent at 1 s
windows, runs --pods one-container pods (a Deployment of the suite's idle busy loop),
and starts Debian's prometheus-node-exporter inside the node (the node's /proc,
/sys and network namespace, so it reports the pods' veth interfaces too), scraped
once a second. Over the same span: the agent pod's process and node_exporter's CPU
time from /proc/<pid>/task/*/schedstat, their RSS from /proc/<pid>/status. The
agent's cost per cycle includes delivery to the real collector through its Service.
Goals (issue 2): agent CPU per cycle <= 0.5x node_exporter's per scrape; RSS <= 40 MiB.
Also prints the memory of each node component's cgroup.

    .venv/bin/python bench/agent_on_real_node.py [--pods 100] [--seconds 60]   # as root
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from pathlib import Path

from agent_overhead import MIB, cpu_nanoseconds, ensure_node_exporter, status_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "cluster"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "k8s"))

import release  # noqa: E402
from kube_objects import apply, ready, running_pods, wait_for  # noqa: E402
from kubernetes import client, config  # noqa: E402
from node_cluster import LocalNodeCluster, missing_binaries  # noqa: E402
from oci_image import compile_static, write_image_archive  # noqa: E402
from workloads import BUSYLOOP_IMAGE  # noqa: E402

NAMESPACE = "kc-bench"
NODE_EXPORTER_PORT = 9100


def filler(pods: int) -> list[dict]:
    labels = {"app": "filler"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "filler", "namespace": NAMESPACE},
         "spec": {"replicas": pods, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "idle", "image": BUSYLOOP_IMAGE,
                                      "imagePullPolicy": "Never", "args": ["sleep"]}]}}}},
    ]


def agent_pid(cluster: LocalNodeCluster, core: client.CoreV1Api) -> int:
    """The agent's process on the host: the one in its pod's app container cgroup."""
    (pod,) = [p for p in running_pods(core, release.NAMESPACE)
              if p.metadata.labels.get("app.kubernetes.io/component") == "agent"]
    kubepods = cluster.sandbox.cgroup("cpuacct") / "kubepods"
    (pod_dir,) = [d for d in kubepods.rglob(f"pod{pod.metadata.uid}") if d.is_dir()]
    for container in (d for d in pod_dir.iterdir() if d.is_dir()):
        pids = (container / "cgroup.procs").read_text().split()
        if pids and Path(f"/proc/{pids[0]}/comm").read_text().strip() != "pause":
            return int(pids[0])
    raise RuntimeError(f"no agent process in {pod_dir}")


def reports_sent(pod_ip: str) -> float:
    with urllib.request.urlopen(f"http://{pod_ip}:9881/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("kubecarbon_agent_reports_sent_total "):
                return float(line.split()[1])
    raise RuntimeError("the agent exposes no kubecarbon_agent_reports_sent_total")


def component_memory(cluster: LocalNodeCluster) -> dict[str, int]:
    """Resident memory (anonymous, page cache left out) of each cgroup of the node, in bytes."""
    memory = cluster.sandbox.cgroup("memory")
    found = {}
    for directory in sorted(d for d in memory.iterdir() if d.is_dir()):
        for line in (directory / "memory.stat").read_text().splitlines():
            key, value = line.split()
            if key == "total_rss":
                found[directory.name] = int(value)
    return found


def measure(cluster: LocalNodeCluster, pods: int, seconds: int, exporter_binary: str) -> None:
    api = config.new_client_from_config(str(cluster.admin.kubeconfig))
    core = client.CoreV1Api(api)
    scratch = cluster.workdir / "bench"
    scratch.mkdir()
    binary = compile_static(REPO_ROOT / "tests" / "cluster" / "busyloop.c", scratch / "busyloop")
    cluster.import_images([
        write_image_archive(scratch / "busyloop.tar", BUSYLOOP_IMAGE, {"busyloop": binary},
                            entrypoint=["/busyloop"]),
        *release.image_archives(),
    ])
    values = release.release_values()
    values["agent"]["intervalSeconds"] = 1
    release.install(cluster.admin.kubeconfig, release.CHART_DIR, values)
    started = time.monotonic()
    apply(api, filler(pods))
    wait_for(f"{pods} filler pods Ready", lambda: sum(
        ready(p) for p in running_pods(core, NAMESPACE)) == pods, timeout=900)
    print(f"{pods} pods Ready {time.monotonic() - started:.0f} s after the Deployment")
    wait_for("kubecarbon Ready", lambda: all(ready(p) for p in running_pods(
        core, release.NAMESPACE)) and len(running_pods(core, release.NAMESPACE)) == 2)
    node_ip = cluster.slot.node_ip
    with (cluster.workdir / "logs" / "node-exporter.log").open("wb") as log:
        exporter = cluster.sandbox.run("node-exporter", [
            exporter_binary, f"--web.listen-address={node_ip}:{NODE_EXPORTER_PORT}"], log)
    try:
        def scrape() -> bool:
            try:
                with urllib.request.urlopen(
                        f"http://{node_ip}:{NODE_EXPORTER_PORT}/metrics", timeout=10) as reply:
                    reply.read()
                return True
            except OSError:
                return False

        wait_for("node_exporter", scrape, interval=0.1)
        agent = agent_pid(cluster, core)
        (agent_pod,) = [p for p in running_pods(core, release.NAMESPACE)
                        if p.metadata.labels.get("app.kubernetes.io/component") == "agent"]
        time.sleep(5)  # the agent's first windows with every pod, node_exporter warm
        sent_first = reports_sent(agent_pod.status.pod_ip)
        agent_first, exporter_first = cpu_nanoseconds(agent), cpu_nanoseconds(exporter.pid)
        for _ in range(seconds):
            time.sleep(1.0)
            scrape()
        agent_cpu = cpu_nanoseconds(agent) - agent_first
        exporter_cpu = cpu_nanoseconds(exporter.pid) - exporter_first
        cycles = reports_sent(agent_pod.status.pod_ip) - sent_first
        agent_rss, exporter_rss = status_bytes(agent, "VmRSS"), status_bytes(exporter.pid, "VmRSS")
    finally:
        exporter.terminate()
        exporter.wait(10)
    per_cycle = agent_cpu / cycles
    per_scrape = exporter_cpu / seconds
    node_pods = len(running_pods(core))
    print(f"real node: kubelet 1.20.2, containerd, cgroup v1; {node_pods} running pods "
          f"({pods} filler + workloads of kubecarbon); {seconds} s run")
    print(f"node_exporter: {per_scrape / 1e6:6.2f} ms CPU per scrape ({seconds} scrapes), "
          f"RSS {exporter_rss / MIB:5.1f} MiB")
    print(f"agent:         {per_cycle / 1e6:6.2f} ms CPU per cycle ({cycles:.0f} cycles, "
          f"delivery included), RSS {agent_rss / MIB:5.1f} MiB")
    ratio = per_cycle / per_scrape
    print(f"ratio agent CPU per cycle / node_exporter CPU per scrape: {ratio:.2f} (goal <= 0.5)")
    print(f"ratio agent RSS / node_exporter RSS: {agent_rss / exporter_rss:.2f}")
    print(f"agent RSS: {agent_rss / MIB:.1f} MiB (goal <= 40 MiB)")
    print("goals met" if ratio <= 0.5 and agent_rss <= 40 * MIB else "GOALS NOT MET")
    memory = component_memory(cluster)
    print("resident memory of the node's cgroups (MiB): " + ", ".join(
        f"{name} {used / MIB:.0f}" for name, used in memory.items()))
    print(f"containerd and its {node_pods} pod shims: {memory['containerd'] / node_pods / MIB:.1f}"
          " MiB per pod")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=60, help="length of the measurement")
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the node needs root")
    missing = missing_binaries()
    if missing:
        raise SystemExit(f"missing for the node: {', '.join(missing)}: run `make kube-node`")
    exporter_binary = ensure_node_exporter()
    cluster = LocalNodeCluster()
    try:
        cluster.start()
        print(f"node Ready {cluster.started_seconds['node ready']:.0f} s after start")
        measure(cluster, options.pods, options.seconds, exporter_binary)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
