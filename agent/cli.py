"""`kubecarbon agent`: flags, KUBECARBON_* environment variables and a YAML config file.

Precedence is flag > environment > config file > default (ConfigArgParse). A bad
value stops the agent before it starts, with one line naming the key, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import configargparse

from agent.runtime import run_agent
from agent.settings import (
    AgentSettings,
    DeliverySettings,
    SamplerSettings,
    ServerSettings,
    SourceSettings,
)
from kubecarbon.address import parse_host_port
from kubecarbon.bounds import bounded
from kubecarbon.trust import CaBundleError, load_ca_context
from kubecarbon.wire import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS, NODE_NAME_RULE, is_node_name

EXIT_USAGE = 2
# What a kubelet sets in each pod for the Service `kubecarbon-collector` of its namespace (the
# chart maps other release names onto these): the collector's address without cluster DNS,
# the way client libraries find the API server through KUBERNETES_SERVICE_HOST/PORT.
SERVICE_HOST_VARIABLE = "KUBECARBON_COLLECTOR_SERVICE_HOST"
SERVICE_PORT_VARIABLE = "KUBECARBON_COLLECTOR_SERVICE_PORT"


class _OneLineErrorParser(configargparse.ArgParser):  # type: ignore[misc]  # untyped library
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _collector_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def _collector_url_from_service(env: Mapping[str, str], scheme: str = "http") -> str:
    """SCHEME://CLUSTER-IP:PORT from the Service variables; ValueError names the bad one."""
    host, port = env.get(SERVICE_HOST_VARIABLE, ""), env.get(SERVICE_PORT_VARIABLE, "")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # A pod started before its Service existed keeps `$(NAME)` unexpanded until restarted.
        raise ValueError(f"{SERVICE_HOST_VARIABLE}: {host!r} is not an IP address") from None
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{SERVICE_PORT_VARIABLE}: {port!r} is not a port")
    netloc = f"[{address}]" if address.version == 6 else str(address)
    return f"{scheme}://{netloc}:{int(port)}"


def _node_name(text: str) -> str:
    if not is_node_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not {NODE_NAME_RULE}")
    return text


def _directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return path


def _readable_file(text: str) -> Path:
    path = Path(text)
    try:
        path.read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror or exc}") from None
    return path


