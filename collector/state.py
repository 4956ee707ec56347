"""The collector's fleet state: counters, each node's latest window, and how reports change them.

`FleetState.ingest` takes a validated batch, drops (agent_id, seq) pairs already
applied, runs the model once over the rest, and only then changes anything, so a
model error leaves the state as it was. Counters are keyed by their label values;
gauges are computed at scrape time from the latest window of each live node.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from collector.dedupe import SeqTracker
from collector.intensity import HourlyIntensity
from collector.metadata import MetadataProvider, NodeInfo, StaticMetadataProvider
from collector.model.attribution import attribute_pods
from collector.model.estimate import POWER_SOURCES, WindowBatch, WindowEstimate, estimate_windows
from collector.model.fleet import (
    UNCERTAINTY_DRAWS,
    UNCERTAINTY_SEED,
    FleetGauges,
    Quantiles,
    avoided_co2e_rate_quantiles,
    fleet_gauges,
)
from collector.model.parameters import ModelParameters, NodeProfile, ProfileArrays
from collector.profiles import ProfileConfig, ResolvedNode, resolve_node
from collector.settings import ExportSettings

UNKNOWN = "unknown"
OTHER = "other"  # where series beyond a cap are added up
# pod uid -> group lookups kept between batches: room for 10,000 nodes of 110 pods (the
# kubelet default) and churn; cleared when full rather than grown
MAX_CACHED_POD_UIDS = 2_000_000

NodeLabels = tuple[str, str, str, str]  # node, region, instance_type, power_source
WorkloadKey = tuple[str, str, str]  # namespace, workload_kind, workload
PodKey = tuple[str, str]  # namespace, pod


@dataclass
class NodeCounters:
    energy_joules: float = 0.0  # IT energy
    idle_energy_joules: float = 0.0
    co2e_grams: float = 0.0  # operational: facility energy * grid intensity
    embodied_co2e_grams: float = 0.0

    def as_list(self) -> list[float]:
        return [self.energy_joules, self.idle_energy_joules, self.co2e_grams,
                self.embodied_co2e_grams]


@dataclass
class UsageCounters:
    """CPU, energy and CO2e attributed to a namespace, workload or pod."""

    cpu_seconds: float = 0.0
    energy_joules: float = 0.0
    co2e_grams: float = 0.0

    def as_list(self) -> list[float]:
        return [self.cpu_seconds, self.energy_joules, self.co2e_grams]


@dataclass
class FleetCounters:
    baseline_energy_joules: float = 0.0
    avoided_energy_joules: float = 0.0  # may decrease: a window can be worse than the baseline
    avoided_operational_co2e_grams: float = 0.0
    avoided_embodied_co2e_grams: float = 0.0


@dataclass
class CollectorCounters:
    """What the collector itself did; these are the only numbers a rejected batch moves."""

    reports_accepted: int = 0
    reports_duplicate: int = 0
    rejected_by_status: dict[int, int] = field(default_factory=dict)
    default_profile_reports: int = 0
    capped_pod_rows: dict[str, int] = field(default_factory=lambda: {"workload": 0, "pod": 0})
    snapshot_writes: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    snapshot_last_success_timestamp_seconds: float = 0.0
    snapshot_restore: str = "disabled"  # disabled, restored, missing, corrupt
    forgotten_nodes: dict[str, int] = field(default_factory=lambda: {"silent": 0, "cap": 0})


@dataclass
class NodeLatest:
    """A node's most recent window (by window end): the source of its gauges."""

    labels: NodeLabels
    profile: NodeProfile
    on_default_profile: bool
    received_at: float  # collector clock: staleness is judged by it
    window_end: float
    duration_seconds: float
    logical_cpus: float
    busy_seconds: float
    memory_total_bytes: float
    rapl_joules: float  # NaN without RAPL
    utilisation: float
    power_watts: float
    pods: int | None  # None: the report had no pods section (a host outside Kubernetes)
    containers: int | None


@dataclass(frozen=True)
class FleetView:
    """Everything /metrics derives from the live nodes, computed once per change."""

    live: list[NodeLatest]
    stale_count: int
    gauges: FleetGauges
    avoided_quantiles: Quantiles | None  # None without live nodes
    grid_intensity_by_region: dict[str, float]


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


