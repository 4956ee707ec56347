"""The agent's HTTP endpoints: /metrics for Prometheus and /healthz for the kubelet probe."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.metrics import AgentMetrics

HealthCheck = Callable[[], tuple[bool, str]]  # (healthy, one-line detail)


def make_app(metrics: AgentMetrics, health: HealthCheck) -> web.Application:
    async def serve_metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def serve_health(_: web.Request) -> web.Response:
        healthy, detail = health()
        return web.Response(text=detail + "\n", status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/healthz", serve_health)
    return app
