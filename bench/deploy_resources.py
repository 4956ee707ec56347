"""Memory of the agent and the collector as the chart runs them, for its requests and limits.

Starts the real agent (`python -m agent`, this machine's /proc and /sys, 1 s windows) and
the real collector (`python -m collector --kubernetes off`) fed a simulated fleet of
growing size, scrapes /metrics like Prometheus would, and reads VmRSS and VmHWM (peak)
from /proc/<pid>/status. From 1,000 nodes the collector renders /metrics in a forked
child whose copied pages count against the pod's memory limit too, so the collector
also runs in a memory cgroup of its own (as root), whose peak charge is what a limit
sees: the process and its render children (from when the collector is ready; the
RSS it grew by since then is printed beside it, the difference being the children's
copies at their largest). The reference,
measured in the same run, is a bare Python interpreter that imports the same packages
and does nothing: ratios against it are what to compare between machines. The chart's
requests and limits are printed next to the measurements.

    .venv/bin/python bench/deploy_resources.py [--nodes 100,1000,5000] [--agent-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import yaml
from benchkit import free_loopback_port

from collector.simulate import FleetSettings, SimulatedFleet, post_reports

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
TOKEN = "bench-token-0123456789abcdef"


MEMORY_CGROUP_V1 = Path("/sys/fs/cgroup/memory")


@contextlib.contextmanager
def memory_cgroup(pid: int) -> Iterator[Callable[[], float | None]]:
    """Move `pid` (and so the children it forks later) into a cgroup v1 memory group of its
    own; yields a reader of the group's peak charge in MiB (None where that is not possible).
    Pages the process had before stay charged where they were (charges do not move on
    this kernel): the peak is what it and its children allocated after the move."""
    group = MEMORY_CGROUP_V1 / f"kubecarbon-bench-{pid}"
    try:
        group.mkdir()
        (group / "cgroup.procs").write_text(str(pid))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        yield lambda: None
        return
    try:
        yield lambda: int((group / "memory.max_usage_in_bytes").read_text()) / MIB
    finally:
        with contextlib.suppress(OSError):
            (MEMORY_CGROUP_V1 / "cgroup.procs").write_text(str(pid))
        with contextlib.suppress(OSError):
            group.rmdir()


def memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


@contextlib.asynccontextmanager
async def child(*argv: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECARBON_")}
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def wait_http(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never answered 200")


async def reference_mib(imports: str) -> float:
    """RSS of an idle interpreter with the same imports: the floor of any Python process."""
    async with child(sys.executable, "-c", f"{imports}; import time; time.sleep(60)") as process:
        await asyncio.sleep(3)
        return memory_mib(process.pid)[0]


async def measure_agent(work: Path, seconds: float) -> tuple[float, float]:
    sink_port, agent_port = free_loopback_port(), free_loopback_port()
    async with child(sys.executable, "-m", "collector", "--listen", f"127.0.0.1:{sink_port}",
                     "--kubernetes", "off", "--token-file", str(work / "token")), \
            aiohttp.ClientSession() as session:
        await wait_http(session, f"http://127.0.0.1:{sink_port}/readyz")
        async with child(sys.executable, "-m", "agent", "--collector-url",
                         f"http://127.0.0.1:{sink_port}", "--interval", "1",
                         "--node-name", "bench-agent", "--host-proc", "/proc",
                         "--host-sys", "/sys", "--token-file", str(work / "token"),
                         "--listen", f"127.0.0.1:{agent_port}") as agent:
            await wait_http(session, f"http://127.0.0.1:{agent_port}/healthz")
            for _ in range(int(seconds)):
                async with session.get(f"http://127.0.0.1:{agent_port}/metrics") as response:
                    await response.read()
                await asyncio.sleep(1)
            return memory_mib(agent.pid)


async def measure_collector(work: Path, nodes: int, rounds: int = 3
                            ) -> tuple[float, float, float, float | None]:
    fleet = SimulatedFleet(FleetSettings(nodes=nodes, seed=11, window_seconds=15))
    config = work / f"collector-{nodes}.yaml"
    config.write_text(yaml.safe_dump(fleet.config_document()))
    port = free_loopback_port()
    async with child(sys.executable, "-m", "collector", "--listen", f"127.0.0.1:{port}",
                     "--kubernetes", "off", "--config", str(config),
                     "--token-file", str(work / "token")) as collector, \
            aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{port}"
        await wait_http(session, f"{base}/readyz")
        ready_rss, _ = memory_mib(collector.pid)
        with memory_cgroup(collector.pid) as charged_peak:
            for _ in range(rounds):
                await asyncio.sleep(1.1)  # windows need at least a second
                await post_reports(session, f"{base}/api/v1/reports", fleet.reports(),
                                   token=TOKEN)
                async with session.get(f"{base}/metrics") as response:
                    await response.read()
            rss, peak = memory_mib(collector.pid)
            return rss, peak, rss - ready_rss, charged_peak()


def chart_resources() -> dict[str, dict[str, dict[str, str]]]:
    values = yaml.safe_load((REPO_ROOT / "helm" / "kubecarbon" / "values.yaml").read_text())
    return {part: values[part]["resources"] for part in ("agent", "collector")}


async def main_async(nodes: list[int], agent_seconds: float) -> None:
    resources = chart_resources()
    with tempfile.TemporaryDirectory(prefix="kubecarbon-bench-") as tmp:
        work = Path(tmp)
        (work / "token").write_text(TOKEN + "\n")
        agent_floor = await reference_mib("import aiohttp, prometheus_client, psutil, agent")
        collector_floor = await reference_mib(
            "import aiohttp, prometheus_client, numpy, fastjsonschema, collector.app")
        rss, peak = await measure_agent(work, agent_seconds)
        print(f"chart agent resources: {resources['agent']}")
        print("| process | RSS MiB | peak MiB | RSS grown since ready | cgroup peak since "
              "ready (children included) | reference MiB | RSS / reference |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        print(f"| agent, {agent_seconds:.0f} s at 1 s windows | {rss:.1f} | {peak:.1f} | - | - "
              f"| {agent_floor:.1f} | {rss / agent_floor:.2f} |")
        for count in nodes:
            rss, peak, grown, charged = await measure_collector(work, count)
            print(f"| collector, {count:,} simulated nodes | {rss:.1f} | {peak:.1f} "
                  f"| {grown:.1f} | {'n/a' if charged is None else f'{charged:.1f}'} "
                  f"| {collector_floor:.1f} | {rss / collector_floor:.2f} |")
        print(f"chart collector resources: {resources['collector']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000,5000",
                        help="comma-separated simulated fleet sizes for the collector")
    parser.add_argument("--agent-seconds", type=float, default=20)
    args = parser.parse_args()
    asyncio.run(main_async([int(n) for n in args.nodes.split(",")], args.agent_seconds))


if __name__ == "__main__":
    main()