class FleetState:
    """Counters and latest windows for the whole fleet seen by this collector."""

    def __init__(
        self,
        params: ModelParameters | None = None,
        profiles: ProfileConfig | None = None,
        metadata: MetadataProvider | None = None,
        export: ExportSettings | None = None,
        seqs: SeqTracker | None = None,
        clock: Callable[[], float] = time.time,
        hourly_intensity: HourlyIntensity | None = None,
    ) -> None:
        self.profiles = profiles if profiles is not None else ProfileConfig()
        self.hourly_intensity = hourly_intensity
        self.params = params if params is not None else self.profiles.model
        self.metadata: MetadataProvider = (
            metadata if metadata is not None else StaticMetadataProvider()
        )
        self.export = export if export is not None else ExportSettings()
        # `is None`, not `or`: an empty SeqTracker is falsy (it has a length)
        self.seqs = seqs if seqs is not None else SeqTracker()
        self.clock = clock
        self.nodes: dict[NodeLabels, NodeCounters] = {}
        self.latest: dict[str, NodeLatest] = {}
        self.pods: dict[PodKey, UsageCounters] = {}
        self.fleet = FleetCounters()
        self.collector = CollectorCounters()
        self._resolved: dict[str, tuple[NodeInfo | None, ResolvedNode]] = {}
        # node -> collector time of its last report, least recently seen first: the order
        # in which --forget-after and --max-nodes drop nodes
        self._node_seen: OrderedDict[str, float] = OrderedDict()
        self._node_labels: dict[str, set[NodeLabels]] = {}
        # Pod usage is summed per group, (namespace, workload key or None when workload series
        # are off), in one array: a batch adds to it with a few numpy calls, whatever the
        # number of pods. Namespace and workload totals are sums over groups.
        self._group_of_uid: dict[str, int] = {}  # known pods only
        self._groups: list[tuple[str, WorkloadKey | None]] = []
        self._group_ids: dict[tuple[str, WorkloadKey | None], int] = {}
        self._group_sums = np.zeros((3, 64))  # cpu_seconds, energy_joules, co2e_grams
        self._capped_groups: list[int] = []  # groups that are a workload "other"
        self._admitted_workloads: set[WorkloadKey] = set()  # under --max-workload-series
        self._latest_version = 0
        self._view_cache: tuple[tuple[int, int], FleetView] | None = None

    # --- ingest -----------------------------------------------------------------------

    def resolve(self, node_name: str) -> ResolvedNode:
        """The node's profile, re-resolved whenever the metadata provider's answer changes."""
        info = self.metadata.node(node_name)
        cached = self._resolved.get(node_name)
        if cached is not None and cached[0] is info:
            return cached[1]
        resolved = resolve_node(self.profiles, node_name, info)
        self._resolved[node_name] = (info, resolved)
        return resolved

    def _memory_total_bytes(self, report: dict[str, Any]) -> float:
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

    def ingest(self, reports: list[dict[str, Any]]) -> IngestResult:
        """Apply a validated batch; duplicates are acknowledged and skipped."""
        return self.ingest_batches([reports])[0]

    def ingest_batches(self, batches: list[list[dict[str, Any]]]) -> list[IngestResult]:
        """Apply several validated batches with one model run; one result per batch.

        A report repeated within or across the batches counts once, for the first batch
        that holds it. If the model fails, nothing is applied.
        """
        fresh: list[dict[str, Any]] = []
        in_run: set[tuple[str, int]] = set()
        results = []
        for reports in batches:
            accepted = 0
            for report in reports:
                key = (report["agent_id"], int(report["seq"]))
                if key in in_run or self.seqs.seen(*key):
                    continue
                in_run.add(key)
                fresh.append(report)
                accepted += 1
            results.append(IngestResult(accepted=accepted, duplicates=len(reports) - accepted))
        if fresh:
            self._apply(fresh)
        self.collector.reports_accepted += len(fresh)
        self.collector.reports_duplicate += sum(r.duplicates for r in results)
        return results

    def _apply(self, reports: list[dict[str, Any]]) -> None:
        # Everything that can fail happens before the first change to the state.
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
        estimate = estimate_windows(
            batch, profile_arrays, self.params,
            self._hourly([n.profile.region for n in resolved],
                         [(r["start"] + r["end"]) / 2 for r in reports]),
        )
        # a host outside Kubernetes reports no pods section
        pod_counts = [len(r.get("pods", ())) for r in reports]
        pod_uids = [pod["uid"] for r in reports for pod in r.get("pods", ())]
        pod_cpu = np.array([pod["cpu_seconds"] for r in reports for pod in r.get("pods", ())],
                           dtype=np.float64)
        attribution = attribute_pods(
            batch, estimate, np.repeat(np.arange(len(reports)), pod_counts), pod_cpu
        )
        now = self.clock()
        for i, report in enumerate(reports):
            self.seqs.mark(report["agent_id"], int(report["seq"]))
            self._apply_node(report, resolved[i], batch, estimate, i, now)
        self._apply_pods(
            pod_uids, pod_cpu, attribution.pod_energy_joules,
            attribution.pod_operational_co2e_grams,
        )
        fleet = self.fleet
        fleet.baseline_energy_joules += float(estimate.baseline_energy_joules.sum())
        fleet.avoided_energy_joules += float(estimate.avoided_energy_joules.sum())
        fleet.avoided_operational_co2e_grams += float(estimate.avoided_operational_co2e_grams.sum())
        fleet.avoided_embodied_co2e_grams += float(estimate.avoided_embodied_co2e_grams.sum())
        self._latest_version += 1
        self._enforce_node_cap()

    def _apply_node(
        self,
        report: dict[str, Any],
        resolved: ResolvedNode,
        batch: WindowBatch,
        estimate: WindowEstimate,
        i: int,
        now: float,
    ) -> None:
        profile = resolved.profile
        node = report["node"]
        labels: NodeLabels = (
            node,
            profile.region or UNKNOWN,
            profile.instance_type or UNKNOWN,
            POWER_SOURCES[int(estimate.power_source[i])],
        )
        counters = self.nodes.get(labels)
        if counters is None:
            counters = self.nodes[labels] = NodeCounters()
        counters.energy_joules += float(estimate.energy_joules[i])
        counters.idle_energy_joules += float(estimate.idle_energy_joules[i])
        counters.co2e_grams += float(estimate.operational_co2e_grams[i])
        counters.embodied_co2e_grams += float(estimate.embodied_co2e_grams[i])
        self._node_labels.setdefault(node, set()).add(labels)
        self._node_seen[node] = now
        self._node_seen.move_to_end(node)
        if resolved.on_default_profile:
            self.collector.default_profile_reports += 1
        previous = self.latest.get(node)
        if previous is not None and previous.window_end > report["end"]:
            # a replayed older window adds to counters but must not roll gauges back
            previous.received_at = max(previous.received_at, now)
            return
        self.latest[node] = NodeLatest(
            labels=labels,
            profile=profile,
            on_default_profile=resolved.on_default_profile,
            received_at=now,
            window_end=report["end"],
            duration_seconds=float(batch.duration_seconds[i]),
            logical_cpus=float(batch.logical_cpus[i]),
            busy_seconds=float(batch.busy_seconds[i]),
            memory_total_bytes=float(batch.memory_total_bytes[i]),
            rapl_joules=float(batch.rapl_joules[i]),
            utilisation=float(estimate.utilisation[i]),
            power_watts=float(estimate.power_watts[i]),
            pods=len(report["pods"]) if "pods" in report else None,
            containers=report.get("containers_running"),
        )

    def _apply_pods(
        self,
        uids: list[str],
        cpu: npt.NDArray[np.float64],
        energy: npt.NDArray[np.float64],
        co2e: npt.NDArray[np.float64],
    ) -> None:
        # Sum pod rows per (namespace, workload) group with numpy, then touch each group's
        # counters once: a batch has many pods but few groups.
        group_of_uid = self._group_of_uid
        groups = np.fromiter(
            (group_of_uid.get(uid, -1) for uid in uids), dtype=np.intp, count=len(uids)
        )
        for k in np.flatnonzero(groups < 0).tolist():
            groups[k] = self._group_for(uids[k])
        count = len(self._groups)
        if count > self._group_sums.shape[1]:
            grown = np.zeros((3, max(count, 2 * self._group_sums.shape[1])))
            grown[:, : self._group_sums.shape[1]] = self._group_sums
            self._group_sums = grown
        for row, weights in enumerate((cpu, energy, co2e)):
            self._group_sums[row, :count] += np.bincount(groups, weights=weights, minlength=count)
        if self._capped_groups:
            rows = np.bincount(groups, minlength=count)
            self.collector.capped_pod_rows["workload"] += int(rows[self._capped_groups].sum())
        if self.export.per_pod_series:
            self._apply_pod_series(uids, cpu.tolist(), energy.tolist(), co2e.tolist())

    def _group_for(self, uid: str) -> int:
        """Group id of a pod uid; remembered only once the metadata provider knows the pod."""
        info = self.metadata.pod(uid)
        namespace = info.namespace if info is not None else UNKNOWN
        workload: WorkloadKey | None = None
        cap = self.export.max_workload_series
        if cap > 0:
            key = (namespace, info.workload_kind, info.workload_name) if info else (
                UNKNOWN, UNKNOWN, UNKNOWN)
            if key in self._admitted_workloads or len(self._admitted_workloads) < cap:
                self._admitted_workloads.add(key)
                workload = key
            else:
                workload = (namespace, OTHER, OTHER)
        group_id = self._group_id((namespace, workload))
        if info is not None:
            if len(self._group_of_uid) >= MAX_CACHED_POD_UIDS:
                self._group_of_uid.clear()  # pods come and go: start over rather than grow
            self._group_of_uid[uid] = group_id
        return group_id

    def _group_id(self, group: tuple[str, WorkloadKey | None]) -> int:
        group_id = self._group_ids.get(group)
        if group_id is None:
            group_id = self._group_ids[group] = len(self._groups)
            self._groups.append(group)
            if group[1] is not None and group[1][1] == OTHER:
                self._capped_groups.append(group_id)
        return group_id

    @property
    def namespaces(self) -> dict[str, UsageCounters]:
        """Usage by namespace (pods with unknown uids under "unknown")."""
        totals: dict[str, UsageCounters] = {}
        for group_id, (namespace, _) in enumerate(self._groups):
            _add(totals, namespace, *self._group_sums[:, group_id].tolist())
        return totals

    @property
    def workloads(self) -> dict[WorkloadKey, UsageCounters]:
        """Usage by (namespace, workload_kind, workload), within --max-workload-series."""
        totals: dict[WorkloadKey, UsageCounters] = {}
        for group_id, (_, workload) in enumerate(self._groups):
            if workload is not None:
                _add(totals, workload, *self._group_sums[:, group_id].tolist())
        return totals

    def _apply_pod_series(
        self, uids: list[str], cpu: list[float], energy: list[float], co2e: list[float]
    ) -> None:
        cap = self.export.max_pod_series
        for k, uid in enumerate(uids):
            info = self.metadata.pod(uid)
            namespace = info.namespace if info is not None else UNKNOWN
            key = (namespace, info.name if info is not None else uid)
            if key not in self.pods and len(self.pods) >= cap:
                self.collector.capped_pod_rows["pod"] += 1
                key = (namespace, OTHER)
            _add(self.pods, key, cpu[k], energy[k], co2e[k])

    # --- scrape-time views ------------------------------------------------------------

    def fleet_view(self, now: float | None = None) -> FleetView:
        """Gauges from the latest window of every live node (cached until something changes)."""
        now = self.clock() if now is None else now
        self._forget_silent_nodes(now)
        horizon = now - self.export.stale_after_seconds
        live = [n for n in self.latest.values() if n.received_at >= horizon]
        key = (self._latest_version, len(live))
        if self._view_cache is not None and self._view_cache[0] == key:
            return self._view_cache[1]
        view = self._compute_view(live)
        self._view_cache = (key, view)
        return view

    def _forget_silent_nodes(self, now: float) -> None:
        """Drop every series of nodes silent beyond --forget-after (autoscaled-away nodes).

        Prometheus keeps what it scraped; without this the collector would export a
        flat counter for every node that ever existed.
        """
        horizon = now - self.export.forget_after_seconds
        while self._node_seen:
            node, seen = next(iter(self._node_seen.items()))
            if seen >= horizon:
                break
            self._forget(node, "silent")

    def _enforce_node_cap(self) -> None:
        """Past --max-nodes, drop the least recently seen nodes (stale ones come first).

        A dropped node that reports again starts its counters from zero, which Prometheus
        reads as a counter reset; its earlier totals stay in Prometheus.
        """
        while len(self._node_seen) > self.export.max_nodes:
            self._forget(next(iter(self._node_seen)), "cap")

    def _forget(self, node: str, reason: str) -> None:
        del self._node_seen[node]
        for labels in self._node_labels.pop(node, ()):
            self.nodes.pop(labels, None)
        self.latest.pop(node, None)
        self._resolved.pop(node, None)
        self.collector.forgotten_nodes[reason] += 1
        self._latest_version += 1

    def _hourly(
        self, regions: list[str], midpoints: list[float]
    ) -> npt.NDArray[np.float64] | None:
        """Per-window intensity from --grid-intensity-file (NaN: keep the table's)."""
        if self.hourly_intensity is None:
            return None
        return self.hourly_intensity.lookup(regions, midpoints)

    def _compute_view(self, live: list[NodeLatest]) -> FleetView:
        batch = WindowBatch(
            duration_seconds=np.array([n.duration_seconds for n in live], dtype=np.float64),
            logical_cpus=np.array([n.logical_cpus for n in live], dtype=np.float64),
            busy_seconds=np.array([n.busy_seconds for n in live], dtype=np.float64),
            memory_total_bytes=np.array([n.memory_total_bytes for n in live], dtype=np.float64),
            rapl_joules=np.array([n.rapl_joules for n in live], dtype=np.float64),
        )
        profile_arrays = ProfileArrays.from_profiles([n.profile for n in live], self.params)
        estimate = estimate_windows(
            batch, profile_arrays, self.params,
            self._hourly([n.profile.region for n in live],
                         [n.window_end - n.duration_seconds / 2 for n in live]),
        )
        gauges = fleet_gauges(batch, estimate, self.params)
        quantiles = (
            avoided_co2e_rate_quantiles(
                batch, estimate, self.params, draws=UNCERTAINTY_DRAWS, seed=UNCERTAINTY_SEED
            )
            if live
            else None
        )
        intensity: dict[str, float] = {}
        for n, grams in zip(live, estimate.grid_intensity_grams_per_kilowatt_hour.tolist(),
                            strict=True):
            intensity.setdefault(n.labels[1], grams)
        return FleetView(
            live=live,
            stale_count=len(self.latest) - len(live),
            gauges=gauges,
            avoided_quantiles=quantiles,
            grid_intensity_by_region=intensity,
        )

    # --- snapshots --------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """JSON-ready counters and dedupe state (gauges rebuild from the next reports)."""
        collector = self.collector
        return {
            # labels, counters, last seen; least recently seen node first
            "nodes": [
                [*labels, *self.nodes[labels].as_list(), seen]
                for node, seen in self._node_seen.items()
                for labels in sorted(self._node_labels[node])
            ],
            # namespace, workload_kind, workload ("" when workload series were off), sums
            "groups": [
                [namespace, *(workload[1:] if workload else ("", "")),
                 *self._group_sums[:, group_id].tolist()]
                for group_id, (namespace, workload) in enumerate(self._groups)
            ],
            "pods": [[*key, *c.as_list()] for key, c in self.pods.items()],
            "fleet": [
                self.fleet.baseline_energy_joules,
                self.fleet.avoided_energy_joules,
                self.fleet.avoided_operational_co2e_grams,
                self.fleet.avoided_embodied_co2e_grams,
            ],
            "reports": [collector.reports_accepted, collector.reports_duplicate],
            "seqs": self.seqs.export(),
        }

    def restore_snapshot(self, data: Mapping[str, Any]) -> None:
        """Load `to_snapshot` output (already schema-checked); replaces all counters."""
        nodes = {tuple(row[:4]): NodeCounters(*row[4:8]) for row in data["nodes"]}
        node_seen: dict[str, float] = {}
        node_labels: dict[str, set[NodeLabels]] = {}
        for row in data["nodes"]:
            node_seen[row[0]] = max(row[8], node_seen.get(row[0], row[8]))
            node_labels.setdefault(row[0], set()).add(tuple(row[:4]))
        pods = {tuple(row[:2]): UsageCounters(*row[2:]) for row in data["pods"]}
        self.seqs.restore(data["seqs"])
        self.nodes = nodes
        self._node_labels = node_labels
        self._node_seen = OrderedDict(sorted(node_seen.items(), key=lambda item: item[1]))
        self.pods = pods
        self._group_of_uid, self._groups, self._group_ids, self._capped_groups = {}, [], {}, []
        self._group_sums = np.zeros((3, max(64, len(data["groups"]))))
        for namespace, kind, name, *sums in data["groups"]:
            workload = (namespace, kind, name) if kind or name else None
            self._group_sums[:, self._group_id((namespace, workload))] += sums
        self._admitted_workloads = {
            w for _, w in self._groups if w is not None and w[1] != OTHER
        }
        self.fleet = FleetCounters(*data["fleet"])
        self.collector.reports_accepted, self.collector.reports_duplicate = data["reports"]


def _rapl_joules(report: Mapping[str, Any]) -> float:
    rapl = report.get("rapl")
    if rapl is None:
        return math.nan
    return float(rapl["package_joules"] + rapl.get("dram_joules", 0.0))


def _add(table: dict[Any, UsageCounters], key: Any, cpu: float, energy: float, co2e: float) -> None:
    counters = table.get(key)
    if counters is None:
        counters = table[key] = UsageCounters()
    counters.cpu_seconds += cpu
    counters.energy_joules += energy
    counters.co2e_grams += co2e


def iter_sorted(table: Mapping[Any, Any]) -> Iterable[tuple[Any, Any]]:
    """Stable exposition order."""
    return sorted(table.items(), key=lambda item: item[0])
