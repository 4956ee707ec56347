"""Agent settings: grouped, frozen, every default documented here.

The command line (agent/cli.py) fills these from flags, KUBECARBON_* variables
and the YAML config file; tests and the demo build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubecarbon.wire import MAX_BODY_BYTES, MAX_REPORTS_PER_BATCH, MEBIBYTE


@dataclass(frozen=True)
class SourceSettings:
    host_proc: Path = Path("/proc")  # the host's /proc (mounted read-only in the pod)
    host_sys: Path = Path(
        "/sys"
    )  # the host's /sys; cgroups under fs/cgroup, RAPL under class/powercap
    rapl_enabled: bool = False  # RAPL counters are root-only, so reading them is opt-in
    user_hz: int = 100  # ticks per second of /proc/stat (USER_HZ, 100 on Linux)


@dataclass(frozen=True)
class SamplerSettings:
    interval_seconds: float = 15.0  # length of one window; one report per window


@dataclass(frozen=True)
class DeliverySettings:
    collector_url: str = "http://127.0.0.1:9880"  # base URL; reports go to <url>/api/v1/reports
    token_file: Path | None = None  # bearer token, re-read before each request (tokens rotate)
    ca_file: Path | None = None  # https: CA bundle to verify the collector with (None: system's)
    server_name: str | None = None  # https: name the collector's certificate must carry
    # (None: the URL's host); set it when the URL holds the Service's ClusterIP
    buffer_max_reports: int = 5760  # a day of 15 s windows
    buffer_max_bytes: int = 16 * MEBIBYTE  # bounds memory during a long outage
    batch_max_reports: int = MAX_REPORTS_PER_BATCH  # the collector's per-request limit
    batch_max_bytes: int = MAX_BODY_BYTES  # the collector's body limit (uncompressed)
    request_timeout_seconds: float = 10.0
    backoff_initial_seconds: float = 1.0  # first retry waits up to this long
    backoff_max_seconds: float = 60.0  # retries never wait longer than this
    gzip: bool = False  # compress request bodies (Content-Encoding: gzip)
    shutdown_grace_seconds: float = 5.0  # on SIGTERM, time to deliver what is buffered


@dataclass(frozen=True)
class ServerSettings:
    listen_host: str = "0.0.0.0"  # /metrics and /healthz
    listen_port: int = 9881  # 0 picks a free port (tests)


@dataclass(frozen=True)
class AgentSettings:
    node_name: str
    sources: SourceSettings = field(default_factory=SourceSettings)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    server: ServerSettings = field(default_factory=ServerSettings)
