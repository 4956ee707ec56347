"""Collector settings: command-line flags, KUBECARBON_* variables and the YAML config file.

Precedence is flag > environment > config file > default (ConfigArgParse does the
merge). The config file may also hold `profiles:`, `default_profile:` and `model:`
sections, which are not flags; collector/profiles.py parses those. A bad value
anywhere stops the collector at start with one line naming the key (exit 2).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import configargparse

from collector.intensity import HourlyIntensity, load_hourly_intensity
from collector.profiles import ProfileConfig, parse_profile_config

# Config-file sections that are not flags (handled by collector.profiles).
STRUCTURED_SECTIONS = frozenset({"profiles", "default_profile", "model"})

MEBIBYTE = 1024 * 1024


class SettingsError(Exception):
    """A bad flag, variable or config-file value; the message names the key."""


@dataclass(frozen=True)
class ServerSettings:
    """Where the collector listens and who may post reports."""

    listen_host: str = "0.0.0.0"
    listen_port: int = 9880
    token_file: Path | None = None  # None: no authentication on /api/v1/reports


@dataclass(frozen=True)
class IngestLimits:
    """Wire-format limits from DESIGN; a batch breaking any of them is rejected whole."""

    max_body_bytes: int = 4 * MEBIBYTE  # applies to the body before and after gunzip
    max_reports_per_batch: int = 500
    max_pods_per_report: int = 2000
    min_window_seconds: float = 1.0
    max_window_seconds: float = 3600.0
    busy_tolerance: float = 1.05  # busy_seconds <= logical_cpus * window * busy_tolerance


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
class StateSettings:
    """The counter snapshot that survives restarts."""

    state_file: Path | None = None  # None: no snapshots, counters start at zero
    snapshot_interval_seconds: float = 60.0


@dataclass(frozen=True)
class Settings:
    """Everything the collector is configured with, grouped by concern."""

    server: ServerSettings = field(default_factory=ServerSettings)
    limits: IngestLimits = field(default_factory=IngestLimits)
    dedupe: DedupeSettings = field(default_factory=DedupeSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    state: StateSettings = field(default_factory=StateSettings)
    profiles: ProfileConfig = field(default_factory=ProfileConfig)
    hourly_intensity: HourlyIntensity | None = None  # --grid-intensity-file, loaded
    kubernetes: str = "auto"  # "auto": use the Kubernetes API when reachable; "off": static
    kubeconfig: Path | None = None  # None: in-cluster credentials, else $KUBECONFIG
    log_level: str = "info"
    config_file: Path | None = None


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


def _listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with PORT 0..65535, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _bounded(kind: type, low: float, high: float | None = None) -> Any:
    def convert(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {value!r}"
            ) from None
        if number != number or number < low or (high is not None and number > high):
            upper = f" and <= {high:g}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"must be >= {low:g}{upper}, got {value!r}")
        return number

    convert.__name__ = kind.__name__
    return convert


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
    add("--listen", type=_listen_address, default="0.0.0.0:9880", help="HOST:PORT to serve on")
    add("--token-file", type=Path, help="file with the bearer token agents must send")
    add("--state-file", type=Path, help="counter snapshot path (restored at start)")
    add("--snapshot-interval", type=_bounded(float, 1.0), metavar="SECONDS",
        default=state.snapshot_interval_seconds, help="seconds between snapshots")
    add("--kubernetes", choices=("auto", "off"), default="auto",
        help="auto: node and pod metadata from the Kubernetes API when reachable")
    add("--kubeconfig", type=Path,
        help="kubeconfig to reach the API with (development); default: in-cluster, $KUBECONFIG")
    add("--grid-intensity-file", type=Path, metavar="CSV",
        help="hourly grid intensity (region,hour,grams_per_kilowatt_hour) overriding the table")
    add("--stale-after", type=_bounded(float, 1.0), metavar="SECONDS",
        default=export.stale_after_seconds, help="drop silent nodes from gauges after this")
    add("--forget-after", type=_bounded(float, 1.0), metavar="SECONDS",
        default=export.forget_after_seconds,
        help="drop every series of a node silent this long (nodes scaled away)")
    add("--max-nodes", type=_bounded(int, 1), default=export.max_nodes,
        help="nodes kept; beyond it the least recently seen are forgotten (stale ones first)")
    add("--per-pod-series", type=_boolean, default=export.per_pod_series, metavar="BOOL",
        help="export per-pod counters (high cardinality)")
    add("--max-workload-series", type=_bounded(int, 0), default=export.max_workload_series,
        help="cap on workload series; beyond it workloads add to workload=\"other\"")
    add("--max-pod-series", type=_bounded(int, 0), default=export.max_pod_series,
        help="cap on pod series when --per-pod-series is on")
    add("--max-body-bytes", type=_bounded(int, 1024), default=limits.max_body_bytes,
        help="largest request body, before and after gunzip")
    add("--max-reports-per-batch", type=_bounded(int, 1), default=limits.max_reports_per_batch)
    add("--max-pods-per-report", type=_bounded(int, 0), default=limits.max_pods_per_report)
    add("--min-window", type=_bounded(float, 0.001), metavar="SECONDS",
        default=limits.min_window_seconds, help="shortest report window accepted")
    add("--max-window", type=_bounded(float, 1.0), metavar="SECONDS",
        default=limits.max_window_seconds, help="longest report window accepted")
    add("--dedupe-max-agents", type=_bounded(int, 1), default=dedupe.max_agents,
        help="agent ids remembered for idempotency (least recently seen are forgotten)")
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
    if args.min_window > args.max_window:
        raise SettingsError(
            f"argument --min-window: {args.min_window:g} is above --max-window {args.max_window:g}"
        )
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
        server=ServerSettings(listen_host=host, listen_port=port, token_file=args.token_file),
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
        profiles=profiles,
        hourly_intensity=hourly_intensity,
        kubernetes=args.kubernetes,
        kubeconfig=args.kubeconfig,
        log_level=args.log_level,
        config_file=config_path,
    )

