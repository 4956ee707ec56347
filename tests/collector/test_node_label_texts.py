"""The node label texts kept across scrapes, and the column formatting of numbers.

Both exist to make a scrape cheaper; neither may change a byte of the exposition.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from collector_testkit import JSON, T0, FakeClock, body_of, make_report, metadata_for_tests

import collector.exposition as exposition_module
from collector.app import create_app
from collector.exposition import Exposition, Scrape, _number, number_texts
from collector.ingest import Ingestor
from collector.ledger import Ledger
from collector.metadata import ProviderStatus
from collector.settings import ExportSettings
from collector.telemetry import Telemetry

STATUS = ProviderStatus(source="static", synced=True, connected=True)


def columns() -> list[list[object]]:
    rng = np.random.default_rng(0)
    magnitudes = [
        (rng.uniform(0.5, 1.0, 2000) * 10.0 ** exponent * sign).tolist()
        for exponent in range(-9, 19) for sign in (1, -1)
    ]
    bits = rng.integers(0, 2**63, 20000, dtype=np.uint64).view(np.float64)
    return [
        *magnitudes,
        bits[np.isfinite(bits)].tolist(),  # every exponent
        [1e-4, math.nextafter(1e-4, 0), 1e16, math.nextafter(1e16, 0), 0.0, -0.0, 5e-324],
        [1.0, 2.5, math.nan], [math.inf, 1.0], [1.0, 2, 3.5], [3, 10**30, -7], [True, False],
        [np.float64(1.25), 3.5], [], [0.1 + 0.2, 1764620000.0393586, 48.256],
    ]


@pytest.mark.parametrize("column", columns(), ids=lambda c: f"{len(c)} values")
def test_a_column_of_numbers_reads_as_each_number_alone(column):
    assert number_texts(column) == [_number(value) for value in column]  # type: ignore[arg-type]


def scrape_of(ledger: Ledger, now: float) -> Scrape:
    return Scrape(ledger.view(now), Telemetry(), STATUS)


def test_label_texts_follow_label_changes_and_forgotten_nodes():
    clock = FakeClock(T0)
    export = dataclasses.replace(ExportSettings(), forget_after_seconds=600)
    ingestor = Ingestor(Ledger(export), metadata=metadata_for_tests(), clock=clock)
    ingestor.ingest([make_report("ip-10-0-1-17"), make_report("node-b", agent_id="b")])
    served = Exposition(version_="x")
    scrape = scrape_of(ingestor.ledger, clock.now)
    served.prepare(scrape)
    assert len(served.node_labels) == 2
    assert served.render(scrape) == Exposition(version_="x").render(scrape)

    # the same node under a new label set (RAPL now): a new text, the old one kept while
    # the old label set's counters are shown
    clock.now += 300
    ingestor.ingest([make_report("ip-10-0-1-17", 2, start=clock.now - 15,
                                 rapl={"package_joules": 900.0, "dram_joules": 100.0})])
    scrape = scrape_of(ingestor.ledger, clock.now)
    assert len(scrape.ledger.nodes) == 3  # the test needs a label change
    served.prepare(scrape)
    assert len(served.node_labels) == 3
    text = served.render(scrape)
    assert text == Exposition(version_="x").render(scrape)
    assert 'power_source="rapl"' in text

    # node-b silent past --forget-after: its label set is dropped
    clock.now += 400
    scrape = scrape_of(ingestor.ledger, clock.now)
    assert len(scrape.ledger.nodes) == 2
    served.prepare(scrape)
    assert len(served.node_labels) == 2
    text = served.render(scrape)
    assert 'node="node-b"' not in text
    assert text == Exposition(version_="x").render(scrape)


def test_a_render_without_prepare_formats_labels_and_keeps_nothing():
    ingestor = Ingestor(Ledger(), metadata=metadata_for_tests(), clock=FakeClock(T0))
    ingestor.ingest([make_report()])
    exposition = Exposition(version_="x")
    text = exposition.render(scrape_of(ingestor.ledger, T0))
    assert 'kubecarbon_node_power_watts{node="ip-10-0-1-17",region="us-east-1"' in text
    assert len(exposition.node_labels) == 0  # rendering only reads


async def test_a_child_render_reads_the_label_texts_the_parent_kept(aiohttp_client, clock,
                                                                    monkeypatch):
    """The texts are kept in the serving process before the fork: a child's would die with it."""
    client = await aiohttp_client(create_app(metadata=metadata_for_tests(), clock=clock,
                                             status_page=False, child_render_min_nodes=0))
    await client.post("/api/v1/reports", data=body_of(make_report()), headers=JSON)
    first = await client.get("/metrics")
    assert first.status == 200

    def unformattable(values: tuple[str, ...]) -> str:
        raise AssertionError(f"label set {values} formatted again")

    # the child inherits the patch: it renders only if it finds the texts already kept
    monkeypatch.setattr(exposition_module, "_series_labels", unformattable)
    await client.post("/api/v1/reports", data=body_of(make_report(seq=2, start=T0)),
                      headers=JSON)
    second = await client.get("/metrics")
    assert second.status == 200
    assert 'kubecarbon_node_power_watts{node="ip-10-0-1-17"' in await second.text()
