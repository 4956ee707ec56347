"""Where an agent cycle's CPU goes, measured inside the running agent (cold caches and all).

Runs the real agent (1 s windows) on a generated tree (cgroup_trees.py, counters
advancing in place) delivering to a keep-alive sink, with each part of a cycle
wrapped in a timer of the thread's CPU time: the sources, the window report, the
encoding, the delivery of a batch. What no part accounts for is the event loop's
own work and the sampling schedule. With
`--compare DIR` a second agent runs side by side from DIR, an export of another
version's agent/ and kubecarbon/ (`git archive <commit> agent kubecarbon | tar -x
-C DIR`), so both see the same machine.

    .venv/bin/python bench/agent_cycle_profile.py [--tree v1] [--pods 300] [--seconds 20]
                                                  [--compare DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agent_overhead import cpu_nanoseconds
from aiohttp import web
from cgroup_trees import TREES, CounterWriter

# (module, attribute path) of each part; a part the profiled version lacks is skipped
PARTS = [
    ("agent.sampler", "Sampler.take_sample"),
    ("agent.sources.pod_cpu", "PodCpuSource.sample"),
    ("agent.sources.kept_open", "KeptOpenFiles.read_all"),
    ("agent.sources.pod_listing", "PodListing.refresh"),
    ("agent.sources.kubepods", "PodListing.refresh"),
    ("agent.sources.density", "DensitySource.sample"),
    ("agent.sources.proc_stat", "ProcStatSource.sample"),
    ("agent.sources.meminfo", "MeminfoSource.sample"),
    ("agent.sampler", "window_report"),
    ("agent.publisher", "Publisher.publish"),
    # a coroutine: its thread CPU time from start to end, the event loop's work between
    # its awaits included (nothing else runs in the agent then but idle servers)
    ("agent.publisher", "Publisher._deliver_next_batch"),
]


def install_timers(times: dict[str, list[int]]) -> None:
    """Wrap every part that exists in a timer of the calling thread's CPU time."""
    import importlib

    for module_name, attribute in PARTS:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            continue
        *path, name = attribute.split(".")
        for step in path:
            owner = getattr(owner, step, None)
        if owner is None or not hasattr(owner, name):
            continue
        original = getattr(owner, name)

        def timed(*args, __original=original, __label=attribute, **kwargs):
            started = time.thread_time_ns()
            try:
                return __original(*args, **kwargs)
            finally:
                times.setdefault(__label, []).append(time.thread_time_ns() - started)

        async def timed_async(*args, __original=original, __label=attribute, **kwargs):
            started = time.thread_time_ns()
            try:
                return await __original(*args, **kwargs)
            finally:
                times.setdefault(__label, []).append(time.thread_time_ns() - started)

        setattr(owner, name, timed_async if inspect.iscoroutinefunction(original) else timed)


def run_inside(output: str, agent_args: list[str]) -> None:
    """The agent process: timers installed, then the agent's own command line."""
    times: dict[str, list[int]] = {}
    install_timers(times)
    from agent.cli import main

    try:
        main(agent_args)
    finally:
        Path(output).write_text(json.dumps(times))


async def profile(
    tree_name: str, pods: int, seconds: float, versions: dict[str, str | None], scratch: str
) -> dict[str, tuple[float, str]]:
    """Each version's CPU per second over the run and the file its part timings went to."""
    reports: dict[str, int] = {}
    warm = asyncio.Event()  # every agent has sent three windows

    async def sink(request: web.Request) -> web.Response:
        batch = (await request.json())["reports"]
        for report in batch:
            reports[report["node"]] = reports.get(report["node"], 0) + 1
        if all(reports.get(f"node-{n}", 0) >= 3 for n in range(len(versions))):
            warm.set()
        return web.json_response({"accepted": len(batch), "duplicates": 0})

    app = web.Application()
    app.router.add_post("/api/v1/reports", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    tree = TREES[tree_name](Path(scratch), pods)
    processes = {}
    try:
        with CounterWriter(tree):
            for number, (label, path) in enumerate(versions.items()):
                environment = dict(os.environ)
                if path is not None:
                    environment["PYTHONPATH"] = path
                output = f"{scratch}/times-{number}.json"
                processes[label] = (output, await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--inside", output, "--",
                    "--collector-url", f"http://127.0.0.1:{port}", "--interval", "1",
                    "--node-name", f"node-{number}", "--listen", "127.0.0.1:0",
                    "--host-proc", "/proc", "--host-sys", str(tree.sys_root),
                    "--log-level", "warning",
                    cwd=scratch, env=environment,  # not this checkout: PYTHONPATH decides
                ))  # fmt: skip
            # start-up left out: imports, the first full listing, the first windows
            await asyncio.wait_for(warm.wait(), 120)
            before = {label: cpu_nanoseconds(p.pid) for label, (_, p) in processes.items()}
            started = time.monotonic()
            await asyncio.sleep(seconds)
            elapsed = time.monotonic() - started
            after = {label: cpu_nanoseconds(p.pid) for label, (_, p) in processes.items()}
    finally:
        for _, process in processes.values():
            process.send_signal(signal.SIGTERM)
            await process.wait()
        await runner.cleanup()
        tree.cleanup()
    return {
        label: ((after[label] - before[label]) / elapsed / 1e6, output)
        for label, (output, _) in processes.items()
    }


def print_profile(tree_name: str, pods: int, seconds: float, results: dict) -> None:
    print(f"{tree_name} tree, {pods} pods, {seconds:g} s at 1 s windows; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")  # fmt: skip
    for label, (per_second, output) in results.items():
        print(f"\n{label}: {per_second:.2f} ms CPU per second (one cycle per second)")
        times = json.loads(Path(output).read_text())
        for part, values in sorted(times.items(), key=lambda kv: -statistics.median(kv[1][1:])):
            steady = values[1:] or values  # the first call lists the whole tree
            print(f"  {part:28s} median {statistics.median(steady) / 1000:8.1f} us "
                  f"({len(values)} calls, first {values[0] / 1000:.0f} us)")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--inside":
        run_inside(sys.argv[2], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default="v1", choices=sorted(TREES))
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--compare", help="directory holding another version's agent/")
    options = parser.parse_args()
    versions = {"this checkout": None}
    if options.compare:
        versions[f"from {options.compare}"] = os.path.abspath(options.compare)
    with tempfile.TemporaryDirectory(prefix="kubecarbon-profile-", dir="/dev/shm") as scratch:
        results = asyncio.run(
            profile(options.tree, options.pods, options.seconds, versions, scratch)
        )
        print_profile(options.tree, options.pods, options.seconds, results)


if __name__ == "__main__":
    main()
