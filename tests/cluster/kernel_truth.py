"""What the kernel counted, next to what the collector published, over the same windows.

`KernelRecorder` reads every pod's `cpuacct.usage` and the node's `/proc/stat`
ten times a second, and keeps which pod each uid is (from the API: namespace,
name, and its workload found through the owners' own ownerReferences, not the
collector's naming rules). `CollectorRecorder` scrapes the collector's
/metrics four times a second and keeps a sample whenever the node's latest
window moves on (`kubecarbon_node_last_window_end_timestamp_seconds`, when the
agent read the counters; same machine, same clock): one sample per applied
report. The kernel's counters interpolated at those window ends are the ground
truth for exactly the windows the collector counted, however late a report
was delivered:

- a pod present at both ends of a window counts its counter's increase;
- a pod that appeared inside a window counts its whole counter (so does the agent);
- a pod gone by the end of a window counts nothing for it (its cgroup, and what
  it counted since the last sample, are gone for the agent too).

Counter increases telescope, so the few milliseconds between the agent's
timestamp and its reads change a sum over many windows by far less than the
tolerance.
"""

from __future__ import annotations

import bisect
import errno
import http.client
import itertools
import os
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kube_objects import wait_for
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from release import AGENT_INTERVAL_SECONDS

CPU_TOLERANCE = 0.03  # relative, per pod, namespace and workload; and node utilisation
# A difference this small passes whatever the row's size: the CPU one agent cycle uses
# (a few ms, docs/benchmarks.md), which the agent's own pod spends between the
# window's timestamp and the read of its own counter; 3 % of an idle pod's microseconds
# would be below the timing of any read.
ABSOLUTE_FLOOR_CPU_SECONDS = 0.01
QOS_DIRS = ("", "burstable", "besteffort")
IDENTIFY_PERIOD_SECONDS = 0.5
USER_HZ = 100  # /proc/stat's ticks per second
# Tables the ground-truth test leaves for the end of the run's output (conftest prints them).
GROUND_TRUTH_TABLES: list[str] = []


def read_busy_total(proc_stat: Path) -> tuple[int, int]:
    """Busy and total ticks of /proc/stat's aggregate line.

    Busy as the agent defines it (docs/agent.md): steal, the hypervisor running another
    tenant, is not busy. Total is every column but guest (already inside user and nice).
    """
    with proc_stat.open() as handle:
        fields = [int(v) for v in handle.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal


def read_pod_usage(kubepods: Path) -> dict[str, int]:
    """uid -> cpuacct.usage (ns) of every pod cgroup under a cgroupfs-driver kubepods."""
    usage = {}
    for qos in QOS_DIRS:
        directory = kubepods / qos if qos else kubepods
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            if not name.startswith("pod"):
                continue
            try:
                usage[name[3:]] = int((directory / name / "cpuacct.usage").read_text())
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENODEV):
                    raise
                continue  # removed between listing and opening (ENOENT) or reading (ENODEV)
            except ValueError:
                continue  # removed while being read
    return usage


@dataclass(frozen=True)
class PodIdentity:
    namespace: str
    name: str
    workload_kind: str
    workload: str


@dataclass
class KernelSample:
    wall: float
    pods: dict[str, int]
    busy_ticks: int
    total_ticks: int


