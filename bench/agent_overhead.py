"""Agent overhead: CPU per sample cycle and RSS, against node_exporter in the same run.

For each cgroup tree (v2: systemd driver; v1: kubelet 1.20's cgroupfs layout, no
`cgroup.stat`; see cgroup_trees.py) and each pod count, the real agent
(`python -m agent`, 1 s windows) reads a generated tree whose pod counters a
stand-in kernel advances in place, plus this machine's /proc, and delivers every
window to a keep-alive HTTP sink in this process. The Debian
`prometheus-node-exporter` (default collectors) runs at the same time and is scraped
once per agent report, so both see the same noise. CPU is on-CPU time of all threads
from /proc/<pid>/task/*/schedstat, read right after a report arrived and its scrape
finished: a round is exactly N agent cycles and N scrapes, sampling, encoding,
delivery and the idle time between cycles all included, start-up excluded.
Each row gives medians of the rounds. Goals (issue 13): agent CPU per cycle <= 0.25x
node_exporter's per scrape at 300 pods on both trees; agent RSS <= 40 MiB.

    .venv/bin/python bench/agent_overhead.py [--trees v2,v1] [--pods 30,100,300,1000]
                                             [--rounds 3] [--cycles 15]
    .venv/bin/python bench/agent_overhead.py --trees v2-cgroupfs,v1-cgroupfs --pods 300  # root
    .venv/bin/python bench/agent_overhead.py --trees v1 --pods 300 --tls   # http and https

With --tls a second agent runs beside the first on the same tree, delivering over
HTTPS (a CA and a certificate for the collector Service's name made with openssl;
the agent connects by address and checks that name, as deployed) while the first
uses plain HTTP; both rows are printed and their difference per cycle, which is
what TLS costs the agent on a kept connection.

The -cgroupfs trees are made of real cgroups on this machine (their counters stay
still: nothing runs in them), so every read costs what the kernel charges.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from benchkit import free_loopback_port
from cgroup_trees import TREES, CounterWriter, GeneratedTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "pki"))

from certificates import Authority, ServerCertificate

EXPORTER = "prometheus-node-exporter"
MIB = 1024 * 1024
GOAL_PODS = 300
GOAL_CPU_RATIO = 0.25
GOAL_RSS_BYTES = 40 * MIB
SERVICE_NAME = "kubecarbon-collector.kubecarbon.svc"  # the name the agent checks (--tls)
WARM_UP_CYCLES = 3  # imports, first windows, the first full pass over the tree


def cpu_nanoseconds(pid: int) -> int:
    """Time on CPU of all threads of a process (schedstat is exact, unlike tick sampling)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def ensure_node_exporter() -> str:
    path = shutil.which(EXPORTER)
    if path is None:
        print(f"installing {EXPORTER} (Debian package) ...", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", EXPORTER],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        path = shutil.which(EXPORTER)
    if path is None:
        raise SystemExit(f"{EXPORTER} is not installed and could not be installed")
    return path


@dataclass
class Round:
    agent_nanoseconds_per_cycle: float
    exporter_nanoseconds_per_scrape: float

    @property
    def ratio(self) -> float:
        return self.agent_nanoseconds_per_cycle / self.exporter_nanoseconds_per_scrape


@dataclass
class Measured:
    tree: str
    pods: int
    transport: str  # http or https
    rounds: list[Round]
    sampler_nanoseconds: float  # the sampler alone, in this process
    agent_rss_bytes: int
    agent_peak_rss_bytes: int
    exporter_rss_bytes: int

    @property
    def agent_ms(self) -> float:
        return statistics.median(r.agent_nanoseconds_per_cycle for r in self.rounds) / 1e6

    @property
    def exporter_ms(self) -> float:
        return statistics.median(r.exporter_nanoseconds_per_scrape for r in self.rounds) / 1e6

    @property
    def ratio(self) -> float:
        return statistics.median(r.ratio for r in self.rounds)


def check_report(report: dict, tree: GeneratedTree) -> None:
    """The agent saw the whole tree and the counters advancing; else the figures mean nothing."""
    pods = report.get("pods", [])
    if len(pods) != tree.pods or report.get("containers_running") != tree.containers_running:
        raise SystemExit(
            f"agent reported {len(pods)} pods and {report.get('containers_running')} containers, "
            f"expected {tree.pods} and {tree.containers_running}"
        )
    if tree.pods and tree.counters_advance and not all(pod["cpu_seconds"] > 0 for pod in pods):
        raise SystemExit("some pod's CPU counter did not advance in the agent's report")


@dataclass
class AgentMeasured:
    rounds: list[Round]
    rss_bytes: int
    peak_rss_bytes: int


async def measure_side_by_side(
    tree: GeneratedTree, exporter_binary: str, rounds: int, cycles: int,
    tls: ServerCertificate | None = None,
) -> tuple[dict[str, AgentMeasured], int]:
    """node_exporter beside one agent posting over HTTP and, with `tls`, a second one
    posting over HTTPS at the same time, so both see the same noise; per transport the
    agent's rounds and RSS, and node_exporter's RSS."""
    arrivals: dict[str, asyncio.Queue[dict]] = {"http": asyncio.Queue()}
    if tls is not None:
        arrivals["https"] = asyncio.Queue()

    async def sink(request: web.Request) -> web.Response:
        reports = (await request.json())["reports"]
        for report in reports:
            arrivals[report["node"].removeprefix("bench-")].put_nowait(report)
        return web.json_response({"accepted": len(reports), "duplicates": 0})

    app = web.Application()
    app.router.add_post("/api/v1/reports", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    urls = {"http": ["--collector-url", f"http://127.0.0.1:{runner.addresses[0][1]}"]}
    if tls is not None:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(tls.cert, tls.key)
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls).start()
        urls["https"] = ["--collector-url", f"https://127.0.0.1:{runner.addresses[1][1]}",
                         "--collector-ca-file", str(tls.ca),
                         "--collector-server-name", SERVICE_NAME]
    exporter_port = free_loopback_port()
    exporter = await asyncio.create_subprocess_exec(
        exporter_binary, f"--web.listen-address=127.0.0.1:{exporter_port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    agents = {}
    for transport, url in urls.items():
        agents[transport] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", *url, "--interval", "1",
            "--node-name", f"bench-{transport}", "--listen", "127.0.0.1:0",
            "--host-proc", "/proc", "--host-sys", str(tree.sys_root), "--log-level", "warning",
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:

            async def scrape() -> None:
                async with session.get(f"http://127.0.0.1:{exporter_port}/metrics") as response:
                    await response.read()

            async def next_cycle() -> list[dict]:
                reports = [await asyncio.wait_for(queue.get(), 30) for queue in arrivals.values()]
                await scrape()
                return reports

            for _ in range(200):  # until node_exporter listens
                try:
                    await scrape()
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            for _ in range(WARM_UP_CYCLES):
                await next_cycle()
            measured: dict[str, list[Round]] = {transport: [] for transport in agents}

            def cpu() -> tuple[dict[str, int], int]:
                return ({t: cpu_nanoseconds(a.pid) for t, a in agents.items()},
                        cpu_nanoseconds(exporter.pid))

            before = cpu()
            for _ in range(rounds):
                for _ in range(cycles):
                    reports = await next_cycle()
                after = cpu()
                for transport in agents:
                    measured[transport].append(Round(
                        (after[0][transport] - before[0][transport]) / cycles,
                        (after[1] - before[1]) / cycles))
                before = after
                for report in reports:
                    check_report(report, tree)
            results = {
                transport: AgentMeasured(measured[transport], status_bytes(agent.pid, "VmRSS"),
                                         status_bytes(agent.pid, "VmHWM"))
                for transport, agent in agents.items()
            }
            exporter_rss = status_bytes(exporter.pid, "VmRSS")
    finally:
        for process in (*agents.values(), exporter):
            process.terminate()
            await process.wait()
        await runner.cleanup()
    return results, exporter_rss


def sampling_only_nanoseconds(sys_root: Path, cycles: int) -> float:
    """The sampler alone, in this thread: what one cycle costs before HTTP and the event loop."""
    from prometheus_client import CollectorRegistry

    from agent.metrics import AgentMetrics
    from agent.runtime import host_sources
    from agent.sampler import Sampler
    from agent.settings import SourceSettings

    sampler = Sampler(
        "bench-node",
        host_sources(SourceSettings(host_sys=sys_root)),
        AgentMetrics(CollectorRegistry()),
    )
    sampler.sample()
    started = time.thread_time_ns()
    for _ in range(cycles):
        sampler.sample()
    return (time.thread_time_ns() - started) / cycles


def scratch_parent() -> str | None:
    """tmpfs when there is one: in memory, as cgroupfs is."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


async def measure(tree_name: str, pods: int, exporter: str, rounds: int, cycles: int,
                  tls: ServerCertificate | None = None) -> list[Measured]:
    """One row over plain HTTP; with `tls`, a second one over HTTPS measured beside it."""
    with tempfile.TemporaryDirectory(prefix="kubecarbon-bench-", dir=scratch_parent()) as scratch:
        tree = TREES[tree_name](Path(scratch), pods)
        try:
            with CounterWriter(tree):
                sampler_ns = sampling_only_nanoseconds(tree.sys_root, 50)
                agents, exporter_rss = await measure_side_by_side(
                    tree, exporter, rounds, cycles, tls
                )
        finally:
            tree.cleanup()
    return [Measured(tree_name, pods, transport, agent.rounds, sampler_ns, agent.rss_bytes,
                     agent.peak_rss_bytes, exporter_rss)
            for transport, agent in agents.items()]


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return mean_y - slope * mean_x, slope


def print_tls_cost(rows: list[Measured]) -> None:
    """HTTPS against HTTP, per cycle, for each row measured both ways."""
    plain = {(row.tree, row.pods): row for row in rows if row.transport == "http"}
    for row in rows:
        if row.transport != "https":
            continue
        reference = plain[(row.tree, row.pods)]
        per_round = ", ".join(
            f"{(https.agent_nanoseconds_per_cycle - http.agent_nanoseconds_per_cycle) / 1e6:+.3f}"
            for https, http in zip(row.rounds, reference.rounds, strict=True))
        print(f"{row.tree} {row.pods} pods: HTTPS costs the agent "
              f"{row.agent_ms - reference.agent_ms:+.3f} ms per cycle against HTTP "
              f"({row.agent_ms / reference.agent_ms:.2f}x; rounds {per_round}), "
              f"RSS {(row.agent_rss_bytes - reference.agent_rss_bytes) / MIB:+.1f} MiB")


def print_row(row: Measured) -> None:
    per_round = ", ".join(f"{r.ratio:.2f}" for r in row.rounds)
    print(
        f"{row.tree:>11} {row.pods:>5} {row.transport:>9} | "
        f"{row.agent_ms:6.2f} {row.exporter_ms:6.2f} | "
        f"{row.ratio:5.2f} ({per_round}) | {row.sampler_nanoseconds / 1e6:6.2f} | "
        f"{row.agent_rss_bytes / MIB:5.1f} {row.agent_peak_rss_bytes / MIB:5.1f} "
        f"{row.exporter_rss_bytes / MIB:5.1f}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trees",
        default="v2,v1",
        help="comma-separated: v2, v1 (generated), v2-cgroupfs, v1-cgroupfs (real cgroups, root)",
    )
    parser.add_argument("--pods", default="30,100,300,1000", help="comma-separated pod counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=15, help="agent cycles (1 s) per round")
    parser.add_argument("--tls", action="store_true",
                        help="measure each row over HTTP and over HTTPS (needs openssl)")
    options = parser.parse_args()
    trees = options.trees.split(",")
    pod_counts = [int(value) for value in options.pods.split(",")]
    if unknown := set(trees) - set(TREES):
        raise SystemExit(f"unknown tree(s): {', '.join(sorted(unknown))}")
    binary = ensure_node_exporter()
    pki = tempfile.TemporaryDirectory(prefix="kubecarbon-bench-pki-")
    tls = (Authority.create(Path(pki.name)).issue(Path(pki.name), [SERVICE_NAME])
           if options.tls else None)
    print(f"{options.rounds} rounds of {options.cycles} cycles per row; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at start")  # fmt: skip
    print("       tree  pods transport | agent ms/cycle, node_exporter ms/scrape | "
          "ratio (per round) | sampler only ms | "
          "agent RSS, peak, node_exporter RSS MiB")  # fmt: skip
    rows = []
    for tree_name in trees:
        for pods in pod_counts:
            for row in await measure(tree_name, pods, binary, options.rounds, options.cycles,
                                     tls):
                print_row(row)
                rows.append(row)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end")
    pki.cleanup()
    print_tls_cost(rows)
    rows = [row for row in rows if row.transport == "http"]  # the goals are the agent's own
    failures = []
    for tree_name in trees:
        of_tree = [row for row in rows if row.tree == tree_name]
        if len(of_tree) > 1:
            intercept, slope = linear_fit([(row.pods, row.agent_ms) for row in of_tree])
            ratio_intercept, ratio_slope = linear_fit([(row.pods, row.ratio) for row in of_tree])
            print(
                f"{tree_name}: agent ms per cycle ~ {intercept:.2f} + {slope * 1000:.2f} us x pods;"
                f" ratio ~ {ratio_intercept:.3f} + {ratio_slope * 100:.3f} per 100 pods"
            )
        for row in of_tree:
            if row.pods != GOAL_PODS:
                continue
            if row.ratio > GOAL_CPU_RATIO:
                failures.append(f"{tree_name} CPU ratio {row.ratio:.2f} > {GOAL_CPU_RATIO}")
            if row.agent_rss_bytes > GOAL_RSS_BYTES:
                failures.append(f"{tree_name} RSS {row.agent_rss_bytes / MIB:.1f} MiB > 40")
    if not any(row.pods == GOAL_PODS for row in rows):
        print(f"no row at {GOAL_PODS} pods: goals not checked")
    elif failures:
        print("GOALS NOT MET: " + "; ".join(failures))
    else:
        print(f"goals met at {GOAL_PODS} pods: CPU ratio <= {GOAL_CPU_RATIO}, RSS <= 40 MiB")


if __name__ == "__main__":
    asyncio.run(main())
