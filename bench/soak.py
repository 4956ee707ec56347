"""Soak: a simulated fleet against one collector subprocess while a real Prometheus scrapes it.

    .venv/bin/python bench/soak.py --nodes 10000 --interval 15 --minutes 10 --speedup 2

Each round is one window of `--interval` simulated seconds for every node, sent as one
report per request (what an agent sends when it is not replaying), over
`--concurrency` connections. Rounds start every interval / speedup real seconds, so
`--speedup 2` puts twice the real-time load of the fleet on the collector and covers
2 x --minutes of simulated time; a round that takes longer than its slot delays the
next one (counted as "late rounds"), so the achieved compression is printed too.

Printed at the end, each with a reference from the same run (machines are shared):
failed requests (must be 0); ingest latency p50/p99/max, and their ratio to the
latency of GET /healthz on the same collector probed every 0.5 s; collector RSS
(psutil) after warm-up, at the end, and their ratio (must stay under 1.05); and the
scrape duration Prometheus recorded (scrape_duration_seconds), also as a share of the
scrape interval. Exit status 1 when a requirement is not met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "scale"))

from benchkit import fleet_config, percentile
from scale_testkit import REPORTS_PATH, CollectorProcess, PrometheusProcess

from collector.simulate import FleetSettings, SimulatedFleet

SIMULATED_START = 1_764_072_000.0  # 2025-11-25T12:00:00Z
MEBIBYTE = 1024 * 1024
RSS_GROWTH_LIMIT = 1.05
HEALTH_PROBE_SECONDS = 0.5
RSS_SAMPLE_SECONDS = 2.0


@dataclass
class Results:
    latencies_seconds: list[float] = field(default_factory=list)
    health_latencies_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    reports: int = 0
    rounds: int = 0
    late_rounds: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)


async def send_round(session: aiohttp.ClientSession, url: str, bodies: list[bytes],
                     concurrency: int, results: Results) -> None:
    queue = iter(bodies)
    headers = {"Content-Type": "application/json"}

    async def worker() -> None:
        for body in queue:
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    text = await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError) as exc:
                results.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            results.latencies_seconds.append(time.perf_counter() - started)
            results.requests += 1
            if not ok:
                results.failures.append(f"HTTP {response.status}: {text[:200]!r}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def probe_health(session: aiohttp.ClientSession, url: str, results: Results) -> None:
    while True:
        started = time.perf_counter()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url) as response:
                await response.read()
                if response.status == 200:
                    results.health_latencies_seconds.append(time.perf_counter() - started)
        await asyncio.sleep(HEALTH_PROBE_SECONDS)


async def sample_rss(pid: int, started: float, results: Results) -> None:
    process = psutil.Process(pid)
    while True:
        results.rss.append((time.monotonic() - started, process.memory_info().rss))
        await asyncio.sleep(RSS_SAMPLE_SECONDS)


async def drive(args: argparse.Namespace, fleet: SimulatedFleet, collector: CollectorProcess,
                results: Results) -> float:
    """Send rounds until --minutes of real time passed; returns the real seconds taken."""
    slot_seconds = args.interval / args.speedup
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    connector = aiohttp.TCPConnector(limit=args.concurrency + 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        started = time.monotonic()
        helpers = [
            asyncio.create_task(probe_health(session, f"{collector.url}/healthz", results)),
            asyncio.create_task(sample_rss(collector.pid, started, results)),
        ]
        try:
            while time.monotonic() - started < args.minutes * 60:
                round_start = started + results.rounds * slot_seconds
                wait = round_start - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif results.rounds:
                    results.late_rounds += 1
                now = SIMULATED_START + (results.rounds + 1) * args.interval
                reports = fleet.reports(now)
                bodies = [orjson.dumps({"reports": reports[i:i + args.batch_size]})
                          for i in range(0, len(reports), args.batch_size)]
                await send_round(session, collector.url + REPORTS_PATH, bodies,
                                 args.concurrency, results)
                results.reports += len(reports)
                results.rounds += 1
                if results.rounds % 10 == 0:
                    print(f"  round {results.rounds}: {time.monotonic() - started:.0f} s, "
                          f"{len(results.failures)} failed, rss "
                          f"{results.rss[-1][1] / MEBIBYTE:.0f} MiB", flush=True)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        return time.monotonic() - started


def rss_ratio(samples: list[tuple[float, int]], warmup_seconds: float
              ) -> tuple[float, float, float]:
    """(RSS in the minute after warm-up, RSS in the last minute, their ratio), medians."""
    after = [rss for t, rss in samples if warmup_seconds <= t < warmup_seconds + 60]
    end = samples[-1][0]
    last = [rss for t, rss in samples if t >= end - 60]
    if not after or not last:
        raise SystemExit("the run is too short for the warm-up: raise --minutes")
    reference, final = statistics.median(after), statistics.median(last)
    return reference, final, final / reference


def scrape_stats(prometheus: PrometheusProcess, seconds: float) -> dict[str, float]:
    window = f"{max(60, int(seconds) + 60)}s"
    selector = 'scrape_duration_seconds{job="collector"}'
    out = {}
    for name, expr in {
        "avg": f"avg_over_time({selector}[{window}])",
        "p99": f"quantile_over_time(0.99, {selector}[{window}])",
        "max": f"max_over_time({selector}[{window}])",
        "scrapes": f'count_over_time(up{{job="collector"}}[{window}])',
        "failed_scrapes": f'count_over_time(up{{job="collector"}}[{window}])'
                          f' - sum_over_time(up{{job="collector"}}[{window}])',
        "samples": f'max_over_time(scrape_samples_scraped{{job="collector"}}[{window}])',
    }.items():
        rows = prometheus.query(expr)
        out[name] = float(rows[0]["value"][1]) if rows else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=15.0, help="simulated window, seconds")
    parser.add_argument("--minutes", type=float, default=10.0, help="real minutes to run")
    parser.add_argument("--speedup", type=float, default=2.0,
                        help="simulated seconds per real second (time compression)")
    parser.add_argument("--warmup-minutes", type=float, default=2.0,
                        help="RSS growth is measured from the minute after this")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in parallel")
    parser.add_argument("--batch-size", type=int, default=1, help="reports per request")
    parser.add_argument("--scrape-interval", type=float, default=15.0, help="Prometheus, s")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.minutes * 60 < args.warmup_minutes * 60 + 120:
        parser.error("--minutes must leave at least 2 minutes after --warmup-minutes")

    print(f"building a fleet of {args.nodes} simulated nodes (seed {args.seed})", flush=True)
    fleet = SimulatedFleet(FleetSettings(nodes=args.nodes, seed=args.seed,
                                         window_seconds=args.interval))
    results = Results()
    with tempfile.TemporaryDirectory(prefix="kubecarbon-soak-") as tmp:
        collector = CollectorProcess(Path(tmp) / "collector", config=fleet_config())
        prometheus: PrometheusProcess | None = None
        try:
            collector.start()
            prometheus = PrometheusProcess(
                Path(tmp) / "prometheus", {"collector": [f"127.0.0.1:{collector.port}"]},
                args.scrape_interval)
            prometheus.start()
            print(f"collector pid {collector.pid} on {collector.url}, Prometheus on "
                  f"{prometheus.url} scraping every {args.scrape_interval:g} s", flush=True)
            elapsed = asyncio.run(drive(args, fleet, collector, results))
            prometheus.wait_for_scrapes("collector", 1, timeout_seconds=3 * args.scrape_interval)
            scrapes = scrape_stats(prometheus, elapsed)
        finally:
            if prometheus is not None:
                prometheus.stop()
            collector.stop()

    simulated = results.rounds * args.interval
    reference_rss, final_rss, growth = rss_ratio(results.rss, args.warmup_minutes * 60)
    p50, p99 = percentile(results.latencies_seconds, 0.5), percentile(results.latencies_seconds,
                                                                      0.99)
    health_p50 = statistics.median(results.health_latencies_seconds)
    health_p99 = percentile(results.health_latencies_seconds, 0.99)
    ok = not results.failures and growth < RSS_GROWTH_LIMIT and scrapes["failed_scrapes"] == 0
    print(f"""
