"""The status page at `/` and its data at `/api/v1/summary`.

The page needs history that /metrics does not keep, so the collector reads one
status point of the fleet per interval into a bounded ring buffer (default: 4
hours). A point is read from the same ledger view and fleet view /metrics renders,
so the page and /metrics cannot disagree. Baseline power is a gauge like the
fleet's: baseline_servers times the reference server's power at u_b, the same
product the model integrates into baseline_energy_joules_total. Namespace totals
are kept far more coarsely (one mark per `namespace_mark_seconds`), enough to
show which namespaces emitted most over the kept hours at any cluster size.

Like a scrape of /metrics, a summary and a point take what they read on the event loop
(a ledger view, the rightsizing inputs, the ring as it is) and are made from that on a
worker thread: the fleet view takes about 50 ms at 10,000 nodes, and ingest must not
wait for it. For a large fleet a stale rightsizing packing (seconds) is made in a forked
child (collector/render_process.py) and kept, as for /metrics.

Register on an aiohttp app with `add_status_routes(app, ledger, views)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from collector.capacity_exposition import CapacityInputs, RightsizingStatus
from collector.fleet_view import FleetView, FleetViewCache
from collector.ledger import Ledger, LedgerView
from collector.model.parameters import ModelParameters
from collector.render_process import CHILD_RENDER_MIN_NODES

TOP_NAMESPACES = 8


@dataclass(frozen=True)
class StatusSettings:
    """How often the page's history is sampled and how much of it is kept."""

    interval_seconds: float = 15.0  # one point per interval
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
class StatusPoint:
    """The fleet at one moment, as /metrics shows it."""

    timestamp: float
    nodes: int
    fleet_cpu_usage_ratio: float
    baseline_servers: float
    actual_servers: float
    avoided_servers: float
    power_watts: float  # sum of node_power_watts over live nodes
    baseline_power_watts: float  # baseline_servers * reference power at u_b
    avoided_co2e_grams_per_hour: dict[str, float]  # quantile ("0.05", "0.5", "0.95") -> g/h
    energy_joules: float  # counter totals since the collector started (or its state file)
    baseline_energy_joules: float
    co2e_grams: float
    avoided_co2e_grams: float


def status_point(ledger: LedgerView, view: FleetView, params: ModelParameters) -> StatusPoint:
    """The fleet as /metrics shows it at `ledger.now`."""
    gauges, fleet = view.gauges, ledger.fleet
    quantiles = view.avoided_quantiles
    watts_per_baseline_server = params.baseline_server_watts
    return StatusPoint(
        timestamp=ledger.now,
        nodes=len(view.live),
        fleet_cpu_usage_ratio=gauges.fleet_cpu_usage_ratio,
        baseline_servers=gauges.baseline_servers,
        actual_servers=gauges.actual_servers,
        avoided_servers=gauges.avoided_servers,
        power_watts=sum(node.power_watts for node in view.live),
        baseline_power_watts=gauges.baseline_servers * watts_per_baseline_server,
        avoided_co2e_grams_per_hour={} if quantiles is None else {
            "0.05": quantiles.p05, "0.5": quantiles.p50, "0.95": quantiles.p95},
        energy_joules=sum(c.energy_joules for c in ledger.nodes.values()),
        baseline_energy_joules=fleet.baseline_energy_joules,
        co2e_grams=sum(c.co2e_grams for c in ledger.nodes.values()),
        avoided_co2e_grams=fleet.avoided_operational_co2e_grams
        + fleet.avoided_embodied_co2e_grams,
    )


def namespace_totals(ledger: LedgerView) -> dict[str, float]:
    return {namespace: c.co2e_grams for namespace, c in ledger.namespaces.items()}


def top_namespaces(now: dict[str, float], before: dict[str, float],
                   count: int = TOP_NAMESPACES) -> list[tuple[str, float]]:
    """The namespaces that emitted most between two sets of totals, largest first."""
    grown = {ns: grams - before.get(ns, 0.0) if grams >= before.get(ns, 0.0) else grams
             for ns, grams in now.items()}
    return sorted(grown.items(), key=lambda kv: (-kv[1], kv[0]))[:count]


@dataclass(frozen=True)
class StatusRead:
    """What one summary shows, taken at once on the event loop; nothing in it changes
    afterwards (the points and namespace totals are never changed once made)."""

    ledger: LedgerView
    points: tuple[StatusPoint, ...]
    first_mark: tuple[float, dict[str, float]] | None
    capacity: CapacityInputs | None  # the rightsizing inputs; None: none shown


