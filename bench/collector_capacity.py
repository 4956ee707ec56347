"""How large a fleet one collector core holds: reports every 15 s, a scrape every 15 s.

    .venv/bin/python bench/collector_capacity.py --nodes 20000,30000,40000,50000

For each fleet size N, in turn: one `python -m collector` process (static metadata, so
every pod uid is unknown to it, as with --kubernetes off or pods newer than the watch),
pinned to CPU 0, is filled with one window of every node (batches of 500), then for
--intervals intervals of 15 s every node sends its next window as one request at its
own moment of the interval (N / 15 requests per second, open loop: a request's latency
counts from when it was due, so a stall is charged to every request that waited), and a
Prometheus-style scrape of the whole exposition (gzip, as Prometheus asks) starts at
the beginning of every interval. The load generator, a minimal HTTP/1.1 client on
keep-alive connections with requests encoded beforehand, runs on CPU 1.

The fleet is held when ingest p99 <= 100 ms and no scrape took over 5 s (issue 13's
goal: 50,000 nodes, about 3,300 reports/s). Reference, same run and same load: a bare
aiohttp endpoint that only parses each body with orjson, at the largest size tried;
its p99 is what the HTTP stack and the machine cost alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from benchkit import fleet_config, percentile
from collector_ingest import cpu_seconds, exchange, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "scale"))

from scale_testkit import REPORTS_PATH, CollectorProcess

from collector.simulate import FleetSettings, SimulatedFleet

SIMULATED_START = 1_764_072_000.0  # 2025-11-25T12:00:00Z
INTERVAL_SECONDS = 15.0
FILL_BATCH = 500
CONNECTIONS = 128
TICK_SECONDS = 0.005
P99_LIMIT_SECONDS = 0.1
SCRAPE_LIMIT_SECONDS = 5.0


@dataclass
class Outcome:
    nodes: int
    latencies: list[float] = field(default_factory=list)
    scrapes: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0  # wall time of the measured phase
    cpu_seconds: float = 0.0  # the server's CPU time in it

    @property
    def cores(self) -> float:
        """Cores the load needs: the server's CPU time over the time the load was sent in."""
        return self.cpu_seconds / (len(self.latencies) / (self.nodes / INTERVAL_SECONDS))

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)

    @property
    def held(self) -> bool:
        return (not self.failures and self.p99 <= P99_LIMIT_SECONDS
                and max(self.scrapes, default=0.0) <= SCRAPE_LIMIT_SECONDS)


