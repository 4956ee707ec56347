"""The two Prometheus HTTP API calls the report makes, with errors as one-line ReportErrors."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson


class ReportError(Exception):
    """Anything that stops the report; the message is the one line the user sees."""


class PrometheusClient:
    """Instant and range queries, sent as form-encoded POSTs (long queries fit no URL)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")

    async def _post(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.base_url}{path}"
        try:
            async with self.session.post(url, data=params) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ClientConnectionError as exc:
            raise ReportError(f"cannot reach Prometheus at {self.base_url}: {exc}") from None
        except TimeoutError:
            raise ReportError(f"Prometheus at {self.base_url} did not answer in time") from None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ReportError(
                f"{url} answered HTTP {status} with something that is not the Prometheus API"
                " (is --prometheus the server's base URL?)"
            ) from None
        if not isinstance(payload, dict) or payload.get("status") != "success":
            detail = payload.get("error", "") if isinstance(payload, dict) else ""
            raise ReportError(f"Prometheus query failed (HTTP {status}): {detail or body[:200]!r}")
        return payload["data"]

    async def instant(self, query: str, at: float) -> list[dict[str, Any]]:
        data = await self._post("/api/v1/query", {"query": query, "time": repr(at)})
        return list(data["result"])

    async def range(self, query: str, start: float, end: float,
                    step: float) -> list[dict[str, Any]]:
        data = await self._post(
            "/api/v1/query_range",
            {"query": query, "start": repr(start), "end": repr(end), "step": repr(step)},
        )
        return list(data["result"])
