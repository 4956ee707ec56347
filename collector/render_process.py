"""Bytes made in a forked child process, so that making them never holds the event loop.

At 16 samples a node, a scrape of 50,000 nodes is 800,000 samples. Rendered on a worker
thread, that took seconds of the interpreter lock in turns with the event loop, and each
time the loop woke for a request it waited for the lock (up to the switch interval)
behind the render: ingest p99 rose tenfold during scrapes. A forked child has its own
interpreter lock and a copy-on-write copy of the scrape as it was at the fork, so
nothing is serialised to hand it over; it renders and compresses the body, writes it to
a pipe and exits without running the parent's cleanup. The parent's thread only forks
and reads. Nothing the child does is seen by the parent: readers never change state.

The state snapshot is made the same way, but forked from the event loop itself: the
child then holds the ledger exactly as it was between two ingest steps, and encoding it
(about 0.1-0.5 s at 20,000 nodes) no longer holds ingest up; the loop pays the fork.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import NoReturn

READ_BYTES = 1 << 20
# From this many nodes /metrics renders, the state snapshot is encoded and the status page's
# summary is made in a forked child. Below, a render on a worker thread (about 60 us of CPU
# a node) is over before a fork of a large process and its child's exit would be (5-40 ms
# measured at 325 MB).
CHILD_RENDER_MIN_NODES = 1000
RENDER_TIMEOUT_SECONDS = 120.0  # a child that takes longer is stopped: the scrape fails
CHILD_NICENESS = 10  # added to the serving process's


# Held from a pipe's creation until the parent has closed its write end, so that a render
# forked by another thread at the same time does not inherit that end (its reader would
# then see no end of the body until the other child exits).
_FORKING = threading.Lock()


class RenderFailed(RuntimeError):
    """The child did not produce a body (it raised, was killed, or ran out of time)."""


class ForkedRender:
    """`render()` running in a child forked at construction, from the caller's thread: the
    child renders the process's state as it was at that instant. `read` collects the bytes."""

    def __init__(self, render: Callable[[], bytes]) -> None:
        with _FORKING:
            self._read_end, write_end = os.pipe()
            self._pid = os.fork()
            if self._pid == 0:  # the child: never returns
                os.close(self._read_end)
                _child(render, write_end)
            os.close(write_end)

    def read(self, timeout_seconds: float = RENDER_TIMEOUT_SECONDS) -> bytes:
        """The child's bytes, read back through the pipe. Blocking: call it on a worker
        thread (reading the pipe releases the interpreter lock). Once only."""
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout_seconds
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self._read_end], [], [], remaining)[0]:
                    os.kill(self._pid, signal.SIGKILL)
                    raise RenderFailed(f"the render took over {timeout_seconds:g} s")
                chunk = os.read(self._read_end, READ_BYTES)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self._read_end)
            _, status = os.waitpid(self._pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RenderFailed(f"the render failed (exit status {status}; see the log)")
        return b"".join(chunks)


def render_in_child(render: Callable[[], bytes],
                    timeout_seconds: float = RENDER_TIMEOUT_SECONDS) -> bytes:
    """`render()` run in a child forked here; its bytes. Blocking, like `ForkedRender.read`."""
    return ForkedRender(render).read(timeout_seconds)


def _child(render: Callable[[], bytes], write_end: int) -> NoReturn:
    code = 1
    try:
        # Below the event loop where they share a CPU: ingest answers first, the render
        # takes what is left (the Linux scheduler gives nice 10 about a tenth of nice 0's
        # share while both want the CPU, and the whole CPU while ingest idles). At 50,000
        # nodes ingest p99 was 60-70 ms with +10 against 69-110 ms with +5
        # (docs/benchmarks.md).
        os.nice(CHILD_NICENESS)
        # A collection would walk (and so copy) every object of the parent's heap.
        gc.disable()
        body = memoryview(render())
        while body:
            body = body[os.write(write_end, body):]
        code = 0
    except BaseException:  # reported on stderr; the parent answers 500
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
    finally:
        os._exit(code)
