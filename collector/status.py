"""The status page at `/` and its data at `/api/v1/summary`.

The page needs history that /metrics does not keep, so the collector takes a
snapshot of its fleet state once per interval into a bounded ring buffer
(default: 4 hours). Snapshots read the same FleetState view /metrics renders,
so the page and /metrics cannot disagree. Baseline power is a gauge like the
fleet's: baseline_servers times the reference server's power at u_b, the same
product the model integrates into baseline_energy_joules_total. Namespace totals
are kept far more coarsely (one mark per `namespace_mark_seconds`), enough to
show which namespaces emitted most over the kept hours at any cluster size.

Register on an aiohttp app with `add_status_routes(app, state)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from collector.state import FleetState

TOP_NAMESPACES = 8


@dataclass(frozen=True)
class StatusSettings:
    """How often the page's history is sampled and how much of it is kept."""

    interval_seconds: float = 15.0  # one snapshot per interval
    history_seconds: float = 4 * 3600.0  # the ring buffer covers this much time
    refresh_seconds: float = 5.0  # how often the page asks for new data
    namespace_mark_seconds: float = 600.0  # spacing of the namespace-totals marks

    @property
    def capacity(self) -> int:
        return max(2, int(self.history_seconds / self.interval_seconds) + 1)

    @property
    def namespace_marks(self) -> int:
        return max(2, int(self.history_seconds / self.namespace_mark_seconds) + 1)


@dataclass(frozen=True)
class Snapshot:
    """The fleet at one moment, from the collector's own state."""

    timestamp: float
    nodes: int
    fleet_cpu_usage_ratio: float
    baseline_servers: float
    actual_servers: float
    avoided_servers: float
    power_watts: float  # sum of node_power_watts over live nodes
    baseline_power_watts: float  # baseline_servers * reference power at u_b
    avoided_co2e_grams_per_hour: dict[str, float]  # quantile ("0.05", "0.5", "0.95") -> g/h
    energy_joules: float  # counter totals since the collector started (or its snapshot)
    baseline_energy_joules: float
    co2e_grams: float
    avoided_co2e_grams: float


def read_snapshot(state: FleetState, now: float) -> Snapshot:
    """The fleet as /metrics shows it at `now`."""
    view = state.fleet_view(now)
    gauges, fleet, params = view.gauges, state.fleet, state.params
    quantiles = view.avoided_quantiles
    watts_per_baseline_server = params.baseline_server_watts
    return Snapshot(
        timestamp=now,
        nodes=len(view.live),
        fleet_cpu_usage_ratio=gauges.fleet_cpu_usage_ratio,
        baseline_servers=gauges.baseline_servers,
        actual_servers=gauges.actual_servers,
        avoided_servers=gauges.avoided_servers,
        power_watts=sum(node.power_watts for node in view.live),
        baseline_power_watts=gauges.baseline_servers * watts_per_baseline_server,
        avoided_co2e_grams_per_hour={} if quantiles is None else {
            "0.05": quantiles.p05, "0.5": quantiles.p50, "0.95": quantiles.p95},
        energy_joules=sum(c.energy_joules for c in state.nodes.values()),
        baseline_energy_joules=fleet.baseline_energy_joules,
        co2e_grams=sum(c.co2e_grams for c in state.nodes.values()),
        avoided_co2e_grams=fleet.avoided_operational_co2e_grams
        + fleet.avoided_embodied_co2e_grams,
    )


def namespace_totals(state: FleetState) -> dict[str, float]:
    return {namespace: c.co2e_grams for namespace, c in state.namespaces.items()}


def top_namespaces(now: dict[str, float], before: dict[str, float],
                   count: int = TOP_NAMESPACES) -> list[tuple[str, float]]:
    """The namespaces that emitted most between two sets of totals, largest first."""
    grown = {ns: grams - before.get(ns, 0.0) if grams >= before.get(ns, 0.0) else grams
             for ns, grams in now.items()}
    return sorted(grown.items(), key=lambda kv: (-kv[1], kv[0]))[:count]


class StatusHistory:
    """A bounded ring buffer of snapshots, one per interval, plus coarse namespace marks."""

    def __init__(self, state: FleetState, settings: StatusSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.settings = settings or StatusSettings()
        self.clock = clock
        self.points: deque[Snapshot] = deque(maxlen=self.settings.capacity)
        self.marks: deque[tuple[float, dict[str, float]]] = deque(
            maxlen=self.settings.namespace_marks)

    def sample(self) -> Snapshot:
        snapshot = read_snapshot(self.state, self.clock())
        self.points.append(snapshot)
        if not self.marks or (snapshot.timestamp - self.marks[-1][0]
                              >= self.settings.namespace_mark_seconds):
            self.marks.append((snapshot.timestamp, namespace_totals(self.state)))
        return snapshot

    def summary(self) -> dict[str, Any]:
        """What the page shows: the state now, the history, and the top namespaces."""
        current = read_snapshot(self.state, self.clock())
        since, before = self.marks[0] if self.marks else (None, {})
        return {
            "current": asdict(current),
            "history": [asdict(point) for point in self.points],
            "top_namespaces": {
                "since": since,
                "co2e_grams": top_namespaces(namespace_totals(self.state), before),
            },
            "interval_seconds": self.settings.interval_seconds,
            "refresh_seconds": self.settings.refresh_seconds,
        }

    async def run(self) -> None:
        """Sample forever, once per interval (cancel to stop)."""
        while True:
            self.sample()
            await asyncio.sleep(self.settings.interval_seconds)


def status_page_html() -> bytes:
    return resources.files("collector").joinpath("static/status.html").read_bytes()


HISTORY_KEY = web.AppKey("kubecarbon_status_history", StatusHistory)


def add_status_routes(app: web.Application, state: FleetState,
                      settings: StatusSettings | None = None,
                      clock: Callable[[], float] = time.time) -> StatusHistory:
    """GET / (the page) and GET /api/v1/summary (its data); samples while the app runs."""
    history = StatusHistory(state, settings, clock)
    app[HISTORY_KEY] = history
    page = status_page_html()

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def summary(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(history.summary()),
                            content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    async def sampler(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(history.run(), name="kubecarbon-status-history")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.router.add_get("/", index)
    app.router.add_get("/api/v1/summary", summary)
    app.cleanup_ctx.append(sampler)
    return history
