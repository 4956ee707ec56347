"""Cost of the status page's history and of the simulated fleet, as ratios to /metrics.

    .venv/bin/python bench/status_bench.py [--nodes 10000] [--repeats 15]

The collector reads one status point per interval and serves /api/v1/summary per
page refresh; both must stay small next to what it already does per scrape, rendering
/metrics. So the reference, measured in the same run and interleaved, is a scrape's
`Exposition.render()` of the same ledger. For the simulator (used by the demo and
the scale tests) the reference is serialising the reports it made with orjson, the
least any sender does with them. Memory: the status ring at full capacity (4 h of
15 s points) against the ledger (and ingest caches) it describes, both measured with
tracemalloc.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from collections.abc import Callable

import orjson
from benchkit import alternating_medians

from collector.exposition import Exposition, Scrape
from collector.fleet_view import FleetViewCache
from collector.ingest import Ingestor
from collector.ledger import Ledger
from collector.simulate import FleetSettings, SimulatedFleet
from collector.status import StatusHistory, StatusSettings
from collector.telemetry import Telemetry

T0 = 1_764_072_000.0


def allocated_bytes(build: Callable[[], object]) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    built = build()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    clock_now = [T0]
    fleet = SimulatedFleet(FleetSettings(nodes=args.nodes, seed=1), clock=lambda: clock_now[0])
    metadata = fleet.metadata()

    def fed_ingestor() -> Ingestor:
        ingestor = Ingestor(Ledger(), metadata=metadata, clock=lambda: clock_now[0])
        ingestor.ingest(fleet.reports())
        return ingestor

    state_bytes, built = allocated_bytes(fed_ingestor)
    assert isinstance(built, Ingestor)
    ledger = built.ledger
    views = FleetViewCache()
    exposition = Exposition(views)
    history = StatusHistory(ledger, views, StatusSettings(), clock=lambda: clock_now[0])

    def render() -> str:
        return exposition.render(Scrape(ledger.view(clock_now[0]), Telemetry(),
                                        metadata.status()))

    rows = []
    point, scrape = alternating_medians(history.sample, render, args.repeats)
    rows.append(("status point (one per interval)", point, scrape))
    settings = StatusSettings()
    ring_clock = [clock_now[0]]  # its own clock: 4 h of points without ageing the fleet

    def full_ring() -> StatusHistory:
        ring = StatusHistory(ledger, views, settings, clock=lambda: ring_clock[0])
        for _ in range(settings.capacity):
            ring_clock[0] += settings.interval_seconds
            ring.sample()
        return ring

    ring_bytes, ring = allocated_bytes(full_ring)
    assert isinstance(ring, StatusHistory)
    ring_clock[0] = clock_now[0]
    summary, scrape = alternating_medians(lambda: orjson.dumps(ring.summary()), render,
                                          args.repeats)
    rows.append(("/api/v1/summary body (full ring, "
                 f"{len(ring.points)} points)", summary, scrape))

    reports_holder: list[list] = []

    def make_reports() -> None:
        clock_now[0] += 15.0
        reports_holder[:] = [fleet.reports()]

    make_reports()
    generate, encode = alternating_medians(make_reports, lambda: orjson.dumps(reports_holder[0]),
                                   args.repeats)
    rows.append((f"simulated fleet: one round of {args.nodes} reports", generate, encode))

    print(f"nodes {args.nodes}, repeats {args.repeats}")
    print(f"{'case':<58} {'median ms':>10} {'reference ms':>13} {'ratio':>7}")
    for name, work, reference in rows:
        print(f"{name:<58} {work * 1e3:>10.2f} {reference * 1e3:>13.2f} "
              f"{work / reference:>7.3f}")
    print(f"status ring at capacity ({settings.capacity} points): {ring_bytes / 2**20:.2f} MiB; "
          f"ledger and ingest caches of {args.nodes} nodes: {state_bytes / 2**20:.1f} MiB; "
          f"ratio {ring_bytes / state_bytes:.3f}")


if __name__ == "__main__":
    main()
