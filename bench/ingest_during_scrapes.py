"""Ingest latency while /metrics is scraped, at a large fleet: does a scrape hold up ingest?

    .venv/bin/python bench/ingest_during_scrapes.py --nodes 10000 --rounds 3
    .venv/bin/python bench/ingest_during_scrapes.py --before DIR   # DIR: an older checkout

One `python -m collector` process (pinned to CPU 0 when there are two or more) holds
a simulated fleet of --nodes nodes (one round of reports: about 100,000 samples per
scrape at 10,000 nodes). The load, on the other CPU, posts one report per request at
a fixed --rate, open loop: each request's latency counts from the moment it was due,
so a collector that stalls is charged for every request that waited. Each round has a
quiet phase (the reference, same run) and a phase with a scrape in flight all the time
(gzip, as Prometheus asks); the ratio of their p99s says how much scrapes cost ingest.

With --before DIR, a second collector runs the code of the checkout DIR (its
`collector` package put first on PYTHONPATH), and each round measures both, one after
the other: before and after in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from benchkit import fleet_config, percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "scale"))

from scale_testkit import REPORTS_PATH, CollectorProcess

from collector.simulate import FleetSettings, SimulatedFleet

SIMULATED_START = 1_764_072_000.0  # 2025-11-25T12:00:00Z
WINDOW_SECONDS = 15.0
FILL_BATCH = 500
WARM_UP_SECONDS = 5.0
JSON = {"Content-Type": "application/json"}


@dataclass
class Side:
    """One collector under test and what was measured against it."""

    name: str
    process: CollectorProcess
    quiet: list[list[float]] = field(default_factory=list)  # latencies, one list per round
    scraping: list[list[float]] = field(default_factory=list)
    scrapes: list[float] = field(default_factory=list)  # scrape durations
    failures: list[str] = field(default_factory=list)
    samples: int = 0


def start_collector(workdir: Path, source: Path | None) -> CollectorProcess:
    """`python -m collector` from this checkout, or from `source` when given.

    --stale-after 3600: every node stays live for the whole run, so every scrape covers
    the whole fleet, although each collector hears from a node only every minute or two.
    """
    collector = CollectorProcess(workdir, ["--stale-after", "3600"], config=fleet_config())
    saved = os.environ.get("PYTHONPATH")
    if source is not None:
        os.environ["PYTHONPATH"] = str(source)
    try:
        collector.start()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(collector.pid, {0})
    return collector


async def paced_load(session: aiohttp.ClientSession, url: str, bodies: list[bytes],
                     rate: float, side: Side) -> list[float]:
    """POST one body every 1/rate s; each latency counts from when its request was due."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    async def post(body: bytes, due: float) -> None:
        try:
            async with session.post(url, data=body, headers=JSON) as response:
                await response.read()
                if response.status != 200:
                    side.failures.append(f"HTTP {response.status}")
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            side.failures.append(f"{type(exc).__name__}: {exc}")
            return
        latencies.append(loop.time() - due)

    start = loop.time() + 0.05
    tasks = []
    for k, body in enumerate(bodies):
        due = start + k / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(body, due)))
    await asyncio.gather(*tasks)
    return latencies


async def scrape_until(session: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                       side: Side) -> None:
    """Scrape back to back until `stop`: there is always a scrape in flight."""
    while not stop.is_set():
        began = time.perf_counter()
        async with session.get(url, headers={"Accept-Encoding": "gzip"},
                               auto_decompress=False) as response:
            await response.read()
            if response.status != 200:
                side.failures.append(f"/metrics: HTTP {response.status}")
        side.scrapes.append(time.perf_counter() - began)


async def phase(session: aiohttp.ClientSession, side: Side, bodies: Iterator[bytes],
                args: argparse.Namespace, scraping: bool) -> None:
    base = side.process.url
    stop = asyncio.Event()
    scraper = (asyncio.create_task(scrape_until(session, f"{base}/metrics", stop, side))
               if scraping else None)
    # made before the phase starts: making them must not delay the load
    phase_bodies = list(itertools.islice(bodies, int(args.rate * args.seconds)))
    gc.collect()
    gc.disable()  # a collection here would delay the load, and be charged to the collector
    try:
        latencies = await paced_load(session, base + REPORTS_PATH, phase_bodies, args.rate,
                                     side)
    finally:
        gc.enable()
    stop.set()
    if scraper is not None:
        await scraper
    (side.scraping if scraping else side.quiet).append(latencies)


