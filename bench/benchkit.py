"""What the benchmarks here share: same-run references, loopback ports, the simulated fleet's
collector config, percentiles.

Benchmarks run as scripts (`python bench/<name>.py`), so this directory is on sys.path.
"""

from __future__ import annotations

import gc
import socket
import statistics
import time
from collections.abc import Callable


def alternating_medians(
    work: Callable[[], object],
    reference: Callable[[], object],
    repeats: int,
    *,
    warm_up: bool = True,
    collect_garbage: bool = False,
) -> tuple[float, float]:
    """Median seconds of `work` and of `reference`, run alternately so both see the same noise.

    warm_up runs each once first (caches, lazy imports); collect_garbage runs gc before each
    timed call, so one side's garbage is not collected on the other's clock.
    """
    if warm_up:
        work()
        reference()
    work_times: list[float] = []
    reference_times: list[float] = []
    for _ in range(repeats):
        for function, times in ((work, work_times), (reference, reference_times)):
            if collect_garbage:
                gc.collect()
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    return statistics.median(work_times), statistics.median(reference_times)


def free_loopback_port() -> int:
    """A free port on 127.0.0.1, for a server that cannot report the port it bound."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fleet_config() -> dict[str, object]:
    """A collector config for the simulated fleet: one profile rule per provider (a glob).

    The load benchmarks are about load, not pricing detail.
    """
    by_provider = {
        "aws": ("m5.4xlarge", "us-east-1"), "gcp": ("n2-standard-16", "us-central1"),
        "azure": ("Standard_D16s_v5", "eastus"), "alibaba": ("ecs.g7.4xlarge", "cn-hangzhou"),
        "baremetal": ("r740-2x8180", "china-east"),
    }
    return {"profiles": [
        {"match": {"node": f"sim-{provider}-*"}, "provider": provider,
         "instance_type": instance_type, "region": region}
        for provider, (instance_type, region) in by_provider.items()
    ]}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
