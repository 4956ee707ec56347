"""End to end for issue 14: a real Prometheus scrapes a collector that knows the simulated
fleet's pods and their requests, evaluates the chart's rules and answers every query of
"kubecarbon / Where servers can still be saved"; a namespace whose usage collapses under
unchanged requests takes KubecarbonNamespaceRequestsIdle to pending, then firing.

The collector runs in this process with the fleet's metadata (as `kubecarbon demo` does):
without a cluster, only a provider handed the pods knows their requests. Rightsizing
samples every report interval and recommends after three samples, so recommendations
appear within seconds; `for:` durations are shortened through the chart values.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from collector.app import create_app
from collector.settings import ExportSettings, RightsizingSettings, Settings
from collector.simulate import FleetSettings, SimulatedFleet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_e2e_prometheus import (
    NEEDS_POD_REQUESTS,
    PROMETHEUS,
    REPORT_SECONDS,
    SCRAPE_SECONDS,
    SHORT_FOR,
    VARIABLE_VALUES,
    PrometheusAPI,
    _cancel,
    feed,
    free_port,
    require_prometheus,
    running,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "dashboards" / "kubecarbon-rightsizing.json"
IDLE_ALERT = "KubecarbonNamespaceRequestsIdle"
COLLAPSING_NAMESPACE = "risk"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def panel_queries() -> list[tuple[str, str]]:
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in VARIABLE_VALUES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


@contextlib.asynccontextmanager
async def collector_in_process(fleet: SimulatedFleet, address: tuple[str, int]
                               ) -> AsyncIterator[None]:
    settings = Settings(
        kubernetes="off", profiles=fleet.profile_config(),
        export=ExportSettings(stale_after_seconds=10 * REPORT_SECONDS),
        rightsizing=RightsizingSettings(sample_seconds=REPORT_SECONDS,
                                        min_history_seconds=3 * REPORT_SECONDS,
                                        recompute_seconds=SCRAPE_SECONDS),
    )
    runner = web.AppRunner(create_app(settings, metadata=fleet.metadata(), status_page=False),
                           access_log=None)
    await runner.setup()
    await web.TCPSite(runner, *address).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_rightsizing_series_rules_panels_and_the_namespace_alert(tmp_path, render_module):
    require_prometheus()
    # Load steady whatever the hour, so only the collapse changes a namespace's use.
    fleet = SimulatedFleet(FleetSettings(nodes=12, seed=5, window_seconds=REPORT_SECONDS,
                                         peak_utilisation=(0.55, 0.7),
                                         trough_utilisation=(0.55, 0.7)))
    collector = ("127.0.0.1", free_port())
    prometheus_address = f"127.0.0.1:{free_port()}"
    thresholds: dict[str, Any] = {"namespaceRequestsIdleFor": SHORT_FOR,
                                  "avoidableNodesFor": SHORT_FOR}
    rules = render_module.rule_groups({"prometheusRule": {"thresholds": thresholds}})
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s",
                   "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "scrape_configs": [{"job_name": "kubecarbon-collector",
                            "static_configs": [{"targets": [f"{collector[0]}:{collector[1]}"]}]}],
    }))
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(collector_in_process(fleet, collector))
        await stack.enter_async_context(running("prometheus", [
            PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={prometheus_address}", "--log.level=warn",
        ], tmp_path))
        session = await stack.enter_async_context(aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10)))
        prometheus = PrometheusAPI(session, f"http://{prometheus_address}")
        await wait_until("Prometheus /-/ready", prometheus.ready, 60, tmp_path)
        feeder = asyncio.create_task(
            feed(fleet, session, f"http://{collector[0]}:{collector[1]}/api/v1/reports", ""))
        stack.push_async_callback(_cancel, feeder)

        async def has(expr: str) -> bool:
            if feeder.done():
                feeder.result()
            return bool(await prometheus.query(expr))

        for name in sorted(NEEDS_POD_REQUESTS):
            await wait_until(f"recording rule {name}", lambda n=name: has(n), 60, tmp_path)
        for title, expr in panel_queries():
            await wait_until(f"panel {title!r}: {expr}", lambda e=expr: has(e), 60, tmp_path)

        # Requests are what the fleet's pods ask for, summed per namespace.
        (requested,) = await prometheus.query(
            f'kubecarbon:namespace_requested_cpu_cores:sum{{namespace="{COLLAPSING_NAMESPACE}"}}')
        expected = sum(p.cpu_request_cores for p in fleet.pod_infos().values()
                       if p.namespace == COLLAPSING_NAMESPACE)
        assert float(requested["value"][1]) == pytest.approx(expected)
        # Healthy: every namespace uses more than the threshold's share of its requests.
        assert await prometheus.alert_states(IDLE_ALERT) == set()
        # Once every workload has its recommendation, the over-requested fleet needs fewer
        # nodes.
        await wait_until("avoidable nodes", lambda: has(
            "kubecarbon:rightsizing_avoidable_nodes:sum > 0"), 60, tmp_path)

        # Collapse: the namespace's pods almost stop using CPU; their requests stay.
        fleet.namespace_load_scale[COLLAPSING_NAMESPACE] = 0.02

        async def idle_alert_fires() -> bool:
            return "firing" in await prometheus.alert_states(IDLE_ALERT)

        await wait_until(f"{IDLE_ALERT} to fire", idle_alert_fires, 60, tmp_path)
        firing = await prometheus.query(f'ALERTS{{alertname="{IDLE_ALERT}",alertstate="firing"}}')
        assert {a["metric"]["namespace"] for a in firing} == {COLLAPSING_NAMESPACE}
        # Prometheus keeps the ALERTS series of each state: it was pending before it fired.
        assert await prometheus.query(
            f'ALERTS{{alertname="{IDLE_ALERT}",alertstate="pending",'
            f'namespace="{COLLAPSING_NAMESPACE}"}}[5m]')
        (ratio,) = await prometheus.query(
            "kubecarbon:namespace_cpu_used_per_requested:ratio"
            f'{{namespace="{COLLAPSING_NAMESPACE}"}}')
        assert float(ratio["value"][1]) < 0.2
