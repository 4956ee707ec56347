"""`kubecarbon demo`: a collector, a real agent on this machine and a simulated fleet.

    kubecarbon demo                       # 300 simulated nodes, until Ctrl-C
    kubecarbon demo --simulate-nodes 0    # only this machine
    kubecarbon demo --duration 60         # stop by itself after a minute (exit 0)

The collector runs in this process (the same app `kubecarbon collector` serves);
the agent runs as its own process (`python -m agent`), sampling this machine's
/proc exactly as it would on a node; the simulated fleet posts wire-format
reports over HTTP like agents do. Every interval the terminal shows the fleet's
numbers. Ctrl-C, SIGTERM or SIGHUP stops the agent, the fleet and the collector,
in that order, and leaves nothing running. The agent runs in its own session so
that a terminal's Ctrl-C reaches only the demo, which stops the agent itself (an
agent interrupted while still starting would print a traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import aiohttp
import configargparse
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from collector.app import FLEET_VIEWS_KEY, LEDGER_KEY, RIGHTSIZING_KEY, create_app
from collector.metadata import StaticMetadataProvider
from collector.settings import ExportSettings, RightsizingSettings, Settings
from collector.simulate import FleetSettings, SimulatedFleet, post_reports
from collector.status import StatusHistory, StatusPoint, StatusSettings, add_status_routes
from kubecarbon.address import parse_host_port
from kubecarbon.bounds import bounded

AGENT_STOP_GRACE_SECONDS = 10.0
# Rightsizing at the demo's pace: a sample every 10 s and a recommendation after a minute
# of them (the collector's defaults: 10 minutes, and a day).
DEMO_RIGHTSIZING = RightsizingSettings(window_seconds=3600.0, sample_seconds=10.0,
                                       min_history_seconds=60.0, recompute_seconds=5.0)
# SIGHUP too: a closed terminal must not leave the agent (in its own session) running.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class DemoSettings:
    """What `kubecarbon demo` runs; the defaults give interesting numbers in a minute."""

    simulate_nodes: int = 300
    duration_seconds: float | None = None  # None: until Ctrl-C / SIGTERM
    interval_seconds: float = 5.0  # agent window, fleet window and summary period
    listen_host: str = "127.0.0.1"
    listen_port: int = 9880  # 0: any free port (printed at start)
    seed: int = 0
    agent: bool = True


def build_parser() -> configargparse.ArgumentParser:
    defaults = DemoSettings()
    parser = configargparse.ArgumentParser(
        prog="kubecarbon demo",
        description="Run a collector, a real agent on this machine and a simulated fleet, "
        "and print the fleet's numbers every interval.",
        auto_env_var_prefix="KUBECARBON_",
        config_file_parser_class=configargparse.YAMLConfigFileParser,
        args_for_setting_config_path=["--config"],
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--simulate-nodes", type=bounded(int, 0), default=defaults.simulate_nodes,
        metavar="N", help="simulated nodes of mixed clouds, bare metal and regions (0: none)")
    add("--duration", type=bounded(float, 1.0), metavar="SECONDS",
        help="stop after this long and exit 0 (default: run until Ctrl-C)")
    add("--interval", type=bounded(float, 1.0), default=defaults.interval_seconds,
        metavar="SECONDS", help="agent window, fleet window and summary period")
    add("--listen", type=parse_host_port, default=f"{defaults.listen_host}:{defaults.listen_port}",
        help="HOST:PORT for the collector (port 0: any free port)")
    add("--seed", type=int, default=defaults.seed, help="seed of the simulated fleet")
    add("--no-agent", action="store_true", help="do not start the real agent")
    return parser


def parse_demo_settings(argv: Sequence[str]) -> DemoSettings:
    args = build_parser().parse_args(list(argv))
    host, port = args.listen
    return DemoSettings(
        simulate_nodes=args.simulate_nodes,
        duration_seconds=args.duration,
        interval_seconds=args.interval,
        listen_host=host,
        listen_port=port,
        seed=args.seed,
        agent=not args.no_agent,
    )


def this_node_name() -> str:
    """The host name as a DNS-1123 name, which the wire format requires."""
    name = re.sub(r"[^a-z0-9.-]+", "-", socket.gethostname().lower()).strip("-.")
    return name[:253] or "demo-node"


def summary_line(point: StatusPoint) -> str:
    """One line a person can read at a glance; every number comes from the collector."""
    band = point.avoided_co2e_grams_per_hour

    def kg(quantile: str) -> str:
        grams = band.get(quantile)
        if grams is None:
            return "n/a"
        text = f"{grams / 1000:,.1f}"
        return "0.0" if text == "-0.0" else text  # a rounded-away sign says nothing

    clock = time.strftime("%H:%M:%S", time.localtime(point.timestamp))
    return (
        f"[{clock}] nodes {point.nodes} | utilisation {point.fleet_cpu_usage_ratio:.1%} | "
        f"servers actual {point.actual_servers:,.1f} vs baseline "
        f"{point.baseline_servers:,.1f}: avoided {point.avoided_servers:,.1f} | "
        f"power {point.power_watts / 1000:,.2f} kW | "
        f"avoided CO2e {kg('0.5')} kg/h (p05-p95 {kg('0.05')} to {kg('0.95')})"
    )


def rightsizing_line(metrics_text: str) -> str:
    """Where servers can still be saved, from the collector's /metrics."""
    values: dict[tuple[str, str], float] = {}
    workloads = {"recommended": 0, "waiting": 0}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "kubecarbon_workload_rightsizing_history_seconds":
                workloads["waiting"] += 1
            elif sample.name == "kubecarbon_workload_recommended_cpu_cores":
                workloads["recommended"] += 1
            values[sample.name, sample.labels.get("quantile", "")] = sample.value
    waiting = workloads["waiting"] - workloads["recommended"]
    nodes = values.get(("kubecarbon_rightsizing_avoidable_nodes", ""))
    if nodes is None or workloads["recommended"] == 0:
        return f"  rightsizing: collecting usage history ({waiting} workloads waiting)"
    energy = values[("kubecarbon_rightsizing_avoidable_energy_joules_per_year", "")] / 3.6e9
    tonnes = {q: values[("kubecarbon_rightsizing_avoidable_co2e_grams_per_year", q)] / 1e6
              for q in ("0.05", "0.5", "0.95")}
    return (
        f"  rightsizing: {workloads['recommended']} workloads sized, {waiting} still waiting | "
        f"avoidable nodes {nodes:.0f} | {energy:,.1f} MWh/yr | "
        f"{tonnes['0.5']:,.1f} tCO2e/yr (p05-p95 {tonnes['0.05']:,.1f} to {tonnes['0.95']:,.1f})"
    )


