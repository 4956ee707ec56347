"""containerd and the kubelet restarted under a running agent, as a node upgrade does.

Each is stopped with SIGTERM and started again with the same configuration and
state (node_cluster.py's `restart`), one after the other, with agent windows
before, between and after. The pods keep running (containerd's shims and the
pods outlive containerd; the kubelet finds its pods again), and so must the agent:

- the agent's pod is the same, its container the same and not restarted;
- its windows stay contiguous: the collector's embodied CO2e grows by a constant
  rate per second of window, so its increase over the span, divided by that rate,
  is the seconds the applied windows cover, which must equal the span from the
  first window end to the last (a gap would make it shorter, a window counted
  twice longer); no report was rejected (a negative delta would be) and no
  counter went down;
- per pod, the CPU-seconds the collector counted over the span match the kernel's
  within the suite's tolerance (kernel_truth.py), so nothing was counted twice.
"""

from __future__ import annotations

import itertools
import statistics

import pytest
import release
from kernel_truth import (
    ABSOLUTE_FLOOR_CPU_SECONDS,
    CPU_TOLERANCE,
    GROUND_TRUTH_TABLES,
    CollectorSample,
    Row,
    format_table,
)
from kube_objects import ready, wait_for
from kubernetes import client
from node_cluster import LocalNodeCluster
from workloads import NAMESPACES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RESTARTED = ("containerd", "kubelet")
WINDOWS_BETWEEN = 1  # agent windows applied before, between and after the restarts
COVERAGE_TOLERANCE_SECONDS = 0.001  # float sums of window lengths, nothing more


def long_running_pods(core: client.CoreV1Api) -> dict[str, client.V1Pod]:
    """Ready pods of kubecarbon and the workloads that are not a Job's, by uid."""
    pods = {}
    for namespace in (*NAMESPACES, release.NAMESPACE):
        for pod in core.list_namespaced_pod(namespace).items:
            owners = pod.metadata.owner_references or ()
            if ready(pod) and not any(o.kind == "Job" for o in owners):
                pods[pod.metadata.uid] = pod
    return pods


def container_states(pod: client.V1Pod) -> list[tuple[str, str, int]]:
    return [(s.name, s.container_id, s.restart_count) for s in pod.status.container_statuses]


def embodied_grams_per_window_second(samples: list[CollectorSample]) -> float:
    """Embodied grams per second of window, from windows the recorder saw one at a time."""
    rates = [(b.node_embodied_co2e_grams - a.node_embodied_co2e_grams)
             / (b.window_end - a.window_end)
             for a, b in itertools.pairwise(samples)
             if b.reports.get("accepted", 0) - a.reports.get("accepted", 0) == 1]
    assert rates, "no window was seen on its own"
    assert max(rates) - min(rates) <= 1e-9 * max(rates), rates
    return statistics.median(rates)


def decreasing_counters(samples: list[CollectorSample]) -> list[str]:
    found = []
    for a, b in itertools.pairwise(samples):
        for key, value in a.pod_cpu.items():
            if b.pod_cpu.get(key, value) < value:
                found.append(f"pod {key} {value} -> {b.pod_cpu[key]}")
        for namespace, value in a.namespace_cpu.items():
            if b.namespace_cpu.get(namespace, value) < value:
                found.append(f"namespace {namespace} {value} -> {b.namespace_cpu[namespace]}")
        if b.node_embodied_co2e_grams < a.node_embodied_co2e_grams:
            found.append(f"embodied {a.node_embodied_co2e_grams} -> {b.node_embodied_co2e_grams}")
    return found


def test_containerd_and_kubelet_restarts_keep_the_agent_reporting_contiguous_windows(
        cluster, core, recording):
    if not isinstance(cluster, LocalNodeCluster):
        pytest.skip("restarts the node's own processes: only with the local cluster")
    kernel, collector = recording
    before = long_running_pods(core)
    agents = [p for p in before.values() if p.metadata.namespace == release.NAMESPACE
              and p.metadata.labels.get("app.kubernetes.io/component") == "agent"]
    assert len(agents) == 1, [p.metadata.name for p in agents]
    first = collector.wait_windows(WINDOWS_BETWEEN)
    downtime = {}
    for name in RESTARTED:
        downtime[name] = cluster.restart(name)
        collector.wait_windows(WINDOWS_BETWEEN)

    def all_ready_again() -> bool:
        return long_running_pods(core).keys() >= before.keys()

    wait_for("every pod Ready again after the restarts", all_ready_again,
             explain=lambda: ", ".join(p.metadata.name for uid, p in before.items()
                                       if uid not in long_running_pods(core)))
    after = long_running_pods(core)
    last = collector.wait_windows(WINDOWS_BETWEEN)

    samples = [s for s in collector.samples if first.window_end <= s.window_end <= last.window_end]
    span = last.window_end - first.window_end
    covered = ((last.node_embodied_co2e_grams - first.node_embodied_co2e_grams)
               / embodied_grams_per_window_second(collector.samples))
    accepted = last.reports.get("accepted", 0) - first.reports.get("accepted", 0)
    rejected = last.reports.get("rejected", 0) - first.reports.get("rejected", 0)
    lengths = [b.window_end - a.window_end for a, b in itertools.pairwise(samples)]

    window_ends = [s.window_end for s in samples]
    rows = []
    for uid in sorted(kernel.uids_within(first.window_end, last.window_end),
                      key=lambda u: (kernel.identities[u].namespace, kernel.identities[u].name)):
        who = kernel.identities[uid]
        key = (who.namespace, who.name)
        rows.append(Row("pod", "/".join(key), kernel.pod_cpu_seconds(uid, window_ends),
                        last.pod_cpu.get(key, 0.0) - first.pod_cpu.get(key, 0.0)))
    agent = agents[0]
    table = "\n".join([
        "containerd and kubelet restarted under the agent (test_node_restarts.py)",
        "down: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in downtime.items()),
        f"span {span:.3f} s: {accepted:.0f} reports accepted, {rejected:.0f} rejected; "
        f"windows cover {covered:.3f} s (gap {span - covered:+.3f} s); "
        f"{len(lengths)} window ends seen, longest {max(lengths):.2f} s",
        f"agent pod {agent.metadata.name}: containers before {container_states(agent)}, "
        f"after {container_states(after.get(agent.metadata.uid, agent))}",
        format_table(rows, f"per pod over the span, tolerance {CPU_TOLERANCE:.0%} "
                           f"or {ABSOLUTE_FLOOR_CPU_SECONDS} CPU-s"),
    ])
    GROUND_TRUTH_TABLES.append(table)
    print(table)

    assert agent.metadata.uid in after, f"the agent's pod was replaced\n{table}"
    assert container_states(after[agent.metadata.uid]) == container_states(agent), table
    assert rejected == 0, table
    assert accepted >= len(lengths), table
    assert abs(span - covered) <= COVERAGE_TOLERANCE_SECONDS, table
    assert not decreasing_counters(samples), decreasing_counters(samples)
    assert rows and all(row.ok for row in rows), f"beyond tolerance:\n{table}"
