"""Collector benchmarks: ingest throughput and latency, /metrics render time, fleet view.

    .venv/bin/python bench/collector_ingest.py            # all three, a few minutes
    .venv/bin/python bench/collector_ingest.py --quick    # smaller runs
    .venv/bin/python bench/collector_ingest.py --render-nodes 20000,50000  # /metrics only
    .venv/bin/python bench/collector_ingest.py --status-nodes 2000  # the status page only

1. Ingest: the real collector app and a bare aiohttp endpoint that only parses the
   body with orjson each run in their own process pinned to one core (CPU 0); the
   load generator (a minimal HTTP/1.1 client with pre-encoded requests, so that it
   costs far less than the servers) runs on the other core and posts the same 100-pod
   reports over keep-alive connections: one report per request with every pod known
   to the metadata provider, one per request with no pod known (static mode, or pods
   newer than the watch), then 50 per request (an agent replaying after an outage).
   Prints reports/s, p50/p99 latency and collector/bare ratios, and also each server's
   CPU time per report (from /proc), whose ratio is what the throughput ratio would be
   on a core of their own and moves far less with the neighbours on a shared machine.
   Goals (issue 13): >= 0.5 of the bare rate in every case and >= 2,000 reports/s on
   one core.
2. /metrics at 10,000 nodes: our text renderer, run as the app runs it for a fleet that
   size (in a forked child, whose caches die with it), against prometheus_client's
   generate_latest over the same samples (same run), in CPU seconds. Goal < 1 s.
3. Fleet view at 10,000 live nodes: model over every node's latest window plus
   1,000 uncertainty draws, against drawing the same 10,000 x 1,000 random numbers.
4. Memory of the collector's state for 10,000 nodes of 100 pods, against one window
   of the same fleet's reports held as parsed JSON.
5. (--status-nodes only) How long one GET /api/v1/summary and one status point hold
   the event loop as served, against making them in place on the loop (same run).

Machines are shared and noisy: compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import orjson
from benchkit import free_loopback_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.metadata import NodeInfo, PodInfo, StaticMetadataProvider  # noqa: E402

PODS_PER_REPORT = 100
NAMESPACES = ("payments", "lending", "risk", "web", "data-pipeline", "monitoring")


POD_CPU_REQUEST_CORES = 0.1  # --render-pods-placed: 10 of a 16-CPU node's cores requested
POD_MEMORY_REQUEST_BYTES = 2**28


def fleet_metadata(nodes: int, pods_known: bool = True, placed: bool = False
                   ) -> StaticMetadataProvider:
    """The fleet's nodes and, if `pods_known`, its pods; `placed`: each pod on its node
    with requests, as the Kubernetes provider sees running pods (else on no node)."""
    providers = ("aws", "gcp", "azure", "baremetal")
    regions = {"aws": "us-east-1", "gcp": "europe-west1", "azure": "eastus",
               "baremetal": "china-east"}
    node_infos = {}
    pod_infos = {}
    for n in range(nodes):
        provider = providers[n % len(providers)]
        name = f"node-{n:05d}"
        node_infos[name] = NodeInfo(name, provider=provider, instance_type=f"{provider}-16",
                                    region=regions[provider])
        for p in range(PODS_PER_REPORT):
            uid = f"{n:05d}-{p:03d}"
            namespace = NAMESPACES[p % len(NAMESPACES)]
            pod_infos[uid] = PodInfo(uid, namespace, f"app{p % 20}-{uid}", "Deployment",
                                     f"app{p % 20}", *(
                                         (name, POD_CPU_REQUEST_CORES, POD_MEMORY_REQUEST_BYTES)
                                         if placed else ()))
    return StaticMetadataProvider(node_infos, pod_infos if pods_known else {})


def make_report(node: int, seq: int, start: float, rng: np.random.Generator) -> dict:
    busy = float(rng.uniform(20, 200))
    pod_cpu = (busy * 0.9 * rng.dirichlet(np.ones(PODS_PER_REPORT))).tolist()
    return {
        "schema": 1, "node": f"node-{node:05d}", "agent_id": f"agent-{node:05d}", "seq": seq,
        "start": start, "end": start + 15.0,
        "cpu": {"logical_cpus": 16, "busy_seconds": busy},
        "memory": {"total_bytes": 64 * 2**30, "used_bytes": 32 * 2**30},
        "containers_running": 150,
        "pods": [{"uid": f"{node:05d}-{p:03d}", "cpu_seconds": cpu, "containers": 1 + p % 3}
                 for p, cpu in enumerate(pod_cpu)],
    }


def make_bodies(nodes: int, reports: int, per_request: int, first_seq: int = 1) -> list[bytes]:
    """Request bodies; every report has a new (agent_id, seq), so none is a duplicate."""
    rng = np.random.default_rng(42 + first_seq)
    all_reports = [
        make_report(i % nodes, first_seq + i // nodes, 1.764e9 + 15 * (first_seq + i // nodes), rng)
        for i in range(reports)
    ]
    return [orjson.dumps({"reports": all_reports[i:i + per_request]})
            for i in range(0, reports, per_request)]


# --- servers (run in a child process, pinned to one core) ---------------------------------

def serve(kind: str, port: int, nodes: int, pods_known: bool) -> None:
    from aiohttp import web

    if kind == "collector":
        from prometheus_client import CollectorRegistry

        from collector.app import create_app

        app = create_app(metadata=fleet_metadata(nodes, pods_known),
                         registry=CollectorRegistry(), status_page=False)
    else:
        async def parse_only(request: web.Request) -> web.Response:
            document = orjson.loads(await request.read())
            return web.Response(body=orjson.dumps({"accepted": len(document["reports"]),
                                                   "duplicates": 0}),
                                content_type="application/json")

        app = web.Application(client_max_size=8 * 2**20)
        app.router.add_post("/api/v1/reports", parse_only)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def start_server(kind: str, nodes: int, pods_known: bool) -> tuple[subprocess.Popen, str]:
    port = free_loopback_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port), "--nodes", str(nodes),
         *(() if pods_known else ("--pods-unknown",))],
        preexec_fn=lambda: os.sched_setaffinity(0, {0}),
    )
    url = f"http://127.0.0.1:{port}/api/v1/reports"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> tuple[bytes, bytes]:
    """Send one pre-encoded HTTP/1.1 request, read one response: (status line, body)."""
    writer.write(request)
    status_line = await reader.readuntil(b"\r\n")
    length = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status_line, await reader.readexactly(length)


async def load(url: str, bodies: list[bytes], concurrency: int,
               tls: tuple[ssl.SSLContext, str] | None = None) -> tuple[float, list[float]]:
    """POST every body over `concurrency` keep-alive connections; (seconds, latencies).

    A minimal HTTP/1.1 client on asyncio streams with pre-encoded requests: the load
    generator must cost far less per request than the servers it measures, or it
    measures itself (an aiohttp client did, on a busy machine). `tls`: an https URL's
    client context and the name to check in the server's certificate.
    """
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    head = (f"POST {parsed.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: ")
    requests = [head.encode() + str(len(body)).encode() + b"\r\n\r\n" + body
                for body in bodies]
    requests.reverse()
    latencies: list[float] = []

    async def worker() -> None:
        if tls is None:
            reader, writer = await asyncio.open_connection(host, port)
        else:
            reader, writer = await asyncio.open_connection(host, port, ssl=tls[0],
                                                           server_hostname=tls[1])
        try:
            while requests:
                request = requests.pop()
                began = time.perf_counter()
                status_line, reply = await exchange(reader, writer, request)
                if b" 200 " not in status_line:
                    raise RuntimeError(f"{status_line!r}: {reply[:300]!r}")
                latencies.append(time.perf_counter() - began)
        finally:
            writer.close()
            await writer.wait_closed()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc/<pid>/stat, with
    that of its children it has waited for (the collector renders /metrics in a child)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run_ingest(kind: str, warm_up: list[bytes], bodies: list[bytes], reports: int, nodes: int,
               concurrency: int, pods_known: bool) -> tuple[float, float, float, float]:
    """(reports/s, p50 ms, p99 ms, server CPU us per report) of one server."""
    process, url = start_server(kind, nodes, pods_known)
    try:
        os.sched_setaffinity(0, {1})  # the load generator stays off the server's core
        asyncio.run(load(url, warm_up, concurrency))
        cpu_before = cpu_seconds(process.pid)
        elapsed, latencies = asyncio.run(load(url, bodies, concurrency))
        cpu = cpu_seconds(process.pid) - cpu_before
    finally:
        process.terminate()
        process.wait(timeout=30)
    quantiles = np.quantile(latencies, [0.5, 0.99])
    return (reports / elapsed, float(quantiles[0]) * 1e3, float(quantiles[1]) * 1e3,
            cpu / reports * 1e6)


def bench_ingest(nodes: int, reports: int, per_request: int, concurrency: int,
                 rounds: int, pods_known: bool = True) -> tuple[float, float]:
    """Prints the case's figures; returns the median throughput and CPU-time ratios."""
    warm_up = make_bodies(nodes, max(per_request, reports // 10), per_request, first_seq=10**6)
    bodies = make_bodies(nodes, reports, per_request)
    print(f"\ningest: {reports} reports of {PODS_PER_REPORT} pods "
          f"({'known to' if pods_known else 'unknown to'} the metadata provider), "
          f"{per_request} per request, {concurrency} connections, server pinned to CPU 0, "
          f"{rounds} alternating rounds")
    runs: dict[str, list[tuple[float, float, float, float]]] = {"bare": [], "collector": []}
    ratios = []
    cpu_ratios = []
    for _ in range(rounds):
        for kind in ("bare", "collector"):  # alternate: noise from neighbours hits both
            runs[kind].append(run_ingest(kind, warm_up, bodies, reports, nodes, concurrency,
                                         pods_known))
        ratios.append(runs["collector"][-1][0] / runs["bare"][-1][0])
        cpu_ratios.append(runs["bare"][-1][3] / runs["collector"][-1][3])
    for kind, results in runs.items():
        rate, p50, p99, cpu = (statistics.median(r[i] for r in results) for i in range(4))
        print(f"  {kind:<9} {rate:9.0f} reports/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
              f"server CPU {cpu:6.1f} us/report   (medians)")
    collector_rate = statistics.median(r[0] for r in runs["collector"])
    ratio = statistics.median(ratios)
    print(f"  collector/bare throughput ratio: median {ratio:.2f}, "
          f"per round {', '.join(f'{r:.2f}' for r in ratios)} (goal >= 0.5); "
          f"collector {collector_rate:.0f} reports/s/core (goal >= 2,000)")
    cpu_ratio = statistics.median(cpu_ratios)
    print(f"  bare/collector server CPU per report (the same ratio on a core of their own, "
          f"less sensitive to neighbours): median {cpu_ratio:.2f}, per round "
          f"{', '.join(f'{r:.2f}' for r in cpu_ratios)}")
    return ratio, cpu_ratio


# --- /metrics render and fleet view (in process) ----------------------------------------

def timed(function: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs)


def big_fleet(nodes: int, pods_known: bool = True,  # type: ignore[no-untyped-def]
              placed: bool = False):
    """An ingestor after one report of each node, with the app's pod usage and history."""
    from collector.capacity import PodUsageTracker
    from collector.ingest import Ingestor
    from collector.ledger import Ledger
    from collector.rightsizing import UsageHistory

    ingestor = Ingestor(Ledger(), metadata=fleet_metadata(nodes, pods_known, placed),
                        pod_usage=PodUsageTracker(),
                        usage_history=UsageHistory())
    rng = np.random.default_rng(7)
    reports = [make_report(n, 1, time.time() - 15, rng) for n in range(nodes)]
    for offset in range(0, nodes, 500):
        ingestor.ingest(reports[offset:offset + 500])
    return ingestor


def child_cpu(function: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds of `function()`: this process's and its waited-for children's."""
    runs = []
    for _ in range(repeat):
        began, children = time.process_time(), os.times()
        function()
        after = os.times()
        runs.append(time.process_time() - began + after.children_user - children.children_user
                    + after.children_system - children.children_system)
    return statistics.median(runs)


def bench_render(nodes: int, repeat: int, pods_known: bool = False, placed: bool = False
                 ) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, UnknownMetricFamily

    from collector.capacity_exposition import capacity_inputs
    from collector.exposition import Exposition, Scrape
    from collector.fleet_view import compute_fleet_view
    from collector.metadata import ProviderStatus
    from collector.model.parameters import ModelParameters
    from collector.render_process import render_in_child
    from collector.settings import ExportSettings
    from collector.telemetry import Telemetry

    # pods unknown by default, as in bench/collector_capacity.py (no requests to account
    # per pod); known, as with the Kubernetes provider: every pod's request is accounted
    ingestor = big_fleet(nodes, pods_known=pods_known, placed=placed)
    ledger = ingestor.ledger
    status = ProviderStatus("static", True, True)

    def take_scrape() -> Scrape:  # on the event loop, in the app
        return Scrape(ledger.view(time.time()), Telemetry(), status,
                      capacity_inputs(ingestor.metadata, ingestor.pod_usage,
                                      ingestor.usage_history))

    scrape = take_scrape()
    if placed:  # the rightsizing packing, made at most once a minute (in a child, as served)
        packing = child_cpu(lambda: Exposition().prepare(scrape, in_child=True), 1)
    # As the app serves a fleet this size: the parent's exposition, each scrape rendered
    # in a forked child (whose caches die with it), the body gzipped at level 1.
    served = Exposition()

    def serve_scrape(gzipped: bool) -> bytes:
        served.prepare(scrape, in_child=True)  # in this process, as the app does before it forks

        def body() -> bytes:
            text = served.render(scrape).encode()
            return gzip.compress(text, 1) if gzipped else text
        return render_in_child(body)

    exposition = Exposition()
    families = list(exposition.families(scrape))
    kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
             "untyped": UnknownMetricFamily}

    class Reference:
        def collect(self):  # type: ignore[no-untyped-def]
            for spec, rows in families:
                family = kinds[spec.kind](spec.full_name, spec.help, labels=spec.labels)
                for values, value in rows:
                    family.add_metric(values, value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Reference())
    samples = sum(len(list(rows)) for _, rows in families)
    text = serve_scrape(gzipped=False)
    assert text == exposition.render(scrape).encode()  # the child's body is the render's
    ours = child_cpu(lambda: serve_scrape(gzipped=False), repeat)
    served_gzip = child_cpu(lambda: serve_scrape(gzipped=True), repeat)
    reference = child_cpu(lambda: generate_latest(registry), repeat)
    on_loop = child_cpu(take_scrape, repeat)
    print(f"\n/metrics at {nodes} nodes ({samples} samples, {len(text) / 2**20:.1f} MiB, "
          f"{PODS_PER_REPORT} pods a node {'known' if pods_known else 'unknown'}"
          f"{', placed with requests' if placed else ''}), "
          f"CPU seconds (this process and its children), median of {repeat}:")
    print(f"  kubecarbon, rendered in a forked child as served  {ours * 1e3:8.1f} ms "
          f"({ours / nodes * 1e6:.1f} us a node)")
    print(f"  prometheus_client generate_latest, same samples    {reference * 1e3:8.1f} ms "
          f"(reference, in process)")
    print(f"  ratio reference/ours: {reference / ours:.2f}x")
    print(f"  with gzip level 1, as Prometheus asks for it       {served_gzip * 1e3:8.1f} ms, "
          f"{len(gzip.compress(text, 1)) / 2**20:.1f} MiB")
    print(f"  the scrape's part on the event loop (ledger view, telemetry copy): "
          f"{on_loop * 1e3:.2f} ms, {on_loop / ours:.3f} of the render")
    if placed:
        print(f"  the rightsizing packing, at most once a minute, in a child: "
              f"{packing * 1e3:.1f} ms (reused by the renders above)")

    view = timed(lambda: compute_fleet_view(scrape.ledger.windows, scrape.ledger.now,
                                            ModelParameters(), ExportSettings.stale_after_seconds),
                 repeat)
    rng = np.random.default_rng(0)
    draws = timed(lambda: rng.uniform(size=(1000, nodes)).sum(), repeat)
    print(f"\nfleet view at {nodes} live nodes (model over latest windows + 1,000 draws), "
          f"median of {repeat}:")
    print(f"  fleet view                {view * 1e3:8.1f} ms")
    print(f"  reference: draw and sum {nodes} x 1,000 uniforms {draws * 1e3:6.1f} ms; "
          f"ratio {view / draws:.1f}")
    bench_snapshot(ingestor, repeat)


def bench_snapshot(ingestor, repeat: int) -> None:  # type: ignore[no-untyped-def]
    """How long a state snapshot holds the event loop: encoding the ledger there (below
    CHILD_RENDER_MIN_NODES), or only forking the child that encodes it (from there on).
    Wall time, with the served process's garbage-collector thresholds."""
    import gc

    from collector.heap import tune_for_serving
    from collector.render_process import ForkedRender
    from collector.snapshot import encode

    defaults = gc.get_threshold()
    tune_for_serving()
    try:
        def held(make: Callable[[], object]) -> float:
            began = time.perf_counter()
            made = make()
            seconds = time.perf_counter() - began
            if isinstance(made, ForkedRender):
                made.read()
            return seconds

        def encoded() -> bytes:
            return encode(ingestor.ledger, time.time(), ingestor.usage_history)

        in_place = statistics.median(held(encoded) for _ in range(repeat))
        forked = statistics.median(held(lambda: ForkedRender(encoded)) for _ in range(repeat))
    finally:
        gc.set_threshold(*defaults)
    size = len(encoded())
    print(f"\nstate snapshot ({size / 2**20:.1f} MiB), the event loop held (wall), median of "
          f"{repeat}:")
    print(f"  encoded on the loop       {in_place * 1e3:8.1f} ms")
    print(f"  forked, encoded in the child  {forked * 1e3:8.1f} ms; ratio {in_place / forked:.1f}")


async def loop_held(work: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(the longest the event loop went without running a 1 ms heartbeat, the wall time)
    while `work()` is awaited on it: how long a request arriving meanwhile could wait."""
    done = asyncio.Event()
    longest = [0.0]

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest[0] = max(longest[0], now - last)
            last = now

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    began = time.perf_counter()
    await work()
    wall = time.perf_counter() - began
    done.set()
    await beating
    return longest[0], wall


def bench_status(nodes: int, repeat: int, stale: bool = True) -> None:
    """How long one GET /api/v1/summary (and one status point) holds the event loop, made
    in place as before (the reference) and as served, with the packing kept or stale."""
    from collector.capacity_exposition import CapacityFamilies, RightsizingStatus
    from collector.fleet_view import FleetViewCache
    from collector.status import StatusHistory

    ingestor = big_fleet(nodes, pods_known=True, placed=True)
    families, views = CapacityFamilies(), FleetViewCache()
    now = time.time()  # one instant: every summary below is of the same fleet
    history = StatusHistory(ingestor.ledger, views, clock=lambda: now,
                            rightsizing=RightsizingStatus(families, ingestor.metadata,
                                                          ingestor.pod_usage,
                                                          ingestor.usage_history))
    point = history.sample()
    history.points.extend([point] * (history.settings.capacity - 1))  # a full ring: 4 h
    assert orjson.loads(asyncio.run(history.summary_body())) == orjson.loads(
        orjson.dumps(history.summary()))

    async def in_place_summary() -> bytes:  # as before: all of it on the loop
        return orjson.dumps(history.summary())

    async def in_place_point() -> object:
        return history.sample()

    # Serving, the ledger has changed since the last fleet view (every ingest changes it):
    # each run starts without one, and, `packing`, without a kept packing either.
    def fresh(work: Callable[[], Awaitable[object]], packing: str = "kept"
              ) -> Callable[[], Awaitable[object]]:
        async def with_nothing_kept() -> object:
            views._cached = None
            if packing == "stale":
                families._cached = None
            return await work()
        return with_nothing_kept

    cases = [("summary, packing kept", fresh(in_place_summary), fresh(history.summary_body)),
             ("status point (one per interval)", fresh(in_place_point),
              fresh(history.sample_off_loop))]
    if stale:
        cases.insert(1, ("summary, packing stale", fresh(in_place_summary, "stale"),
                         fresh(history.summary_body, "stale")))
    print(f"\n/api/v1/summary at {nodes} nodes ({PODS_PER_REPORT} pods a node, placed with "
          f"requests), the event loop held (longest gap of a 1 ms heartbeat) and wall time, "
          f"median of {repeat}, in ms:")
    print(f"  {'case':<34} {'in place: held':>15} {'wall':>7} {'served: held':>13} {'wall':>7}"
          f" {'held ratio':>11}")
    for name, before, after in cases:
        runs = [(asyncio.run(loop_held(before)), asyncio.run(loop_held(after)))
                for _ in range(repeat)]
        held_before = statistics.median(b[0] for b, _ in runs)
        wall_before = statistics.median(b[1] for b, _ in runs)
        held_after = statistics.median(a[0] for _, a in runs)
        wall_after = statistics.median(a[1] for _, a in runs)
        print(f"  {name:<34} {held_before * 1e3:>15.1f} {wall_before * 1e3:>7.1f} "
              f"{held_after * 1e3:>13.1f} {wall_after * 1e3:>7.1f} "
              f"{held_before / held_after:>10.1f}x")


def bench_memory(nodes: int) -> None:
    """Memory of the collector state for a fleet, against its reports as parsed JSON."""
    import gc
    import tracemalloc

    from collector.ingest import Ingestor
    from collector.ledger import Ledger

    metadata = fleet_metadata(nodes)  # the static provider's tables: not the collector's cost
    rng = np.random.default_rng(7)
    reports = [make_report(n, 1, time.time() - 15, rng) for n in range(nodes)]
    bodies = [orjson.dumps({"reports": reports[i:i + 500]}) for i in range(0, nodes, 500)]
    del reports
    gc.collect()
    tracemalloc.start()
    parsed = [orjson.loads(body) for body in bodies]  # one window of the fleet, as received
    reference = tracemalloc.get_traced_memory()[0]
    del parsed
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    ingestor = Ingestor(Ledger(), metadata=metadata)
    for body in bodies:
        ingestor.ingest(orjson.loads(body)["reports"])
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"\nmemory at {nodes} nodes x {PODS_PER_REPORT} pods (tracemalloc, after gc):")
    print(f"  collector state           {held / 2**20:8.1f} MiB")
    print(f"  reference: one window of the fleet's reports, parsed  {reference / 2**20:.1f} MiB; "
          f"ratio {held / reference:.2f}")
    del ingestor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=("collector", "bare"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--pods-unknown", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ingest-only", action="store_true",
                        help="the three ingest cases only (no render, fleet view, memory)")
    parser.add_argument("--render-nodes", default="",
                        help="only /metrics and the fleet view, at these fleet sizes "
                             "(comma-separated, e.g. 20000,50000)")
    parser.add_argument("--render-pods-known", action="store_true",
                        help="with --render-nodes: every pod known to the metadata provider, "
                             "as with Kubernetes, but on no node: nothing requested or packed")
    parser.add_argument("--render-pods-placed", action="store_true",
                        help="with --render-pods-known: each pod on its node with requests "
                             "(requests summed, rightsizing packed)")
    parser.add_argument("--status-nodes", default="",
                        help="only how long GET /api/v1/summary holds the event loop, at "
                             "these fleet sizes (comma-separated, e.g. 2000,10000)")
    parser.add_argument("--status-kept-packing", action="store_true",
                        help="with --status-nodes: no summary with a stale packing "
                             "(O(pods x nodes): too slow in place from 10,000 nodes)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.nodes, pods_known=not args.pods_unknown)
        return
    if args.render_nodes or args.status_nodes:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}")
    if args.status_nodes:
        for nodes in (int(n) for n in args.status_nodes.split(",")):
            bench_status(nodes, repeat=3 if args.quick else 5,
                         stale=not args.status_kept_packing)
        return
    if args.render_nodes:
        for nodes in (int(n) for n in args.render_nodes.split(",")):
            bench_render(nodes, repeat=3 if args.quick else 5,
                         pods_known=args.render_pods_known, placed=args.render_pods_placed)
        return
    reports = 3000 if args.quick else 12000
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    rounds = 1 if args.quick else 3
    ratios = {
        "single reports, pods known": bench_ingest(
            nodes=200, reports=reports, per_request=1, concurrency=16, rounds=rounds),
        "single reports, pods unknown": bench_ingest(
            nodes=200, reports=reports, per_request=1, concurrency=16, rounds=rounds,
            pods_known=False),
        "batches of 50": bench_ingest(
            nodes=200, reports=reports * 2, per_request=50, concurrency=4, rounds=rounds),
    }
    print("\ncollector/bare ratios, throughput | CPU per report (goal >= 0.5 in every case): "
          + "; ".join(f"{case} {ratio:.2f} ({'met' if ratio >= 0.5 else 'NOT met'}) | "
                      f"{cpu_ratio:.2f} ({'met' if cpu_ratio >= 0.5 else 'NOT met'})"
                      for case, (ratio, cpu_ratio) in ratios.items()))
    if args.ingest_only:
        return
    bench_render(nodes=2000 if args.quick else 10_000, repeat=3 if args.quick else 5)
    bench_memory(nodes=2000 if args.quick else 10_000)


if __name__ == "__main__":
    main()
