"""Cost of the report's own arithmetic on large answers, as a ratio to decoding them.

    .venv/bin/python bench/report_bench.py [--series 10000] [--points 250] [--repeats 5]

A report reads every counter series sample by sample (docs/report.md explains why), so
on a big fleet it handles query_range answers of --series series x --points points
(one chunk). The work measured is what `ReportBuilder._counter` does with one decoded
answer (`CounterAccumulator.add`): turn the sample strings into floats, add each
series' reset-aware increase, then group by region. The reference, measured in the
same run and interleaved, is `orjson.loads` of the same answer, which any client of
the Prometheus API pays. The script also
prints the time a 30-day report of a fleet of that size would spend on it, from the
chunk count `choose_step` gives and the number of per-node counters read.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import orjson

from collector.report.builder import COUNTERS
from collector.report.period import choose_step, chunks, sample_grid
from collector.report.reduction import CounterAccumulator, CounterTotals

REGIONS = ("china-east", "china-north", "us-east-1", "eu-west-1", "westeurope")


def answer(series: int, points: int, rng: np.random.Generator) -> bytes:
    """A query_range answer as Prometheus sends it: values are strings."""
    result = []
    for i in range(series):
        values = np.cumsum(rng.uniform(0, 5000, points)) + rng.uniform(0, 1e9)
        result.append({
            "metric": {"__name__": "kubecarbon_node_energy_joules_total", "node": f"n{i}",
                       "region": REGIONS[i % len(REGIONS)], "instance_type": "m5.4xlarge",
                       "power_source": "cloud_linear", "instance": "10.0.0.1:9880",
                       "job": "kubecarbon"},
            "values": [[1_764_000_000 + 60 * k, repr(float(v))] for k, v in enumerate(values)],
        })
    return orjson.dumps({"status": "success",
                         "data": {"resultType": "matrix", "result": result}})


def process(decoded: Any) -> CounterTotals:
    """The report's per-chunk work on one decoded answer: ReportBuilder._counter's."""
    accumulator = CounterAccumulator({}, signed=False)
    accumulator.add(decoded["data"]["result"])
    return accumulator.totals(("region",))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    body = answer(args.series, args.points, np.random.default_rng(0))
    decoded = orjson.loads(body)
    process(decoded)
    work, reference = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        process(decoded)
        work.append(time.perf_counter() - start)
        start = time.perf_counter()
        orjson.loads(body)
        reference.append(time.perf_counter() - start)
    work_s, reference_s = statistics.median(work), statistics.median(reference)
    month = 30 * 86400.0
    step, count = sample_grid(0.0, month, choose_step(month))
    chunk_count = len(chunks(0.0, step, count, args.points))
    node_counters = sum(1 for metric, _, _ in COUNTERS.values() if "_node_" in metric)
    month_s = (work_s + reference_s) * chunk_count * node_counters
    print(f"one answer: {args.series} series x {args.points} points, "
          f"{len(body) / 2**20:.1f} MiB of JSON")
    print(f"report arithmetic {work_s * 1e3:.0f} ms, orjson.loads {reference_s * 1e3:.0f} ms, "
          f"ratio {work_s / reference_s:.2f}")
    print(f"30-day report: step {step:.0f} s, {chunk_count} chunks x {node_counters} node "
          f"counters: about {month_s:.0f} s of client CPU for decoding and arithmetic")


if __name__ == "__main__":
    main()
