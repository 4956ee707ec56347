"""Rightsizing in the running collector: each workload's bounded usage history, its
recommended CPU request, and what the live fleet would save if every workload asked
for that (the formulas are in collector/model/rightsizing.py).

`UsageHistory` keeps, per workload, one sample per --rightsizing-sample-interval (the
workload's CPU seconds in that interval over its length, summed over its pods) for
--rightsizing-window, in a fixed-size ring: memory and the state file stay bounded at
max_workloads x window / interval samples. The interval a collector starts in is not
sampled (it saw only part of it); an interval is closed once reports of the one after
next arrive, so late reports still count. Recommendations change only when an interval
closes, so they are computed then, not at each scrape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from collector.capacity import CapacityView
from collector.ledger import NodeLatest
from collector.metadata import WorkloadKey
from collector.model.estimate import WindowEstimate
from collector.model.parameters import ModelParameters
from collector.model.rightsizing import (
    YearlySavings,
    avoidable_nodes,
    nodes_needed,
    recommend_cores,
    yearly_savings,
)
from collector.settings import RightsizingSettings

DAEMONSET_KIND = "DaemonSet"  # one pod per node: it moves with no node, it shrinks every node


@dataclass(frozen=True)
class Recommendation:
    history_seconds: float  # sampled time so far
    peak_cores: float
    cores: float | None  # None: not enough history


class UsageHistory:
    """Per-workload rings of usage samples; written by ingest only."""

    def __init__(self, settings: RightsizingSettings | None = None) -> None:
        self.settings = settings or RightsizingSettings()
        self._rings: dict[WorkloadKey, npt.NDArray[np.float32]] = {}
        self._counts: dict[WorkloadKey, int] = {}  # samples written, ever (ring position)
        self._last_bucket: dict[WorkloadKey, int] = {}
        self._open: dict[int, dict[WorkloadKey, float]] = {}  # bucket -> CPU seconds
        self._first_bucket: int | None = None
        self.untracked_workloads = 0
        self.recommendations: Mapping[WorkloadKey, Recommendation] = {}  # replaced, not changed

    def add(self, window_ends: Sequence[float],
            cpu_seconds: Sequence[Mapping[WorkloadKey, float]]) -> None:
        """Each report's CPU seconds by workload, booked in the interval its window ends in."""
        for end, seconds in zip(window_ends, cpu_seconds, strict=True):
            bucket = self.interval_of(end)
            if self._first_bucket is None:
                self._first_bucket = bucket
            if self._open and bucket < min(self._open):
                continue  # older than an interval already closed
            table = self._open.setdefault(bucket, {})
            for key, value in seconds.items():
                table[key] = table.get(key, 0.0) + value
        if self._open:
            newest = max(self._open)
            closing = sorted(b for b in self._open if b <= newest - 2)
            for bucket in closing:
                self._close(bucket, self._open.pop(bucket))
            if closing:
                self._expire(newest)
                self._recompute()

    def interval_of(self, window_end: float) -> int:
        """The number of the sampling interval a window ending then is booked in."""
        return int(window_end // self.settings.sample_seconds)

    def _close(self, bucket: int, seconds: Mapping[WorkloadKey, float]) -> None:
        if bucket == self._first_bucket:
            return  # partial: the collector started during it
        size = self.settings.samples
        for key, value in seconds.items():
            ring = self._rings.get(key)
            if ring is None:
                if len(self._rings) >= self.settings.max_workloads:
                    self.untracked_workloads += 1
                    continue
                ring = self._rings[key] = np.zeros(size, dtype=np.float32)
                self._counts[key] = 0
            ring[self._counts[key] % size] = value / self.settings.sample_seconds
            self._counts[key] += 1
            self._last_bucket[key] = bucket

    def _expire(self, newest: int) -> None:
        horizon = newest - self.settings.samples
        for key in [k for k, b in self._last_bucket.items() if b < horizon]:
            del self._rings[key], self._counts[key], self._last_bucket[key]

    def samples_of(self, key: WorkloadKey) -> npt.NDArray[np.float64]:
        ring = self._rings.get(key)
        if ring is None:
            return np.zeros(0)
        count = min(self._counts[key], ring.size)
        return ring[:count].astype(np.float64)

    def _recompute(self) -> None:
        policy = self.settings.policy
        result = {}
        for key in self._rings:
            samples = self.samples_of(key)
            result[key] = Recommendation(
                history_seconds=samples.size * self.settings.sample_seconds,
                peak_cores=float(samples.max()) if samples.size else 0.0,
                cores=recommend_cores(samples, policy),
            )
        self.recommendations = result

    # state file
    def to_document(self) -> dict[str, Any]:
        rows = []
        for key, ring in self._rings.items():
            count = self._counts[key]
            ordered = np.roll(ring, -(count % ring.size)) if count >= ring.size else ring[:count]
            rows.append([*key, self._last_bucket[key], ordered.tolist()])
        return {"sample_seconds": self.settings.sample_seconds, "workloads": rows}

    def load_document(self, document: Mapping[str, Any]) -> None:
        """Restore rings saved with the same sample interval (others are dropped: their
        samples would mean something else)."""
        if document.get("sample_seconds") != self.settings.sample_seconds:
            return
        size = self.settings.samples
        for namespace, kind, name, last_bucket, values in document["workloads"]:
            if len(self._rings) >= self.settings.max_workloads:
                break
            kept = np.asarray(values, dtype=np.float32)[-size:]
            ring = np.zeros(size, dtype=np.float32)
            ring[:kept.size] = kept
            key = (str(namespace), str(kind), str(name))
            self._rings[key], self._counts[key] = ring, int(kept.size)
            self._last_bucket[key] = int(last_bucket)
        self._recompute()


@dataclass(frozen=True)
class WorkloadRightsizing:
    requested_cores: float
    recommendation: Recommendation | None  # None: no history at all
    avoidable_co2e_tonnes_per_year: float  # its share of the fleet's p50, by cores freed


@dataclass(frozen=True)
class RightsizingView:
    workloads: dict[WorkloadKey, WorkloadRightsizing]
    nodes_today: int
    nodes_recommended: int
    savings: YearlySavings


def rightsizing_view(
    capacity: CapacityView,
    recommendations: Mapping[WorkloadKey, Recommendation],
    live: Sequence[NodeLatest],
    estimate: WindowEstimate,
    params: ModelParameters,
) -> RightsizingView:
    """Recommended requests packed onto the live nodes against today's requests.

    A workload with a recommendation has each pod's CPU request scaled by recommended /
    requested (a workload requesting nothing gets the recommendation spread evenly);
    memory requests stay. DaemonSet pods are not packed: each node keeps room for its own.
    """
    pods = capacity.pods
    requested: dict[WorkloadKey, float] = {}
    pods_of: dict[WorkloadKey, int] = {}
    for pod in pods:
        key = (pod.namespace, pod.workload_kind, pod.workload_name)
        requested[key] = requested.get(key, 0.0) + pod.cpu_request_cores
        pods_of[key] = pods_of.get(key, 0) + 1
    index = {c.labels[0]: k for k, c in enumerate(capacity.capacity)}
    room_cpu = np.array([c.allocatable_cpu for c in capacity.capacity], dtype=np.float64)
    room_memory = np.array([c.allocatable_memory for c in capacity.capacity], dtype=np.float64)
    today_cpu, new_cpu, memory = [], [], []
    for pod in pods:
        if pod.workload_kind == DAEMONSET_KIND:
            k = index[pod.node_name]  # type: ignore[index]
            room_cpu[k] -= pod.cpu_request_cores
            room_memory[k] -= pod.memory_request_bytes
            continue
        key = (pod.namespace, pod.workload_kind, pod.workload_name)
        recommendation = recommendations.get(key)
        cores = recommendation.cores if recommendation is not None else None
        if cores is None:
            scaled = pod.cpu_request_cores
        elif requested[key] > 0:
            scaled = pod.cpu_request_cores * cores / requested[key]
        else:
            scaled = cores / pods_of[key]
        today_cpu.append(pod.cpu_request_cores)
        new_cpu.append(scaled)
        memory.append(pod.memory_request_bytes)
    room_cpu, room_memory = np.maximum(room_cpu, 0.0), np.maximum(room_memory, 0.0)
    today = nodes_needed(today_cpu, memory, room_cpu, room_memory)
    after = nodes_needed(new_cpu, memory, room_cpu, room_memory)
    position = {n.labels[0]: k for k, n in enumerate(live)}
    order = np.array([position[c.labels[0]] for c in capacity.capacity], dtype=np.intp)
    idle = estimate.idle_power_watts[order] if order.size else np.zeros(0)
    avoided = avoidable_nodes(today, after, idle)
    chosen = order[avoided.avoided]
    savings = yearly_savings(
        estimate.idle_power_watts[chosen], estimate.pue[chosen],
        estimate.grid_intensity_grams_per_kilowatt_hour[chosen],
        np.array([live[k].logical_cpus for k in chosen.tolist()], dtype=np.float64), params)
    freed = {key: max(requested.get(key, 0.0) - r.cores, 0.0)
             for key, r in recommendations.items() if r.cores is not None}
    total_freed = sum(freed.values())
    workloads = {}
    for key in requested.keys() | recommendations.keys():
        share = freed.get(key, 0.0) / total_freed if total_freed > 0 else 0.0
        workloads[key] = WorkloadRightsizing(
            requested.get(key, 0.0), recommendations.get(key),
            share * savings.co2e_tonnes_band.p50)
    return RightsizingView(workloads, today.nodes, after.nodes, savings)

