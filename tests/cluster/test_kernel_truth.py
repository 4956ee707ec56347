"""kubecarbon's numbers against the kernel's own counters, over the same windows.

Per pod, namespace and workload, the CPU-seconds the collector published must be
within 3 % of what the pods' `cpuacct.usage` counted over the agent's windows
(kernel_truth.py says how those windows are found), and for pods that spin under
a CPU limit for the whole span, within 3 % of limit * time as well. The node's
utilisation must be within 3 % of /proc/stat's over the same windows, and the
running containers the collector shows must be the pods' own containers as the
kubelet reports them. The span covers at least one whole Job of the CronJob.
Only window ends the kernel's own reads bracket closely are compared: the ground
truth between two reads is a straight line, and a loaded node's busy time is not.
The table of every comparison ends the run's output.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from pathlib import Path

import pytest
from kernel_truth import (
    CPU_TOLERANCE,
    GROUND_TRUTH_TABLES,
    CollectorRecorder,
    CollectorSample,
    KernelRecorder,
    Row,
    format_table,
    sum_by,
)
from kube_objects import ready, running_containers, running_pods, wait_for
from release import AGENT_INTERVAL_SECONDS
from workloads import WORKLOADS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MIN_SPAN_SECONDS = 30.0
# A window longer than this missed a report between two scrapes: left out of the
# utilisation comparison (its gauge only covers the last of the merged windows).
MAX_WINDOW_SECONDS = 1.5 * AGENT_INTERVAL_SECONDS
# A window end compared only where the kernel was read on both sides within this:
# between two reads the ground truth is a straight line, and the node's busy time is not.
MAX_BRACKET_SECONDS = 0.5
MIN_CONTAINER_CHECKS = 3
KUBELET_STILL_SECONDS = 2.0  # its relist period (1 s) twice
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")  # containerd's cgroupfs container directories


def _whole_cronjob_pod_within(kernel: KernelRecorder, start: float, end: float) -> bool:
    for uid, identity in list(kernel.identities.items()):
        seen = kernel.seen(uid)
        if identity.workload_kind == "CronJob" and seen and start < seen[0] and seen[1] < end - 1:
            return True
    return False


def _compared_samples(kernel: KernelRecorder, collector: CollectorRecorder
                      ) -> list[CollectorSample]:
    """The collector's samples from the first to the last whose window end the kernel's
    reads bracket closely."""
    samples = [s for s in collector.samples if kernel.samples and
               s.window_end > kernel.samples[0].wall + 0.5]
    tight = [i for i, s in enumerate(samples)
             if kernel.bracket_seconds(s.window_end) <= MAX_BRACKET_SECONDS]
    return samples[tight[0]:tight[-1] + 1] if tight else []


def _span_ready(kernel: KernelRecorder, collector: CollectorRecorder) -> bool:
    samples = _compared_samples(kernel, collector)
    if len(samples) < 3:
        return False
    start, end = samples[0].window_end, samples[-1].window_end
    return end - start >= MIN_SPAN_SECONDS and _whole_cronjob_pod_within(kernel, start, end)


def test_cpu_per_pod_namespace_and_workload_and_the_node_match_the_kernel(recording):
    kernel, collector = recording
    wait_for("a recorded span covering a whole CronJob run",
             lambda: _span_ready(kernel, collector), timeout=240,
             explain=lambda: "\n".join(collector.errors[-5:]))
    samples = _compared_samples(kernel, collector)
    first, last = samples[0], samples[-1]
    window_ends = [s.window_end for s in samples]
    span = last.window_end - first.window_end

    uids = kernel.uids_within(first.window_end, last.window_end)
    truth = {uid: kernel.pod_cpu_seconds(uid, window_ends) for uid in uids}
    identity = kernel.identities
    rows: list[Row] = []
    limits = {(w.namespace, w.kind, w.name): w.cpu_limit_cores for w in WORKLOADS if w.spins}
    for uid in sorted(uids, key=lambda u: (identity[u].namespace, identity[u].name)):
        who = identity[uid]
        measured = (last.pod_cpu.get((who.namespace, who.name), 0.0)
                    - first.pod_cpu.get((who.namespace, who.name), 0.0))
        seen = kernel.seen(uid)
        assert seen is not None
        whole_span = seen[0] < first.window_end and seen[1] > last.window_end
        limit = limits.get((who.namespace, who.workload_kind, who.workload))
        rows.append(Row("pod", f"{who.namespace}/{who.name}", truth[uid], measured,
                        limit_expected=limit * span if limit and whole_span else None))
    by_namespace = sum_by((identity[u].namespace, truth[u]) for u in uids)
    for namespace, expected in sorted(by_namespace.items()):
        measured = last.namespace_cpu.get(namespace, 0.0) - first.namespace_cpu.get(namespace, 0.0)
        rows.append(Row("namespace", namespace, expected, measured))
    workload_truth = sum_by(
        ("/".join((identity[u].namespace, identity[u].workload_kind, identity[u].workload)),
         truth[u]) for u in uids)
    # a workload the collector names differently appears twice: truth without measure,
    # measure without truth
    for key in {"/".join(k) for k in last.workload_cpu} - set(workload_truth):
        workload_truth[key] = 0.0
    for key, expected in sorted(workload_truth.items()):
        namespace, kind, name = key.split("/")
        measured = (last.workload_cpu.get((namespace, kind, name), 0.0)
                    - first.workload_cpu.get((namespace, kind, name), 0.0))
        rows.append(Row("workload", key, expected, measured))

    brackets = [kernel.bracket_seconds(s.window_end) for s in samples]
    windows = [(a, b) for (a, b), (bracket_a, bracket_b)
               in zip(itertools.pairwise(samples), itertools.pairwise(brackets), strict=True)
               if b.window_end - a.window_end <= MAX_WINDOW_SECONDS
               and max(bracket_a, bracket_b) <= MAX_BRACKET_SECONDS]
    seconds = sum(b.window_end - a.window_end for a, b in windows)
    measured_busy = sum(b.node_usage_ratio * (b.window_end - a.window_end) for a, b in windows)
    kernel_busy = sum(kernel.busy_share(a.window_end, b.window_end)
                      * (b.window_end - a.window_end) for a, b in windows)
    rows.append(Row("node", f"utilisation, {len(windows)} windows", kernel_busy / seconds,
                    measured_busy / seconds))
    per_window = [
        f"  window to {b.window_end:.2f} ({b.window_end - a.window_end:.2f} s): collector "
        f"{b.node_usage_ratio:.3f}, kernel {kernel.busy_share(a.window_end, b.window_end):.3f} "
        f"(/proc/stat's columns {100 * kernel.excess_ticks(a.window_end, b.window_end):+.1f} % "
        f"of the wall time)"
        for a, b in windows]

    delivery = sorted(s.scraped_at - s.window_end for s in samples)
    table = format_table(rows, f"span {span:.1f} s, {len(samples) - 1} agent windows, "
                               f"tolerance {CPU_TOLERANCE:.0%}; kernel reads around a window end "
                               f"{max(brackets[0], brackets[-1]):.2f} s apart at most at the "
                               f"span's ends, {max(brackets):.2f} s anywhere; a window seen "
                               f"{delivery[0]:.2f} to {delivery[-1]:.2f} s after its end")
    table += "\nthe node's utilisation per window:\n" + "\n".join(per_window)
    GROUND_TRUTH_TABLES.append(table)
    print(table)
    bad = [row for row in rows if not row.ok]
    beyond_limits = [row for row in rows if row.limit_expected is not None and (
        abs(row.expected - row.limit_expected) > CPU_TOLERANCE * row.limit_expected
        or abs(row.measured - row.limit_expected) > CPU_TOLERANCE * row.limit_expected)]
    assert not bad and not beyond_limits, f"beyond tolerance:\n{table}"
    # every workload under the name of its Deployment, CronJob or bare Pod, idle ones too
    named = set(last.workload_cpu)
    for workload in WORKLOADS:
        assert (workload.namespace, workload.kind, workload.name) in named, sorted(named)


def test_running_containers_are_the_pods_own_as_the_kubelet_counts_them(recording):
    # The kubelet's own gauges (its /metrics, from the runtime's view it relists every
    # second) against the collector's, at window ends around which the kubelet's counts
    # held still: a pod starting or ending inside the margin is left out.
    _, collector = recording
    checks: list[tuple[float, float, float, float, float]] = []

    def enough() -> bool:
        checks.clear()
        for sample in collector.samples:
            view = collector.kubelet_view_around(sample.window_end, KUBELET_STILL_SECONDS)
            if view is not None:
                checks.append((sample.window_end, sample.node_containers, view.containers,
                               sample.node_pods, view.pods))
        return len(checks) >= MIN_CONTAINER_CHECKS

    wait_for("moments when the kubelet's counts held still", enough, timeout=120,
             explain=lambda: "\n".join(collector.errors[-5:]))
    assert [(c[1], c[3]) for c in checks] == [(c[2], c[4]) for c in checks], checks


def test_every_pod_has_one_container_cgroup_more_than_containers(recording, core, node_name):
    # The tree the rule of agent/sources/density.py is justified on: beside each pod's
    # containers, one cgroup for its sandbox, whose only process is the pause binary.
    kernel, _ = recording
    kubepods = kernel.kubepods
    pods = {p.metadata.uid: p for p in running_pods(core) if p.spec.node_name == node_name}
    seen = 0
    for qos in ("", "burstable", "besteffort"):
        for name in os.listdir(kubepods / qos):
            pod = pods.get(name[3:]) if name.startswith("pod") else None
            if pod is None or not ready(pod):
                continue
            directory = kubepods / qos / name
            cgroups = [d for d in os.listdir(directory) if CONTAINER_ID.fullmatch(d)]
            commands = sorted(_commands(directory / d) for d in cgroups)
            assert len(cgroups) == running_containers(pod) + 1, (name, cgroups)
            assert commands.count(["pause"]) == 1, (pod.metadata.name, commands)
            seen += 1
    assert seen >= len(WORKLOADS)


def _commands(cgroup: Path) -> list[str]:
    names = []
    for pid in (cgroup / "cgroup.procs").read_text().split():
        with contextlib.suppress(FileNotFoundError):
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
    return sorted(set(names))