class StatusHistory:
    """A bounded ring buffer of status points, one per interval, plus coarse namespace marks."""

    def __init__(self, ledger: Ledger, views: FleetViewCache,
                 settings: StatusSettings | None = None,
                 clock: Callable[[], float] = time.time,
                 rightsizing: RightsizingStatus | None = None,
                 child_min_nodes: int = CHILD_RENDER_MIN_NODES) -> None:
        self.ledger = ledger
        # where servers can still be saved, now (collector/capacity_exposition.py)
        self.rightsizing = rightsizing
        self.views = views
        self.settings = settings or StatusSettings()
        self.clock = clock
        # from this many nodes (in the ledger) a stale packing is made in a forked child
        self.child_min_nodes = child_min_nodes
        self.points: deque[StatusPoint] = deque(maxlen=self.settings.capacity)
        self.marks: deque[tuple[float, dict[str, float]]] = deque(
            maxlen=self.settings.namespace_marks)

    def current(self) -> StatusPoint:
        """The fleet now, without keeping it."""
        return self._point(self.ledger.view(self.clock()))

    def sample(self) -> StatusPoint:
        """Read a point in place and keep it."""
        ledger = self.ledger.view(self.clock())
        return self._keep(self._point(ledger), ledger)

    async def sample_off_loop(self) -> StatusPoint:
        """`sample`, with only the ledger view and the keeping on the event loop."""
        ledger = self.ledger.view(self.clock())
        return self._keep(await asyncio.to_thread(self._point, ledger), ledger)

    def _keep(self, point: StatusPoint, ledger: LedgerView) -> StatusPoint:
        self.points.append(point)
        if not self.marks or (point.timestamp - self.marks[-1][0]
                              >= self.settings.namespace_mark_seconds):
            self.marks.append((point.timestamp, namespace_totals(ledger)))
        return point

    def take(self) -> StatusRead:
        """What a summary shows; on the event loop, where ingest cannot change it meanwhile."""
        return StatusRead(self.ledger.view(self.clock()), tuple(self.points),
                          self.marks[0] if self.marks else None,
                          None if self.rightsizing is None else self.rightsizing.take())

    def summary(self) -> dict[str, Any]:
        """What the page shows: the fleet now, the history, and the top namespaces."""
        return self.summary_of(self.take())

    def summary_of(self, read: StatusRead) -> dict[str, Any]:
        """The summary of what `take` read; on any thread."""
        ledger = read.ledger
        fleet = self.views.view(ledger)
        since, before = read.first_mark if read.first_mark is not None else (None, {})
        return {
            "current": asdict(status_point(ledger, fleet, self.views.params)),
            "history": [asdict(point) for point in read.points],
            "top_namespaces": {
                "since": since,
                "co2e_grams": top_namespaces(namespace_totals(ledger), before),
            },
            "rightsizing": None if self.rightsizing is None else self.rightsizing.summary(
                read.capacity, ledger, fleet),
            "interval_seconds": self.settings.interval_seconds,
            "refresh_seconds": self.settings.refresh_seconds,
        }

    async def summary_body(self) -> bytes:
        """The summary's JSON, with only `take` on the event loop."""
        return await asyncio.to_thread(self.serve_summary, self.take())

    def serve_summary(self, read: StatusRead) -> bytes:
        """The JSON of `read`'s summary. Blocking: on a worker thread. For a large fleet a
        stale rightsizing packing is made first in a forked child and kept here: packing
        is seconds of pure Python, which would hold the interpreter lock, and with it the
        event loop, in turns. The rest (mostly the fleet view's numpy) is made here, as a
        fork of a large process would hold the loop longer than this thread does."""
        if self.rightsizing is not None and len(read.ledger.windows) >= self.child_min_nodes:
            self.rightsizing.prepare(read.capacity, read.ledger,
                                     functools.partial(self.views.view, read.ledger))
        return orjson.dumps(self.summary_of(read))

    def _point(self, ledger: LedgerView) -> StatusPoint:
        return status_point(ledger, self.views.view(ledger), self.views.params)

    async def run(self) -> None:
        """Sample forever, once per interval (cancel to stop)."""
        while True:
            await self.sample_off_loop()
            await asyncio.sleep(self.settings.interval_seconds)


def status_page_html() -> bytes:
    return resources.files("collector").joinpath("static/status.html").read_bytes()


HISTORY_KEY = web.AppKey("kubecarbon_status_history", StatusHistory)


def add_status_routes(app: web.Application, ledger: Ledger, views: FleetViewCache,
                      settings: StatusSettings | None = None,
                      clock: Callable[[], float] = time.time,
                      rightsizing: RightsizingStatus | None = None,
                      child_min_nodes: int = CHILD_RENDER_MIN_NODES) -> StatusHistory:
    """GET / (the page) and GET /api/v1/summary (its data); samples while the app runs.

    Sampling starts with the app, after the startup steps registered before this call
    (the state file's restore among them), so the first point shows restored counters.
    """
    history = StatusHistory(ledger, views, settings, clock, rightsizing, child_min_nodes)
    app[HISTORY_KEY] = history
    page = status_page_html()

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def summary(request: web.Request) -> web.Response:
        return web.Response(body=await history.summary_body(),
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
