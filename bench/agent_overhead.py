"""Agent overhead: CPU time per sample cycle and steady RSS, against node_exporter.

Runs the real agent (`python -m agent`, 1 s windows) on a generated cgroup v2
tree of 300 pods plus this machine's /proc, delivering to a local sink, and
at the same time the Debian `prometheus-node-exporter` (default collectors),
scraped over HTTP once a second, so both see the same noise and equally cold
caches. CPU time is read from /proc/<pid>/task/*/schedstat
(nanoseconds on CPU, all threads) between two points after warm-up, so start-up
is not counted. Goals (issue 2): agent CPU per cycle <= 0.5x node_exporter's
per scrape; agent RSS <= 40 MiB.

    .venv/bin/python bench/agent_overhead.py [--pods 300] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from benchkit import free_loopback_port

EXPORTER = "prometheus-node-exporter"
MIB = 1024 * 1024


# The interface files the kernel (6.x) creates in every non-root cgroup v2 directory
# with these controllers enabled; the agent lists pod directories, so they count.
CGROUP_V2_FILES = (  # noqa: SIM905  # one string keeps the kernel's list readable
    "cgroup.controllers cgroup.events cgroup.freeze cgroup.kill cgroup.max.depth "
    "cgroup.max.descendants cgroup.pressure cgroup.procs cgroup.stat "
    "cgroup.subtree_control cgroup.threads cgroup.type cpu.idle cpu.max cpu.max.burst "
    "cpu.pressure cpu.stat cpu.stat.local cpu.uclamp.max cpu.uclamp.min cpu.weight "
    "cpu.weight.nice cpuset.cpus cpuset.cpus.effective cpuset.cpus.exclusive "
    "cpuset.cpus.exclusive.effective cpuset.cpus.partition cpuset.mems "
    "cpuset.mems.effective hugetlb.1GB.current hugetlb.1GB.events hugetlb.1GB.events.local "
    "hugetlb.1GB.max hugetlb.1GB.numa_stat hugetlb.1GB.rsvd.current hugetlb.1GB.rsvd.max "
    "hugetlb.2MB.current hugetlb.2MB.events hugetlb.2MB.events.local hugetlb.2MB.max "
    "hugetlb.2MB.numa_stat hugetlb.2MB.rsvd.current hugetlb.2MB.rsvd.max io.max "
    "io.pressure io.prio.class io.stat io.weight memory.current memory.events "
    "memory.events.local memory.high memory.low memory.max memory.min memory.numa_stat "
    "memory.oom.group memory.peak memory.pressure memory.reclaim memory.stat "
    "memory.swap.current memory.swap.events memory.swap.high memory.swap.max "
    "memory.swap.peak memory.zswap.current memory.zswap.max memory.zswap.writeback "
    "misc.current misc.events misc.max pids.current pids.events pids.max pids.peak "
    "rdma.current rdma.max"
).split()


def make_cgroup_dir(path: Path, descendants: int = 0) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name in CGROUP_V2_FILES:
        (path / name).touch()
    (path / "cgroup.stat").write_text(
        f"nr_descendants {descendants}\nnr_subsys_cpu {descendants + 1}\n"
        f"nr_subsys_memory {descendants + 1}\nnr_dying_descendants 0\n"
    )


def make_cgroup_tree(root: Path, pods: int) -> None:
    """A cgroup v2 kubepods tree, systemd driver, containerd: the three QoS classes mixed."""
    cgroup = root / "fs" / "cgroup"
    kubepods = cgroup / "kubepods.slice"
    qos_slices = [kubepods / f"kubepods-{q}.slice" for q in ("burstable", "besteffort")]
    descendants = {path: 0 for path in (cgroup, kubepods, *qos_slices)}
    for index in range(pods):
        uid = f"{index:08x}-2f41-4d8a-9c6b-1e2f3a4b5c6d".replace("-", "_")
        qos = ("guaranteed", "burstable", "besteffort")[index % 3]
        if qos == "guaranteed":
            pod = kubepods / f"kubepods-pod{uid}.slice"
        else:
            pod = kubepods / f"kubepods-{qos}.slice" / f"kubepods-{qos}-pod{uid}.slice"
        containers = 2 + index % 3
        make_cgroup_dir(pod, descendants=containers)
        for ancestor in descendants:
            if ancestor in pod.parents:
                descendants[ancestor] += 1 + containers
        for number in range(containers):
            container = pod / f"cri-containerd-{index:032x}{number:032x}.scope"
            container.mkdir(parents=True)
            (container / "cpu.stat").write_text(
                f"usage_usec {1000 * number}\nuser_usec 0\nsystem_usec 0\n"
            )
        usage = 1_000_000 + index
        (pod / "cpu.stat").write_text(
            f"usage_usec {usage}\nuser_usec {usage}\nsystem_usec 0\nnice_usec 0\n"
            "core_sched.force_idle_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
            "nr_bursts 0\nburst_usec 0\n"
        )
    descendants[cgroup] += len(qos_slices) + 1
    descendants[kubepods] += len(qos_slices)
    for path, count in descendants.items():
        make_cgroup_dir(path, descendants=count)


def cpu_nanoseconds(pid: int) -> int:
    """Time on CPU of all threads of a process (schedstat is exact, unlike tick sampling)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


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


