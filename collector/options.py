"""`kubecarbon collector` options: command-line flags, KUBECARBON_* variables, YAML config file.

Precedence is flag > environment > config file > default (ConfigArgParse does the
merge). The config file may also hold `profiles:`, `default_profile:` and `model:`
sections, which are not flags; collector/profiles.py parses those. A bad value
anywhere stops the collector at start with one line naming the key (exit 2).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import configargparse

from collector.intensity import load_hourly_intensity
from collector.profiles import ProfileConfig, parse_profile_config
from collector.settings import (
    DedupeSettings,
    ExportSettings,
    IngestLimits,
    ReplicaSettings,
    RightsizingSettings,
    ServerSettings,
    Settings,
    StateSettings,
)
from collector.sharding import replica_ordinal
from kubecarbon.address import parse_host_port
from kubecarbon.bounds import bounded

# Config-file sections that are not flags (handled by collector.profiles).
STRUCTURED_SECTIONS = frozenset({"profiles", "default_profile", "model"})


class SettingsError(Exception):
    """A bad flag, variable or config-file value; the message names the key."""


class _StructuredYAMLParser(configargparse.YAMLConfigFileParser):  # type: ignore[misc]
    """The YAML parser, minus the sections that are not flags."""

    def parse(self, stream: Any) -> Any:
        items = super().parse(stream)
        for section in STRUCTURED_SECTIONS:
            items.pop(section, None)
        return items


class _OneLineErrorParser(configargparse.ArgumentParser):  # type: ignore[misc]
    """Report a bad flag as one line, not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        raise SettingsError(message)


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> configargparse.ArgumentParser:
    """The collector's flags; each also reads KUBECARBON_<FLAG> and a config-file key."""
    limits, dedupe = IngestLimits(), DedupeSettings()
    export, state = ExportSettings(), StateSettings()
    rightsizing = RightsizingSettings()
    parser = _OneLineErrorParser(
        prog="kubecarbon collector",
        description="Ingest agent reports, estimate power, energy and CO2e, serve /metrics.",
        config_file_parser_class=_StructuredYAMLParser,
        auto_env_var_prefix="KUBECARBON_",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--config", is_config_file=True, metavar="FILE",
        help="YAML config file: any flag as a key, plus profiles, default_profile and model")
    add("--listen", type=parse_host_port, default="0.0.0.0:9880", help="HOST:PORT to serve on")
    add("--token-file", type=Path, help="file with the bearer token agents must send "
        "(re-read when it changes)")
    add("--previous-token-file", type=Path,
        help="file with a token also accepted during a rotation (may be absent or empty)")
    add("--tls-cert-file", type=Path, metavar="PEM",
        help="serve HTTPS with this certificate chain (re-read when it changes)")
    add("--tls-key-file", type=Path, metavar="PEM", help="the certificate's private key")
    add("--state-file", type=Path, help="counter snapshot path (restored at start)")
    add("--snapshot-interval", type=bounded(float, 1.0), metavar="SECONDS",
        default=state.snapshot_interval_seconds, help="seconds between snapshots")
    add("--replicas", type=bounded(int, 1), default=ReplicaSettings.replicas,
        help="collector replicas; each node is owned by one and the others forward to it")
    add("--replica-name", metavar="POD",
        help="this replica's pod name, <statefulset>-<ordinal> (needed with --replicas > 1)")
    add("--replica-namespace", metavar="NAMESPACE",
        help="namespace of the replica pods, found through the pod watch")
    add("--peers-file", type=Path, metavar="FILE",
        help="replica base URLs, one a line (line i: replica i), instead of the pod watch")
    add("--peer-ca-file", type=Path, metavar="PEM",
        help="with HTTPS and --replicas > 1: CA bundle the other replicas' certificates must "
        "chain to (re-read when it changes); default: ca.crt beside --tls-cert-file")
    add("--peer-server-name", metavar="NAME",
        help="with HTTPS and --replicas > 1: the name the other replicas' certificates must "
        "carry (they are reached by pod IP), e.g. the one agents give --collector-server-name")
    add("--kubernetes", choices=("auto", "off"), default="auto",
        help="auto: node and pod metadata from the Kubernetes API when reachable")
    add("--kubeconfig", type=Path,
        help="kubeconfig to reach the API with (development); default: in-cluster, $KUBECONFIG")
    add("--grid-intensity-file", type=Path, metavar="CSV",
        help="hourly grid intensity (region,hour,grams_per_kilowatt_hour) overriding the table")
    add("--stale-after", type=bounded(float, 1.0), metavar="SECONDS",
        default=export.stale_after_seconds, help="drop silent nodes from gauges after this")
    add("--forget-after", type=bounded(float, 1.0), metavar="SECONDS",
        default=export.forget_after_seconds,
        help="drop every series of a node silent this long (nodes scaled away)")
    add("--max-nodes", type=bounded(int, 1), default=export.max_nodes,
        help="nodes kept; beyond it the least recently seen are forgotten (stale ones first)")
    add("--per-pod-series", type=_boolean, default=export.per_pod_series, metavar="BOOL",
        help="export per-pod counters (high cardinality)")
    add("--max-workload-series", type=bounded(int, 0), default=export.max_workload_series,
        help="cap on workload series; beyond it workloads add to workload=\"other\"")
    add("--max-pod-series", type=bounded(int, 0), default=export.max_pod_series,
        help="cap on pod series when --per-pod-series is on")
    add("--max-body-bytes", type=bounded(int, 1024), default=limits.max_body_bytes,
        help="largest request body, before and after gunzip")
    add("--max-reports-per-batch", type=bounded(int, 1), default=limits.max_reports_per_batch)
    add("--max-pods-per-report", type=bounded(int, 0), default=limits.max_pods_per_report)
    add("--min-window", type=bounded(float, 0.001), metavar="SECONDS",
        default=limits.min_window_seconds, help="shortest report window accepted")
    add("--max-window", type=bounded(float, 1.0), metavar="SECONDS",
        default=limits.max_window_seconds, help="longest report window accepted")
    add("--dedupe-max-agents", type=bounded(int, 1), default=dedupe.max_agents,
        help="agent ids remembered for idempotency (least recently seen are forgotten)")
    add("--rightsizing-window", type=bounded(float, 60.0), metavar="SECONDS",
        default=rightsizing.window_seconds, help="usage history kept per workload")
    add("--rightsizing-sample-interval", type=bounded(float, 10.0), metavar="SECONDS",
        default=rightsizing.sample_seconds, help="one usage sample per workload per interval")
    add("--rightsizing-percentile", type=bounded(float, 1.0, 100.0),
        default=rightsizing.percentile, help="percentile of the samples a request must cover")
    add("--rightsizing-headroom", type=bounded(float, 0.0, 10.0),
        default=rightsizing.headroom, help="share added to the percentile (0.15: 15 %%)")
    add("--rightsizing-min-history", type=bounded(float, 0.0), metavar="SECONDS",
        default=rightsizing.min_history_seconds,
        help="sampled history a workload needs before it gets a recommendation")
    add("--rightsizing-max-workloads", type=bounded(int, 0), default=rightsizing.max_workloads,
        help="workloads with a usage history (bounded memory and state file)")
    add("--idle-attribution", choices=("node", "requests"), default="node",
        help="node: idle power stays with the node; requests: also split over pods by "
        "requested CPU share (full allocation)")
    add("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    return parser


def parse_settings(argv: Sequence[str], env: dict[str, str] | None = None) -> Settings:
    """Parse flags, environment and config file into Settings; raises SettingsError."""
    parser = build_parser()
    env = dict(os.environ) if env is None else env
    argv = list(argv)
    # ConfigArgParse reads every flag from the environment except the config file's path
    if env.get("KUBECARBON_CONFIG") and not any(
        arg == "--config" or arg.startswith("--config=") for arg in argv
    ):
        argv = ["--config", env["KUBECARBON_CONFIG"], *argv]
    args = parser.parse_args(argv, env_vars=env)
    if args.forget_after < args.stale_after:
        raise SettingsError(
            f"argument --forget-after: {args.forget_after:g} is below --stale-after "
            f"{args.stale_after:g}"
        )
    if args.rightsizing_sample_interval > args.rightsizing_window:
        raise SettingsError(
            f"argument --rightsizing-sample-interval: {args.rightsizing_sample_interval:g} is "
            f"above --rightsizing-window {args.rightsizing_window:g}"
        )
    if args.min_window > args.max_window:
        raise SettingsError(
            f"argument --min-window: {args.min_window:g} is above --max-window {args.max_window:g}"
        )
    if (args.tls_cert_file is None) != (args.tls_key_file is None):
        raise SettingsError("arguments --tls-cert-file and --tls-key-file go together")
    if args.replicas > 1:
        if not args.replica_name:
            raise SettingsError(f"argument --replica-name: needed with --replicas "
                                f"{args.replicas} (the StatefulSet pod's name)")
        try:
            _, ordinal = replica_ordinal(args.replica_name)
        except ValueError as exc:
            raise SettingsError(f"argument --replica-name: {exc}") from None
        if ordinal >= args.replicas:
            raise SettingsError(f"argument --replica-name: ordinal {ordinal} is not below "
                                f"--replicas {args.replicas}")
        if args.peers_file is None and (args.kubernetes == "off" or not args.replica_namespace):
            raise SettingsError(
                f"argument --replicas: {args.replicas} replicas must find each other: give "
                "--replica-namespace with --kubernetes auto (the pod watch), or --peers-file, "
                "or run one replica")
        if args.tls_cert_file is not None and not args.peer_server_name:
            raise SettingsError(
                f"argument --peer-server-name: needed with --replicas {args.replicas} and "
                "--tls-cert-file: replicas forward over HTTPS by pod IP and check this name "
                "in each other's certificate (the one agents check)")
    if args.tls_cert_file is None and (args.peer_ca_file or args.peer_server_name):
        raise SettingsError("arguments --peer-ca-file and --peer-server-name verify replicas "
                            "serving HTTPS: they need --tls-cert-file")
    config_path = Path(args.config) if args.config else None
    profiles = ProfileConfig()
    if config_path is not None:
        try:
            profiles = parse_profile_config(config_path)
        except ValueError as exc:
            raise SettingsError(f"config {config_path}: {exc}") from None
    hourly_intensity = None
    if args.grid_intensity_file is not None:
        try:
            hourly_intensity = load_hourly_intensity(args.grid_intensity_file)
        except ValueError as exc:
            raise SettingsError(
                f"argument --grid-intensity-file: {args.grid_intensity_file}: {exc}"
            ) from None
    host, port = args.listen
    return Settings(
        server=ServerSettings(
            listen_host=host, listen_port=port, token_file=args.token_file,
            previous_token_file=args.previous_token_file,
            tls_cert_file=args.tls_cert_file, tls_key_file=args.tls_key_file,
        ),
        limits=IngestLimits(
            max_body_bytes=args.max_body_bytes,
            max_reports_per_batch=args.max_reports_per_batch,
            max_pods_per_report=args.max_pods_per_report,
            min_window_seconds=args.min_window,
            max_window_seconds=args.max_window,
        ),
        dedupe=DedupeSettings(max_agents=args.dedupe_max_agents),
        export=ExportSettings(
            stale_after_seconds=args.stale_after,
            forget_after_seconds=args.forget_after,
            max_nodes=args.max_nodes,
            per_pod_series=args.per_pod_series,
            max_workload_series=args.max_workload_series,
            max_pod_series=args.max_pod_series,
        ),
        state=StateSettings(
            state_file=args.state_file, snapshot_interval_seconds=args.snapshot_interval
        ),
        replicas=ReplicaSettings(
            replicas=args.replicas, replica_name=args.replica_name,
            namespace=args.replica_namespace, peers_file=args.peers_file,
            peer_ca_file=args.peer_ca_file, peer_server_name=args.peer_server_name,
        ),
        rightsizing=RightsizingSettings(
            window_seconds=args.rightsizing_window,
            sample_seconds=args.rightsizing_sample_interval,
            percentile=args.rightsizing_percentile,
            headroom=args.rightsizing_headroom,
            min_history_seconds=args.rightsizing_min_history,
            max_workloads=args.rightsizing_max_workloads,
        ),
        idle_attribution=args.idle_attribution,
        profiles=profiles,
        hourly_intensity=hourly_intensity,
        kubernetes=args.kubernetes,
        kubeconfig=args.kubeconfig,
        log_level=args.log_level,
        config_file=config_path,
    )

