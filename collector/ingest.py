"""The ingest step: validated reports into the ledger.

    expire -> dedupe -> resolve node and pods -> model -> book -> node cap

`Ingestor.ingest_batches` drops (agent_id, seq) pairs the ledger already holds,
resolves each node's profile and each pod's (namespace, workload) group, runs the
model once over the rest, and only then books anything, so a model error leaves
the ledger as it was. Nodes silent past --forget-after are expired first, so that
the ledger stays bounded while reports arrive. `IngestQueue` is the group commit:
batches that arrive close together (within a few milliseconds under load) share one
model run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, repeat
from operator import is_
from typing import cast

import numpy as np
import numpy.typing as npt

from collector.capacity import PodUsageTracker
from collector.intensity import HourlyIntensity
from collector.ledger import (
    UNKNOWN,
    FleetCounters,
    Ledger,
    NodeCounters,
    NodeLabels,
    NodeLatest,
    PodKey,
)
from collector.metadata import MetadataProvider, NodeInfo, StaticMetadataProvider, WorkloadKey
from collector.model.attribution import attribute_pods
from collector.model.estimate import POWER_SOURCES, WindowBatch, estimate_windows
from collector.model.idle_by_requests import idle_by_requests
from collector.model.parameters import ModelParameters, ProfileArrays
from collector.profiles import ProfileConfig, ResolvedNode, resolve_node
from collector.rightsizing import UsageHistory
from collector.validation import POD_CPU_SECONDS, POD_UID, pod_records
from kubecarbon.wire import Report

log = logging.getLogger(__name__)

# known pod uid -> class lookups kept between batches: room for 10,000 nodes of 110 pods
# (the kubelet default) and churn; cleared when full rather than grown
MAX_CACHED_POD_UIDS = 2_000_000
# `distinct_values` uses a table rather than np.unique's sort while the table needs at
# most this many slots a value: 5,000 pod rows took 57 us in 3,000 slots, 170 us in
# 20,000, against 290-820 us for np.unique (numpy 2.4); 40,000 slots took longer
TABLE_SLOTS_PER_VALUE = 4


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


class Ingestor:
    """Applies validated batches of reports to a ledger.

    Reports come as `BatchValidator.parse` returns them, pod rows as `PodRecord`s; a report
    whose rows are dicts (the wire's PodRow, as the simulator and tests build them) has
    them converted first.
    """

    def __init__(
        self,
        ledger: Ledger,
        params: ModelParameters | None = None,
        profiles: ProfileConfig | None = None,
        metadata: MetadataProvider | None = None,
        clock: Callable[[], float] = time.time,
        hourly_intensity: HourlyIntensity | None = None,
        pod_usage: PodUsageTracker | None = None,
        usage_history: UsageHistory | None = None,
        idle_by_requests: bool = False,
    ) -> None:
        self.ledger = ledger
        self.profiles = profiles if profiles is not None else ProfileConfig()
        self.params = params if params is not None else self.profiles.model
        self.metadata: MetadataProvider = (
            metadata if metadata is not None else StaticMetadataProvider()
        )
        self.clock = clock
        self.hourly_intensity = hourly_intensity
        self.pod_usage = pod_usage  # for requested versus used (collector/capacity.py)
        self.usage_history = usage_history  # for rightsizing (needs pod_usage)
        # --idle-attribution requests: idle energy also split over pods, by requested CPU
        self.idle_by_requests = idle_by_requests
        self._resolved: dict[str, tuple[NodeInfo | None, ResolvedNode]] = {}
        self._pods = PodClasses(self.metadata, ledger)

    def resolve(self, node_name: str) -> ResolvedNode:
        """The node's profile, re-resolved whenever the metadata provider's answer changes."""
        info = self.metadata.node(node_name)
        cached = self._resolved.get(node_name)
        if cached is not None and cached[0] is info:
            return cached[1]
        if len(self._resolved) > 2 * self.ledger.node_count + 1000:
            self._resolved.clear()  # forgotten nodes' resolutions
        resolved = resolve_node(self.profiles, node_name, info)
        self._resolved[node_name] = (info, resolved)
        return resolved

    def ingest(self, reports: list[Report]) -> IngestResult:
        """Apply a validated batch; duplicates are acknowledged and skipped."""
        return self.ingest_batches([reports])[0]

    def ingest_batches(self, batches: list[list[Report]]) -> list[IngestResult]:
        """Apply several validated batches with one model run; one result per batch.

        A report repeated within or across the batches counts once, for the first batch
        that holds it. If the model fails, nothing is applied.
        """
        now = self.clock()
        self.ledger.expire(now)
        seqs = self.ledger.seqs
        fresh: list[Report] = []
        in_run: set[tuple[str, int]] = set()
        results = []
        for reports in batches:
            accepted = 0
            for report in reports:
                key = (report["agent_id"], int(report["seq"]))
                if key in in_run or seqs.seen(*key):
                    continue
                in_run.add(key)
                fresh.append(_with_pod_records(report))
                accepted += 1
            results.append(IngestResult(accepted=accepted, duplicates=len(reports) - accepted))
        if fresh:
            self._apply(fresh, now)
        self.ledger.count_reports(len(fresh), sum(r.duplicates for r in results))
        self.ledger.enforce_node_cap()
        return results

    def _apply(self, reports: list[Report], now: float) -> None:
        # Everything that can fail happens before the first change to the ledger.
        resolved = [self.resolve(report["node"]) for report in reports]
        batch = WindowBatch(
            duration_seconds=np.array([r["end"] - r["start"] for r in reports], dtype=np.float64),
            logical_cpus=np.array([r["cpu"]["logical_cpus"] for r in reports], dtype=np.float64),
            busy_seconds=np.array([r["cpu"]["busy_seconds"] for r in reports], dtype=np.float64),
            memory_total_bytes=np.array(
                [self._memory_total_bytes(r) for r in reports], dtype=np.float64
            ),
            rapl_joules=np.array([_rapl_joules(r) for r in reports], dtype=np.float64),
        )
        profile_arrays = ProfileArrays.from_profiles([n.profile for n in resolved], self.params)
        regions = [n.profile.region for n in resolved]
        midpoints = [(r["start"] + r["end"]) / 2 for r in reports]
        overhead = self._overhead_cpu_seconds(reports)
        estimate = estimate_windows(
            batch, profile_arrays, self.params,
            None if self.hourly_intensity is None else self.hourly_intensity.lookup(
                regions, midpoints),
            overhead,
        )
        # a host outside Kubernetes reports no pods section; map() and itemgetter keep the
        # per-row work in C, which matters at 100 rows a report
        rows_by_report = [r.get("pods", ()) for r in reports]
        pod_counts = list(map(len, rows_by_report))
        rows = list(chain.from_iterable(rows_by_report))
        pod_uids: list[str] = list(map(POD_UID, rows))
        pod_cpu = np.fromiter(map(POD_CPU_SECONDS, rows), dtype=np.float64, count=len(rows))
        pod_windows = np.repeat(np.arange(len(reports)), pod_counts)
        pod_classes = self._pods.classes(pod_uids)
        attribution = attribute_pods(batch, estimate, pod_windows, pod_cpu)
        pod_energy = attribution.pod_energy_joules
        pod_co2e = attribution.pod_operational_co2e_grams
        if self.idle_by_requests:
            shares = idle_by_requests(estimate, pod_windows, self._cpu_requests(pod_uids))
            pod_energy = pod_energy + shares.pod_idle_energy_joules
            pod_co2e = pod_co2e + shares.pod_idle_operational_co2e_grams

        ledger = self.ledger
        columns = zip(
            estimate.power_source.tolist(), estimate.energy_joules.tolist(),
            estimate.idle_energy_joules.tolist(), estimate.operational_co2e_grams.tolist(),
            estimate.embodied_co2e_grams.tolist(), batch.duration_seconds.tolist(),
            batch.logical_cpus.tolist(), batch.busy_seconds.tolist(),
            batch.memory_total_bytes.tolist(), batch.rapl_joules.tolist(),
            estimate.utilisation.tolist(), estimate.power_watts.tolist(), strict=True,
        )
        for report, node, overhead_seconds, (
            source, energy, idle, co2e, embodied, duration, cpus, busy, memory, rapl,
            utilisation, watts,
        ) in zip(reports, resolved, overhead.tolist(), columns, strict=True):
            profile = node.profile
            labels: NodeLabels = (
                report["node"],
                profile.region or UNKNOWN,
                profile.instance_type or UNKNOWN,
                POWER_SOURCES[int(source)],
            )
            window = NodeLatest(
                labels=labels,
                profile=profile,
                on_default_profile=node.on_default_profile,
                received_at=now,
                window_end=report["end"],
                duration_seconds=duration,
                logical_cpus=cpus,
                busy_seconds=busy,
                memory_total_bytes=memory,
                rapl_joules=rapl,
                utilisation=utilisation,
                power_watts=watts,
                pods=len(report["pods"]) if "pods" in report else None,
                containers=report.get("containers_running"),
                overhead_cpu_seconds=overhead_seconds,
            )
            ledger.book_report(report["agent_id"], int(report["seq"]), window,
                               NodeCounters(energy, idle, co2e, embodied))
        # Sum pod rows per (namespace, workload) group with numpy, then touch each group's
        # counters once: a batch has many pods but few groups.
        ledger.book_group_usage(self._pods.group_ids[pod_classes], pod_cpu, pod_energy,
                                pod_co2e)
        if ledger.export.per_pod_series:
            ledger.book_pod_usage(self._pod_keys(pod_uids), pod_cpu.tolist(),
                                  pod_energy.tolist(), pod_co2e.tolist())
        ledger.book_fleet(FleetCounters(
            float(estimate.baseline_energy_joules.sum()),
            float(estimate.avoided_energy_joules.sum()),
            float(estimate.avoided_operational_co2e_grams.sum()),
            float(estimate.avoided_embodied_co2e_grams.sum()),
        ))
        if self.pod_usage is not None:
            if len(self.pod_usage) > 2 * ledger.node_count + 1000:  # forgotten nodes
                self.pod_usage.forget_before(now - ledger.export.forget_after_seconds)
            self.pod_usage.observe(reports, self._pods.seconds_by_workload(
                len(reports), pod_windows, pod_classes, pod_cpu,
                per_second_of=batch.duration_seconds))
            if self.usage_history is not None:
                self._add_to_history(self.usage_history, reports, pod_windows, pod_classes,
                                     pod_cpu)

    def _add_to_history(self, history: UsageHistory, reports: list[Report],
                        pod_windows: npt.NDArray[np.intp], pod_classes: npt.NDArray[np.intp],
                        pod_cpu: npt.NDArray[np.float64]) -> None:
        """Book pod use by sampling interval, summed over the batch's reports: one entry per
        interval and workload instead of one per report and workload. The history takes
        intervals in the order their first report came, which keeps or drops the same
        reports as taking them one by one."""
        ends = [r["end"] for r in reports]
        interval_index: dict[int, int] = {}
        first_ends: list[float] = []
        report_interval = np.empty(len(reports), dtype=np.intp)
        for k, end in enumerate(ends):
            index = interval_index.setdefault(history.interval_of(end), len(interval_index))
            if index == len(first_ends):
                first_ends.append(end)
            report_interval[k] = index
        history.add(first_ends, self._pods.seconds_by_workload(
            len(first_ends), report_interval[pod_windows], pod_classes, pod_cpu))

    def _overhead_cpu_seconds(self, reports: list[Report]) -> npt.NDArray[np.float64]:
        """Per report, CPU time of pods in the model's overhead namespaces (left out of the
        baseline's demand); zeros when none are configured or the pods are unknown."""
        namespaces = set(self.params.overhead_namespaces)
        overhead = np.zeros(len(reports))
        if not namespaces:
            return overhead
        for index, report in enumerate(reports):
            for pod in report.get("pods", ()):
                info = self.metadata.pod(pod.uid)  # type: ignore[attr-defined]
                if info is not None and info.namespace in namespaces:
                    overhead[index] += pod.cpu_seconds  # type: ignore[attr-defined]
        return overhead

    def _memory_total_bytes(self, report: Report) -> float:
        """The report's memory; without it, the node's capacity as the cluster knows it, else 0.

        0 leaves memory power out of that window: an underestimate, never an invention.
        """
        memory = report.get("memory")
        if memory is not None:
            return float(memory["total_bytes"])
        info = self.metadata.node(report["node"])
        if info is not None and info.memory_capacity_bytes is not None:
            return float(info.memory_capacity_bytes)
        return 0.0

    def _cpu_requests(self, uids: list[str]) -> npt.NDArray[np.float64]:
        """Each pod's effective CPU request as the metadata provider knows it (0 if unknown)."""
        pod = self.metadata.pod
        return np.fromiter(
            ((info.cpu_request_cores if (info := pod(uid)) is not None else 0.0) for uid in uids),
            dtype=np.float64, count=len(uids))

    def _pod_keys(self, uids: list[str]) -> list[PodKey]:
        keys = []
        for uid in uids:
            info = self.metadata.pod(uid)
            keys.append((UNKNOWN, uid) if info is None else (info.namespace, info.name))
        return keys


class PodClasses:
    """Pod uid -> class: the (namespace, workload) group its usage adds to and, for a pod
    the provider knows, its workload.

    Known uids are remembered between batches (a pod's workload never changes). Unknown
    ones are not: a batch asks the provider about them again in one pass, so that a pod
    the provider learns later counts under its workload from its next report, and so
    that a fleet whose pods are all unknown (static metadata) does not fill the table
    with them. A batch looks its uids up with one C-level pass, and whatever it sums per
    pod row it sums per class with numpy.
    """

    def __init__(self, metadata: MetadataProvider, ledger: Ledger) -> None:
        self.metadata = metadata
        self.ledger = ledger
        self._class_of_uid: dict[str, int] = {}  # known uids only
        # one class per workload: the ledger puts a workload's pods in one group for good
        self._class_of_workload: dict[WorkloadKey | None, int] = {}
        self._workloads: list[WorkloadKey | None] = []  # per class; None: pod unknown
        self._groups: list[int] = []  # per class: the ledger's group id
        # per class as arrays, for numpy's indexing: `_groups`, and whether the provider
        # knows the class's pods (its workload is not None)
        self.group_ids = np.zeros(0, dtype=np.intp)
        self._known = np.zeros(0, dtype=bool)

    def classes(self, uids: list[str]) -> npt.NDArray[np.intp]:
        """The class of every uid; ids stay valid until the next call."""
        if len(self._class_of_uid) >= MAX_CACHED_POD_UIDS:
            self._forget()  # pods come and go: start over rather than grow
        classes = np.fromiter(map(self._class_of_uid.get, uids, repeat(-1)), dtype=np.intp,
                              count=len(uids))
        misses = np.flatnonzero(classes < 0)
        if len(misses):
            classes[misses] = self._classify([uids[k] for k in misses.tolist()])
        return classes

    def seconds_by_workload(
        self, count: int, row_parts: npt.NDArray[np.intp], classes: npt.NDArray[np.intp],
        cpu_seconds: npt.NDArray[np.float64],
        per_second_of: npt.NDArray[np.float64] | None = None,
    ) -> list[dict[WorkloadKey, float]]:
        """Per part (row_parts[k] is pod row k's: its report, say), the CPU seconds of its
        known pods by workload, workloads in the order their first pod row came; each sum
        adds rows in order, as a loop over them would. With `per_second_of`, each part's
        sums are divided by its element (a window's length: cores), as float division of
        each sum would."""
        per_part: list[dict[WorkloadKey, float]] = [{} for _ in range(count)]
        known = self._known[classes]
        if not known.any():
            return per_part
        width = len(self._workloads)
        pairs = row_parts[known] * width + classes[known]
        unique, first, inverse = distinct_values(pairs, count * width)
        # with weights, bincount sums floats (its stub says integers)
        sums = cast(npt.NDArray[np.float64], np.bincount(inverse, weights=cpu_seconds[known]))
        # pairs by part, and within a part in the order their first row came
        order = np.argsort(first, kind="stable")
        order = order[np.argsort(unique[order] // width, kind="stable")]
        unique = unique[order]
        parts = unique // width
        sums = sums[order]
        if per_second_of is not None:
            sums = sums / per_second_of[parts]
        # one dict per part, built from slices in C rather than an item at a time
        # (known classes only: every one has a workload)
        keys = cast(list[WorkloadKey],
                    list(map(self._workloads.__getitem__, (unique % width).tolist())))
        values = sums.tolist()
        bounds = (np.flatnonzero(np.diff(parts)) + 1).tolist()
        for part, start, end in zip(parts[[0, *bounds]].tolist(), [0, *bounds],
                                    [*bounds, len(keys)], strict=True):
            per_part[part] = dict(zip(keys[start:end], values[start:end], strict=True))
        return per_part

    def _classify(self, uids: list[str]) -> list[int]:
        """The classes of uids not in the table, asked of the provider in one pass; those
        of known uids are kept."""
        infos = list(map(self.metadata.pod, uids))
        if all(map(is_, infos, repeat(None))):  # static metadata: every pod unknown
            found = [self._class_of(None)] * len(uids)
        else:
            found = [self._class_of(None if info is None else (
                info.namespace, info.workload_kind, info.workload_name)) for info in infos]
            self._class_of_uid.update(
                (uid, pod_class) for uid, pod_class, info in zip(uids, found, infos, strict=True)
                if info is not None)
        if len(self.group_ids) != len(self._workloads):  # new classes
            self.group_ids = np.array(self._groups, dtype=np.intp)
            self._known = np.array([w is not None for w in self._workloads], dtype=bool)
        return found

    def _class_of(self, workload: WorkloadKey | None) -> int:
        """The class of pods of `workload` (None: pods the provider does not know)."""
        pod_class = self._class_of_workload.get(workload)
        if pod_class is None:
            pod_class = self._class_of_workload[workload] = len(self._workloads)
            self._workloads.append(workload)
            key = workload or (UNKNOWN, UNKNOWN, UNKNOWN)  # unknown pods: the unknown group
            self._groups.append(self.ledger.group_id(key[0], key))
        return pod_class

    def _forget(self) -> None:
        self._class_of_uid.clear()
        self._class_of_workload.clear()
        self._workloads.clear()
        self._groups.clear()
        self.group_ids = np.zeros(0, dtype=np.intp)
        self._known = np.zeros(0, dtype=bool)


class IngestQueue:
    """Group commit: batches that arrive close together share one model run.

    Under load many single-report requests are ready at once; applying them together
    pays the model's fixed per-call cost (a few hundred microseconds) once. A run starts
    on the next event-loop turn, but no sooner than `min_run_interval_seconds` after the
    previous one began, unless `full_run_reports` are already waiting: an idle collector
    answers at once, a busy one gathers a few milliseconds of requests into each run (at
    3,300 reports/s, about 16 a run instead of 2 or 3; agents report every 15 s, so 5 ms
    more at most is nothing to them), and a run that is full starts without waiting.
    Each request still waits for its own result, so a reply always means "applied" (or
    "duplicate").
    """

    def __init__(self, ingestor: Ingestor, min_run_interval_seconds: float = 0.005,
                 full_run_reports: int = 16) -> None:
        self.ingestor = ingestor
        self.min_run_interval_seconds = min_run_interval_seconds
        self.full_run_reports = full_run_reports
        self._pending: list[tuple[list[Report], asyncio.Future[IngestResult]]] = []
        self._pending_reports = 0
        self._last_run = -math.inf  # event-loop time
        self._waiting: asyncio.TimerHandle | None = None  # a run due at the interval's end

    async def submit(self, reports: list[Report]) -> IngestResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        first = not self._pending
        self._pending.append((reports, future))
        self._pending_reports += len(reports)
        if first:
            wait = self._last_run + self.min_run_interval_seconds - loop.time()
            if wait > 0 and self._pending_reports < self.full_run_reports:
                self._waiting = loop.call_later(wait, self._flush)
            else:
                loop.call_soon(self._flush)
        elif self._waiting is not None and self._pending_reports >= self.full_run_reports:
            self._waiting.cancel()
            self._waiting = None
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._pending_reports = 0
        self._waiting = None
        self._last_run = asyncio.get_running_loop().time()
        try:
            results = self.ingestor.ingest_batches([reports for reports, _ in pending])
        except Exception:
            # A model bug tripped by some report: nothing was applied. Apply the batches one
            # by one so that only the request holding it fails, not its neighbours.
            for reports, future in pending:
                self._apply_alone(reports, future)
            return
        for (_, future), result in zip(pending, results, strict=True):
            if not future.done():  # the client may have gone; the reports are applied anyway
                future.set_result(result)

    def _apply_alone(
        self, reports: list[Report], future: asyncio.Future[IngestResult]
    ) -> None:
        try:
            result = self.ingestor.ingest(reports)
        except Exception as exc:
            log.exception("applying a batch of %d reports failed", len(reports))
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)


def distinct_values(values: npt.NDArray[np.intp], bound: int) -> tuple[
        npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """`np.unique(values, return_index=True, return_inverse=True)` for values in
    [0, bound): the distinct values ascending, the index of each one's first occurrence,
    and each value's index among them. With a table of `bound` slots when that is small
    (no sort), else by np.unique."""
    count = len(values)
    if bound > TABLE_SLOTS_PER_VALUE * count:
        unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        return unique, first, inverse
    first_of = np.full(bound, count, dtype=np.intp)
    np.minimum.at(first_of, values, np.arange(count))
    unique = np.flatnonzero(first_of < count)
    index_of = np.empty(bound, dtype=np.intp)
    index_of[unique] = np.arange(len(unique))
    return unique, first_of[unique], index_of[values]


def _with_pod_records(report: Report) -> Report:
    """`report`, or a copy with its pod rows as `PodRecord`s if they are dicts."""
    pods = report.get("pods")
    if not pods or type(pods[0]) is not dict:
        return report
    return cast(Report, {**report, "pods": pod_records(pods)})


def _rapl_joules(report: Report) -> float:
    rapl = report.get("rapl")
    if rapl is None:
        return math.nan
    return float(rapl["package_joules"] + rapl.get("dram_joules", 0.0))
