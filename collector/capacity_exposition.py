"""The requested-versus-used and rightsizing families of a scrape (catalogue: collector/metrics.py).

`CapacityInputs` is what a scrape takes from the metadata provider, the pod-usage
tracker and the usage history, at once, on the event loop: the provider's requests by
node are a copy of a table of nodes, not of pods. `CapacityFamilies` turns it into
rows on any thread. The packing behind the rightsizing series walks every requesting
pod, so it is reused for up to a minute (RightsizingSettings.recompute_seconds), but
never across a change of the recommendations: a workload that just got one is priced
at the next scrape. Renders in forked children (collector/render_process.py) would
each pack in a copy that dies with them, so `prepare` packs when due in a child of its
own (a packing takes seconds of the interpreter lock at 10,000 nodes) and keeps the
result in the serving process for the renders to reuse.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from collector.capacity import CapacityView, CpuAccount, NodeUsage, PodUsageTracker, capacity_view
from collector.fleet_view import FleetView
from collector.ledger import LedgerView
from collector.metadata import (
    ClusterInventory,
    MetadataProvider,
    NodeInfo,
    NodeRequests,
    WorkloadKey,
)
from collector.metrics import SPECS, MetricSpec
from collector.model.coefficients import JOULES_PER_KILOWATT_HOUR
from collector.model.parameters import ModelParameters
from collector.render_process import render_in_child
from collector.rightsizing import (
    Recommendation,
    RightsizingView,
    UsageHistory,
    rightsizing_view,
)
from collector.settings import RightsizingSettings

Row = tuple[tuple[str, ...], float]
GRAMS_PER_TONNE = 1e6


@dataclass(frozen=True)
class CapacityInputs:
    """What one scrape reads for these families; nothing in it changes afterwards."""

    nodes: list[NodeInfo]
    requests: dict[str, NodeRequests]  # by node (ClusterInventory.pod_requests)
    usage: dict[str, NodeUsage]
    recommendations: Mapping[WorkloadKey, Recommendation]
    untracked_workloads: int


def capacity_inputs(metadata: MetadataProvider, pod_usage: PodUsageTracker,
                    history: UsageHistory) -> CapacityInputs | None:
    """What a scrape reads; None when the provider cannot list nodes and pods."""
    if not isinstance(metadata, ClusterInventory):
        return None
    return CapacityInputs(metadata.nodes(), metadata.pod_requests(), pod_usage.latest(),
                          history.recommendations, history.untracked_workloads)


def rightsizing_summary(view: RightsizingView | None,
                        recommendations: Mapping[WorkloadKey, Recommendation]
                        ) -> dict[str, object] | None:
    """What the status page shows of rightsizing; None before the fleet has live nodes."""
    if view is None:
        return None
    band = view.savings.co2e_tonnes_band
    sized = sum(1 for r in recommendations.values() if r.cores is not None)
    return {
        "avoidable_nodes": view.savings.nodes,
        "it_energy_kwh_per_year": view.savings.it_energy_kilowatt_hours,
        "co2e_tonnes_per_year": {"0.05": band.p05, "0.5": band.p50, "0.95": band.p95},
        "workloads_sized": sized,
        "workloads_waiting": len(recommendations) - sized,
    }


class RightsizingStatus:
    """What the status page shows of rightsizing, made in steps like a scrape's: `take` the
    inputs on the event loop; for a large fleet `prepare` (on a worker thread), which packs
    in a forked child when the kept packing is stale; then `summary` (on that thread), which
    reuses the packing kept, or packs in place when there is none."""

    def __init__(self, families: CapacityFamilies, metadata: MetadataProvider,
                 pod_usage: PodUsageTracker, history: UsageHistory) -> None:
        self.families = families
        self.metadata = metadata
        self.pod_usage = pod_usage
        self.history = history

    def take(self) -> CapacityInputs | None:
        return capacity_inputs(self.metadata, self.pod_usage, self.history)

    def prepare(self, inputs: CapacityInputs | None, ledger: LedgerView,
                fleet: Callable[[], FleetView]) -> None:
        if inputs is not None:
            self.families.prepare(inputs, ledger, fleet)

    def summary(self, inputs: CapacityInputs | None, ledger: LedgerView, fleet: FleetView
                ) -> dict[str, object] | None:
        if inputs is None:
            return None
        return rightsizing_summary(self.families.rightsizing(inputs, ledger, fleet),
                                   inputs.recommendations)


class CapacityFamilies:
    def __init__(self, params: ModelParameters | None = None,
                 settings: RightsizingSettings | None = None) -> None:
        self.params = params if params is not None else ModelParameters()
        self.settings = settings if settings is not None else RightsizingSettings()
        self._lock = threading.Lock()
        # (computed at, from these recommendations, view)
        self._cached: tuple[float, Mapping[WorkloadKey, Recommendation], RightsizingView] | None \
            = None

    def forked(self) -> None:
        """Call first in a forked child: a lock another thread held at the fork stays
        held in the child's copy."""
        self._lock = threading.Lock()

    def prepare(self, inputs: CapacityInputs, ledger: LedgerView,
                fleet: Callable[[], FleetView]) -> None:
        """Before a render in a forked child, in the serving process (on a worker thread):
        if the packing kept is not reusable for this scrape, pack in a forked child and
        keep its result. `fleet` is called only then, in that child."""
        if self._reusable(inputs, ledger) is not None:
            return

        def packed() -> bytes:
            self.forked()
            view = fleet()
            return pickle.dumps(self._pack(self._capacity(inputs, ledger, view), inputs, view))

        view = pickle.loads(render_in_child(packed))
        if view is not None:
            with self._lock:
                self._cached = (ledger.now, inputs.recommendations, view)

    def rightsizing(self, inputs: CapacityInputs, ledger: LedgerView, fleet: FleetView
                    ) -> RightsizingView | None:
        """The packing alone: the one kept when reusable (no capacity view), else `views`'."""
        if fleet.estimate is None:
            return None
        view = self._reusable(inputs, ledger)
        return view if view is not None else self.views(inputs, ledger, fleet)[1]

    def views(self, inputs: CapacityInputs, ledger: LedgerView, fleet: FleetView
              ) -> tuple[CapacityView, RightsizingView | None]:
        capacity = self._capacity(inputs, ledger, fleet)
        if fleet.estimate is None:
            return capacity, None
        with self._lock:
            view = self._reusable(inputs, ledger)
            if view is None:
                view = self._pack(capacity, inputs, fleet)
                if view is not None:
                    self._cached = (ledger.now, inputs.recommendations, view)
        return capacity, view

    @staticmethod
    def _capacity(inputs: CapacityInputs, ledger: LedgerView, fleet: FleetView) -> CapacityView:
        return capacity_view(fleet.live, inputs.nodes, inputs.requests, inputs.usage,
                             ledger.workloads.keys())

    def _pack(self, capacity: CapacityView, inputs: CapacityInputs, fleet: FleetView
              ) -> RightsizingView | None:
        if fleet.estimate is None:
            return None
        return rightsizing_view(capacity, inputs.recommendations, fleet.live, fleet.estimate,
                                self.params)

    def _reusable(self, inputs: CapacityInputs, ledger: LedgerView) -> RightsizingView | None:
        cached = self._cached  # one read: another thread may replace it meanwhile
        if (cached is not None and cached[1] is inputs.recommendations
                and ledger.now - cached[0] < self.settings.recompute_seconds):
            return cached[2]
        return None

    def families(self, inputs: CapacityInputs, ledger: LedgerView, fleet: FleetView
                 ) -> Iterator[tuple[MetricSpec, list[Row]]]:
        capacity, rightsizing = self.views(inputs, ledger, fleet)
        yield SPECS["node_allocatable_cpu_cores"], sorted(
            (c.labels, c.allocatable_cpu) for c in capacity.capacity)
        scopes: list[tuple[str, Mapping[tuple[str, ...], CpuAccount]]] = [
            ("node", {tuple(k): v for k, v in capacity.nodes.items()}),
            ("namespace", {(k,): v for k, v in capacity.namespaces.items()}),
            ("workload", {tuple(k): v for k, v in capacity.workloads.items()}),
        ]
        for scope, table in scopes:
            rows = sorted(table.items())
            for what in ("requested", "used", "idle_requested"):
                yield SPECS[f"{scope}_{what}_cpu_cores"], [
                    (k, getattr(v, what)) for k, v in rows]
        yield SPECS["collector_rightsizing_untracked_workloads_total"], [
            ((), inputs.untracked_workloads)]
        shown = capacity.workloads.keys()
        recommendations = sorted((k, r) for k, r in inputs.recommendations.items() if k in shown)
        yield SPECS["workload_rightsizing_history_seconds"], [
            (k, r.history_seconds) for k, r in recommendations]
        yield SPECS["workload_recommended_cpu_cores"], [
            (k, r.cores) for k, r in recommendations if r.cores is not None]
        if rightsizing is None:
            return
        yield SPECS["workload_avoidable_co2e_grams_per_year"], sorted(
            (k, w.avoidable_co2e_tonnes_per_year * GRAMS_PER_TONNE)
            for k, w in rightsizing.workloads.items()
            if k in shown and w.recommendation is not None and w.recommendation.cores is not None)
        yield SPECS["rightsizing_nodes"], [
            (("current",), rightsizing.nodes_today),
            (("recommended",), rightsizing.nodes_recommended)]
        savings = rightsizing.savings
        yield SPECS["rightsizing_avoidable_nodes"], [((), savings.nodes)]
        yield SPECS["rightsizing_avoidable_energy_joules_per_year"], [
            ((), savings.it_energy_kilowatt_hours * JOULES_PER_KILOWATT_HOUR)]
        band = savings.co2e_tonnes_band
        yield SPECS["rightsizing_avoidable_co2e_grams_per_year"], [
            ((quantile,), tonnes * GRAMS_PER_TONNE)
            for quantile, tonnes in (("0.05", band.p05), ("0.5", band.p50), ("0.95", band.p95))]