class Demo:
    """The running pieces and their orderly shutdown."""

    def __init__(self, settings: DemoSettings, out: TextIO = sys.stdout) -> None:
        self.settings = settings
        self.out = out
        self.fleet = SimulatedFleet(FleetSettings(
            nodes=settings.simulate_nodes, seed=settings.seed,
            window_seconds=settings.interval_seconds))
        self.stop = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.agent: asyncio.subprocess.Process | None = None
        self.history: StatusHistory | None = None
        self.base_url = ""

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def start_collector(self) -> None:
        s = self.settings
        metadata = StaticMetadataProvider(nodes=self.fleet.node_infos(),
                                          pods=self.fleet.pod_infos())
        # Nodes drop out of gauges after three silent intervals, so a stopped agent shows.
        settings = Settings(kubernetes="off", profiles=self.fleet.profile_config(),
                            export=ExportSettings(stale_after_seconds=3 * s.interval_seconds),
                            rightsizing=DEMO_RIGHTSIZING)
        app = create_app(settings, metadata=metadata, status_page=False)
        # the page's history at the demo's pace (the collector's default is 15 s)
        self.history = add_status_routes(app, app[LEDGER_KEY], app[FLEET_VIEWS_KEY], StatusSettings(
            interval_seconds=s.interval_seconds, refresh_seconds=min(5.0, s.interval_seconds)),
            rightsizing=app[RIGHTSIZING_KEY])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, s.listen_host, s.listen_port)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::1", "::") else host
        self.base_url = f"http://{host}:{port}"
        self.say("kubecarbon demo: collector running")
        self.say(f"  status page  http://{shown_host}:{port}/")
        self.say(f"  metrics      http://{shown_host}:{port}/metrics")
        self.say(f"  summary API  http://{shown_host}:{port}/api/v1/summary")

    async def start_agent(self) -> None:
        node = this_node_name()
        self.agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent",
            "--collector-url", self.base_url,
            "--interval", repr(self.settings.interval_seconds),
            "--node-name", node,
            "--listen", "127.0.0.1:0",
            "--log-level", "warning",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self.say(f"  agent        pid {self.agent.pid}, sampling this machine as node {node!r}")

    async def stop_agent(self) -> None:
        agent, self.agent = self.agent, None
        if agent is None or agent.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # it may have stopped by itself
            agent.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(agent.wait(), AGENT_STOP_GRACE_SECONDS)
        except TimeoutError:
            agent.kill()
            await agent.wait()

    async def tick(self, session: aiohttp.ClientSession) -> None:
        if self.agent is not None and self.agent.returncode is not None:
            self.say(f"  agent        exited with status {self.agent.returncode}; "
                     "its errors are above")
            self.agent = None
        if self.settings.simulate_nodes > 0:
            await post_reports(session, f"{self.base_url}/api/v1/reports", self.fleet.reports())
        assert self.history is not None
        # read, not sampled: the status page's own task keeps its history
        self.say(summary_line(self.history.current()))
        async with session.get(f"{self.base_url}/metrics") as response:
            self.say(rightsizing_line(await response.text()))

    async def run(self) -> int:
        s = self.settings
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.stop.set)
        try:
            await self.start_collector()
            if s.agent:
                await self.start_agent()
            self.say(f"  simulated    {s.simulate_nodes} nodes; a summary every "
                     f"{s.interval_seconds:g} s; Ctrl-C stops")
            deadline = None if s.duration_seconds is None else loop.time() + s.duration_seconds
            async with aiohttp.ClientSession() as session:
                while not self.stop.is_set():
                    if deadline is not None and loop.time() >= deadline:
                        break
                    wait = s.interval_seconds
                    if deadline is not None:
                        wait = min(wait, max(0.0, deadline - loop.time()))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), wait)
                    if not self.stop.is_set():
                        await self.tick(session)
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
            await self.stop_agent()
            if self.runner is not None:
                await self.runner.cleanup()
        self.say("kubecarbon demo: stopped")
        return 0


def main(argv: Sequence[str]) -> int:
    settings = parse_demo_settings(argv)
    try:
        return asyncio.run(Demo(settings).run())
    except OSError as exc:
        print(f"kubecarbon demo: error: {exc.strerror or exc} "
              f"(is {settings.listen_host}:{settings.listen_port} in use? try --listen "
              "127.0.0.1:0)", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"kubecarbon demo: error: {exc}", file=sys.stderr)
        return 1
