"""What every benchmark here shares: same-run references and loopback ports.

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