soak: {args.nodes} nodes, {args.interval:g} s windows, {results.rounds} rounds in {elapsed:.0f} s
  simulated {simulated:.0f} s in {elapsed:.0f} s real: compression {simulated / elapsed:.2f}x \
(asked {args.speedup:g}x, {results.late_rounds} late rounds)
  reports {results.reports}, requests {results.requests}, failed requests {len(results.failures)}
  ingest latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, \
max {max(results.latencies_seconds) * 1000:.1f} ms
  reference GET /healthz p50 {health_p50 * 1000:.1f} ms, p99 {health_p99 * 1000:.1f} ms \
({len(results.health_latencies_seconds)} probes)
  ratio ingest p99 / healthz p99 {p99 / health_p99:.2f}, ingest p50 / healthz p50 \
{p50 / health_p50:.2f}
  collector RSS after {args.warmup_minutes:g} min warm-up {reference_rss / MEBIBYTE:.1f} MiB, \
last minute {final_rss / MEBIBYTE:.1f} MiB, peak {max(r for _, r in results.rss) / MEBIBYTE:.1f} \
MiB
  ratio RSS last minute / after warm-up {growth:.4f} (limit {RSS_GROWTH_LIMIT})
  scrape duration avg {scrapes['avg']:.3f} s, p99 {scrapes['p99']:.3f} s, max \
{scrapes['max']:.3f} s over {scrapes['scrapes']:.0f} scrapes ({scrapes['failed_scrapes']:.0f} \
failed), {scrapes['samples']:.0f} samples per scrape
  ratio max scrape duration / scrape interval {scrapes['max'] / args.scrape_interval:.3f}
  result: {"PASS" if ok else "FAIL"}""")
    by_minute = {}
    for t, rss in results.rss:
        by_minute.setdefault(int(t // 60), []).append(rss)
    print("  collector RSS by minute (median MiB): " + ", ".join(
        f"{minute}: {statistics.median(values) / MEBIBYTE:.1f}"
        for minute, values in sorted(by_minute.items())))
    for failure in results.failures[:10]:
        print(f"  failure: {failure}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
