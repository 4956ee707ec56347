"""50 short-lived pods created and deleted during a run: each CPU-second counted once, but the tail.

The pods burn a known amount of CPU (busyloop.c's `burn`: until the process has
used that much CPU time) under a 100m limit, fifteen at a time. Half finish their
work and exit, and are deleted once the API says Succeeded; the other half are
deleted while still burning. final_counters.py, a process of its own, reads each
pod's `cpuacct.usage` a hundred times a second until its cgroup is gone.

The agent reports what each pod's counter gained between its samples; a pod whose
cgroup goes between two samples loses what it used since the last one. The kernel
removes a cgroup only once no process is left in it, and a removed cgroup's files
fail with ENODEV, so the final count cannot be read after the fact. Per pod:

- its final count: the last reading, if the counter had not moved for a CFS period
  before it (it had stopped); otherwise at most the last reading plus what its
  CPU limit allows until the cgroup was seen gone;
- never counted twice: the collector's count is not above that final count;
- the loss, final count minus the collector's, is at most what the pod used in
  one window (the longest the agent had in the run);
- the pods that finished used their known work, as the kernel counted it.

The figures (loss per pod: max, median, total) are printed with the suite's tables.
"""

from __future__ import annotations

import bisect
import itertools
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from kernel_truth import ABSOLUTE_FLOOR_CPU_SECONDS, GROUND_TRUTH_TABLES, KernelRecorder
from kube_objects import apply, wait_for
from node_cluster import LocalNodeCluster
from workloads import CHURN_CPU_LIMIT_CORES, CHURN_NAMESPACE, churn_pod

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHURN_PODS = 50
IN_FLIGHT = 15
WORK_CPU_SECONDS = 0.6  # what a finishing pod burns: 6 s at its limit, more than a window
DELETE_AFTER_CPU_SECONDS = 0.3  # when the others are deleted, still burning
# A finishing pod's cgroup also counts its container's start (runc init, the exec) and
# the sandbox's pause process: tens of milliseconds, well below this.
START_CPU_SECONDS = 0.1
CFS_PERIOD_SECONDS = 0.1  # cpu.cfs_period_us's default: a limited pod runs in bursts
READER = Path(__file__).resolve().parent / "final_counters.py"


@dataclass
class ChurnPod:
    name: str
    uid: str
    finishes: bool  # burns its work and exits; otherwise deleted while burning
    phase: str = ""


@dataclass(frozen=True)
class FinalCount:
    """A pod's counter as final_counters.py read it, in CPU-seconds."""

    walls: list[float]
    values: list[float]
    gone: float  # first seen without its cgroup

    @property
    def stopped(self) -> bool:
        """The last reading equals one a CFS period or more before it: nothing ran after."""
        i = bisect.bisect_right(self.walls, self.walls[-1] - CFS_PERIOD_SECONDS)
        return i > 0 and self.values[i - 1] == self.values[-1]

    @property
    def lower(self) -> float:
        return self.values[-1]

    @property
    def upper(self) -> float:
        if self.stopped:
            return self.values[-1]
        # CFS lets a limited pod use its quota per period: at most limit * time, plus
        # one period's quota at the edges
        tail = self.gone - self.walls[-1] + CFS_PERIOD_SECONDS
        return self.values[-1] + CHURN_CPU_LIMIT_CORES * tail

    def most_in(self, window: float) -> float:
        """The most the pod used within `window` seconds (0 before it existed), the
        unread tail counted at its upper bound."""
        walls, values = [*self.walls, self.gone], [*self.values, self.upper]
        most = 0.0
        for wall, value in zip(walls, values, strict=True):
            i = bisect.bisect_right(walls, wall - window)
            most = max(most, value - (values[i - 1] if i else 0.0))
        return most


def read_final_counts(path: Path) -> dict[str, FinalCount]:
    counts = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        walls, values = zip(*record["readings"], strict=True)
        counts[record["uid"]] = FinalCount(list(walls), [v / 1e9 for v in values],
                                           record["gone"])
    return counts


def run_churn(api_client, core, kernel: KernelRecorder) -> list[ChurnPod]:
    """Create the pods, IN_FLIGHT at a time, and delete each when its time comes."""
    apply(api_client, [{"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": CHURN_NAMESPACE}}])
    plan = [(f"churn-{i:02d}", i % 2 == 0) for i in range(CHURN_PODS)]
    live: dict[str, ChurnPod] = {}
    done: list[ChurnPod] = []
    deadline = time.monotonic() + 600
    while plan or live:
        assert time.monotonic() < deadline, f"churn stuck with {sorted(live)} live"
        while plan and len(live) < IN_FLIGHT:
            name, finishes = plan.pop(0)
            work = WORK_CPU_SECONDS if finishes else 30 * WORK_CPU_SECONDS
            apply(api_client, [churn_pod(name, work)])  # retries while the namespace is new
            live[name] = ChurnPod(name, core.read_namespaced_pod(name, CHURN_NAMESPACE)
                                  .metadata.uid, finishes)
        phases = {p.metadata.name: p.status.phase
                  for p in core.list_namespaced_pod(CHURN_NAMESPACE).items}
        counters = kernel.samples[-1].pods
        for name, pod in list(live.items()):
            pod.phase = phases.get(name, pod.phase)
            if pod.finishes:
                due = pod.phase in ("Succeeded", "Failed")
            else:
                due = counters.get(pod.uid, 0) >= DELETE_AFTER_CPU_SECONDS * 1e9
            if due:
                core.delete_namespaced_pod(name, CHURN_NAMESPACE)
                done.append(live.pop(name))
        time.sleep(0.2)
    return done


