"""The status page at `/` and its data at `/api/v1/summary`.

The page needs history that /metrics does not keep, so the collector takes a
snapshot of its fleet state once per interval into a bounded ring buffer
(default: 4 hours). Snapshots read the same FleetState view /metrics renders,
so the page and /metrics cannot disagree. Power over time is the rate of the energy
counters between snapshots, for the fleet and for its baseline alike.

Register on an aiohttp app with `add_status_routes(app, state)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
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

    @property
    def capacity(self) -> int:
        return max(2, int(self.history_seconds / self.interval_seconds) + 1)


@dataclass(frozen=True)
class Snapshot:
    """The fleet at one moment, from the collector's own metrics."""

    timestamp: float
    nodes: int
    fleet_cpu_usage_ratio: float
    baseline_servers: float
    actual_servers: float
    avoided_servers: float
    power_watts: float  # sum of node_power_watts over live nodes
    avoided_co2e_grams_per_hour: dict[str, float]  # quantile ("0.05", "0.5", "0.95") -> g/h
    energy_joules: float  # counter totals since the collector started (or its snapshot)
    baseline_energy_joules: float
    co2e_grams: float
    avoided_co2e_grams: float
    namespace_co2e_grams: dict[str, float] = field(default_factory=dict)
    # Rates between this snapshot and the previous one (None for the first).
    power_rate_watts: float | None = None
    baseline_power_rate_watts: float | None = None
    namespace_co2e_grams_per_hour: dict[str, float] = field(default_factory=dict)


def read_snapshot(state: FleetState, now: float) -> Snapshot:
    """The fleet as /metrics shows it at `now` (no rates yet)."""
    view = state.fleet_view(now)
    gauges, fleet = view.gauges, state.fleet
    quantiles = view.avoided_quantiles
    return Snapshot(
        timestamp=now,
        nodes=len(view.live),
        fleet_cpu_usage_ratio=gauges.fleet_cpu_usage_ratio,
        baseline_servers=gauges.baseline_servers,
        actual_servers=gauges.actual_servers,
        avoided_servers=gauges.avoided_servers,
        power_watts=sum(node.power_watts for node in view.live),
        avoided_co2e_grams_per_hour={} if quantiles is None else {
            "0.05": quantiles.p05, "0.5": quantiles.p50, "0.95": quantiles.p95},
        energy_joules=sum(c.energy_joules for c in state.nodes.values()),
        baseline_energy_joules=fleet.baseline_energy_joules,
        co2e_grams=sum(c.co2e_grams for c in state.nodes.values()),
        avoided_co2e_grams=fleet.avoided_operational_co2e_grams
        + fleet.avoided_embodied_co2e_grams,
        namespace_co2e_grams={ns: c.co2e_grams for ns, c in state.namespaces.items()},
    )


def with_rates(current: Snapshot, previous: Snapshot | None) -> Snapshot:
    """The snapshot with power and namespace rates since `previous`."""
    if previous is None or current.timestamp <= previous.timestamp:
        return current
    seconds = current.timestamp - previous.timestamp

    def rate(now: float, before: float) -> float:
        # after a counter reset the rise since the reset is all we know
        return (now - before if now >= before else now) / seconds

    namespace_rates = {
        ns: rate(grams, previous.namespace_co2e_grams.get(ns, 0.0)) * 3600.0
        for ns, grams in current.namespace_co2e_grams.items()
    }
    top = dict(sorted(namespace_rates.items(), key=lambda kv: -kv[1])[:TOP_NAMESPACES])
    return Snapshot(
        **{
            **asdict(current),
            "power_rate_watts": rate(current.energy_joules, previous.energy_joules),
            "baseline_power_rate_watts": rate(
                current.baseline_energy_joules, previous.baseline_energy_joules
            ),
            "namespace_co2e_grams_per_hour": top,
        }
    )


def _compact(snapshot: Snapshot) -> dict[str, Any]:
    """A history point: what the charts draw, without the per-namespace totals."""
    point = asdict(snapshot)
    del point["namespace_co2e_grams"]
    return point


class StatusHistory:
    """A bounded ring buffer of snapshots, one per interval."""

    def __init__(self, state: FleetState, settings: StatusSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.settings = settings or StatusSettings()
        self.clock = clock
        self.points: deque[Snapshot] = deque(maxlen=self.settings.capacity)

    def sample(self) -> Snapshot:
        previous = self.points[-1] if self.points else None
        snapshot = with_rates(read_snapshot(self.state, self.clock()), previous)
        self.points.append(snapshot)
        return snapshot

    def summary(self) -> dict[str, Any]:
        """What the page shows: the registry now, with rates since the last point, and history."""
        previous = self.points[-1] if self.points else None
        current = read_snapshot(self.state, self.clock())
        if previous is not None and current.timestamp - previous.timestamp < 1.0:
            current = Snapshot(**{**asdict(current), **{
                key: getattr(previous, key) for key in
                ("power_rate_watts", "baseline_power_rate_watts", "namespace_co2e_grams_per_hour")
            }})
        else:
            current = with_rates(current, previous)
        return {
            "current": asdict(current),
            "history": [_compact(point) for point in self.points],
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
