"""End to end: a real Prometheus scrapes a real collector fed by a real agent (this machine's
/proc) and a simulated fleet, evaluates the chart's rules, and answers every dashboard query.

The rule file Prometheus loads is the chart's own template rendered with the `for:` durations
of the alerts shortened through the chart values (prometheusRule.thresholds.*For), so an
alert that waits hours in production fires within seconds here; expressions and thresholds
are the production ones. Everything listens on 127.0.0.1 on ports the kernel picked free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from collector.simulate import FleetSettings, SimulatedFleet, post_reports

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_SECONDS = 1
REPORT_SECONDS = 2.0
REAL_NODE = "e2e-real-agent"
SHORT_FOR = "3s"
# Dashboard variables, replaced the way Grafana would with "All" selected.
VARIABLE_VALUES = {"$node": ".*", "$namespace": ".*"}

NEEDS_POD_REQUESTS = frozenset({
    "kubecarbon:namespace_requested_cpu_cores:sum", "kubecarbon:namespace_used_cpu_cores:sum",
    "kubecarbon:namespace_cpu_used_per_requested:ratio",
    "kubecarbon:rightsizing_avoidable_nodes:sum",
    "kubecarbon:rightsizing_avoidable_co2e_tonnes_per_year:quantile",
})
REQUESTS_DASHBOARD = "kubecarbon / Where servers can still be saved"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_environment() -> dict[str, str]:
    """This environment without KUBECARBON_* settings, so only the flags below apply."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECARBON_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@contextlib.asynccontextmanager
async def running(name: str, argv: list[str],
                  logs: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process for the duration of the block; stopped (SIGTERM, then SIGKILL) after."""
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=log, stderr=asyncio.subprocess.STDOUT, env=child_environment(),
            cwd=logs)
        try:
            yield process
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


def log_tails(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))


async def wait_until(what: str, check: Callable[[], Awaitable[bool]], seconds: float,
                     logs: Path) -> None:
    """Poll `check` until it holds; fail with the children's log tails after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            if await check():
                return
        await asyncio.sleep(0.5)
    pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}\n{log_tails(logs)}")


class PrometheusAPI:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session, self.base_url = session, base_url

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.base_url}/api/v1/query",
                                    params={"query": expr}) as response:
            body = await response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def alert_states(self, name: str) -> set[str]:
        async with self.session.get(f"{self.base_url}/api/v1/alerts") as response:
            body = await response.json()
        return {a["state"] for a in body["data"]["alerts"] if a["labels"]["alertname"] == name}

    async def ready(self) -> bool:
        async with self.session.get(f"{self.base_url}/-/ready") as response:
            return response.status == 200


def dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in sorted((REPO_ROOT / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in VARIABLE_VALUES.items():
                    expr = expr.replace(variable, value)
                queries.append((f"{dashboard['title']} / {panel['title']}", expr))
    return queries


def write_prometheus_config(directory: Path, render_module: Any, collector: str,
                            agent: str) -> Path:
    thresholds = {key: SHORT_FOR for key in (
        "fleetUtilisationFor", "avoidedServersDropFor", "agentMissingFor", "collectorDownFor",
        "reportsRejectedFor", "unknownProfilesFor")}
    rules = render_module.rule_groups({"prometheusRule": {"thresholds": thresholds}})
    (directory / "rules.yaml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s",
                   "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(directory / "rules.yaml")],
        "scrape_configs": [
            {"job_name": "kubecarbon-collector", "static_configs": [{"targets": [collector]}]},
            {"job_name": "kubecarbon-agent", "static_configs": [{"targets": [agent]}]},
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


async def feed(fleet: SimulatedFleet, session: aiohttp.ClientSession, url: str,
               token: str) -> None:
    """Simulated agents: every REPORT_SECONDS, each node's window up to now."""
    while True:
        await post_reports(session, url, fleet.reports(), token=token)
        await asyncio.sleep(REPORT_SECONDS)


@dataclass
class Stack:
    """The running processes' handles, for one test."""

    session: aiohttp.ClientSession
    prometheus: PrometheusAPI
    logs: Path
    collector: asyncio.subprocess.Process
    feeder: asyncio.Task[None] | None = None

    async def has(self, expr: str) -> bool:
        if self.feeder is not None and self.feeder.done():
            self.feeder.result()  # a refused simulated batch fails the test with its reason
        return bool(await self.prometheus.query(expr))

    async def wait_for_data(self, what: str, expr: str, seconds: float) -> None:
        await wait_until(f"{what}: {expr}", lambda: self.has(expr), seconds, self.logs)


@contextlib.asynccontextmanager
async def e2e_stack(tmp_path: Path, render_module: Any,
                    fleet: SimulatedFleet | None) -> AsyncIterator[Stack]:
    """Collector, real agent and Prometheus running; the simulated fleet posting if given."""
    token = "e2e-token-0123456789abcdef"
    (tmp_path / "token").write_text(token + "\n")
    # A profile per simulated node, as a collector without Kubernetes needs; the real
    # agent's node is left to the default profile.
    (tmp_path / "collector.yaml").write_text(
        yaml.safe_dump(fleet.config_document() if fleet else {}))
    collector, agent = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    prometheus_address = f"127.0.0.1:{free_port()}"
    config = write_prometheus_config(tmp_path, render_module, collector, agent)
    async with contextlib.AsyncExitStack() as stack:
        collector_process = await stack.enter_async_context(running("collector", [
            sys.executable, "-m", "collector", "--listen", collector, "--kubernetes", "off",
            "--config", str(tmp_path / "collector.yaml"),
            "--token-file", str(tmp_path / "token"), "--state-file", str(tmp_path / "state.json"),
        ], tmp_path))
        session = await stack.enter_async_context(aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10)))

        async def collector_ready() -> bool:
            async with session.get(f"http://{collector}/readyz") as response:
                return response.status == 200

        await wait_until("the collector's /readyz", collector_ready, 30, tmp_path)
        await stack.enter_async_context(running("agent", [
            sys.executable, "-m", "agent", "--collector-url", f"http://{collector}",
            "--interval", str(REPORT_SECONDS), "--node-name", REAL_NODE,
            "--host-proc", "/proc", "--host-sys", "/sys",
            "--token-file", str(tmp_path / "token"), "--listen", agent,
        ], tmp_path))
        await stack.enter_async_context(running("prometheus", [
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={prometheus_address}", "--log.level=warn",
        ], tmp_path))
        prometheus = PrometheusAPI(session, f"http://{prometheus_address}")
        await wait_until("Prometheus /-/ready", prometheus.ready, 60, tmp_path)
        handles = Stack(session, prometheus, tmp_path, collector_process)
        if fleet is not None:
            handles.feeder = asyncio.create_task(
                feed(fleet, session, f"http://{collector}/api/v1/reports", token))
            stack.push_async_callback(_cancel, handles.feeder)
        yield handles


def require_prometheus() -> None:
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail("prometheus is missing: `make apt-deps` installs the Debian package")


async def test_prometheus_scrapes_evaluates_rules_and_fires_on_collapse(tmp_path, render_module):
    require_prometheus()
    # Every simulated node at 55-70 % whatever the hour, so only the collapse lowers it.
    fleet = SimulatedFleet(FleetSettings(nodes=40, seed=5, window_seconds=REPORT_SECONDS,
                                         peak_utilisation=(0.55, 0.7),
                                         trough_utilisation=(0.55, 0.7)))
    async with e2e_stack(tmp_path, render_module, fleet) as stack:
        # Both real processes are scraped; the agent is sampling this machine and posting.
        await stack.wait_for_data("both targets up", 'count(up{job=~"kubecarbon-.*"} == 1) == 2',
                                  30)
        await stack.wait_for_data(
            "the real agent sampling and delivering",
            'kubecarbon_agent_source_success{job="kubecarbon-agent",source="cpu"} == 1'
            " and on () kubecarbon_agent_reports_sent_total > 0", 30)
        # ... and its node is in the collector's series, with this machine's CPUs.
        await stack.wait_for_data(
            "the real agent's node", f'kubecarbon_node_logical_cpus{{node="{REAL_NODE}"}}'
            f" == {os.cpu_count()}", 30)

        groups = yaml.safe_load((tmp_path / "rules.yaml").read_text())
        recorded = [r["record"] for g in groups["groups"] for r in g["rules"] if "record" in r]
        # Series built on pod requests need a collector that knows the pods: this one runs
        # without them; test_e2e_rightsizing.py checks those rules and that dashboard.
        for name in recorded:
            if name not in NEEDS_POD_REQUESTS:
                await stack.wait_for_data("recording rule", name, 60)
        for title, expr in dashboard_queries():
            if not title.startswith(REQUESTS_DASHBOARD):
                await stack.wait_for_data(f"panel {title!r}", expr, 30)

        # Healthy fleet: utilisation well above the 30 % threshold and the alert silent.
        prometheus = stack.prometheus
        (utilisation,) = await prometheus.query("kubecarbon:fleet_cpu_usage:ratio")
        assert float(utilisation["value"][1]) > 0.4
        assert await prometheus.alert_states("KubecarbonFleetUtilisationLow") == set()
        (avoided,) = await prometheus.query("kubecarbon:avoided_servers:sum")
        assert float(avoided["value"][1]) > 0
        # Everything reports and nothing is refused: these stay silent.
        for quiet in ("KubecarbonCollectorDown", "KubecarbonReportsRejected",
                      "KubecarbonAgentMissing", "KubecarbonAvoidedServersDropped"):
            assert await prometheus.alert_states(quiet) == set(), quiet

        # The real agent's node is the one node without a profile in the collector's config.
        (unpriced,) = await prometheus.query("sum(kubecarbon_collector_default_profile_nodes)")
        assert float(unpriced["value"][1]) == 1

        async def unknown_profile_fires() -> bool:
            return "firing" in await prometheus.alert_states("KubecarbonUnknownNodeProfiles")

        await wait_until("KubecarbonUnknownNodeProfiles to fire", unknown_profile_fires, 30,
                         tmp_path)

        # Collapse: the simulated fleet drops to a twentieth of its load.
        fleet.load_scale = 0.05

        async def alert_fires() -> bool:
            return "firing" in await prometheus.alert_states("KubecarbonFleetUtilisationLow")

        await wait_until("KubecarbonFleetUtilisationLow to fire", alert_fires, 60, tmp_path)
        # Prometheus keeps the ALERTS series of each state: it was pending before it fired.
        assert await prometheus.query(
            'ALERTS{alertname="KubecarbonFleetUtilisationLow",alertstate="pending"}[5m]')
        (collapsed,) = await prometheus.query("kubecarbon:fleet_cpu_usage:ratio")
        assert float(collapsed["value"][1]) < 0.3

        # The collector goes away: KubecarbonCollectorDown fires.
        assert stack.feeder is not None
        await _cancel(stack.feeder)
        stack.collector.terminate()
        await stack.collector.wait()

        async def collector_down_fires() -> bool:
            return "firing" in await prometheus.alert_states("KubecarbonCollectorDown")

        await wait_until("KubecarbonCollectorDown to fire", collector_down_fires, 30, tmp_path)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
