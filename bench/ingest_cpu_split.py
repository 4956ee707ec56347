"""Where a report's CPU goes in the collector: validation and application, in-process.

    .venv/bin/python bench/ingest_cpu_split.py
    .venv/bin/python bench/ingest_cpu_split.py --source "$BEFORE"   # an older checkout

The same 100-pod reports as bench/collector_ingest.py (200 nodes; pods known to the
metadata provider or not), with the app's ingest parts (validator, ingestor, pod usage
tracker and rightsizing history), no HTTP. Per chunk of requests it times, in process
CPU time and in turn, `orjson.loads` of the bodies (what the bare endpoint does), the
validator's parse, and one `ingest_batches` of the chunk (group commit applies the
requests that arrive within a few milliseconds together; --group sets how many). The
ratios to orjson.loads, measured interleaved in the same process, are what to compare
between checkouts on a shared machine. `bare/collector` estimates the benchmark's
CPU-time ratio without HTTP's per-request share, which both servers pay.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path
from typing import Any


def run(validator: Any, ingestor: Any, bodies: list[bytes], group: int
        ) -> tuple[float, float, float]:
    """CPU seconds of orjson.loads, validation and application of `bodies`, in turn."""
    import orjson

    clock = time.process_time
    totals = [0.0, 0.0, 0.0]
    for offset in range(0, len(bodies), group):
        chunk = bodies[offset:offset + group]
        began = clock()
        for body in chunk:
            orjson.loads(body)
        loaded = clock()
        batches = [validator.parse(body) for body in chunk]
        parsed = clock()
        ingestor.ingest_batches(batches)
        applied = clock()
        totals[0] += loaded - began
        totals[1] += parsed - loaded
        totals[2] += applied - parsed
    return totals[0], totals[1], totals[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1],
                        help="checkout whose collector/ to measure (default: this one)")
    parser.add_argument("--reports", type=int, default=3000)
    parser.add_argument("--group", type=int, default=16,
                        help="single-report requests applied together (group commit)")
    args = parser.parse_args()
    # the source's own bench/collector_ingest.py puts its checkout first on the path
    sys.path[:0] = [str(args.source / "bench"), str(args.source)]

    from collector_ingest import fleet_metadata, make_bodies

    from collector.capacity import PodUsageTracker
    from collector.ingest import Ingestor
    from collector.ledger import Ledger
    from collector.rightsizing import UsageHistory
    from collector.settings import Settings
    from collector.validation import BatchValidator

    print(f"collector from {args.source}; python {sys.version.split()[0]}")
    settings = Settings()
    for case, per_request, group, known in (
        ("single reports, pods known", 1, args.group, True),
        ("single reports, pods unknown", 1, args.group, False),
        ("batches of 50, pods known", 50, 1, True),
    ):
        metadata = fleet_metadata(200, known)
        # older checkouts' tracker asked the provider itself
        tracker = (PodUsageTracker(metadata)  # type: ignore[call-arg]
                   if inspect.signature(PodUsageTracker).parameters else PodUsageTracker())
        ingestor = Ingestor(Ledger(settings.export), metadata=metadata, pod_usage=tracker,
                            usage_history=UsageHistory(settings.rightsizing))
        validator = BatchValidator.for_limits(settings.limits)
        run(validator, ingestor, make_bodies(200, 2000, per_request, first_seq=1),
            group)  # warm up: every node known
        loads, parse, apply = run(validator, ingestor,
                                  make_bodies(200, args.reports, per_request, first_seq=100),
                                  group)
        print(f"  {case:<29} ({group} request(s) per ingest call): orjson.loads "
              f"{loads / args.reports * 1e6:6.1f} us/report; validation {parse / loads:.2f}x, "
              f"application {apply / loads:.2f}x of it; bare/collector without HTTP "
              f"{loads / (parse + apply):.2f}")


if __name__ == "__main__":
    main()