async def fill(session: aiohttp.ClientSession, side: Side, reports: list[dict[str, Any]]) -> None:
    for offset in range(0, len(reports), FILL_BATCH):
        body = orjson.dumps({"reports": reports[offset:offset + FILL_BATCH]})
        async with session.post(side.process.url + REPORTS_PATH, data=body,
                                headers=JSON) as response:
            if response.status != 200:
                raise RuntimeError(f"{side.name}: fill failed: {await response.text()}")
    async with session.get(side.process.url + "/metrics") as response:
        text = await response.text()
    side.samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def request_bodies(fleet: SimulatedFleet) -> Iterator[bytes]:
    """One report per body: the windows of every node after the fill's, in turn."""
    for window in itertools.count(2):
        for report in fleet.reports(SIMULATED_START + window * WINDOW_SECONDS):
            yield orjson.dumps({"reports": [report]})


async def run(args: argparse.Namespace, sides: list[Side], fleet: SimulatedFleet) -> None:
    connector = aiohttp.TCPConnector(limit=0)  # open loop: a stall must not cap the load
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        first = fleet.reports(SIMULATED_START + WINDOW_SECONDS)
        for side in sides:
            await fill(session, side, first)
        bodies = request_bodies(fleet)  # each side gets its own reports, none twice
        for side in sides:  # warm-up, not measured: connections, caches, first collections
            warm_up = list(itertools.islice(bodies, int(args.rate * WARM_UP_SECONDS)))
            await paced_load(session, side.process.url + REPORTS_PATH, warm_up, args.rate, side)
        for round_ in range(args.rounds):
            for side in sides:  # alternate: noise from neighbours hits both sides alike
                for scraping in (False, True):
                    await phase(session, side, bodies, args, scraping)
                print(f"  round {round_ + 1} {side.name}: quiet p99 "
                      f"{percentile(side.quiet[-1], 0.99) * 1e3:.1f} ms, during scrapes p99 "
                      f"{percentile(side.scraping[-1], 0.99) * 1e3:.1f} ms", flush=True)


def report(side: Side) -> None:
    """Per-round p99s and their medians: a round disturbed by the machine's other work
    moves a median less than pooled figures."""
    quiet_p99 = [percentile(q, 0.99) for q in side.quiet]
    scraping_p99 = [percentile(s, 0.99) for s in side.scraping]
    ratios = [s / q for q, s in zip(quiet_p99, scraping_p99, strict=True)]
    print(f"\n{side.name}: {side.samples} samples per scrape, {len(side.scrapes)} scrapes, "
          f"median scrape {statistics.median(side.scrapes):.3f} s, "
          f"max {max(side.scrapes):.3f} s, {len(side.failures)} failed requests")
    for name, phases, p99s in (("quiet (reference)", side.quiet, quiet_p99),
                               ("during scrapes", side.scraping, scraping_p99)):
        pooled = list(itertools.chain.from_iterable(phases))
        print(f"  ingest {name:<18} p50 {percentile(pooled, 0.5) * 1e3:7.1f} ms   p99 per round "
              f"{', '.join(f'{p * 1e3:.1f}' for p in p99s)} ms (median "
              f"{statistics.median(p99s) * 1e3:.1f})   max {max(pooled) * 1e3:.1f} ms   "
              f"({len(pooled)} requests)")
    print(f"  ratio p99 during scrapes / quiet p99, per round: "
          f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})")
    for failure in side.failures[:5]:
        print(f"  failure: {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=300.0, help="reports per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path,
                        help="a checkout whose collector is measured too, in the same run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "collector" / "app.py").is_file():
        parser.error(f"--before {args.before}: no collector/app.py there")

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.nodes} simulated "
          f"nodes, {args.rate:g} reports/s one per request, {args.rounds} rounds of "
          f"{args.seconds:g} s quiet + {args.seconds:g} s with a scrape always in flight",
          flush=True)
    fleet = SimulatedFleet(FleetSettings(nodes=args.nodes, seed=args.seed,
                                         window_seconds=WINDOW_SECONDS))
    gc.freeze()  # the fleet lives to the end: no collection needs to walk it
    with tempfile.TemporaryDirectory(prefix="kubecarbon-scrape-bench-") as tmp:
        sides = [Side("this checkout", start_collector(Path(tmp) / "after", None))]
        if args.before is not None:
            sides.insert(0, Side("before",
                                 start_collector(Path(tmp) / "before", args.before)))
        try:
            if len(os.sched_getaffinity(0)) >= 2:
                os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})
            asyncio.run(run(args, sides, fleet))
        finally:
            for side in sides:
                with contextlib.suppress(Exception):
                    side.process.stop()
    for side in sides:
        report(side)
    if len(sides) == 2:
        ratios = [percentile(b, 0.99) / percentile(a, 0.99)
                  for b, a in zip(sides[0].scraping, sides[1].scraping, strict=True)]
        print(f"\nratio p99 during scrapes, {sides[0].name} / {sides[1].name}, per round: "
              f"{', '.join(f'{r:.1f}' for r in ratios)} (median {statistics.median(ratios):.1f})")
    return 1 if any(side.failures for side in sides) else 0


if __name__ == "__main__":
    sys.exit(main())
