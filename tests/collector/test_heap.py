"""The serving collector's garbage-collector settings (collector/heap.py)."""

from __future__ import annotations

import gc
import weakref

import pytest
from aiohttp import web

from collector import main as collector_main
from collector.heap import OLDER_THRESHOLDS, YOUNG_THRESHOLD, freeze_startup_heap


class Cycle:
    self: Cycle


@pytest.fixture
def default_gc():
    """Tests change process-wide settings: start from CPython's and put them back."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_served_collector_tunes_collections_and_freezes_its_startup_heap(
        default_gc, monkeypatch):
    served: list[web.Application] = []
    monkeypatch.setattr(collector_main.web, "run_app", lambda app, **_: served.append(app))
    assert collector_main.main(["--kubernetes", "off", "--listen", "127.0.0.1:0"]) == 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    [app] = served
    assert freeze_startup_heap in app.on_startup


async def test_the_startup_freeze_takes_the_live_heap_out_of_collections(default_gc):
    state = [[n] for n in range(1000)]  # tracked objects alive at startup
    garbage = Cycle()
    garbage.self = garbage  # only the cyclic collector frees it
    cycle = weakref.ref(garbage)
    del garbage
    await freeze_startup_heap(web.Application())
    assert gc.get_freeze_count() >= len(state)
    walked = {id(o) for o in gc.get_objects()}
    assert not walked & {id(row) for row in state}
    # it collected first: the cycle was freed, not frozen for the life of the process
    assert cycle() is None
