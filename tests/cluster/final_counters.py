"""Pods' CPU counters read until their cgroups go, by a process of its own.

    python final_counters.py QOS_DIR OUT_FILE     (stops on SIGTERM or end of stdin)

Reads `cpuacct.usage` of every `pod*` cgroup in QOS_DIR a hundred times a second
and, when a pod's cgroup is gone, appends one JSON line to OUT_FILE: its uid, its readings
(wall time, nanoseconds; one per 50 ms and the last) and when it was first seen
gone. The kernel removes a cgroup only once it holds no process, and a removed
cgroup's files cannot be read (ENODEV), so the last reading is the pod's final
count if the counter had already stopped when it was taken. The test suite's
own recorder (kernel_truth.py) is a thread of the test process, which shares the
interpreter with the scrapes that parse /metrics; a separate process that
sleeps between reads is scheduled promptly even on a loaded node.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import TextIO

PERIOD_SECONDS = 0.01
KEEP_EVERY_SECONDS = 0.05


def poll(directory: str, out: TextIO, stop: threading.Event) -> None:
    readings: dict[str, list[tuple[float, int]]] = {}
    while not stop.is_set():
        now = time.time()
        seen = set()
        for name in os.listdir(directory):
            if not name.startswith("pod"):
                continue
            try:
                with open(f"{directory}/{name}/cpuacct.usage", "rb") as handle:
                    value = int(handle.read())
            except (OSError, ValueError):
                continue  # removed between the listing and the read
            uid = name[3:]
            seen.add(uid)
            series = readings.setdefault(uid, [])
            if len(series) >= 2 and now - series[-2][0] < KEEP_EVERY_SECONDS:
                series[-1] = (now, value)  # the last reading always stays
            else:
                series.append((now, value))
        for uid in readings.keys() - seen:
            out.write(json.dumps({"uid": uid, "readings": readings.pop(uid), "gone": now}) + "\n")
            out.flush()
        stop.wait(max(0.0, PERIOD_SECONDS - (time.time() - now)))


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    with open(sys.argv[2], "a") as out:
        poll(sys.argv[1], out, stop)


if __name__ == "__main__":
    main()
