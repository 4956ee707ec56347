"""The cost of the hop to a node's owner: reports forwarded by another replica vs sent direct.

    .venv/bin/python bench/replica_forwarding.py            # 3 rounds of 6,000 reports
    .venv/bin/python bench/replica_forwarding.py --quick    # 3 rounds of 1,500

Two `python -m collector` processes run as replicas 0 and 1 of `--replicas 2` (peers
from `--peers-file`), both pinned to CPU 0; the load generator (collector_ingest.py's
minimal HTTP/1.1 client) runs on CPU 1 and posts 100-pod reports, one per request over
16 keep-alive connections, all for nodes replica 1 owns. The reference sends them to
replica 1 (the owner, no hop); the measured case sends the same kind of reports to
replica 0, which forwards each request to replica 1 and passes the answer back. The two
alternate, three rounds each, and every report has a new (agent_id, seq). Prints
reports/s, p50/p99 latency and CPU per report summed over both processes, with the
forwarded/direct ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchkit import free_loopback_port, percentile
from collector_ingest import cpu_seconds, load, make_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from collector.sharding import owner_of  # noqa: E402

REPLICAS = 2
OWNER = 1
NODES = 200
CONCURRENCY = 16


def owned_nodes() -> list[int]:
    return [n for n in range(10 * NODES) if owner_of(f"node-{n:05d}", REPLICAS) == OWNER][:NODES]


def bodies(nodes: list[int], reports: int, first_seq: int) -> list[bytes]:
    """One report per body, each with a new (agent_id, seq)."""
    rng = np.random.default_rng(first_seq)
    out = []
    for i in range(reports):
        seq = first_seq + i // len(nodes)
        out.append(orjson.dumps({"reports": [
            make_report(nodes[i % len(nodes)], seq, 1.764e9 + 15 * seq, rng)]}))
    return out


def start_replicas(directory: Path) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    ports = [free_loopback_port() for _ in range(REPLICAS)]
    peers = directory / "peers"
    peers.write_text("".join(f"http://127.0.0.1:{port}\n" for port in ports))
    processes = [subprocess.Popen(
        [sys.executable, "-m", "collector", "--listen", f"127.0.0.1:{port}",
         "--kubernetes", "off", "--log-level", "warning", "--replicas", str(REPLICAS),
         "--replica-name", f"bench-{ordinal}", "--peers-file", str(peers)],
        cwd=ROOT, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
        for ordinal, port in enumerate(ports)]
    deadline = time.monotonic() + 60
    for port in ports:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("a replica did not start") from None
                time.sleep(0.1)
    return processes, [f"http://127.0.0.1:{port}/api/v1/reports" for port in ports]


def run(url: str, requests: list[bytes], pids: list[int]) -> tuple[float, float, float, float]:
    """(reports/s, p50 ms, p99 ms, CPU us per report over both replicas)."""
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    seconds, latencies = asyncio.run(load(url, requests, CONCURRENCY))
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    return (len(requests) / seconds, 1000 * percentile(latencies, 0.5),
            1000 * percentile(latencies, 0.99), 1e6 * cpu / len(requests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    reports = 1500 if args.quick else 6000
    os.sched_setaffinity(0, {1})
    nodes = owned_nodes()
    with tempfile.TemporaryDirectory() as directory:
        processes, urls = start_replicas(Path(directory))
        pids = [p.pid for p in processes]
        try:
            seq = 1
            run(urls[OWNER], bodies(nodes, 400, seq), pids)  # warm up both paths
            seq += 400 // len(nodes) + 1
            run(urls[1 - OWNER], bodies(nodes, 400, seq), pids)
            seq += 400 // len(nodes) + 1
            results: dict[str, list[tuple[float, float, float, float]]] = {
                "direct": [], "forwarded": []}
            for _ in range(3):
                for case, url in (("direct", urls[OWNER]), ("forwarded", urls[1 - OWNER])):
                    requests = bodies(nodes, reports, seq)
                    seq += reports // len(nodes) + 1
                    results[case].append(run(url, requests, pids))
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
    print(f"{reports:,} reports per round, 1 per request, {CONCURRENCY} connections, "
          f"both replicas on CPU 0")
    print("| case | reports/s | p50 ms | p99 ms | CPU us/report (both replicas) |")
    print("|---|---|---|---|---|")
    medians = {}
    for case, rounds in results.items():
        medians[case] = [statistics.median(r[i] for r in rounds) for i in range(4)]
        rate, p50, p99, cpu = medians[case]
        print(f"| {case} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.0f} |")
    per_round = [f[0] / d[0] for f, d in zip(results["forwarded"], results["direct"],
                                              strict=True)]
    print(f"throughput forwarded/direct: {medians['forwarded'][0] / medians['direct'][0]:.2f} "
          f"(per round {', '.join(f'{r:.2f}' for r in per_round)}); CPU per report "
          f"forwarded/direct: {medians['forwarded'][3] / medians['direct'][3]:.2f}")


if __name__ == "__main__":
    main()
