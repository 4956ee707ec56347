"""The /metrics exposition: the catalogue's families of one scrape, in the Prometheus text format.

A `Scrape` is everything one scrape reads, taken on the event loop in one step: a
view of the ledger, a copy of the app's telemetry, the metadata provider's status.
None of it changes afterwards, so `Exposition.render` can run on a worker thread
while ingest goes on, and still shows one version of the ledger. The renderer
writes the text format (0.0.4) itself: at 10,000 nodes that is about 100,000
samples, several times faster than building a prometheus_client sample object for
each. The process metrics come from a prometheus_client registry appended to the text.

A scrape at 50,000 nodes is 800,000 samples, so the render works a family at a time:
the node label texts are kept from scrape to scrape (`Exposition.prepare`, called by
the serving process before it renders or forks), each family's numbers are formatted
as a column and its lines joined in one call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from operator import add, attrgetter, itemgetter
from typing import Any

import numpy as np
import orjson

from collector.capacity_exposition import CapacityFamilies, CapacityInputs
from collector.fleet_view import FleetView, FleetViewCache
from collector.ledger import LedgerView, UsageCounters
from collector.metadata import ProviderStatus
from collector.metrics import NODE_LABELS, SPECS, MetricSpec
from collector.model.assumptions import model_info_labels, uncertainty_ranges
from collector.telemetry import FORWARD_RESULTS, SNAPSHOT_RESTORE_RESULTS, Telemetry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Row = tuple[tuple[str, ...], float]  # (label values in the spec's label order, value)
Family = tuple[MetricSpec, Iterable[Row]]


@dataclass(frozen=True)
class Scrape:
    """What one scrape shows, taken at once; nothing in it changes afterwards."""

    ledger: LedgerView
    telemetry: Telemetry  # a copy
    metadata: ProviderStatus
    capacity: CapacityInputs | None = None  # None: no requested-versus-used series


def build_version() -> str:
    try:
        return version("kubecarbon")
    except PackageNotFoundError:
        return "unknown"


def escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    pairs = ",".join(
        f'{name}="{escape_label_value(value)}"' for name, value in zip(names, values, strict=True)
    )
    return "{" + pairs + "}" if pairs else ""


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


# orjson writes a float as the shortest text that reads back to it, as repr does; within
# these magnitudes (and for 0) the two texts are the same byte for byte (outside them
# the exponent is written differently), and orjson is about 8x faster.
_FAST_FLOAT_RANGE = (1e-4, 1e16)


def number_texts(values: Sequence[float]) -> list[str]:
    """`_number` of each value: a column of plain floats at once through orjson when
    every magnitude is one where its text is repr's, else value by value."""
    types = set(map(type, values))
    if types == {int}:
        return list(map(str, values))
    if types == {float}:
        magnitudes = np.abs(np.array(values, dtype=np.float64))
        low, high = _FAST_FLOAT_RANGE
        if bool(np.all((magnitudes == 0) | ((magnitudes >= low) & (magnitudes < high)))):
            return orjson.dumps(values).decode()[1:-1].split(",")
    return [_number(value) for value in values]


def iter_sorted(table: Mapping[Any, Any]) -> Iterable[tuple[Any, Any]]:
    """Stable exposition order."""
    return sorted(table.items(), key=lambda item: item[0])


class NodeLabelTexts:
    """The text of each node label set a scrape shows (`{node="...",...} `), kept across
    scrapes: a fleet's label sets rarely change, and formatting them again in every scrape
    was a large part of a render.

    `refresh` fills it; call it in the process that serves /metrics, before the render: a
    render in a forked child (collector/render_process.py) reads what the parent filled,
    and anything the child wrote would die with it. `texts` only reads.
    """

    def __init__(self) -> None:
        self._texts: dict[tuple[str, ...], str] = {}

    def refresh(self, label_sets: Iterable[tuple[str, ...]]) -> None:
        """Hold the texts of exactly these label sets: new ones formatted, others dropped
        (a forgotten node, a node whose labels changed)."""
        known = self._texts  # one read: another thread's refresh may replace it meanwhile
        self._texts = {labels: known[labels] if labels in known else _series_labels(labels)
                       for labels in label_sets}

    def texts(self, label_sets: Iterable[tuple[str, ...]]) -> list[str]:
        """The text of each label set; one not held is formatted, not kept."""
        known = self._texts
        return [known[labels] if labels in known else _series_labels(labels)
                for labels in label_sets]

    def __len__(self) -> int:
        return len(self._texts)


def _series_labels(values: tuple[str, ...]) -> str:
    return label_text(NODE_LABELS, values) + " "


