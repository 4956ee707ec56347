"""Collector settings: grouped, frozen, every default documented here.

The command line (collector/options.py) fills these from flags, KUBECARBON_*
variables and the YAML config file; tests and the demo build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from collector.intensity import HourlyIntensity
from collector.model.rightsizing import RecommendationPolicy
from collector.profiles import ProfileConfig
from kubecarbon import wire


@dataclass(frozen=True)
class ServerSettings:
    """Where the collector listens and who may post reports."""

    listen_host: str = "0.0.0.0"
    listen_port: int = 9880
    token_file: Path | None = None  # None: no authentication on /api/v1/reports
    previous_token_file: Path | None = None  # also accepted while a rotation propagates
    tls_cert_file: Path | None = None  # with tls_key_file: serve HTTPS (reloaded on change)
    tls_key_file: Path | None = None


@dataclass(frozen=True)
class IngestLimits:
    """Wire-format limits (kubecarbon.wire); a batch breaking any of them is rejected whole."""

    max_body_bytes: int = wire.MAX_BODY_BYTES  # applies to the body before and after gunzip
    max_reports_per_batch: int = wire.MAX_REPORTS_PER_BATCH
    max_pods_per_report: int = wire.MAX_PODS_PER_REPORT
    min_window_seconds: float = wire.MIN_WINDOW_SECONDS
    max_window_seconds: float = wire.MAX_WINDOW_SECONDS
    busy_tolerance: float = wire.BUSY_TOLERANCE  # busy_seconds <= logical_cpus * window * this


@dataclass(frozen=True)
class DedupeSettings:
    """Bounded memory for (agent_id, seq) idempotency."""

    max_agents: int = 100_000  # least recently seen agent ids are forgotten past this
    seq_window: int = 1024  # seqs this far below an agent's highest are treated as seen


@dataclass(frozen=True)
class ExportSettings:
    """What /metrics shows and how much of it."""

    stale_after_seconds: float = 300.0  # silent nodes leave gauges and fleet sums after this
    forget_after_seconds: float = 86_400.0  # and every series, counters too, after this
    max_nodes: int = 50_000  # beyond it the least recently seen nodes are forgotten
    per_pod_series: bool = False  # off by default: one series per pod is high cardinality
    max_workload_series: int = 10_000  # further workloads add to workload="other"
    max_pod_series: int = 10_000  # further pods add to pod="other" (when per-pod is on)


@dataclass(frozen=True)
class RightsizingSettings:
    """How recommendations are drawn (defaults: the VPA recommender's p90 + 15 %)."""

    window_seconds: float = 7 * 86_400.0  # usage history kept per workload
    sample_seconds: float = 600.0  # one usage sample per workload per interval
    percentile: float = 90.0
    headroom: float = 0.15
    min_history_seconds: float = 86_400.0  # less history: no recommendation
    max_workloads: int = 5_000  # workloads beyond it get no history (counted)
    recompute_seconds: float = 60.0  # the packing is reused this long, while recommendations hold

    @property
    def samples(self) -> int:
        return max(int(self.window_seconds // self.sample_seconds), 1)

    @property
    def policy(self) -> RecommendationPolicy:  # the model's view of these settings
        return RecommendationPolicy(
            self.percentile, self.headroom,
            max(int(self.min_history_seconds // self.sample_seconds), 1))


@dataclass(frozen=True)
class StateSettings:
    """The counter snapshot that survives restarts."""

    state_file: Path | None = None  # None: no snapshots, counters start at zero
    snapshot_interval_seconds: float = 60.0


@dataclass(frozen=True)
class ReplicaSettings:
    """Collector replicas: each node is owned by one (collector/sharding.py)."""

    replicas: int = 1  # the configured count, fixed: ownership is node hash mod this
    replica_name: str | None = None  # this pod's name, <set>-<ordinal>; needed when replicas > 1
    namespace: str | None = None  # where the replica pods run (the pod watch finds them there)
    peers_file: Path | None = None  # replica URLs, one a line, instead of the pod watch
    # With HTTPS (ServerSettings.tls_cert_file) replicas forward over HTTPS: a peer's
    # certificate must chain to this bundle (None: ca.crt beside the certificate, where a
    # kubernetes.io/tls Secret from cert-manager has it) and carry peer_server_name.
    peer_ca_file: Path | None = None
    peer_server_name: str | None = None  # the name the agents check; needed with HTTPS

    def peer_ca(self, tls_cert_file: Path) -> Path:
        """The CA bundle peers are verified with when the collector serves `tls_cert_file`."""
        return self.peer_ca_file or tls_cert_file.parent / "ca.crt"


@dataclass(frozen=True)
class Settings:
    """Everything the collector is configured with, grouped by concern."""

    server: ServerSettings = field(default_factory=ServerSettings)
    limits: IngestLimits = field(default_factory=IngestLimits)
    dedupe: DedupeSettings = field(default_factory=DedupeSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    state: StateSettings = field(default_factory=StateSettings)
    replicas: ReplicaSettings = field(default_factory=ReplicaSettings)
    rightsizing: RightsizingSettings = field(default_factory=RightsizingSettings)
    # "node": idle energy stays with the node (default); "requests": also split over pods by
    # requested CPU share, so namespace totals include it (docs/methodology.md, section 5)
    idle_attribution: str = "node"
    profiles: ProfileConfig = field(default_factory=ProfileConfig)
    hourly_intensity: HourlyIntensity | None = None  # --grid-intensity-file, loaded
    kubernetes: str = "auto"  # "auto": use the Kubernetes API when reachable; "off": static
    kubeconfig: Path | None = None  # None: in-cluster credentials, else $KUBECONFIG
    log_level: str = "info"
    config_file: Path | None = None