def _ca_bundle(text: str) -> Path:
    path = Path(text)
    try:
        load_ca_context(path)
    except CaBundleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def build_parser() -> configargparse.ArgParser:
    defaults_sources = SourceSettings()
    defaults_delivery = DeliverySettings()
    parser = _OneLineErrorParser(
        prog="kubecarbon agent",
        description="Sample node and pod CPU, container density and optionally RAPL energy; "
        "send one report per window to the collector.",
        config_file_parser_class=configargparse.YAMLConfigFileParser,
        auto_env_var_prefix="KUBECARBON_",
        add_config_file_help=False,
    )
    add = parser.add_argument
    add(
        "--config", is_config_file=True, help="YAML file with any of these keys (e.g. interval: 15)"
    )
    add("--collector-url", type=_collector_url, default=None,
        help=f"collector base URL (default: http://${SERVICE_HOST_VARIABLE}:"
        f"${SERVICE_PORT_VARIABLE}, which a kubelet sets for the Service kubecarbon-collector)")
    add("--collector-ca-file", type=_ca_bundle, default=None,
        help="CA bundle (PEM) to verify the collector's certificate with, re-read when it "
        "changes; implies https for the URL from the Service variables")  # fmt: skip
    add("--collector-server-name", default=None,
        help="name the collector's certificate must carry (default: the URL's host); "
        "e.g. kubecarbon-collector.NAMESPACE.svc when connecting by ClusterIP")  # fmt: skip
    add("--interval", type=bounded(float, MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS),
        default=SamplerSettings().interval_seconds, help="window length, seconds")  # fmt: skip
    add("--node-name", type=_node_name, default=socket.gethostname().lower(),
        help="this node's Kubernetes name (default: the host name)")  # fmt: skip
    add("--host-proc", type=_directory, default=defaults_sources.host_proc,
        help="the host's /proc")  # fmt: skip
    add("--host-sys", type=_directory, default=defaults_sources.host_sys,
        help="the host's /sys")  # fmt: skip
    add("--token-file", type=_readable_file, default=None,
        help="file with the bearer token for the collector (re-read per request)")  # fmt: skip
    add("--listen", type=parse_host_port, default="0.0.0.0:9881",
        help="HOST:PORT for /metrics and /healthz")  # fmt: skip
    add("--rapl", action="store_true", help="read RAPL energy counters (needs root)")
    add("--buffer-max-reports", type=bounded(int, 1, 10**7),
        default=defaults_delivery.buffer_max_reports, help="buffer bound, reports")  # fmt: skip
    add("--buffer-max-bytes", type=bounded(int, 4096, 2**40),
        default=defaults_delivery.buffer_max_bytes, help="buffer bound, bytes")  # fmt: skip
    add("--batch-max-reports", type=bounded(int, 1, 10**6),
        default=defaults_delivery.batch_max_reports, help="reports per request")  # fmt: skip
    add("--batch-max-bytes", type=bounded(int, 1024, 2**31),
        default=defaults_delivery.batch_max_bytes, help="request body limit, bytes")  # fmt: skip
    add("--request-timeout", type=bounded(float, 0.1, 600),
        default=defaults_delivery.request_timeout_seconds, help="seconds per request")  # fmt: skip
    add("--backoff-max", type=bounded(float, 0.01, 3600),
        default=defaults_delivery.backoff_max_seconds, help="longest retry wait, s")  # fmt: skip
    add("--shutdown-grace", type=bounded(float, 0, 600),
        default=defaults_delivery.shutdown_grace_seconds,
        help="on SIGTERM, seconds to deliver what is buffered")  # fmt: skip
    add("--gzip", action="store_true", help="gzip request bodies")
    add("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    return parser


def parse_settings(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[AgentSettings, str]:
    """Settings and log level from argv, the environment and the config file; exits 2 on error."""
    parser = build_parser()
    env = os.environ if env is None else env
    options = parser.parse_args(list(argv), env_vars=env)
    collector_url = options.collector_url
    if collector_url is None:
        if SERVICE_HOST_VARIABLE not in env and SERVICE_PORT_VARIABLE not in env:
            parser.error("the following arguments are required: --collector-url "
                         f"(or {SERVICE_HOST_VARIABLE} and {SERVICE_PORT_VARIABLE})")
        scheme = "https" if options.collector_ca_file is not None else "http"
        try:
            collector_url = _collector_url_from_service(env, scheme)
        except ValueError as exc:
            parser.error(str(exc))
    elif options.collector_ca_file is not None and not collector_url.startswith("https://"):
        parser.error(f"argument --collector-ca-file: {collector_url} is not an https:// URL")
    host, port = options.listen
    settings = AgentSettings(
        node_name=options.node_name,
        sources=SourceSettings(
            host_proc=options.host_proc, host_sys=options.host_sys, rapl_enabled=options.rapl
        ),
        sampler=SamplerSettings(interval_seconds=options.interval),
        delivery=DeliverySettings(
            collector_url=collector_url,
            token_file=options.token_file,
            ca_file=options.collector_ca_file,
            server_name=options.collector_server_name,
            buffer_max_reports=options.buffer_max_reports,
            buffer_max_bytes=options.buffer_max_bytes,
            batch_max_reports=options.batch_max_reports,
            batch_max_bytes=options.batch_max_bytes,
            request_timeout_seconds=options.request_timeout,
            backoff_max_seconds=options.backoff_max,
            gzip=options.gzip,
            shutdown_grace_seconds=options.shutdown_grace,
        ),
        server=ServerSettings(listen_host=host, listen_port=port),
    )
    return settings, options.log_level


async def _serve(settings: AgentSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_agent(settings, stop=stop)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings, log_level = parse_settings(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help, or a bad value already reported on one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(_serve(settings))
    return 0
