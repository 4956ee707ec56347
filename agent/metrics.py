"""The agent's own metrics (DESIGN: prefix kubecarbon_agent_), in an injectable registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent import __version__


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.source_success = Gauge(
            "kubecarbon_agent_source_success",
            "1 if the source's last sample succeeded, 0 if it failed (see the log for why)",
            ["source"],
            registry=self.registry,
        )
        self.source_duration_seconds = Gauge(
            "kubecarbon_agent_source_duration_seconds",
            "Time the source's last sample took",
            ["source"],
            registry=self.registry,
        )
        self.reports_sent = Counter(
            "kubecarbon_agent_reports_sent",
            "Reports the collector acknowledged with 200",
            registry=self.registry,
        )
        self.reports_failed = Counter(
            "kubecarbon_agent_reports_failed",
            "Reports the collector rejected with a 4xx (or too large to send); not retried",
            registry=self.registry,
        )
        self.reports_buffered = Gauge(
            "kubecarbon_agent_reports_buffered",
            "Reports waiting for the collector's acknowledgement, in flight included",
            registry=self.registry,
        )
        self.reports_dropped = Counter(
            "kubecarbon_agent_reports_dropped",
            "Oldest reports dropped because the buffer reached its count or byte bound",
            registry=self.registry,
        )
        self.build_info = Gauge(
            "kubecarbon_build_info",
            "Always 1; the version label says which kubecarbon runs",
            ["version"],
            registry=self.registry,
        )
        self.build_info.labels(version=__version__).set(1)
