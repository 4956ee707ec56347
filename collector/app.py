"""The collector's HTTP API: POST /api/v1/reports, GET /metrics, /healthz, /readyz.

`create_app` takes everything injectable (settings, model parameters, metadata
provider, clock, registry) with defaults, so tests and the benchmark build the
same app the command line does, and wires the parts: the ledger, the ingest step
that writes it, the fleet views and the exposition that read it, the app's own
telemetry, the state file and the status page. A rejected request moves only the
telemetry; an accepted batch is applied whole. Reads never change the ledger:
/metrics takes one view of it on the event loop and renders that on a worker
thread, or for a large fleet in a forked child process (collector/render_process.py),
so that a scrape does not hold up ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from collector.auth import BearerTokens
from collector.capacity import PodUsageTracker
from collector.capacity_exposition import CapacityFamilies, RightsizingStatus, capacity_inputs
from collector.dedupe import SeqTracker
from collector.exposition import CONTENT_TYPE, Exposition, Scrape
from collector.fleet_view import FleetViewCache, split_live
from collector.ingest import Ingestor, IngestQueue
from collector.ledger import Ledger
from collector.metadata import ClusterInventory, MetadataProvider, StaticMetadataProvider
from collector.model.parameters import ModelParameters
from collector.render_process import (
    CHILD_RENDER_MIN_NODES,
    ForkedRender,
    RenderFailed,
    render_in_child,
)
from collector.rightsizing import UsageHistory
from collector.settings import ReplicaSettings, ServerSettings, Settings, StateSettings
from collector.sharding import (
    FORWARDED_HEADER,
    Forwarder,
    OwnerReply,
    PeerDirectory,
    PeersFile,
    PeerTrust,
    PodPeers,
    encode_part,
    replica_ordinal,
    reports_by_owner,
)
from collector.snapshot import encode, restore_snapshot, write_atomically
from collector.status import add_status_routes
from collector.telemetry import Telemetry
from collector.validation import BatchValidator, IngestError, decode_body
from kubecarbon.trust import CaBundle, CaBundleError
from kubecarbon.wire import REPORTS_PATH, Report

log = logging.getLogger(__name__)

LEDGER_KEY = web.AppKey("kubecarbon_ledger", Ledger)
FLEET_VIEWS_KEY = web.AppKey("kubecarbon_fleet_views", FleetViewCache)
TELEMETRY_KEY = web.AppKey("kubecarbon_telemetry", Telemetry)
RIGHTSIZING_KEY = web.AppKey("kubecarbon_rightsizing", RightsizingStatus)
READ_CHUNK_BYTES = 64 * 1024


class ReplicaSetupError(Exception):
    """--replicas > 1 without a way for the replicas to find each other."""


def default_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC metrics of prometheus_client."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


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
    if declared is not None:  # an agent's request: one read, no loop over chunks
        try:
            return await request.content.readexactly(declared)
        except asyncio.IncompleteReadError as exc:
            raise IngestError(400, "body", f"{len(exc.partial)} bytes, Content-Length "
                                           f"said {declared}") from None
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
    peers: PeerDirectory | None = None,
    child_render_min_nodes: int = CHILD_RENDER_MIN_NODES,
) -> web.Application:
    """The collector app. `token` beats settings.server.token_file (read here if set, and
    again whenever it or the previous token's file changes).

    A metadata provider with `start()`/`stop()` methods (the Kubernetes one) is started
    when the app starts and stopped when it shuts down. With settings.replicas.replicas
    > 1, `peers` (default: --peers-file, else the Kubernetes provider's pod watch) says
    where the other replicas are, and reports of nodes this replica does not own go there.
    """
    settings = settings if settings is not None else Settings()
    metadata = metadata if metadata is not None else StaticMetadataProvider()
    registry = registry if registry is not None else default_registry()
    tokens = (BearerTokens(fixed=(token,)) if token is not None else
              BearerTokens(settings.server.token_file, settings.server.previous_token_file))
    params = params if params is not None else settings.profiles.model
    validator = BatchValidator.for_limits(settings.limits)
    ledger = Ledger(settings.export, SeqTracker(max_agents=settings.dedupe.max_agents,
                                                seq_window=settings.dedupe.seq_window))
    pod_usage = PodUsageTracker()
    usage_history = UsageHistory(settings.rightsizing)
    ingest_queue = IngestQueue(Ingestor(
        ledger, params=params, profiles=settings.profiles, metadata=metadata, clock=clock,
        hourly_intensity=settings.hourly_intensity, pod_usage=pod_usage,
        usage_history=usage_history, idle_by_requests=settings.idle_attribution == "requests",
    ))
    views = FleetViewCache(params, settings.export.stale_after_seconds,
                           settings.hourly_intensity)
    telemetry = Telemetry()
    forwarder = _forwarder(settings.replicas, settings.server, metadata, peers)
    exposition = Exposition(views, capacity=CapacityFamilies(params, settings.rightsizing),
                            sharded=forwarder is not None)

    def reject(exc: IngestError) -> web.Response:
        telemetry.reject(exc.status)
        return _error(exc)

    async def post_reports(request: web.Request) -> web.Response:
        try:
            if tokens.enabled:
                scheme, _, given = request.headers.get("Authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not tokens.accepts(
                    given.strip().encode("utf-8", "replace")
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
        accepted = duplicates = 0
        if forwarder is not None and FORWARDED_HEADER not in request.headers:
            parts = reports_by_owner(reports, settings.replicas.replicas)
            reports = parts.pop(forwarder.ordinal, [])
            if parts:
                replies = await _forward_parts(forwarder, parts, raw, request.headers,
                                               whole=not reports)
                for reply in replies:
                    telemetry.forwarded[reply_result(reply)] += 1
                failed = next((r for r in replies if r.status != 200), None)
                if failed is not None:  # the agent retries; this replica's share waits too
                    return web.Response(status=failed.status, body=failed.body,
                                        content_type="application/json")
                for reply in replies:
                    counts = orjson.loads(reply.body)
                    accepted += counts["accepted"]
                    duplicates += counts["duplicates"]
        if reports:
            try:
                result = await ingest_queue.submit(reports)
            except Exception as exc:  # logged by the queue; nothing was applied
                return web.Response(status=500,
                                    body=orjson.dumps({"error": f"internal: {exc}"}),
                                    content_type="application/json")
            accepted += result.accepted
            duplicates += result.duplicates
        return web.Response(
            body=orjson.dumps({"accepted": accepted, "duplicates": duplicates}),
            content_type="application/json",
        )

    async def get_metrics(request: web.Request) -> web.Response:
        # Everything the scrape shows is taken here, between two ingest steps; the render
        # (seconds at 50,000 nodes) runs in a child process or on a worker thread meanwhile.
        scrape = Scrape(ledger.view(clock()), telemetry.copy(), metadata.status(),
                        capacity_inputs(metadata, pod_usage, usage_history))
        process_metrics = generate_latest(registry)
        # Prometheus asks for gzip: about 10x fewer bytes at 10,000 nodes; level 1 already
        # gets most of the gain.
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        body = await asyncio.to_thread(
            _serve_metrics, exposition, scrape, process_metrics, gzipped,
            in_child=len(scrape.ledger.windows) >= child_render_min_nodes)
        headers = {"Content-Type": CONTENT_TYPE}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        status = metadata.status()
        now = clock()
        live, stale = split_live(ledger.view(now).windows, now,
                                 settings.export.stale_after_seconds)
        ready = status.synced
        detail = {
            "ready": ready,
            "metadata": {
                "source": status.source,
                "synced": status.synced,
                "connected": status.connected,
                "detail": status.detail,
            },
            "nodes": {"live": len(live), "stale": stale},
            "snapshot": {
                "restore": telemetry.snapshot_restore,
                "last_success_timestamp_seconds":
                    telemetry.snapshot_last_success_timestamp_seconds,
            },
        }
        return web.Response(
            status=200 if ready else 503,
            body=orjson.dumps(detail),
            content_type="application/json",
        )

    # aiohttp would otherwise gunzip request bodies itself, without a size cap.
    app = web.Application(handler_args={"auto_decompress": False})
    app[LEDGER_KEY] = ledger
    app[FLEET_VIEWS_KEY] = views
    app[TELEMETRY_KEY] = telemetry
    app.router.add_post(REPORTS_PATH, post_reports)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    # Startup runs in this order (shutdown in reverse): the state file is restored before
    # anything reads the ledger; the status page's first point, taken when its sampler
    # starts, then shows the restored counters, even while a provider's start() lists
    # the cluster.
    app.cleanup_ctx.append(_state_file(ledger, telemetry, settings.state, clock, usage_history,
                                        child_render_min_nodes))
    app.cleanup_ctx.append(_provider_lifecycle(metadata))
    if forwarder is not None:
        app.cleanup_ctx.append(_forwarder_lifecycle(forwarder))
    rightsizing = RightsizingStatus(exposition.capacity, metadata, pod_usage, usage_history)
    app[RIGHTSIZING_KEY] = rightsizing
    if status_page:
        add_status_routes(app, ledger, views, clock=clock, rightsizing=rightsizing,
                          child_min_nodes=child_render_min_nodes)
    return app


def _serve_metrics(exposition: Exposition, scrape: Scrape, process_metrics: bytes,
                   gzipped: bool, in_child: bool) -> bytes:
    """The /metrics body, rendered here or in a forked child (on a worker thread)."""
    exposition.prepare(scrape, in_child)  # in this process: a child's copy dies with the child
    if in_child:
        return render_in_child(functools.partial(
            _metrics_body, exposition, scrape, process_metrics, gzipped, forked=True))
    return _metrics_body(exposition, scrape, process_metrics, gzipped)


def _metrics_body(exposition: Exposition, scrape: Scrape, process_metrics: bytes,
                  gzipped: bool, forked: bool = False) -> bytes:
    if forked:  # in render_in_child's child
        exposition.capacity.forked()
    body = exposition.render(scrape).encode("utf-8") + process_metrics
    return gzip.compress(body, 1) if gzipped else body


def _forwarder(replicas: ReplicaSettings, server: ServerSettings, metadata: MetadataProvider,
               peers: PeerDirectory | None) -> Forwarder | None:
    """The hop to other replicas (HTTPS when this one serves it), or None for one collector."""
    if replicas.replicas == 1:
        return None
    if replicas.replica_name is None:
        raise ReplicaSetupError(f"--replicas {replicas.replicas} needs --replica-name")
    set_name, ordinal = replica_ordinal(replicas.replica_name)
    trust = _peer_trust(replicas, server.tls_cert_file)
    if peers is None and replicas.peers_file is not None:
        peers = PeersFile(replicas.peers_file)
    if peers is None:
        if (metadata.status().source != "kubernetes" or replicas.namespace is None
                or not isinstance(metadata, ClusterInventory)):
            raise ReplicaSetupError(
                f"--replicas {replicas.replicas}: the replicas find each other through the "
                "Kubernetes pod watch, which is not available (--kubernetes off, no API "
                "access, or no --replica-namespace): give --peers-file or run one replica")
        peers = PodPeers(metadata, replicas.namespace, set_name, server.listen_port,
                         scheme="http" if trust is None else "https")
    return Forwarder(ordinal, peers, trust=trust)


def _peer_trust(replicas: ReplicaSettings, tls_cert_file: Path | None) -> PeerTrust | None:
    """How peers are verified when this replica serves HTTPS; None: plain HTTP."""
    if tls_cert_file is None:
        return None
    if not replicas.peer_server_name:
        raise ReplicaSetupError(f"--replicas {replicas.replicas} with HTTPS needs "
                                "--peer-server-name: the name in the replicas' certificate")
    try:
        return PeerTrust(CaBundle(replicas.peer_ca(tls_cert_file)), replicas.peer_server_name)
    except CaBundleError as exc:
        raise ReplicaSetupError(f"argument --peer-ca-file: {exc}") from None


async def _forward_parts(forwarder: Forwarder, parts: dict[int, list[Report]], raw: bytes,
                         headers: Mapping[str, str], whole: bool) -> list[OwnerReply]:
    """Each owner's share, sent at once; `whole`: the batch is one owner's, send it as it came."""
    if whole and len(parts) == 1:
        (owner,) = parts
        return [await forwarder.forward(owner, raw, headers)]
    plain = {"Content-Type": "application/json"}
    if "Authorization" in headers:
        plain["Authorization"] = headers["Authorization"]
    return list(await asyncio.gather(*(
        forwarder.forward(owner, encode_part(part), plain) for owner, part in parts.items())))


def reply_result(reply: OwnerReply) -> str:
    """The `result` label of collector_forwarded_requests_total for one forwarded request."""
    if reply.failure is not None:
        return reply.failure
    return "applied" if reply.status == 200 else "refused"


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def _forwarder_lifecycle(forwarder: Forwarder) -> CleanupContext:
    async def forwarder_lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await forwarder.close()

    return forwarder_lifecycle


def _state_file(ledger: Ledger, telemetry: Telemetry, state: StateSettings,
                clock: Callable[[], float], history: UsageHistory | None,
                child_min_nodes: int) -> CleanupContext:
    """Restore the ledger at startup, write it every interval and at shutdown."""

    async def state_file(app: web.Application) -> AsyncIterator[None]:
        path = state.state_file
        if path is None:
            yield
            return
        telemetry.snapshot_restore = restore_snapshot(ledger, path, history)
        task = asyncio.create_task(
            _snapshot_loop(ledger, telemetry, path, state.snapshot_interval_seconds, clock,
                           history, child_min_nodes),
            name="kubecarbon-snapshots",
        )
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # on SIGTERM too: run_app shuts down cleanly
        await save_snapshot(ledger, telemetry, path, clock, history, child_min_nodes)

    return state_file


def _provider_lifecycle(metadata: MetadataProvider) -> CleanupContext:
    """Start a provider that has `start()` (the Kubernetes one lists the cluster) and stop it."""

    async def provider_lifecycle(app: web.Application) -> AsyncIterator[None]:
        start = getattr(metadata, "start", None)
        stop = getattr(metadata, "stop", None)
        if callable(start):
            await asyncio.to_thread(start)
        yield
        if callable(stop):
            await asyncio.to_thread(stop)

    return provider_lifecycle


async def save_snapshot(ledger: Ledger, telemetry: Telemetry, path: Path,
                        clock: Callable[[], float], history: UsageHistory | None,
                        child_min_nodes: int) -> bool:
    """Write one snapshot; failures are logged and counted, never raised."""
    now = clock()
    try:
        # Here, on the event loop, ingest cannot change the ledger meanwhile: a large one
        # is encoded by a child forked now, which holds it as it is at this instant.
        if ledger.node_count >= child_min_nodes:
            child = ForkedRender(functools.partial(encode, ledger, now, history))
            data = await asyncio.to_thread(child.read)
        else:
            data = encode(ledger, now, history)
        await asyncio.to_thread(write_atomically, path, data)
    except (OSError, RenderFailed) as exc:
        telemetry.snapshot_writes["failure"] += 1
        log.error("state snapshot to %s failed: %s", path, exc)
        return False
    telemetry.snapshot_writes["success"] += 1
    telemetry.snapshot_last_success_timestamp_seconds = now
    return True


async def _snapshot_loop(ledger: Ledger, telemetry: Telemetry, path: Path,
                         interval_seconds: float, clock: Callable[[], float],
                         history: UsageHistory | None, child_min_nodes: int) -> None:
    while True:
        await asyncio.sleep(interval_seconds)
        await save_snapshot(ledger, telemetry, path, clock, history, child_min_nodes)
