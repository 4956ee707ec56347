"""The collector's HTTP API: POST /api/v1/reports, GET /metrics, /healthz, /readyz.

`create_app` takes everything injectable (settings, model parameters, metadata
provider, clock, registry) with defaults, so tests and the benchmark build the
same app the command line does. A rejected request moves only the rejection
counters; an accepted batch is applied whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from collector.dedupe import SeqTracker
from collector.metadata import MetadataProvider, StaticMetadataProvider
from collector.metrics import CONTENT_TYPE, Exposition
from collector.model.parameters import ModelParameters
from collector.settings import Settings
from collector.snapshot import encode, restore_snapshot, write_atomically
from collector.state import FleetState, IngestResult
from collector.status import add_status_routes
from collector.validation import BatchValidator, IngestError, decode_body

log = logging.getLogger(__name__)

STATE_KEY = web.AppKey("kubecarbon_state", FleetState)
EXPOSITION_KEY = web.AppKey("kubecarbon_exposition", Exposition)
READ_CHUNK_BYTES = 64 * 1024


class TokenFileError(Exception):
    """The configured token file cannot be used."""


def read_token(path: Path) -> bytes:
    """The bearer token in `path` (surrounding whitespace ignored); refuses an empty one."""
    try:
        token = path.read_bytes().strip()
    except OSError as exc:
        raise TokenFileError(f"argument --token-file: cannot read {path}: {exc.strerror}") from None
    if not token:
        raise TokenFileError(f"argument --token-file: {path} is empty")
    return token


def default_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC metrics of prometheus_client."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class IngestQueue:
    """Group commit: batches validated in the same event-loop turn share one model run.

    Under load many single-report requests are ready at once; applying them together
    pays the model's fixed per-call cost once. Each request still waits for its own
    result, so a reply always means "applied" (or "duplicate").
    """

    def __init__(self, state: FleetState) -> None:
        self.state = state
        self._pending: list[tuple[list[dict[str, Any]], asyncio.Future[IngestResult]]] = []

    async def submit(self, reports: list[dict[str, Any]]) -> IngestResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((reports, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            results = self.state.ingest_batches([reports for reports, _ in pending])
        except Exception:
            # A model bug tripped by some report: nothing was applied. Apply the batches one
            # by one so that only the request holding it fails, not its neighbours.
            for reports, future in pending:
                self._apply_alone(reports, future)
            return
        for (_, future), result in zip(pending, results, strict=True):
            if not future.done():  # the client may have gone; the reports are applied anyway
                future.set_result(result)

    def _apply_alone(
        self, reports: list[dict[str, Any]], future: asyncio.Future[IngestResult]
    ) -> None:
        try:
            result = self.state.ingest(reports)
        except Exception as exc:
            log.exception("applying a batch of %d reports failed", len(reports))
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)


def _error(exc: IngestError) -> web.Response:
    return web.Response(
        status=exc.status,
        body=orjson.dumps({"error": str(exc)}),
        content_type="application/json",
    )


async def _read_capped(request: web.Request, max_bytes: int) -> bytes:
    """The raw body, refusing more than max_bytes without reading it all."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise IngestError(413, "body", f"{declared} bytes, limit {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise IngestError(413, "body", f"more than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    settings: Settings | None = None,
    *,
    params: ModelParameters | None = None,
    metadata: MetadataProvider | None = None,
    clock: Callable[[], float] = time.time,
    registry: CollectorRegistry | None = None,
    token: bytes | None = None,
    status_page: bool = True,
) -> web.Application:
    """The collector app. `token` beats settings.server.token_file (read here if set).

    A metadata provider with `start()`/`stop()` methods (the Kubernetes one) is started
    when the app starts and stopped when it shuts down.
    """
    settings = settings if settings is not None else Settings()
    metadata = metadata if metadata is not None else StaticMetadataProvider()
    registry = registry if registry is not None else default_registry()
    if token is None and settings.server.token_file is not None:
        token = read_token(settings.server.token_file)
    validator = BatchValidator.for_limits(settings.limits)
    state = FleetState(
        params=params if params is not None else settings.profiles.model,
        profiles=settings.profiles,
        metadata=metadata,
        export=settings.export,
        seqs=SeqTracker(max_agents=settings.dedupe.max_agents,
                        seq_window=settings.dedupe.seq_window),
        clock=clock,
        hourly_intensity=settings.hourly_intensity,
    )
    exposition = Exposition(state, metadata.status)
    ingest_queue = IngestQueue(state)
    counters = state.collector

    def reject(exc: IngestError) -> web.Response:
        counters.rejected_by_status[exc.status] = counters.rejected_by_status.get(exc.status, 0) + 1
        return _error(exc)

    async def post_reports(request: web.Request) -> web.Response:
        try:
            if token is not None:
                scheme, _, given = request.headers.get("Authorization", "").partition(" ")
                # compare_digest: the time taken must not reveal how much of the token matched
                if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode("utf-8", "replace"), token
                ):
                    raise IngestError(401, "Authorization", "missing or wrong bearer token")
            raw = await _read_capped(request, settings.limits.max_body_bytes)
            body = decode_body(
                raw,
                request.headers.get("Content-Type"),
                request.headers.get("Content-Encoding"),
                settings.limits,
            )
            reports = validator.parse(body)
        except IngestError as exc:
            response = reject(exc)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="kubecarbon"'
            return response
        try:
            result = await ingest_queue.submit(reports)
        except Exception as exc:  # logged by the queue; nothing was applied
            return web.Response(status=500, body=orjson.dumps({"error": f"internal: {exc}"}),
                                content_type="application/json")
        return web.Response(
            body=orjson.dumps({"accepted": result.accepted, "duplicates": result.duplicates}),
            content_type="application/json",
        )

    async def get_metrics(request: web.Request) -> web.Response:
        text = exposition.render().encode("utf-8") + generate_latest(registry)
        headers = {"Content-Type": CONTENT_TYPE}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            # Prometheus asks for gzip: about 10x fewer bytes at 10,000 nodes. Compress off
            # the event loop; level 1 already gets most of the gain.
            text = await asyncio.to_thread(gzip.compress, text, 1)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=text, headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        status = metadata.status()
        view = state.fleet_view()
        ready = status.synced
        detail = {
            "ready": ready,
            "metadata": {
                "source": status.source,
                "synced": status.synced,
                "connected": status.connected,
                "detail": status.detail,
            },
            "nodes": {"live": len(view.live), "stale": view.stale_count},
            "snapshot": {
                "restore": counters.snapshot_restore,
                "last_success_timestamp_seconds":
                    counters.snapshot_last_success_timestamp_seconds,
            },
        }
        return web.Response(
            status=200 if ready else 503,
            body=orjson.dumps(detail),
            content_type="application/json",
        )

    async def snapshots(app: web.Application) -> AsyncIterator[None]:
        path = settings.state.state_file
        if path is None:
            yield
            return
        counters.snapshot_restore = restore_snapshot(state, path)
        task = asyncio.create_task(
            _snapshot_loop(state, path, settings.state.snapshot_interval_seconds, clock),
            name="kubecarbon-snapshots",
        )
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await save_snapshot(state, path, clock)  # on SIGTERM too: run_app shuts down cleanly

    async def metadata_lifecycle(app: web.Application) -> AsyncIterator[None]:
        start = getattr(metadata, "start", None)
        stop = getattr(metadata, "stop", None)
        if callable(start):
            await asyncio.to_thread(start)
        yield
        if callable(stop):
            await asyncio.to_thread(stop)

    # aiohttp would otherwise gunzip request bodies itself, without a size cap.
    app = web.Application(handler_args={"auto_decompress": False})
    app[STATE_KEY] = state
    app[EXPOSITION_KEY] = exposition
    app.router.add_post("/api/v1/reports", post_reports)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if status_page:
        add_status_routes(app, state, clock=clock)
    app.cleanup_ctx.append(metadata_lifecycle)
    app.cleanup_ctx.append(snapshots)
    return app


async def save_snapshot(state: FleetState, path: Path, clock: Callable[[], float]) -> bool:
    """Write one snapshot; failures are logged and counted, never raised."""
    counters = state.collector
    now = clock()
    data = encode(state, now)  # here, on the event loop: ingest cannot change the state meanwhile
    try:
        await asyncio.to_thread(write_atomically, path, data)
    except OSError as exc:
        counters.snapshot_writes["failure"] += 1
        log.error("state snapshot to %s failed: %s", path, exc)
        return False
    counters.snapshot_writes["success"] += 1
    counters.snapshot_last_success_timestamp_seconds = now
    return True


async def _snapshot_loop(
    state: FleetState, path: Path, interval_seconds: float, clock: Callable[[], float]
) -> None:
    while True:
        await asyncio.sleep(interval_seconds)
        await save_snapshot(state, path, clock)
