"""How the serving collector's cyclic garbage collector is tuned.

A full collection walks every tracked object, and the event loop waits for it: at 20,000
nodes one took 37-430 ms, and with CPython's default thresholds one ran every 5-7 s under
a fleet's load (docs/benchmarks.md, "full garbage collections, the state snapshot").
Almost nothing it walked was garbage: the collector's state dies by reference counting
when a newer report replaces it.
Two settings make full collections rare and shorter:

- A younger generation of `YOUNG_THRESHOLD` allocations instead of 700. A request lives
  for the group commit (up to 5 ms) and its reply; a young collection every 700
  allocations found hundreds of requests alive and promoted them, and those promotions,
  not the fleet's state, were what kept starting full collections.
- `freeze_startup_heap` once serving starts: modules, settings, the restored snapshot and
  the metadata listed so far live for the whole process, so no collection walks them
  again. A frozen object that dies is still freed by reference counting; only a cycle
  made entirely of objects alive at startup would never be collected.
"""

from __future__ import annotations

import gc

from aiohttp import web

YOUNG_THRESHOLD = 10_000  # CPython's default: 700
OLDER_THRESHOLDS = (10, 10)  # CPython's defaults: how many younger collections per older one


def tune_for_serving() -> None:
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)


async def freeze_startup_heap(app: web.Application) -> None:
    """An on_startup hook: collect once, then move what survives out of later collections."""
    gc.collect()
    gc.freeze()
