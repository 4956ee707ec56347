"""The provider's own health metrics: one declarative list and the collector that serves it.

`WATCH_METRICS` is the one list of the `kubecarbon_kubernetes_*` families: the
exposition is built from it at scrape time, and the metrics section of
docs/kubernetes.md from it by `metrics_doc.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector.kubernetes.provider import KubernetesMetadataProvider
from collector.kubernetes.reflector import LIST_REASONS, WATCH_REASONS, ReflectorState

LABELS = ("resource",)  # one series per reflector: "nodes" or "pods"
REASON_LABEL = "reason"  # of the request counters: why each request was sent


@dataclass(frozen=True)
class WatchMetricSpec:
    """One family: served with one series per resource, documented as one table row."""

    name: str  # the full exposition name; counters end in _total
    kind: str  # "gauge" or "counter"
    unit: str
    help: str
    # None: no sample for this resource yet; a mapping: one sample per reason
    value: Callable[[ReflectorState], float | Mapping[str, int] | None]
    reasons: tuple[str, ...] = ()  # the values of a `reason` label, if the family has one

    @property
    def labels(self) -> tuple[str, ...]:
        return (*LABELS, REASON_LABEL) if self.reasons else LABELS

    def family(self) -> GaugeMetricFamily | CounterMetricFamily:
        kind = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        return kind(self.name, self.help, labels=list(self.labels))

    def add_samples(
        self, family: GaugeMetricFamily | CounterMetricFamily, state: ReflectorState
    ) -> None:
        value = self.value(state)
        if isinstance(value, Mapping):
            for reason in self.reasons:
                family.add_metric([state.resource, reason], float(value[reason]))
        elif value is not None:
            family.add_metric([state.resource], value)


WATCH_METRICS: tuple[WatchMetricSpec, ...] = (
    WatchMetricSpec(
        "kubecarbon_kubernetes_watch_up", "gauge", "bool",
        "1 while the watch of this resource is connected to the API server",
        lambda state: float(state.connected)),
    WatchMetricSpec(
        "kubecarbon_kubernetes_synced", "gauge", "bool",
        "1 once this resource was listed completely (the metadata may be stale if not up)",
        lambda state: float(state.synced)),
    WatchMetricSpec(
        "kubecarbon_kubernetes_objects", "gauge", "objects",
        "Objects of this resource currently known to the collector",
        lambda state: float(state.objects)),
    WatchMetricSpec(
        "kubecarbon_kubernetes_last_sync_timestamp_seconds", "gauge", "seconds",
        "Unix time at which the last complete list of this resource finished",
        lambda state: state.last_sync_timestamp_seconds),
    WatchMetricSpec(
        "kubecarbon_kubernetes_relists_total", "counter", "lists",
        "Complete lists of this resource (the first one, and after 410 Gone)",
        lambda state: float(state.relists_total)),
    WatchMetricSpec(
        "kubecarbon_kubernetes_watch_reconnects_total", "counter", "watches",
        "Watches of this resource reopened after the connection was lost",
        lambda state: float(state.reconnects_total)),
    WatchMetricSpec(
        "kubecarbon_kubernetes_watch_errors_total", "counter", "requests",
        "Failed list or watch requests for this resource",
        lambda state: float(state.errors_total)),
    WatchMetricSpec(
        "kubecarbon_kubernetes_list_requests_total", "counter", "requests",
        "LIST requests sent for this resource, every page, by why the list began: initial "
        "(the first), expired (410 Gone: the watch's resourceVersion was no longer served), "
        "retry (the previous list attempt failed; after backoff)",
        lambda state: state.list_requests, LIST_REASONS),
    WatchMetricSpec(
        "kubecarbon_kubernetes_watch_requests_total", "counter", "requests",
        "WATCH requests sent for this resource, by why: listed (after a complete list), "
        "ended (the previous watch ended at its timeout), retry (the previous watch "
        "failed; from the same resourceVersion, after backoff)",
        lambda state: state.watch_requests, WATCH_REASONS),
)


class KubernetesWatchMetrics:
    """Prometheus collector for the provider's own health; register it on a registry.

    Values are read at scrape time from the reflectors, so nothing can go stale.
    """

    def __init__(self, provider: KubernetesMetadataProvider) -> None:
        self._provider = provider

    def describe(self) -> Iterator[Metric]:
        return (spec.family() for spec in WATCH_METRICS)

    def collect(self) -> Iterator[Metric]:
        states = self._provider.reflector_states()
        for spec in WATCH_METRICS:
            family = spec.family()
            for state in states:
                spec.add_samples(family, state)
            yield family
