"""`kubecarbon report`: a period report from Prometheus, as CSV, JSON or one HTML file.

    kubecarbon report --prometheus http://prometheus:9090 --start now-30d --end now --format html

Totals come from the collector's counters. A counter's increase over [start, end]
is taken from its samples (query_range at a fixed step, chunked), never from
PromQL's increase(), which extrapolates to the range edges: the report must add
up to what the collector counted. Per series: the increase is the sum of rises
between consecutive samples, and after a drop (a counter reset) the new value
itself; a series born inside the range counts from zero. The avoided-CO2e totals
are typed untyped (they fall when the fleet does worse than the baseline), so
for them the report takes last minus first, which a collector restart without
a state file would spoil. Facility energy is operational CO2e divided by the
region's grid intensity (operational CO2e is facility energy times intensity).
Averages of gauges (servers, utilisation) weight each sample equally. The
avoided-CO2e band is the model's own period uncertainty over totals recovered
from the counters (`band.period_band`); the collectors' p05/p50/p95 rate gauges
integrated over the period are reported beside it and stand in when the
assumptions cannot be inverted. docs/report.md explains each choice.

The parts, in the order a report runs through them:

    cli        arguments, then fetch -> document -> render -> file
    period     time arguments and the sample grid (steps, chunks)
    builder    what the report reads, through prometheus (the HTTP API client)
    reduction  samples -> per-series totals and means (pure); ReportData
    band       the avoided-CO2e band from the model's period uncertainty (pure)
    document   ReportData -> the report as plain data (pure)
    render     the document as CSV, JSON or HTML (pure)

It depends on the model (collector.model) and on nothing of the running collector:
it reads what the collectors published, through Prometheus.
"""

from collector.report.cli import main

__all__ = ["main"]
