"""The ledger: reading never changes it; expiry is an explicit step whose counts are exact."""

from __future__ import annotations

import dataclasses

import pytest
from collector_testkit import T0, FakeClock, make_report, metadata_for_tests

from collector.app import LEDGER_KEY, create_app
from collector.ingest import Ingestor
from collector.ledger import Ledger
from collector.settings import ExportSettings, Settings

EXPORT = dataclasses.replace(ExportSettings(), stale_after_seconds=60, forget_after_seconds=600)


def fed(clock: FakeClock) -> Ingestor:
    """Node a reported at T0, node b 300 s later; the clock then stands at T0 + 300."""
    ingestor = Ingestor(Ledger(EXPORT), metadata=metadata_for_tests(), clock=clock)
    ingestor.ingest([make_report("node-a", agent_id="a")])
    clock.now = T0 + 300
    ingestor.ingest([make_report("node-b", agent_id="b", start=T0 + 285)])
    return ingestor


def test_a_view_past_forget_after_shows_the_expiry_without_making_it():
    clock = FakeClock(T0)
    ledger = fed(clock).ledger
    before = (ledger.version, dict(ledger.nodes), dict(ledger.latest), dict(ledger.forgotten_nodes))
    view = ledger.view(T0 + 601)
    assert {labels[0] for labels in view.nodes} == {"node-b"}
    assert [window.labels[0] for window in view.windows] == ["node-b"]
    assert view.forgotten_nodes == {"silent": 1, "cap": 0}
    # the ledger itself is as it was
    assert (ledger.version, ledger.nodes, ledger.latest, ledger.forgotten_nodes) == before
    assert ledger.expire(T0 + 601) == 1
    after = ledger.view(T0 + 601)
    assert (after.nodes, after.windows, after.forgotten_nodes) == (
        view.nodes, view.windows, view.forgotten_nodes)
    assert ledger.expire(T0 + 601) == 0  # counted once


def test_ingest_expires_before_it_books():
    clock = FakeClock(T0)
    ingestor = fed(clock)
    clock.now = T0 + 601
    ingestor.ingest([make_report("node-b", seq=2, agent_id="b", start=T0 + 586)])
    assert {labels[0] for labels in ingestor.ledger.nodes} == {"node-b"}
    assert ingestor.ledger.forgotten_nodes == {"silent": 1, "cap": 0}


def test_a_view_is_a_copy_that_later_booking_does_not_change():
    clock = FakeClock(T0)
    ingestor = fed(clock)
    view = ingestor.ledger.view(clock.now)
    energy = {labels: c.energy_joules for labels, c in view.nodes.items()}
    namespaces = view.namespaces
    ingestor.ingest([make_report("node-a", seq=2, agent_id="a", start=T0 + 285),
                     make_report("node-c", agent_id="c", start=T0 + 285)])
    assert {labels: c.energy_joules for labels, c in view.nodes.items()} == energy
    assert view.namespaces == namespaces
    assert view.reports_accepted == 2 and ingestor.ledger.reports_accepted == 4


def test_a_document_loads_only_into_a_new_ledger():
    clock = FakeClock(T0)
    ledger = fed(clock).ledger
    document = ledger.to_document()
    fresh = Ledger(EXPORT)
    fresh.load_document(document)
    assert fresh.to_document() == document
    with pytest.raises(RuntimeError):
        ledger.load_document(document)


async def test_reading_endpoints_leave_the_ledger_as_it_was(aiohttp_client, clock):
    app = create_app(Settings(export=EXPORT), metadata=metadata_for_tests(), clock=clock)
    client = await aiohttp_client(app)
    response = await client.post("/api/v1/reports", json={"reports": [make_report()]})
    assert response.status == 200
    clock.now += 601  # past --forget-after: only a booking or expire() may drop the node
    ledger = app[LEDGER_KEY]
    version = ledger.version
    for path in ("/metrics", "/readyz", "/api/v1/summary", "/"):
        assert (await client.get(path)).status == 200
    assert ledger.version == version
    assert len(ledger.nodes) == 1 and ledger.forgotten_nodes["silent"] == 0