def encoded_requests(url: str, bodies: list[bytes]) -> list[bytes]:
    parsed = urlsplit(url)
    head = (f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()
    return [head + str(len(body)).encode() + b"\r\n\r\n" + body for body in bodies]


async def open_loop(url: str, requests: list[bytes], rate: float, outcome: Outcome,
                    scrape_url: str | None) -> None:
    """Send request k when it is due (start + k / rate); scrape at every interval's start."""
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                due, request = item
                status_line, reply = await exchange(reader, writer, request)
                if b" 200 " not in status_line:
                    outcome.failures.append(f"{status_line!r}: {reply[:200]!r}")
                outcome.latencies.append(loop.time() - due)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def scrape(due: float) -> None:
        await asyncio.sleep(max(0.0, due - loop.time()))
        reader, writer = await asyncio.open_connection(host, port)
        try:
            began = loop.time()
            status_line, body = await exchange(reader, writer, (
                f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Accept-Encoding: gzip\r\n\r\n").encode())
            outcome.scrapes.append(loop.time() - began)
            if b" 200 " not in status_line:
                outcome.failures.append(f"/metrics: {status_line!r}")
            else:
                text = gzip.decompress(body).decode()
                outcome.samples = sum(1 for line in text.splitlines()
                                      if line and not line.startswith("#"))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
    start = loop.time() + 0.2
    scrapes = []
    if scrape_url is not None:
        intervals = int(len(requests) / rate / INTERVAL_SECONDS + 0.5)
        scrapes = [asyncio.create_task(scrape(start + k * INTERVAL_SECONDS))
                   for k in range(intervals)]
    sent = 0
    while sent < len(requests):
        now = loop.time()
        due_count = min(len(requests), int((now - start) * rate) + 1) if now >= start else 0
        while sent < due_count:
            queue.put_nowait((start + sent / rate, requests[sent]))
            sent += 1
        await asyncio.sleep(TICK_SECONDS)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers, *scrapes)


def fill(collector: CollectorProcess, reports: list[dict[str, object]]) -> None:
    import urllib.request

    for offset in range(0, len(reports), FILL_BATCH):
        request = urllib.request.Request(
            collector.url + REPORTS_PATH,
            data=orjson.dumps({"reports": reports[offset:offset + FILL_BATCH]}),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            if response.status != 200:
                raise RuntimeError(f"fill failed: HTTP {response.status}")


def request_bodies(fleet: SimulatedFleet, intervals: int) -> list[bytes]:
    """One report per body: windows 2, 3, ... of every node, node after node."""
    return [orjson.dumps({"reports": [report]})
            for window in range(2, 2 + intervals)
            for report in fleet.reports(SIMULATED_START + window * INTERVAL_SECONDS)]


def measure_collector(nodes: int, intervals: int, workdir: Path, seed: int) -> Outcome:
    fleet = SimulatedFleet(FleetSettings(nodes=nodes, seed=seed,
                                         window_seconds=INTERVAL_SECONDS))
    collector = CollectorProcess(workdir, [], config=fleet_config())
    collector.start()
    outcome = Outcome(nodes)
    try:
        os.sched_setaffinity(collector.pid, {0})
        fill(collector, fleet.reports(SIMULATED_START + INTERVAL_SECONDS))
        requests = encoded_requests(collector.url + REPORTS_PATH,
                                    request_bodies(fleet, intervals))
        timed(collector.pid, outcome, open_loop(
            collector.url + REPORTS_PATH, requests, nodes / INTERVAL_SECONDS, outcome,
            collector.url + "/metrics"))
    finally:
        collector.stop()
    return outcome


def measure_bare(nodes: int, intervals: int, seed: int) -> Outcome:
    fleet = SimulatedFleet(FleetSettings(nodes=nodes, seed=seed,
                                         window_seconds=INTERVAL_SECONDS))
    process, url = start_server("bare", 1, pods_known=True)
    outcome = Outcome(nodes)
    try:
        requests = encoded_requests(url, request_bodies(fleet, intervals))
        timed(process.pid, outcome, open_loop(url, requests, nodes / INTERVAL_SECONDS, outcome,
                                              None))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return outcome


def timed(pid: int, outcome: Outcome, run: Coroutine[Any, Any, None]) -> None:
    began, cpu = time.monotonic(), cpu_seconds(pid)
    asyncio.run(run)
    outcome.seconds = time.monotonic() - began
    outcome.cpu_seconds = cpu_seconds(pid) - cpu


def describe(name: str, outcome: Outcome) -> str:
    scrapes = (f"; {len(outcome.scrapes)} scrapes of {outcome.samples} samples, max "
               f"{max(outcome.scrapes):.2f} s" if outcome.scrapes else "")
    return (f"  {name:<9} {outcome.nodes:>6} nodes ({outcome.nodes / INTERVAL_SECONDS:,.0f} "
            f"reports/s): p50 {percentile(outcome.latencies, 0.5) * 1e3:7.1f} ms, p99 "
            f"{outcome.p99 * 1e3:7.1f} ms, max {max(outcome.latencies) * 1e3:7.1f} ms"
            f"{scrapes}; {len(outcome.failures)} failed; server CPU {outcome.cpu_seconds:.1f} s "
            f"for {len(outcome.latencies) / (outcome.nodes / INTERVAL_SECONDS):.0f} s of load "
            f"(phase took {outcome.seconds:.0f} s): needs {outcome.cores:.2f} of a core")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="20000,30000,40000,50000",
                        help="fleet sizes to try, smallest first (comma-separated)")
    parser.add_argument("--intervals", type=int, default=3,
                        help="15 s intervals measured per size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = sorted(int(n) for n in args.nodes.split(","))
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two CPUs: the collector on one, the load on the other")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; sizes {sizes}, {args.intervals} intervals of "
          f"{INTERVAL_SECONDS:g} s each, one report per request, a gzip scrape per interval",
          flush=True)
    os.sched_setaffinity(0, {1})
    largest = 0
    tried = 0
    cpu_per_node: tuple[int, float] | None = None
    with tempfile.TemporaryDirectory(prefix="kubecarbon-capacity-") as tmp:
        for nodes in sizes:
            began = time.monotonic()
            outcome = measure_collector(nodes, args.intervals, Path(tmp) / str(nodes), args.seed)
            tried = nodes
            cpu_per_node = (nodes, outcome.cores)
            print(describe("collector", outcome)
                  + f" -> {'held' if outcome.held else 'NOT held'} "
                  f"({time.monotonic() - began:.0f} s)", flush=True)
            for failure in outcome.failures[:3]:
                print(f"    failure: {failure}")
            if not outcome.held:
                break
            largest = nodes
    reference = measure_bare(tried, args.intervals, args.seed)
    print(describe("bare", reference) + " (reference: HTTP and the machine alone)")
    print(f"  bare/collector CPU for the same load at {tried:,} nodes: "
          f"{reference.cores / outcome.cores:.2f}")
    print(f"\nlargest fleet held on one core: {largest:,} nodes "
          f"(goal 50,000: {'met' if largest >= 50_000 else 'NOT met'}); load average now "
          f"{os.getloadavg()[0]:.2f}")
    if cpu_per_node:
        nodes, cores = cpu_per_node
        print(f"extrapolated from CPU time, not measured: at {nodes:,} nodes the collector "
              f"needed {cores:.2f} of a core (reports and scrapes), so a core of its own "
              f"would run out near {nodes / cores:,.0f} nodes (latency left aside)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