class Exposition:
    """The kubecarbon_* families of a scrape in the Prometheus text format."""

    def __init__(self, views: FleetViewCache | None = None, version_: str | None = None,
                 capacity: CapacityFamilies | None = None, sharded: bool = False,
                 node_labels: NodeLabelTexts | None = None) -> None:
        self.views = views if views is not None else FleetViewCache()
        # one of several replicas (--replicas > 1): also the band's draws and the forwarding
        self.sharded = sharded
        self.capacity = capacity if capacity is not None else CapacityFamilies(self.views.params)
        self.version = version_ or build_version()
        self.node_labels = node_labels if node_labels is not None else NodeLabelTexts()

    def prepare(self, scrape: Scrape, in_child: bool = False) -> None:
        """Keep what renders of `scrape` reuse from one scrape to the next (the node label
        texts; for renders `in_child`, the rightsizing packing, when due). Call it in the
        serving process, before `render` there or in a child."""
        self.node_labels.refresh(scrape.ledger.nodes)
        if in_child and scrape.capacity is not None:
            self.capacity.prepare(scrape.capacity, scrape.ledger,
                                  lambda: self.views.view(scrape.ledger))

    def render(self, scrape: Scrape) -> str:
        return "".join(self._text(scrape))

    def _text(self, scrape: Scrape) -> Iterator[str]:
        # node families follow each other with the same label sets in the same order
        node_keys: list[tuple[str, ...]] = []
        node_prefixes: list[str] = []
        for spec, rows in self.families(scrape):
            name = spec.full_name
            yield f"# HELP {name} {spec.help}\n# TYPE {name} {spec.kind}\n"
            rows = list(rows)
            if not rows:
                continue
            keys, values = list(map(itemgetter(0), rows)), list(map(itemgetter(1), rows))
            if spec.labels == NODE_LABELS:
                if keys != node_keys:
                    node_keys, node_prefixes = keys, self.node_labels.texts(keys)
                prefixes = node_prefixes
            else:
                prefixes = [label_text(spec.labels, k) + " " for k in keys]
            # name{labels} value, a line each, joined by C loops rather than sample by sample
            yield name
            yield ("\n" + name).join(map(add, prefixes, number_texts(values)))
            yield "\n"

    def families(self, scrape: Scrape) -> Iterator[Family]:
        ledger = scrape.ledger
        view = self.views.view(ledger)
        live = sorted(view.live, key=lambda n: n.labels)
        live_labels = [n.labels for n in live]
        per_node = {  # family -> NodeLatest attribute
            "node_cpu_usage_ratio": "utilisation",
            "node_logical_cpus": "logical_cpus",
            "node_pods": "pods",
            "node_containers": "containers",
            "node_power_watts": "power_watts",
            "node_pue": "profile.pue",
            "node_last_report_timestamp_seconds": "received_at",
            "node_last_window_end_timestamp_seconds": "window_end",
        }
        for name, field in per_node.items():
            column = list(map(attrgetter(field), live))
            yield SPECS[name], [(labels, v) for labels, v in zip(live_labels, column, strict=True)
                                if v is not None]
        nodes = iter_sorted(ledger.nodes)
        node_keys = [k for k, _ in nodes]
        node_counters = [c for _, c in nodes]
        for name, field in (("node_energy_joules_total", "energy_joules"),
                            ("node_idle_energy_joules_total", "idle_energy_joules"),
                            ("node_co2e_grams_total", "co2e_grams"),
                            ("node_embodied_co2e_grams_total", "embodied_co2e_grams")):
            yield SPECS[name], list(zip(
                node_keys, map(attrgetter(field), node_counters), strict=True))
        tables: list[tuple[str, Mapping[Any, UsageCounters]]] = [
            ("namespace", {(k,): c for k, c in ledger.namespaces.items()}),
            ("workload", ledger.workloads),
        ]
        if ledger.pods is not None:
            tables.append(("pod", ledger.pods))
        for scope, table in tables:
            rows = iter_sorted(table)
            yield SPECS[f"{scope}_cpu_seconds_total"], [(k, c.cpu_seconds) for k, c in rows]
            yield SPECS[f"{scope}_energy_joules_total"], [(k, c.energy_joules) for k, c in rows]
            yield SPECS[f"{scope}_co2e_grams_total"], [(k, c.co2e_grams) for k, c in rows]
        if scrape.capacity is not None:
            yield from self.capacity.families(scrape.capacity, ledger, view)
        yield from self._fleet(ledger, view)
        yield from self._collector(scrape, view)

    def _fleet(self, ledger: LedgerView, view: FleetView) -> Iterator[Family]:
        gauges, fleet = view.gauges, ledger.fleet
        yield SPECS["fleet_cpu_usage_ratio"], [((), gauges.fleet_cpu_usage_ratio)]
        yield SPECS["baseline_servers"], [((), gauges.baseline_servers)]
        yield SPECS["actual_servers"], [((), gauges.actual_servers)]
        yield SPECS["avoided_servers"], [((), gauges.avoided_servers)]
        yield SPECS["baseline_energy_joules_total"], [((), fleet.baseline_energy_joules)]
        yield SPECS["avoided_energy_joules_total"], [((), fleet.avoided_energy_joules)]
        yield SPECS["avoided_co2e_grams_total"], [
            (("embodied",), fleet.avoided_embodied_co2e_grams),
            (("operational",), fleet.avoided_operational_co2e_grams),
        ]
        quantiles = view.avoided_quantiles
        yield SPECS["avoided_co2e_grams_per_hour"], [] if quantiles is None else [
            (("0.05",), quantiles.p05),
            (("0.5",), quantiles.p50),
            (("0.95",), quantiles.p95),
        ]
        if self.sharded:
            draws = view.avoided_draws
            yield SPECS["avoided_co2e_grams_per_hour_draw"], [] if draws is None else [
                ((str(index),), grams) for index, grams in enumerate(draws.tolist())
            ]
        servers = view.avoided_servers_quantiles
        yield SPECS["avoided_servers_quantile"], [] if servers is None else [
            (("0.05",), servers.p05),
            (("0.5",), servers.p50),
            (("0.95",), servers.p95),
        ]
        yield SPECS["grid_carbon_intensity_grams_per_kilowatt_hour"], [
            ((region,), grams) for region, grams in sorted(view.grid_intensity_by_region.items())
        ]
        params = self.views.params
        yield SPECS["model_info"], [(model_info_labels(params), 1)]
        yield SPECS["model_uncertainty_info"], [
            ((name, repr(bounds.low), repr(bounds.high)), 1)
            for name, bounds in uncertainty_ranges(params)
        ]
        yield SPECS["build_info"], [((self.version,), 1)]

    def _collector(self, scrape: Scrape, view: FleetView) -> Iterator[Family]:
        ledger, telemetry = scrape.ledger, scrape.telemetry
        yield SPECS["collector_reports_total"], [
            (("accepted",), ledger.reports_accepted),
            (("duplicate",), ledger.reports_duplicate),
            (("rejected",), sum(telemetry.rejected_by_status.values())),
        ]
        yield SPECS["collector_rejected_requests_total"], [
            ((str(code),), count) for code, count in sorted(telemetry.rejected_by_status.items())
        ]
        if self.sharded:
            yield SPECS["collector_forwarded_requests_total"], [
                ((result,), telemetry.forwarded[result]) for result in FORWARD_RESULTS
            ]
        yield SPECS["collector_default_profile_nodes"], [
            ((), sum(1 for n in view.live if n.on_default_profile))
        ]
        yield SPECS["collector_default_profile_reports_total"], [
            ((), ledger.default_profile_reports)
        ]
        yield SPECS["collector_live_nodes"], [((), len(view.live))]
        yield SPECS["collector_stale_nodes"], [((), view.stale_count)]
        yield SPECS["collector_forgotten_nodes_total"], [
            ((reason,), count) for reason, count in sorted(ledger.forgotten_nodes.items())
        ]
        yield SPECS["collector_series_capped_pod_rows_total"], [
            ((series,), count) for series, count in sorted(ledger.capped_pod_rows.items())
        ]
        yield SPECS["collector_dedupe_agents"], [((), ledger.dedupe_agents)]
        yield SPECS["collector_dedupe_evictions_total"], [((), ledger.dedupe_evictions)]
        yield SPECS["collector_snapshot_writes_total"], [
            ((result,), count) for result, count in sorted(telemetry.snapshot_writes.items())
        ]
        yield SPECS["collector_snapshot_last_success_timestamp_seconds"], [
            ((), telemetry.snapshot_last_success_timestamp_seconds)
        ]
        yield SPECS["collector_snapshot_restore"], [
            ((result,), int(result == telemetry.snapshot_restore))
            for result in SNAPSHOT_RESTORE_RESULTS
        ]
        status = scrape.metadata
        yield SPECS["collector_metadata_synced"], [((status.source,), int(status.synced))]
        yield SPECS["collector_metadata_connected"], [((status.source,), int(status.connected))]