def _poll(stop: threading.Event, period: float, step: Callable[[], None]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        step()
        stop.wait(max(0.0, period - (time.monotonic() - started)))


class KernelRecorder:
    def __init__(self, kubepods: Path, apps: client.AppsV1Api,
                 batch_owner: Callable[[str, str], str | None], core: client.CoreV1Api,
                 proc_stat: Path = Path("/proc/stat"), period: float = 0.1) -> None:
        self.kubepods, self.proc_stat, self.period = kubepods, proc_stat, period
        self.logical_cpus = proc_stat.read_text().count("\ncpu")  # cpuN lines, as the agent
        self.core, self.apps, self.batch_owner = core, apps, batch_owner
        self.samples: list[KernelSample] = []
        self.identities: dict[str, PodIdentity] = {}
        self._unnamed: set[str] = set()  # uids read but not yet looked up
        self._unnamed_lock = threading.Lock()
        self._stop = threading.Event()
        # Naming a new pod takes API requests, seconds on a loaded node: on a thread of its
        # own, so that the counters are never left unread meanwhile.
        self._threads = [
            threading.Thread(target=_poll, name="kernel-recorder", daemon=True,
                             args=(self._stop, period, self._sample)),
            threading.Thread(target=_poll, name="pod-identifier", daemon=True,
                             args=(self._stop, IDENTIFY_PERIOD_SECONDS, self._identify_new)),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _sample(self) -> None:
        pods = read_pod_usage(self.kubepods)
        busy, total = read_busy_total(self.proc_stat)
        self.samples.append(KernelSample(time.time(), pods, busy, total))
        unnamed = pods.keys() - self.identities.keys()
        if unnamed:
            with self._unnamed_lock:
                self._unnamed |= unnamed

    def _identify_new(self) -> None:
        with self._unnamed_lock:
            unnamed, self._unnamed = self._unnamed, set()
        if unnamed - self.identities.keys():
            self._identify()

    def _identify(self) -> None:
        for pod in self.core.list_pod_for_all_namespaces().items:
            uid = pod.metadata.uid
            if uid not in self.identities:
                kind, name = self._workload(pod)
                self.identities[uid] = PodIdentity(pod.metadata.namespace, pod.metadata.name,
                                                   kind, name)

    def _workload(self, pod: client.V1Pod) -> tuple[str, str]:
        """The top of the pod's owner chain, read from the owners themselves."""
        owners = [o for o in pod.metadata.owner_references or () if o.controller]
        if not owners:
            return "Pod", pod.metadata.name
        owner = owners[0]
        namespace = pod.metadata.namespace
        if owner.kind == "ReplicaSet":
            replica_set = self.apps.read_namespaced_replica_set(owner.name, namespace)
            tops = [o for o in replica_set.metadata.owner_references or () if o.controller]
            return (tops[0].kind, tops[0].name) if tops else ("ReplicaSet", owner.name)
        if owner.kind == "Job":
            cronjob = self.batch_owner(namespace, owner.name)
            return ("CronJob", cronjob) if cronjob else ("Job", owner.name)
        return owner.kind, owner.name

    # --- reading the record -------------------------------------------------------

    def _index(self, wall: float) -> int:
        return bisect.bisect_left(self.samples, wall, key=lambda sample: sample.wall)

    def usage_at(self, uid: str, wall: float) -> float | None:
        """The pod's counter (ns) at `wall`, interpolated; None if the pod was not there."""
        samples, i = self.samples, self._index(wall)
        if i == 0 or i >= len(samples):
            return None
        before, after = samples[i - 1], samples[i]
        if uid not in before.pods or uid not in after.pods:
            return None
        share = (wall - before.wall) / (after.wall - before.wall)
        return before.pods[uid] + share * (after.pods[uid] - before.pods[uid])

    def bracket_seconds(self, wall: float) -> float:
        """How far apart the two reads around `wall` were: the interpolation's reach."""
        samples, i = self.samples, self._index(wall)
        if i == 0 or i >= len(samples):
            return float("inf")
        return samples[i].wall - samples[i - 1].wall

    def ticks_at(self, wall: float) -> tuple[float, float]:
        samples, i = self.samples, self._index(wall)
        if i == 0 or i >= len(samples):
            raise ValueError(f"no kernel samples around {wall}")
        before, after = samples[i - 1], samples[i]
        share = (wall - before.wall) / (after.wall - before.wall)
        return (before.busy_ticks + share * (after.busy_ticks - before.busy_ticks),
                before.total_ticks + share * (after.total_ticks - before.total_ticks))

    def uids(self) -> set[str]:
        return {uid for sample in self.samples for uid in sample.pods}

    def uids_within(self, start: float, end: float) -> list[str]:
        """The pods whose cgroups were read at some time between `start` and `end`."""
        return [uid for uid in self.uids()
                if (seen := self.seen(uid)) and seen[1] > start and seen[0] < end]

    def seen(self, uid: str) -> tuple[float, float] | None:
        """When the pod's cgroup was first and last read, or None if never."""
        times = [sample.wall for sample in self.samples if uid in sample.pods]
        return (times[0], times[-1]) if times else None

    def pod_cpu_seconds(self, uid: str, window_ends: list[float]) -> float:
        """What the agent should have reported for the pod over the windows between these ends."""
        total = 0.0
        for start, end in itertools.pairwise(window_ends):
            now = self.usage_at(uid, end)
            if now is None:
                continue
            before = self.usage_at(uid, start)
            total += now - (before if before is not None else 0.0)
        return total / 1e9

    def busy_share(self, start: float, end: float) -> float:
        """The node's busy CPU time over all its CPUs' wall time between `start` and `end`.

        Over wall time, as the agent's utilisation is, not over the ticks' own total: on a
        virtual machine /proc/stat's columns can add up to more than the wall time (steal
        counted over time also counted idle: 2,064 ticks in 2,002 of wall time, at 643
        ticks of steal, on this suite's VM), which made a share of the total read low.
        """
        busy0, _ = self.ticks_at(start)
        busy1, _ = self.ticks_at(end)
        return (busy1 - busy0) / USER_HZ / (self.logical_cpus * (end - start))

    def excess_ticks(self, start: float, end: float) -> float:
        """How far /proc/stat's columns outran the wall time between `start` and `end`."""
        _, total0 = self.ticks_at(start)
        _, total1 = self.ticks_at(end)
        return (total1 - total0) / (USER_HZ * self.logical_cpus * (end - start)) - 1


@dataclass
class CollectorSample:
    window_end: float  # kubecarbon_node_last_window_end_timestamp_seconds
    scraped_at: float = 0.0  # when the recorder first saw this window (its clock)
    namespace_cpu: dict[str, float] = field(default_factory=dict)
    workload_cpu: dict[tuple[str, str, str], float] = field(default_factory=dict)
    pod_cpu: dict[tuple[str, str], float] = field(default_factory=dict)
    node_usage_ratio: float = 0.0
    node_containers: float = 0.0
    node_pods: float = 0.0
    # grams per second of window are constant for a node: their sum measures the windows
    node_embodied_co2e_grams: float = 0.0
    reports: dict[str, float] = field(default_factory=dict)  # collector_reports_total by result


def parse_collector_metrics(text: str, node: str) -> CollectorSample | None:
    sample = CollectorSample(window_end=0.0)
    found = False
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            labels, value = metric.labels, metric.value
            name = metric.name
            if labels.get("node", node) != node:
                continue
            if name == "kubecarbon_node_last_window_end_timestamp_seconds":
                sample.window_end, found = value, True
            elif name == "kubecarbon_namespace_cpu_seconds_total":
                sample.namespace_cpu[labels["namespace"]] = value
            elif name == "kubecarbon_workload_cpu_seconds_total":
                key = (labels["namespace"], labels["workload_kind"], labels["workload"])
                sample.workload_cpu[key] = value
            elif name == "kubecarbon_pod_cpu_seconds_total":
                sample.pod_cpu[(labels["namespace"], labels["pod"])] = value
            elif name == "kubecarbon_node_cpu_usage_ratio":
                sample.node_usage_ratio = value
            elif name == "kubecarbon_node_containers":
                sample.node_containers = value
            elif name == "kubecarbon_node_pods":
                sample.node_pods = value
            elif name == "kubecarbon_node_embodied_co2e_grams_total":
                sample.node_embodied_co2e_grams = value
            elif name == "kubecarbon_collector_reports_total":
                sample.reports[labels["result"]] = value
    return sample if found else None


@dataclass(frozen=True)
class KubeletView:
    wall: float
    pods: float  # kubelet_running_pods: pods with a running sandbox
    containers: float  # kubelet_running_containers{container_state="running"}


def parse_kubelet_metrics(text: str) -> tuple[float, float]:
    pods = containers = None
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            if metric.name == "kubelet_running_pods":
                pods = metric.value
            elif (metric.name == "kubelet_running_containers"
                  and metric.labels.get("container_state") == "running"):
                containers = metric.value
    if pods is None or containers is None:
        raise ValueError("no kubelet_running_pods or kubelet_running_containers in /metrics")
    return pods, containers


class CollectorRecorder:
    """Samples per applied report, and the kubelet's own count of pods and containers."""

    def __init__(self, metrics_url: str, node: str, kubelet: tuple[str, str, Path],
                 period: float = 0.25) -> None:
        self.metrics_url, self.node = metrics_url, node
        self.kubelet_url, self.kubelet_token, kubelet_ca = kubelet
        # the kubelet's serving certificate is self-signed for its host name, not its IP
        self._kubelet_tls = ssl.create_default_context(cafile=str(kubelet_ca))
        self._kubelet_tls.check_hostname = False
        self.samples: list[CollectorSample] = []
        self.kubelet_views: list[KubeletView] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=_poll, name="collector-recorder", daemon=True,
                             args=(self._stop, period, self._scrape)),
            threading.Thread(target=_poll, name="kubelet-recorder", daemon=True,
                             args=(self._stop, period, self._scrape_kubelet)),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _scrape(self) -> None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as reply:
                text = reply.read().decode()
        except (OSError, http.client.HTTPException) as exc:  # cut off by a restart
            self.errors.append(f"{time.time():.1f} {exc}")
            return
        sample = parse_collector_metrics(text, self.node)
        if sample is None:
            return
        if not self.samples or sample.window_end != self.samples[-1].window_end:
            sample.scraped_at = time.time()
            self.samples.append(sample)

    def _scrape_kubelet(self) -> None:
        request = urllib.request.Request(f"{self.kubelet_url}/metrics", headers={
            "Authorization": f"Bearer {self.kubelet_token}"})
        try:
            with urllib.request.urlopen(request, timeout=5, context=self._kubelet_tls) as reply:
                pods, containers = parse_kubelet_metrics(reply.read().decode())
        except (OSError, http.client.HTTPException, ValueError) as exc:  # cut off by a restart
            self.errors.append(f"{time.time():.1f} kubelet: {exc}")
            return
        self.kubelet_views.append(KubeletView(time.time(), pods, containers))

    def wait_windows(self, count: int, after: float | None = None) -> CollectorSample:
        """Wait until `count` windows ending after `after` (default: now) are applied;
        returns the latest sample."""
        since = time.time() if after is None else after
        return wait_for(
            f"{count} agent windows ending after {since:.1f}",
            lambda: len([s for s in self.samples if s.window_end > since]) >= count
            and self.samples[-1],
            timeout=60 + 3 * count * AGENT_INTERVAL_SECONDS,
            explain=lambda: "\n".join(self.errors[-5:]))

    def kubelet_view_around(self, wall: float, margin: float) -> KubeletView | None:
        """The kubelet's counts if they did not change within `margin` of `wall`."""
        near = [v for v in self.kubelet_views if abs(v.wall - wall) <= margin]
        counts = {(v.pods, v.containers) for v in near}
        return near[0] if len(near) >= 2 and len(counts) == 1 else None


# --- the comparison -------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    scope: str  # "pod", "namespace", "workload" or "node"
    name: str
    expected: float  # the kernel's count over the windows (CPU-s; a ratio for the node)
    measured: float  # the collector's
    limit_expected: float | None = None  # CPU limit * span, for pods that spin the whole span

    @property
    def error(self) -> float:
        """Relative difference (infinite for a row the kernel saw nothing of)."""
        difference = abs(self.measured - self.expected)
        if self.expected:
            return difference / abs(self.expected)
        return float("inf") if difference else 0.0

    @property
    def ok(self) -> bool:
        difference = abs(self.measured - self.expected)
        floor = 0.0 if self.scope == "node" else ABSOLUTE_FLOOR_CPU_SECONDS
        return difference <= max(CPU_TOLERANCE * abs(self.expected), floor)


def sum_by(rows: Iterable[tuple[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for key, value in rows:
        totals[key] = totals.get(key, 0.0) + value
    return totals


def format_table(rows: list[Row], header: str) -> str:
    lines = [header, f"{'scope':<10} {'name':<38} {'kernel':>10} {'collector':>10} "
                     f"{'error':>7} {'limit*t':>9}  ok"]
    for row in rows:
        limit = f"{row.limit_expected:9.2f}" if row.limit_expected is not None else " " * 9
        error = f"{row.error * 100:6.2f}%"
        lines.append(f"{row.scope:<10} {row.name:<38} {row.expected:10.3f} {row.measured:10.3f} "
                     f"{error:>7} {limit}  {'yes' if row.ok else 'NO'}")
    return "\n".join(lines)
