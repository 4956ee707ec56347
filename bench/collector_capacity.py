"""How large a fleet one collector core holds: reports every 15 s, a scrape every 15 s.

    .venv/bin/python bench/collector_capacity.py --nodes 20000,30000,40000,50000

For each fleet size N, in turn, the reference and then the collector, each alone in
its own process pinned to CPU 0: a bare aiohttp endpoint that only parses each body
with orjson (what the HTTP stack and the machine cost alone), then `python -m
collector` (static metadata, so every pod uid is unknown to it, as with --kubernetes
off or pods newer than the watch; a state file, as the chart gives it, snapshotted every
60 s: --intervals 4 or more to measure one), filled first with one window of every node
(batches of 500). For --intervals intervals of 15 s every node then sends its next
window as one request at its own moment of the interval: N / 15 requests a second,
open loop (request k is due at start + k / rate whatever became of the others, and its
latency counts from then, so a stall is charged to every request that waited). The
collector also gets a Prometheus-style scrape of the whole exposition (gzip, as
Prometheus asks) at the beginning of every interval.

The load comes from bench/open_loop_load.c, compiled here with the system's gcc and
pinned to CPU 1 (a Python client could not send 3,300 requests a second from one shared
core: 30 s phases took 215-512 s). It also records when each request went out, so the
output says whether the generator itself kept to the schedule.

A server holds a fleet when ingest p99 <= 100 ms, no request failed and (for the
collector) no scrape took over 5 s. Issue 13's goal: 50,000 nodes, about 3,300 reports/s.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from benchkit import fleet_config, percentile
from collector_ingest import cpu_seconds, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "scale"))

from scale_testkit import REPORTS_PATH, CollectorProcess

from collector.simulate import FleetSettings, SimulatedFleet

SIMULATED_START = 1_764_072_000.0  # 2025-11-25T12:00:00Z
INTERVAL_SECONDS = 15.0
FILL_BATCH = 500
CONNECTIONS = 64
P99_LIMIT_SECONDS = 0.1
SCRAPE_LIMIT_SECONDS = 5.0
LOAD_SOURCE = Path(__file__).with_name("open_loop_load.c")


@dataclass
class Outcome:
    kind: str
    nodes: int
    latencies: list[float] = field(default_factory=list)  # from when each request was due
    send_lags: list[float] = field(default_factory=list)  # due -> sent, the generator's part
    failures: list[str] = field(default_factory=list)
    scrapes: list[float] = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0  # wall time of the measured phase
    cpu_seconds: float = 0.0  # the server's CPU time in it
    full_collections: int | None = None  # the collector's generation-2 collections in it

    @property
    def rate(self) -> float:
        return self.nodes / INTERVAL_SECONDS

    @property
    def cores(self) -> float:
        """Cores the load needs: the server's CPU time over the time the load was sent in."""
        return self.cpu_seconds / (len(self.latencies) / self.rate)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)

    @property
    def held(self) -> bool:
        return (not self.failures and self.p99 <= P99_LIMIT_SECONDS
                and max(self.scrapes, default=0.0) <= SCRAPE_LIMIT_SECONDS)


def compile_load(directory: Path) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise SystemExit("needs a C compiler (Debian: apt-get install gcc) for the load generator")
    binary = directory / "open_loop_load"
    subprocess.run([compiler, "-O2", "-Wall", "-Werror", "-o", str(binary), str(LOAD_SOURCE)],
                   check=True)
    return binary