def test_pod_churn_counts_each_cpu_second_once_but_the_tail_after_the_last_window(
        cluster, api_client, core, recording, tmp_path):
    if not isinstance(cluster, LocalNodeCluster):
        pytest.skip("reads the pods' counters on the node: only with the local cluster")
    kernel, collector = recording
    first = collector.wait_windows(1)
    out = tmp_path / "final-counters.jsonl"
    reader = subprocess.Popen([sys.executable, str(READER), str(kernel.kubepods / "burstable"),
                               str(out)], stdin=subprocess.PIPE)
    try:
        wait_for("the counter reader", out.exists)
        began = time.time()
        pods = run_churn(api_client, core, kernel)
        churn_seconds = time.time() - began
        uids = {pod.uid for pod in pods}
        wait_for("every churn pod's cgroup removed",
                 lambda: uids <= read_final_counts(out).keys())
    finally:
        assert reader.stdin is not None
        reader.stdin.close()
        reader.wait(10)
    finals = read_final_counts(out)
    gone = max(finals[uid].gone for uid in uids)
    last = collector.wait_windows(2, after=gone)  # every window the pods were in is applied

    samples = [s for s in collector.samples if first.window_end <= s.window_end <= last.window_end]
    longest = max(b.window_end - a.window_end for a, b in itertools.pairwise(samples)
                  if b.reports.get("accepted", 0) - a.reports.get("accepted", 0) == 1)
    measured = {pod.name: last.pod_cpu.get((CHURN_NAMESPACE, pod.name), 0.0) for pod in pods}
    count = {pod.name: finals[pod.uid] for pod in pods}
    loss = {name: count[name].lower - measured[name] for name in measured}
    bound = {name: count[name].most_in(longest) for name in measured}
    lines = [f"{pod.name} {'finished' if pod.finishes else 'deleted':<8} {pod.phase:<9} "
             f"kernel {count[pod.name].lower:6.3f}"
             + ("      " if count[pod.name].stopped else f"-{count[pod.name].upper:5.3f}")
             + f" collector {measured[pod.name]:6.3f} loss {loss[pod.name]:6.3f} "
             f"one window {bound[pod.name]:6.3f}" for pod in pods]
    print("\n".join(lines))

    def summary(label: str, chosen: list[ChurnPod]) -> str:
        lost = [loss[p.name] for p in chosen]
        total = sum(count[p.name].lower for p in chosen)
        return (f"{label:<22} {len(chosen):>4} {total:9.3f} "
                f"{sum(measured[p.name] for p in chosen):9.3f} {sum(lost):7.3f} "
                f"{max(lost):7.3f} {statistics.median(lost):7.3f} "
                f"{statistics.median(bound[p.name] for p in chosen):10.3f} "
                f"{sum(1 for p in chosen if loss[p.name] > ABSOLUTE_FLOOR_CPU_SECONDS):>5}")

    finished = [p for p in pods if p.finishes]
    deleted = [p for p in pods if not p.finishes]
    unread = [p.name for p in pods if not count[p.name].stopped]
    table = "\n".join([
        f"pod churn (test_pod_churn.py): {len(pods)} pods, {IN_FLIGHT} at a time, "
        f"{CHURN_CPU_LIMIT_CORES * 1000:.0f}m limit, {churn_seconds:.0f} s; "
        f"longest agent window {longest:.2f} s; final count read for "
        f"{len(pods) - len(unread)} pods (bounded by the limit for {len(unread)})",
        f"{'CPU-seconds':<22} {'pods':>4} {'kernel':>9} {'collector':>9} {'lost':>7} "
        f"{'max':>7} {'median':>7} {'one window':>10} {'lossy':>5}",
        summary(f"finished at {WORK_CPU_SECONDS} s", finished),
        summary(f"deleted after {DELETE_AFTER_CPU_SECONDS} s", deleted),
        summary("all", pods),
    ])
    GROUND_TRUTH_TABLES.append(table)
    print(table)

    assert all(p.phase == "Succeeded" for p in finished), [(p.name, p.phase) for p in finished]
    for pod in finished:
        used = count[pod.name]
        assert used.lower <= WORK_CPU_SECONDS + START_CPU_SECONDS, (pod.name, used, table)
        assert used.upper >= WORK_CPU_SECONDS, (pod.name, used, table)
    doubled = {name: (measured[name], count[name].upper) for name in measured
               if measured[name] > count[name].upper + ABSOLUTE_FLOOR_CPU_SECONDS}
    assert not doubled, f"counted more than the kernel: {doubled}\n{table}"
    beyond = {name: (count[name].upper - measured[name], bound[name]) for name in measured
              if count[name].upper - measured[name] > bound[name] + ABSOLUTE_FLOOR_CPU_SECONDS}
    assert not beyond, f"lost more than one window of use: {beyond}\n{table}"
    namespace = last.namespace_cpu.get(CHURN_NAMESPACE, 0.0) - first.namespace_cpu.get(
        CHURN_NAMESPACE, 0.0)
    assert abs(namespace - sum(measured.values())) <= ABSOLUTE_FLOOR_CPU_SECONDS, table
