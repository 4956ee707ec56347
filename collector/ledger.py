"""The ledger: what the collector has counted, per node, pod group, pod and fleet.

Counters are keyed by their label values. Beside each node's counters the ledger
keeps the node's latest window (the source of its gauges) and when it was last
heard from; beside all of them, which (agent_id, seq) pairs it holds, so that the
state file brings back counters and dedupe together. Only the ingest step writes
here (`book_*`); nodes leave in two counted ways: silent past --forget-after
(`expire`), or least recently seen past --max-nodes (`enforce_node_cap`).

Readers never touch the ledger itself. `view(now)` hands them an immutable copy as
of `now`, in which nodes due to expire are already gone and counted, so that what
they see does not depend on when expiry last ran; the copy can be read on any thread.
`to_document`/`load_document` are the ledger's codec for the state file
(collector/snapshot.py writes and reads the file).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from collector.dedupe import SeqTracker
from collector.metadata import WorkloadKey
from collector.model.parameters import NodeProfile
from collector.settings import ExportSettings

UNKNOWN = "unknown"
OTHER = "other"  # where series beyond a cap are added up

NodeLabels = tuple[str, str, str, str]  # node, region, instance_type, power_source
PodKey = tuple[str, str]  # namespace, pod
Group = tuple[str, WorkloadKey | None]  # namespace, workload (None: workload series are off)


@dataclass(frozen=True, slots=True)
class NodeCounters:
    energy_joules: float = 0.0  # IT energy
    idle_energy_joules: float = 0.0
    co2e_grams: float = 0.0  # operational: facility energy * grid intensity
    embodied_co2e_grams: float = 0.0

    def as_list(self) -> list[float]:
        return [self.energy_joules, self.idle_energy_joules, self.co2e_grams,
                self.embodied_co2e_grams]


@dataclass(frozen=True, slots=True)
class UsageCounters:
    """CPU, energy and CO2e attributed to a namespace, workload or pod."""

    cpu_seconds: float = 0.0
    energy_joules: float = 0.0
    co2e_grams: float = 0.0

    def as_list(self) -> list[float]:
        return [self.cpu_seconds, self.energy_joules, self.co2e_grams]


@dataclass(frozen=True, slots=True)
class FleetCounters:
    baseline_energy_joules: float = 0.0
    avoided_energy_joules: float = 0.0  # may decrease: a window can be worse than the baseline
    avoided_operational_co2e_grams: float = 0.0
    avoided_embodied_co2e_grams: float = 0.0


@dataclass(frozen=True, slots=True)
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
    # CPU time of the platform's own pods (ModelParameters.overhead_namespaces)
    overhead_cpu_seconds: float = 0.0


@dataclass(frozen=True)
class LedgerView:
    """The ledger as of `now`, copied: nothing in it changes after `Ledger.view` returns."""

    now: float
    version: int  # the ledger's version it was taken at
    nodes: Mapping[NodeLabels, NodeCounters]
    windows: tuple[NodeLatest, ...]  # the latest window of every node in `nodes`
    groups: tuple[Group, ...]
    group_sums: npt.NDArray[np.float64]  # (3, len(groups)): cpu_seconds, energy, co2e
    pods: Mapping[PodKey, UsageCounters] | None  # None: per-pod series are off
    fleet: FleetCounters
    reports_accepted: int
    reports_duplicate: int
    default_profile_reports: int
    capped_pod_rows: Mapping[str, int]
    forgotten_nodes: Mapping[str, int]
    dedupe_agents: int
    dedupe_evictions: int

    @property
    def namespaces(self) -> dict[str, UsageCounters]:
        return usage_by_namespace(self.groups, self.group_sums)

    @property
    def workloads(self) -> dict[WorkloadKey, UsageCounters]:
        return usage_by_workload(self.groups, self.group_sums)


class Ledger:
    """Counters, latest windows and applied (agent_id, seq) pairs of the fleet seen here."""

    def __init__(self, export: ExportSettings | None = None,
                 seqs: SeqTracker | None = None) -> None:
        self.export = export if export is not None else ExportSettings()
        # `is None`, not `or`: an empty SeqTracker is falsy (it has a length)
        self.seqs = seqs if seqs is not None else SeqTracker()
        self.nodes: dict[NodeLabels, NodeCounters] = {}
        self.latest: dict[str, NodeLatest] = {}
        self.pods: dict[PodKey, UsageCounters] = {}
        self.fleet = FleetCounters()
        self.reports_accepted = 0
        self.reports_duplicate = 0
        self.default_profile_reports = 0
        self.capped_pod_rows = {"workload": 0, "pod": 0}
        self.forgotten_nodes = {"silent": 0, "cap": 0}
        self.version = 0  # moves with every change: views and caches compare it
        # node -> collector time of its last report, least recently seen first: the order
        # in which --forget-after and --max-nodes drop nodes
        self._node_seen: OrderedDict[str, float] = OrderedDict()
        self._node_labels: dict[str, set[NodeLabels]] = {}
        # Pod usage is summed per group in one array: a batch adds to it with a few numpy
        # calls, whatever the number of pods. Namespace and workload totals are sums over
        # groups. Group ids never change for the life of the ledger (ingest caches them).
        self._groups: list[Group] = []
        self._group_ids: dict[Group, int] = {}
        self._group_sums = np.zeros((3, 64))
        self._capped_groups: list[int] = []  # groups that are a workload "other"
        self._named_workloads: set[WorkloadKey] = set()  # under --max-workload-series

    # --- booking (the ingest step) ------------------------------------------------------

    def book_report(self, agent_id: str, seq: int, window: NodeLatest, counters: NodeCounters
                    ) -> None:
        """Add one report's node counters, keep its window if it is the node's newest."""
        self.seqs.mark(agent_id, seq)
        labels = window.labels
        node = labels[0]
        total = self.nodes.get(labels)
        self.nodes[labels] = counters if total is None else NodeCounters(
            total.energy_joules + counters.energy_joules,
            total.idle_energy_joules + counters.idle_energy_joules,
            total.co2e_grams + counters.co2e_grams,
            total.embodied_co2e_grams + counters.embodied_co2e_grams,
        )
        self._node_labels.setdefault(node, set()).add(labels)
        self._node_seen[node] = window.received_at
        self._node_seen.move_to_end(node)
        if window.on_default_profile:
            self.default_profile_reports += 1
        previous = self.latest.get(node)
        if previous is not None and previous.window_end > window.window_end:
            # a replayed older window adds to counters but must not roll gauges back
            if window.received_at > previous.received_at:
                self.latest[node] = replace(previous, received_at=window.received_at)
        else:
            self.latest[node] = window
        self.version += 1

    def group_id(self, namespace: str, workload: WorkloadKey) -> int:
        """The id of the group a pod of `workload` adds to, within --max-workload-series."""
        cap = self.export.max_workload_series
        named: WorkloadKey | None = None
        if cap > 0:
            if workload in self._named_workloads or len(self._named_workloads) < cap:
                self._named_workloads.add(workload)
                named = workload
            else:
                named = (namespace, OTHER, OTHER)
        return self._group_id((namespace, named))

    def book_group_usage(self, groups: npt.NDArray[np.intp], cpu: npt.NDArray[np.float64],
                         energy: npt.NDArray[np.float64], co2e: npt.NDArray[np.float64]) -> None:
        """Add pod rows to their groups (ids from `group_id`), one numpy pass per counter."""
        count = len(self._groups)
        if count > self._group_sums.shape[1]:
            grown = np.zeros((3, max(count, 2 * self._group_sums.shape[1])))
            grown[:, : self._group_sums.shape[1]] = self._group_sums
            self._group_sums = grown
        for row, weights in enumerate((cpu, energy, co2e)):
            self._group_sums[row, :count] += np.bincount(groups, weights=weights, minlength=count)
        if self._capped_groups:
            rows = np.bincount(groups, minlength=count)
            self.capped_pod_rows["workload"] += int(rows[self._capped_groups].sum())
        self.version += 1

    def book_pod_usage(self, keys: Sequence[PodKey], cpu: Sequence[float],
                       energy: Sequence[float], co2e: Sequence[float]) -> None:
        """Add pod rows to per-pod series, within --max-pod-series."""
        cap = self.export.max_pod_series
        pods = self.pods
        for k, key in enumerate(keys):
            total = pods.get(key)
            if total is None and len(pods) >= cap:
                self.capped_pod_rows["pod"] += 1
                key = (key[0], OTHER)
                total = pods.get(key)
            pods[key] = UsageCounters(cpu[k], energy[k], co2e[k]) if total is None else (
                UsageCounters(total.cpu_seconds + cpu[k], total.energy_joules + energy[k],
                              total.co2e_grams + co2e[k]))
        self.version += 1

    def book_fleet(self, counters: FleetCounters) -> None:
        """Add a batch's fleet totals."""
        fleet = self.fleet
        self.fleet = FleetCounters(
            fleet.baseline_energy_joules + counters.baseline_energy_joules,
            fleet.avoided_energy_joules + counters.avoided_energy_joules,
            fleet.avoided_operational_co2e_grams + counters.avoided_operational_co2e_grams,
            fleet.avoided_embodied_co2e_grams + counters.avoided_embodied_co2e_grams,
        )
        self.version += 1

    def count_reports(self, accepted: int, duplicates: int) -> None:
        """Count a run's outcomes: reports booked, and repeats of reports already held."""
        self.reports_accepted += accepted
        self.reports_duplicate += duplicates
        self.version += 1

    # --- nodes leaving ------------------------------------------------------------------

    def expire(self, now: float) -> int:
        """Drop every series of nodes silent beyond --forget-after (autoscaled-away nodes).

        Prometheus keeps what it scraped; without this the collector would export a
        flat counter for every node that ever existed. Returns how many were dropped.
        """
        silent = self._silent_nodes(now)
        for node in silent:
            self._forget(node, "silent")
        return len(silent)

    def enforce_node_cap(self) -> None:
        """Past --max-nodes, drop the least recently seen nodes (stale ones come first).

        A dropped node that reports again starts its counters from zero, which Prometheus
        reads as a counter reset; its earlier totals stay in Prometheus.
        """
        while len(self._node_seen) > self.export.max_nodes:
            self._forget(next(iter(self._node_seen)), "cap")

    def _silent_nodes(self, now: float) -> list[str]:
        """Nodes silent beyond --forget-after at `now`, least recently seen first."""
        horizon = now - self.export.forget_after_seconds
        silent = []
        for node, seen in self._node_seen.items():
            if seen >= horizon:
                break
            silent.append(node)
        return silent

    def _forget(self, node: str, reason: str) -> None:
        del self._node_seen[node]
        for labels in self._node_labels.pop(node, ()):
            self.nodes.pop(labels, None)
        self.latest.pop(node, None)
        self.forgotten_nodes[reason] += 1
        self.version += 1

    # --- reading ------------------------------------------------------------------------

    @property
    def node_count(self) -> int:
        return len(self._node_seen)

    @property
    def namespaces(self) -> dict[str, UsageCounters]:
        """Usage by namespace (pods with unknown uids under "unknown")."""
        return usage_by_namespace(self._groups, self._group_sums)

    @property
    def workloads(self) -> dict[WorkloadKey, UsageCounters]:
        """Usage by (namespace, workload_kind, workload), within --max-workload-series."""
        return usage_by_workload(self._groups, self._group_sums)

    def view(self, now: float) -> LedgerView:
        """An immutable copy as of `now`; nodes due to expire are left out and counted."""
        nodes = dict(self.nodes)
        latest = dict(self.latest)
        silent = self._silent_nodes(now)
        for node in silent:
            for labels in self._node_labels.get(node, ()):
                nodes.pop(labels, None)
            latest.pop(node, None)
        forgotten = dict(self.forgotten_nodes)
        forgotten["silent"] += len(silent)
        return LedgerView(
            now=now,
            version=self.version,
            nodes=MappingProxyType(nodes),
            windows=tuple(latest.values()),
            groups=tuple(self._groups),
            group_sums=self._group_sums[:, : len(self._groups)].copy(),
            pods=MappingProxyType(dict(self.pods)) if self.export.per_pod_series else None,
            fleet=self.fleet,
            reports_accepted=self.reports_accepted,
            reports_duplicate=self.reports_duplicate,
            default_profile_reports=self.default_profile_reports,
            capped_pod_rows=MappingProxyType(dict(self.capped_pod_rows)),
            forgotten_nodes=MappingProxyType(forgotten),
            dedupe_agents=len(self.seqs),
            dedupe_evictions=self.seqs.evictions,
        )

    # --- the state file's codec -----------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        """JSON-ready counters and dedupe state (gauges rebuild from the next reports)."""
        fleet = self.fleet
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
                fleet.baseline_energy_joules,
                fleet.avoided_energy_joules,
                fleet.avoided_operational_co2e_grams,
                fleet.avoided_embodied_co2e_grams,
            ],
            "reports": [self.reports_accepted, self.reports_duplicate],
            "seqs": self.seqs.export(),
        }

    def load_document(self, document: Mapping[str, Any]) -> None:
        """Load `to_document` output (already schema-checked) into this new ledger.

        Raises ValueError on a malformed dedupe row, before anything is loaded; refuses
        a ledger that booked anything (ingest caches its group ids).
        """
        if self.version:
            raise RuntimeError("a ledger is loaded before anything is booked into it")
        self.seqs.restore(document["seqs"])
        for row in document["nodes"]:
            node, labels = row[0], (row[0], row[1], row[2], row[3])
            self.nodes[labels] = NodeCounters(*row[4:8])
            self._node_seen[node] = max(row[8], self._node_seen.get(node, row[8]))
            self._node_labels.setdefault(node, set()).add(labels)
        self._node_seen = OrderedDict(sorted(self._node_seen.items(), key=lambda item: item[1]))
        self.pods = {(row[0], row[1]): UsageCounters(*row[2:]) for row in document["pods"]}
        self._group_sums = np.zeros((3, max(64, len(document["groups"]))))
        for namespace, kind, name, *sums in document["groups"]:
            workload = (namespace, kind, name) if kind or name else None
            self._group_sums[:, self._group_id((namespace, workload))] += sums
        self._named_workloads = {
            w for _, w in self._groups if w is not None and w[1] != OTHER
        }
        self.fleet = FleetCounters(*document["fleet"])
        self.reports_accepted, self.reports_duplicate = document["reports"]
        self.version += 1

    def _group_id(self, group: Group) -> int:
        group_id = self._group_ids.get(group)
        if group_id is None:
            group_id = self._group_ids[group] = len(self._groups)
            self._groups.append(group)
            if group[1] is not None and group[1][1] == OTHER:
                self._capped_groups.append(group_id)
        return group_id


def usage_by_namespace(groups: Sequence[Group], sums: npt.NDArray[np.float64]
                       ) -> dict[str, UsageCounters]:
    totals: dict[str, list[float]] = {}
    for group_id, (namespace, _) in enumerate(groups):
        _add(totals, namespace, sums[:, group_id].tolist())
    return {key: UsageCounters(*values) for key, values in totals.items()}


def usage_by_workload(groups: Sequence[Group], sums: npt.NDArray[np.float64]
                      ) -> dict[WorkloadKey, UsageCounters]:
    totals: dict[WorkloadKey, list[float]] = {}
    for group_id, (_, workload) in enumerate(groups):
        if workload is not None:
            _add(totals, workload, sums[:, group_id].tolist())
    return {key: UsageCounters(*values) for key, values in totals.items()}


def _add(totals: dict[Any, list[float]], key: Any, values: list[float]) -> None:
    total = totals.get(key)
    if total is None:
        totals[key] = values
    else:
        for index, value in enumerate(values):
            total[index] += value
