"""The cost of the hop to a node's owner: reports forwarded by another replica vs sent direct.

    .venv/bin/python bench/replica_forwarding.py            # 3 rounds of 6,000 reports
    .venv/bin/python bench/replica_forwarding.py --quick    # 3 rounds of 1,500
    .venv/bin/python bench/replica_forwarding.py --quick --tls  # plain and HTTPS pairs

Two `python -m collector` processes run as replicas 0 and 1 of `--replicas 2` (peers
from `--peers-file`), both pinned to CPU 0; the load generator (collector_ingest.py's
minimal HTTP/1.1 client) runs on CPU 1 and posts 100-pod reports, one per request over
16 keep-alive connections, all for nodes replica 1 owns. The reference sends them to
replica 1 (the owner, no hop); the measured case sends the same kind of reports to
replica 0, which forwards each request to replica 1 and passes the answer back. The two
alternate, three rounds each, and every report has a new (agent_id, seq). Prints
reports/s, p50/p99 latency and CPU per report summed over both processes, with the
forwarded/direct ratios.

With --tls a second pair serves HTTPS (a certificate for the Service's name only, from a
CA made with openssl as tests/pki does; replicas verify each other with --peer-ca-file
and --peer-server-name, the load generator verifies like an agent) and runs the same
two cases in the same rounds, so HTTPS forwarding is measured against plain forwarding
under the same load; the four collectors share CPU 0, two of them idle at any time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
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
sys.path.insert(0, str(ROOT / "tests" / "pki"))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from certificates import Authority, ServerCertificate  # noqa: E402

from collector.sharding import owner_of  # noqa: E402

REPLICAS = 2
OWNER = 1
NODES = 200
CONCURRENCY = 16
SERVER_NAME = "kubecarbon-collector.kubecarbon.svc"  # the only name in the certificate


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


def start_replicas(directory: Path, certificate: ServerCertificate | None = None
                   ) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """A pair of replicas; with `certificate` they serve HTTPS and verify each other."""
    scheme = "http" if certificate is None else "https"
    ports = [free_loopback_port() for _ in range(REPLICAS)]
    peers = directory / f"peers-{scheme}"
    peers.write_text("".join(f"{scheme}://127.0.0.1:{port}\n" for port in ports))
    tls_flags = [] if certificate is None else [
        "--tls-cert-file", str(certificate.cert), "--tls-key-file", str(certificate.key),
        "--peer-ca-file", str(certificate.ca), "--peer-server-name", SERVER_NAME]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "collector", "--listen", f"127.0.0.1:{port}",
         "--kubernetes", "off", "--log-level", "warning", "--replicas", str(REPLICAS),
         "--replica-name", f"bench-{ordinal}", "--peers-file", str(peers), *tls_flags],
        cwd=ROOT, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
        for ordinal, port in enumerate(ports)]
    context = None
    if certificate is not None:  # readiness only: the certificate does not name 127.0.0.1
        context = ssl.create_default_context(cafile=str(certificate.ca))
        context.check_hostname = False
    deadline = time.monotonic() + 60
    for port in ports:
        while True:
            try:
                urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=1,
                                       context=context).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("a replica did not start") from None
                time.sleep(0.1)
    return processes, [f"{scheme}://127.0.0.1:{port}/api/v1/reports" for port in ports]


def agent_tls(certificate: ServerCertificate | None) -> tuple[ssl.SSLContext, str] | None:
    """What an agent verifies the collector with: the CA bundle and the Service's name."""
    if certificate is None:
        return None
    return ssl.create_default_context(cafile=str(certificate.ca)), SERVER_NAME


def run(url: str, requests: list[bytes], pids: list[int],
        tls: tuple[ssl.SSLContext, str] | None = None) -> tuple[float, float, float, float]:
    """(reports/s, p50 ms, p99 ms, CPU us per report over both replicas)."""
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    seconds, latencies = asyncio.run(load(url, requests, CONCURRENCY, tls))
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    return (len(requests) / seconds, 1000 * percentile(latencies, 0.5),
            1000 * percentile(latencies, 0.99), 1e6 * cpu / len(requests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tls", action="store_true",
                        help="also a pair serving HTTPS, forwarding over verified HTTPS")
    args = parser.parse_args()
    reports = 1500 if args.quick else 6000
    os.sched_setaffinity(0, {1})
    nodes = owned_nodes()
    results: dict[str, list[tuple[float, float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        certificates: dict[str, ServerCertificate | None] = {"": None}
        if args.tls:
            authority = Authority.create(Path(directory) / "pki", "bench-ca")
            certificates["https "] = authority.issue(Path(directory) / "pki", [SERVER_NAME])
        pairs = {prefix: start_replicas(Path(directory), certificate)
                 for prefix, certificate in certificates.items()}
        try:
            seq = 1
            for prefix, (processes, urls) in pairs.items():
                pids, tls = [p.pid for p in processes], agent_tls(certificates[prefix])
                for url in (urls[OWNER], urls[1 - OWNER]):  # warm up both paths
                    run(url, bodies(nodes, 400, seq), pids, tls)
                    seq += 400 // len(nodes) + 1
            for _ in range(3):
                for prefix, (processes, urls) in pairs.items():
                    pids, tls = [p.pid for p in processes], agent_tls(certificates[prefix])
                    for case, url in (("direct", urls[OWNER]), ("forwarded", urls[1 - OWNER])):
                        requests = bodies(nodes, reports, seq)
                        seq += reports // len(nodes) + 1
                        results.setdefault(prefix + case, []).append(
                            run(url, requests, pids, tls))
        finally:
            for processes, _ in pairs.values():
                for process in processes:
                    process.terminate()
                    process.wait(30)
    print(f"{reports:,} reports per round, 1 per request, {CONCURRENCY} connections, "
          f"each pair's replicas on CPU 0")
    print("| case | reports/s | p50 ms | p99 ms | CPU us/report (both replicas) |")
    print("|---|---|---|---|---|")
    medians = {}
    for case, rounds in results.items():
        medians[case] = [statistics.median(r[i] for r in rounds) for i in range(4)]
        rate, p50, p99, cpu = medians[case]
        print(f"| {case} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.0f} |")
    for measured, reference in (("forwarded", "direct"), ("https forwarded", "https direct"),
                                ("https forwarded", "forwarded"),
                                ("https direct", "direct")):
        if measured not in results:
            continue
        per_round = [m[0] / r[0] for m, r in zip(results[measured], results[reference],
                                                  strict=True)]
        print(f"throughput {measured}/{reference}: "
              f"{medians[measured][0] / medians[reference][0]:.2f} "
              f"(per round {', '.join(f'{r:.2f}' for r in per_round)}); CPU per report "
              f"{measured}/{reference}: {medians[measured][3] / medians[reference][3]:.2f}")


if __name__ == "__main__":
    main()