async def wait_for(predicate, timeout_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish in time")
        await asyncio.sleep(0.02)


@dataclass
class Measured:
    cpu_nanoseconds_per_unit: float  # per agent cycle, or per node_exporter scrape
    units: int
    rss_bytes: int


async def measure_side_by_side(
    sys_root: Path, exporter_binary: str, seconds: int
) -> tuple[Measured, Measured, int]:
    """Run the agent (1 s cycles) and scrape node_exporter once a second, at the same time.

    Both then see the same machine noise and equally cold caches; returns the
    agent's and node_exporter's figures and the pods in the last report.
    """
    received: list[dict] = []

    async def sink(request: web.Request) -> web.Response:
        received.extend((await request.json())["reports"])
        return web.json_response({"accepted": 1, "duplicates": 0})

    app = web.Application()
    app.router.add_post("/api/v1/reports", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sink_port = runner.addresses[0][1]
    exporter_port = free_loopback_port()
    exporter = await asyncio.create_subprocess_exec(
        exporter_binary, f"--web.listen-address=127.0.0.1:{exporter_port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "--collector-url", f"http://127.0.0.1:{sink_port}",
        "--interval", "1", "--node-name", "bench-node", "--listen", "127.0.0.1:0",
        "--host-proc", "/proc", "--host-sys", str(sys_root), "--log-level", "warning",
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:

            async def scrape() -> None:
                async with session.get(f"http://127.0.0.1:{exporter_port}/metrics") as response:
                    await response.read()

            for _ in range(200):  # until node_exporter listens
                try:
                    await scrape()
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            await wait_for(lambda: len(received) >= 3)  # warm-up: imports, first windows
            await scrape()
            reports_first = len(received)
            agent_first, exporter_first = cpu_nanoseconds(agent.pid), cpu_nanoseconds(exporter.pid)
            for _ in range(seconds):
                await asyncio.sleep(1.0)
                await scrape()
            reports = len(received) - reports_first
            agent_cpu = cpu_nanoseconds(agent.pid) - agent_first
            exporter_cpu = cpu_nanoseconds(exporter.pid) - exporter_first
            agent_rss, exporter_rss = rss_bytes(agent.pid), rss_bytes(exporter.pid)
    finally:
        for process in (agent, exporter):
            process.terminate()
            await process.wait()
        await runner.cleanup()
    return (
        Measured(agent_cpu / reports, reports, agent_rss),
        Measured(exporter_cpu / seconds, seconds, exporter_rss),
        len(received[-1].get("pods", [])),
    )


def sampling_only_nanoseconds(sys_root: Path, cycles: int) -> float:
    """The sampler alone, in this process: what one cycle costs before HTTP and the event loop."""
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
    started = time.process_time_ns()
    for _ in range(cycles):
        sampler.sample()
    return (time.process_time_ns() - started) / cycles


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=40, help="length of the measurement")
    options = parser.parse_args()
    binary = ensure_node_exporter()
    with tempfile.TemporaryDirectory(prefix="kubecarbon-bench-") as scratch:
        sys_root = Path(scratch) / "sys"
        make_cgroup_tree(sys_root, options.pods)
        sampler_ns = sampling_only_nanoseconds(sys_root, 100)
        agent, exporter, pods = await measure_side_by_side(sys_root, binary, options.seconds)
    if pods != options.pods:
        raise SystemExit(f"agent reported {pods} pods, expected {options.pods}")
    cpu_ratio = agent.cpu_nanoseconds_per_unit / exporter.cpu_nanoseconds_per_unit
    print(f"generated tree: {options.pods} pods, all in every report; {options.seconds} s run")
    print(f"node_exporter: {exporter.cpu_nanoseconds_per_unit / 1e6:6.2f} ms CPU per scrape "
          f"({exporter.units} scrapes), RSS {exporter.rss_bytes / MIB:5.1f} MiB")  # fmt: skip
    print(f"agent:         {agent.cpu_nanoseconds_per_unit / 1e6:6.2f} ms CPU per cycle "
          f"({agent.units} cycles, delivery included), "
          f"RSS {agent.rss_bytes / MIB:5.1f} MiB")  # fmt: skip
    print(f"sampling only: {sampler_ns / 1e6:6.2f} ms CPU per cycle (in this process, warm)")
    print(
        f"ratio agent CPU per cycle / node_exporter CPU per scrape: {cpu_ratio:.2f} (goal <= 0.5)"
    )
    print(f"ratio agent RSS / node_exporter RSS: {agent.rss_bytes / exporter.rss_bytes:.2f}")
    print(f"agent RSS: {agent.rss_bytes / MIB:.1f} MiB (goal <= 40 MiB)")
    goals_met = cpu_ratio <= 0.5 and agent.rss_bytes <= 40 * MIB
    print("goals met" if goals_met else "GOALS NOT MET")


if __name__ == "__main__":
    asyncio.run(main())