def write_requests(path: Path, port: int, bodies: list[bytes]) -> None:
    """Every request pre-encoded, each after its length (4 bytes, little-endian)."""
    head = (f"POST {REPORTS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()
    with path.open("wb") as out:
        for body in bodies:
            request = head + str(len(body)).encode() + b"\r\n\r\n" + body
            out.write(len(request).to_bytes(4, "little") + request)


def request_bodies(fleet: SimulatedFleet, intervals: int) -> list[bytes]:
    """One report per body: windows 2, 3, ... of every node, node after node."""
    return [orjson.dumps({"reports": [report]})
            for window in range(2, 2 + intervals)
            for report in fleet.reports(SIMULATED_START + window * INTERVAL_SECONDS)]


def fill(url: str, reports: list[dict[str, object]]) -> None:
    for offset in range(0, len(reports), FILL_BATCH):
        request = urllib.request.Request(
            url + REPORTS_PATH, data=orjson.dumps({"reports": reports[offset:offset + FILL_BATCH]}),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            if response.status != 200:
                raise RuntimeError(f"fill failed: HTTP {response.status}")


def full_collections(url: str) -> int:
    """The collector's generation-2 garbage collections so far, from its own /metrics
    (prometheus_client's GC collector). Each one holds the event loop while it walks
    every tracked object."""
    with urllib.request.urlopen(url + "/metrics", timeout=600) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('python_gc_collections_total{generation="2"}'):
                return int(float(line.rsplit(" ", 1)[1]))
    raise RuntimeError("the collector's /metrics has no python_gc_collections_total")


class Scraper:
    """GET /metrics with gzip at the start of every interval, on a thread of this process."""

    def __init__(self, url: str, intervals: int, outcome: Outcome) -> None:
        self.url, self.intervals, self.outcome = url, intervals, outcome
        self.last_body = b""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        began = time.monotonic()
        for k in range(self.intervals):
            time.sleep(max(0.0, began + k * INTERVAL_SECONDS - time.monotonic()))
            request = urllib.request.Request(self.url, headers={"Accept-Encoding": "gzip"})
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    self.last_body = response.read()
            except OSError as exc:
                self.outcome.failures.append(f"/metrics: {exc}")
            self.outcome.scrapes.append(time.monotonic() - started)

    def samples(self) -> int:
        if not self.last_body:
            return 0
        text = gzip.decompress(self.last_body).decode()
        return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def run_load(load: Path, port: int, pid: int, rate: float, requests: Path, outcome: Outcome,
             scraper: Scraper | None) -> None:
    latencies_path = requests.with_suffix(".latencies")
    began, cpu = time.monotonic(), cpu_seconds(pid)
    if scraper is not None:
        scraper.thread.start()
    subprocess.run([str(load), "127.0.0.1", str(port), f"{rate:.6f}", str(CONNECTIONS),
                    str(requests), str(latencies_path)],
                   check=True, preexec_fn=lambda: os.sched_setaffinity(0, {1}))
    outcome.seconds = time.monotonic() - began
    if scraper is not None:
        scraper.thread.join()
        outcome.samples = scraper.samples()
    outcome.cpu_seconds = cpu_seconds(pid) - cpu
    for line in latencies_path.read_text().splitlines():
        sent, done, status = line.split()
        outcome.send_lags.append(float(sent) * 1e-6)
        outcome.latencies.append(float(done) * 1e-6)
        if status != "200":
            outcome.failures.append(f"HTTP status {status} (0: connection failed)")


def measure(kind: str, nodes: int, intervals: int, workdir: Path, seed: int,
            load: Path) -> Outcome:
    fleet = SimulatedFleet(FleetSettings(nodes=nodes, seed=seed,
                                         window_seconds=INTERVAL_SECONDS))
    outcome = Outcome(kind, nodes)
    first_window = fleet.reports(SIMULATED_START + INTERVAL_SECONDS)
    requests = workdir / f"{kind}-{nodes}.requests"
    stop: Callable[[], None]
    if kind == "collector":
        # as the chart runs it: with a state file, snapshotted every 60 s (the default)
        collector = CollectorProcess(workdir / f"collector-{nodes}",
                                     ["--state-file", str(workdir / f"state-{nodes}.json")],
                                     config=fleet_config())
        collector.start()
        stop, pid, port, url = collector.stop, collector.pid, collector.port, collector.url
    else:
        process, reports_url = start_server("bare", 1, pods_known=True)
        pid, port = process.pid, int(reports_url.rsplit(":", 1)[1].split("/", 1)[0])
        url = f"http://127.0.0.1:{port}"

        def stop() -> None:
            process.terminate()
            process.wait(timeout=30)
    try:
        os.sched_setaffinity(pid, {0})
        fill(url, first_window)
        write_requests(requests, port, request_bodies(fleet, intervals))
        scraper = Scraper(url + "/metrics", intervals, outcome) if kind == "collector" else None
        collections_before = full_collections(url) if kind == "collector" else 0
        run_load(load, port, pid, outcome.rate, requests, outcome, scraper)
        if kind == "collector":
            outcome.full_collections = full_collections(url) - collections_before
    finally:
        stop()
        requests.unlink(missing_ok=True)
    return outcome


def describe(outcome: Outcome) -> str:
    scrapes = (f"; {len(outcome.scrapes)} scrapes of {outcome.samples:,} samples, max "
               f"{max(outcome.scrapes):.2f} s" if outcome.scrapes else "")
    load_seconds = len(outcome.latencies) / outcome.rate
    full_collections_text = ("" if outcome.full_collections is None else
                             f", {outcome.full_collections} full garbage collections")
    return (f"  {outcome.kind:<9} {outcome.nodes:>6} nodes ({outcome.rate:,.0f} reports/s): "
            f"p50 {percentile(outcome.latencies, 0.5) * 1e3:7.1f} ms, p99 "
            f"{outcome.p99 * 1e3:7.1f} ms, max {max(outcome.latencies) * 1e3:7.1f} ms"
            f"{scrapes}; {len(outcome.failures)} failed; load sent with p99 "
            f"{percentile(outcome.send_lags, 0.99) * 1e3:.1f} ms behind schedule, the "
            f"{load_seconds:.0f} s phase took {outcome.seconds:.0f} s; server CPU "
            f"{outcome.cpu_seconds:.1f} s: {outcome.cores:.2f} of a core"
            f"{full_collections_text} "
            f"-> {'held' if outcome.held else 'NOT held'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="20000,30000,40000,50000",
                        help="fleet sizes to try, smallest first (comma-separated)")
    parser.add_argument("--intervals", type=int, default=2,
                        help="15 s intervals measured per size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = sorted(int(n) for n in args.nodes.split(","))
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two CPUs: the servers on one, the load on the other")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; sizes {sizes}, {args.intervals} intervals of "
          f"{INTERVAL_SECONDS:g} s each, one report per request, open loop, "
          f"{CONNECTIONS} connections", flush=True)
    os.sched_setaffinity(0, {1})
    held: dict[str, int] = {"bare": 0, "collector": 0}
    last: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="kubecarbon-capacity-") as tmp:
        load = compile_load(Path(tmp))
        # every size for both servers, even past a miss: on a shared machine one stall of
        # a neighbour can fail a size that a larger one then holds
        for nodes in sizes:
            for kind in ("bare", "collector"):
                outcome = measure(kind, nodes, args.intervals, Path(tmp), args.seed, load)
                last[kind] = outcome
                print(describe(outcome), flush=True)
                for failure in sorted(set(outcome.failures))[:3]:
                    print(f"    failure: {failure}")
                if outcome.held:
                    held[kind] = nodes
            print(f"  bare/collector CPU for the same load at {nodes:,} nodes: "
                  f"{last['bare'].cores / last['collector'].cores:.2f} (load average "
                  f"{os.getloadavg()[0]:.2f})", flush=True)
    print(f"\nlargest fleet held on one core: collector {held['collector']:,} nodes (goal "
          f"50,000: {'met' if held['collector'] >= 50_000 else 'NOT met'}); bare endpoint "
          f"{held['bare']:,} nodes; load average now {os.getloadavg()[0]:.2f}")
    collector = last["collector"]
    print(f"extrapolated from CPU time, not measured: at {collector.nodes:,} nodes the "
          f"collector needed {collector.cores:.2f} of a core (reports and scrapes), so a core "
          f"of its own would run out near {collector.nodes / collector.cores:,.0f} nodes "
          f"(latency left aside)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
