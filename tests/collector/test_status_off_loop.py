"""The status page's summary made off the event loop, on a worker thread (a stale packing,
for a large fleet, in a forked child), equal to the one made in place, never packing on
the loop."""

import threading

import orjson
import pytest

import collector.capacity_exposition
from collector.app import FLEET_VIEWS_KEY, LEDGER_KEY, RIGHTSIZING_KEY, create_app
from collector.capacity_exposition import CapacityFamilies, RightsizingStatus
from collector.fleet_view import FleetViewCache
from collector.settings import RightsizingSettings, Settings
from collector.simulate import FleetSettings, SimulatedFleet
from collector.status import HISTORY_KEY, StatusHistory

START = 1_764_072_000.0
SECONDS = 8
MODES = pytest.mark.parametrize("child_min_nodes", [0, 1000],
                                ids=["packing in a child", "packing on a thread"])


def settings() -> Settings:
    # one usage sample a second and a recommendation from three; a packing kept a minute
    return Settings(kubernetes="off", rightsizing=RightsizingSettings(
        sample_seconds=1.0, min_history_seconds=3.0, recompute_seconds=60.0))


async def fed_client(aiohttp_client, clock, child_min_nodes):  # type: ignore[no-untyped-def]
    fleet = SimulatedFleet(FleetSettings(nodes=7, seed=3, window_seconds=1.0))
    app = create_app(settings(), metadata=fleet.metadata(), clock=clock,
                     child_render_min_nodes=child_min_nodes)
    client = await aiohttp_client(app)
    for second in range(SECONDS):
        clock.now = START + second
        post = await client.post("/api/v1/reports",
                                 json={"reports": fleet.reports(now=START + second)})
        assert post.status == 200
    return client, app


@MODES
async def test_the_summary_made_off_the_loop_is_the_one_made_in_place(
        aiohttp_client, clock, child_min_nodes):
    client, app = await fed_client(aiohttp_client, clock, child_min_nodes)
    served = await client.get("/api/v1/summary")
    assert served.status == 200
    history = app[HISTORY_KEY]
    read = history.take()
    off_loop = orjson.loads(history.serve_summary(read))
    # in place, from the same read, with a packer and fleet views that kept nothing
    kept = app[RIGHTSIZING_KEY]
    fresh = RightsizingStatus(CapacityFamilies(settings().profiles.model, settings().rightsizing),
                              kept.metadata, kept.pod_usage, kept.history)
    in_place = StatusHistory(app[LEDGER_KEY], FleetViewCache(app[FLEET_VIEWS_KEY].params),
                             history.settings, clock, fresh, child_min_nodes=10**9)
    expected = orjson.loads(orjson.dumps(in_place.summary_of(read)))
    assert off_loop == expected
    assert orjson.loads(await served.read()) == expected  # the clock stood still
    assert expected["current"]["nodes"] == 7 and expected["history"]
    assert 0 < expected["rightsizing"]["avoidable_nodes"] < 7
    await client.close()


@MODES
async def test_a_stale_packing_is_not_made_on_the_event_loop(
        aiohttp_client, clock, child_min_nodes, monkeypatch):
    client, app = await fed_client(aiohttp_client, clock, child_min_nodes)
    packings: list[int] = []  # the threads that packed, in this process (a child's are lost)
    pack = collector.capacity_exposition.rightsizing_view

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        packings.append(threading.get_ident())
        return pack(*args, **kwargs)

    monkeypatch.setattr(collector.capacity_exposition, "rightsizing_view", recorded)
    families = app[RIGHTSIZING_KEY].families
    first = await (await client.get("/api/v1/summary")).json()
    packed_at = families._cached[0]
    assert packed_at == clock.now
    clock.now += 61.0  # the kept packing is now stale
    second = await (await client.get("/api/v1/summary")).json()
    assert families._cached[0] == clock.now  # packed again and kept here
    assert second["rightsizing"]["avoidable_nodes"] == first["rightsizing"]["avoidable_nodes"]
    loop_thread = threading.get_ident()
    if child_min_nodes == 0:
        assert packings == []  # both packings were made in forked children
    else:
        assert len(packings) == 2 and loop_thread not in packings
    await client.close()
