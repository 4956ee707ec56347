"""Delivery over real HTTP: buffer bounds, outages, 4xx, retries, token and gzip."""

import asyncio
import contextlib
import logging
import random

import pytest
from agent_testkit import Sink, until
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agent.metrics import AgentMetrics
from agent.publisher import PendingReport, Publisher, ReportBuffer, batch_body
from agent.settings import DeliverySettings


def window(index: int, node: str = "ip-10-0-1-17") -> dict:
    return {"schema": 1, "node": node, "start": 100.0 + 15 * index, "end": 115.0 + 15 * index}


def make_publisher(url: str, registry: CollectorRegistry, **overrides) -> Publisher:
    fast_retries = {
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "request_timeout_seconds": 5.0,
    }
    settings = DeliverySettings(collector_url=url, **{**fast_retries, **overrides})
    return Publisher(settings, AgentMetrics(registry), agent_id="a1", rng=random.Random(7))


def metric(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


@pytest.fixture
def sink():
    return Sink()


async def test_outage_then_recovery_delivers_every_seq_once_in_order(
    sink, aiohttp_server, unused_tcp_port
):
    port = unused_tcp_port
    registry = CollectorRegistry()
    publisher = make_publisher(f"http://127.0.0.1:{port}", registry)
    sender = asyncio.create_task(publisher.run())
    for index in range(3):  # nothing listens yet: connections are refused
        publisher.publish(window(index))
    await until(lambda: publisher.backoff.attempt >= 3)  # refused, backed off, refused again
    assert metric(registry, "kubecarbon_agent_reports_buffered") == 3
    sink.mode = "unavailable"
    server = await aiohttp_server(sink.app(), port=port)
    for index in range(3, 6):
        publisher.publish(window(index))
    await until(lambda: sink.requests >= 3)
    assert not sink.accepted
    sink.mode = "accept"
    await until(lambda: len(publisher.buffer) == 0)
    publisher.begin_draining()
    await sender
    assert [report["seq"] for report in sink.accepted] == [1, 2, 3, 4, 5, 6]
    assert sink.batches == [[1, 2, 3, 4, 5, 6]]  # the backlog is replayed in one batch
    assert {report["agent_id"] for report in sink.accepted} == {"a1"}
    assert metric(registry, "kubecarbon_agent_reports_sent_total") == 6
    assert metric(registry, "kubecarbon_agent_reports_buffered") == 0
    assert metric(registry, "kubecarbon_agent_reports_dropped_total") == 0
    await publisher.close()
    await server.close()


async def test_full_buffer_drops_the_oldest_and_counts_exactly(sink, aiohttp_server):
    server = await aiohttp_server(sink.app())
    registry = CollectorRegistry()
    publisher = make_publisher(str(server.make_url("/")), registry, buffer_max_reports=5)
    for index in range(12):
        publisher.publish(window(index))
    assert metric(registry, "kubecarbon_agent_reports_dropped_total") == 7
    assert metric(registry, "kubecarbon_agent_reports_buffered") == 5
    assert await publisher.drain(10) == 0
    assert [report["seq"] for report in sink.accepted] == [8, 9, 10, 11, 12]
    assert metric(registry, "kubecarbon_agent_reports_sent_total") == 5
    await publisher.close()


def test_byte_bound_drops_the_oldest_too():
    buffer = ReportBuffer(max_reports=100, max_bytes=250)
    dropped = [buffer.add(PendingReport(seq, b"x" * 100)) for seq in range(1, 6)]
    assert dropped == [0, 0, 1, 1, 1]
    assert (len(buffer), buffer.total_bytes) == (2, 200)
    assert [item.seq for item in buffer.take_batch(10, 10_000)] == [4, 5]


def test_reports_in_flight_are_not_dropped_and_go_back_in_front():
    buffer = ReportBuffer(max_reports=3, max_bytes=10_000)
    for seq in (1, 2):
        buffer.add(PendingReport(seq, b"{}"))
    assert [item.seq for item in buffer.take_batch(10, 10_000)] == [1, 2]
    assert buffer.add(PendingReport(3, b"{}")) == 0
    assert buffer.add(PendingReport(4, b"{}")) == 1  # drops 3, the oldest not in flight
    assert buffer.give_back() == 0
    assert [item.seq for item in buffer.take_batch(10, 10_000)] == [1, 2, 4]


def test_batches_respect_the_count_and_body_limits():
    buffer = ReportBuffer(max_reports=1000, max_bytes=10**6)
    for seq in range(1, 11):
        buffer.add(PendingReport(seq, b"y" * 100))
    # prefix + suffix are 14 bytes, each report 100 plus a comma
    assert len(buffer.take_batch(500, 14 + 100 * 3 + 2)) == 3
    buffer.give_back()
    batch = buffer.take_batch(4, 10**6)
    assert len(batch) == 4
    assert batch_body(batch) == b'{"reports":[' + b",".join([b"y" * 100] * 4) + b"]}"


async def test_a_rejected_report_is_dropped_alone_and_counted(sink, aiohttp_server, caplog):
    server = await aiohttp_server(sink.app())
    registry = CollectorRegistry()
    publisher = make_publisher(str(server.make_url("/")), registry)
    sink.reject_node = "bad-node"
    for index in range(7):
        publisher.publish(window(index, node="bad-node" if index == 4 else "ip-10-0-1-17"))
    with caplog.at_level(logging.ERROR, logger="agent.publisher"):
        assert await publisher.drain(10) == 0
    assert [report["seq"] for report in sink.accepted] == [1, 2, 3, 4, 6, 7]
    assert metric(registry, "kubecarbon_agent_reports_failed_total") == 1
    assert metric(registry, "kubecarbon_agent_reports_sent_total") == 6
    assert "HTTP 400: reports[0].node: 'bad-node' is rejected" in caplog.text
    await publisher.close()


@pytest.mark.parametrize("refusal", [401, 403])
async def test_a_refused_token_keeps_the_reports_until_the_rotated_token_delivers_them(
    sink, aiohttp_server, tmp_path, caplog, refusal
):
    # Mid-rotation the agent may hold the old token while the collector has the new one
    # (or the other way round): nothing may be lost or sent twice meanwhile.
    server = await aiohttp_server(sink.app())
    token = tmp_path / "token"
    token.write_text("old-token\n")
    sink.token, sink.refusal = "new-token", refusal
    registry = CollectorRegistry()
    publisher = make_publisher(str(server.make_url("/")), registry, token_file=token)
    for index in range(3):
        publisher.publish(window(index))
    delivery = asyncio.create_task(publisher.run())
    await until(lambda: sink.requests >= 3)
    assert sink.accepted == []
    assert metric(registry, "kubecarbon_agent_reports_failed_total") == 0
    assert len(publisher.buffer) == 3
    token.write_text("new-token\n")
    await until(lambda: len(sink.accepted) == 3)
    delivery.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await delivery
    assert [report["seq"] for report in sink.accepted] == [1, 2, 3]
    assert metric(registry, "kubecarbon_agent_reports_sent_total") == 3
    assert metric(registry, "kubecarbon_agent_reports_failed_total") == 0
    assert f"HTTP {refusal}: wrong bearer token; the token is read again" in caplog.text
    await publisher.close()


async def test_a_collector_that_refuses_any_token_loses_nothing(sink, aiohttp_server):
    server = await aiohttp_server(sink.app())
    registry = CollectorRegistry()
    publisher = make_publisher(str(server.make_url("/")), registry)
    sink.mode = "unauthorized"
    for index in range(3):
        publisher.publish(window(index))
    assert await publisher.drain(0.5) == 3
    assert sink.requests > 1
    assert metric(registry, "kubecarbon_agent_reports_failed_total") == 0
    await publisher.close()


async def test_a_request_that_times_out_is_retried(sink, aiohttp_server):
    server = await aiohttp_server(sink.app())
    registry = CollectorRegistry()
    publisher = make_publisher(str(server.make_url("/")), registry, request_timeout_seconds=0.2)
    sink.mode = "hang"
    publisher.publish(window(0))
    assert await publisher.drain(0.5) == 1
    assert sink.hanging >= 1
    sink.mode = "accept"
    sink.release.set()
    assert await publisher.drain(10) == 0
    assert [report["seq"] for report in sink.accepted] == [1]
    await publisher.close()


async def test_sampling_never_waits_for_a_hanging_collector(sink, aiohttp_server):
    server = await aiohttp_server(sink.app())
    registry = CollectorRegistry()
    publisher = make_publisher(str(server.make_url("/")), registry, request_timeout_seconds=60)
    sink.mode = "hang"
    sender = asyncio.create_task(publisher.run())
    publisher.publish(window(0))
    await until(lambda: sink.hanging == 1)
    for index in range(1, 50):  # publish() returns at once while the request hangs
        publisher.publish(window(index))
    assert sink.hanging == 1 and not sender.done()
    assert metric(registry, "kubecarbon_agent_reports_buffered") == 50
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    assert len(publisher.buffer) == 50  # the cancelled request's batch went back
    sink.release.set()
    await publisher.close()


async def test_token_is_sent_and_reread_and_gzip_bodies_decode(sink, aiohttp_server, tmp_path):
    server = await aiohttp_server(sink.app())
    token = tmp_path / "token"
    token.write_text("first-token\n")
    registry = CollectorRegistry()
    publisher = make_publisher(str(server.make_url("/")), registry, token_file=token, gzip=True)
    publisher.publish(window(0))
    assert await publisher.drain(10) == 0
    token.write_text("rotated-token\n")
    publisher.publish(window(1))
    assert await publisher.drain(10) == 0
    assert [h["Authorization"] for h in sink.headers] == [
        "Bearer first-token",
        "Bearer rotated-token",
    ]
    assert {h["Content-Encoding"] for h in sink.headers} == {"gzip"}
    assert {h["Content-Type"] for h in sink.headers} == {"application/json"}
    assert [report["seq"] for report in sink.accepted] == [1, 2]
    await publisher.close()


def test_backoff_grows_exponentially_to_its_cap_with_full_jitter():
    class Highest(random.Random):
        def uniform(self, a, b):
            self.calls.append((a, b))
            return b

    rng = Highest()
    rng.calls = []
    settings = DeliverySettings(backoff_initial_seconds=1.0, backoff_max_seconds=60.0)
    publisher = Publisher(settings, AgentMetrics(CollectorRegistry()), rng=rng)
    waits = [publisher.backoff.next_delay_seconds() for _ in range(9)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert {low for low, _ in rng.calls} == {0}  # full jitter: anywhere from zero


def test_a_report_larger_than_the_body_limit_is_failed_at_once():
    registry = CollectorRegistry()
    settings = DeliverySettings(batch_max_bytes=1024)
    publisher = Publisher(settings, AgentMetrics(registry))
    publisher.publish({**window(0), "pods": [{"uid": "x" * 36}] * 40})
    assert len(publisher.buffer) == 0
    assert registry.get_sample_value("kubecarbon_agent_reports_failed_total") == 1


def test_agent_id_is_random_per_start_and_seq_counts_from_one():
    first, second = (Publisher(DeliverySettings(), AgentMetrics(CollectorRegistry())) for _ in "12")
    assert first.agent_id != second.agent_id and len(first.agent_id) == 32
    for index in range(3):
        first.publish(window(index))
    assert [item.seq for item in first.buffer.take_batch(10, 10**6)] == [1, 2, 3]


buffer_operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "take", "settle", "give_back"]),
        st.integers(min_value=1, max_value=300),  # body bytes, or batch size
    ),
    max_size=80,
)


@settings(max_examples=300)
@given(buffer_operations, st.integers(1, 12), st.integers(200, 3000))
def test_every_report_is_sent_failed_dropped_or_still_buffered(operations, max_reports, max_bytes):
    buffer = ReportBuffer(max_reports=max_reports, max_bytes=max_bytes)
    added = settled = dropped = 0
    seen_in_flight: list[int] = []
    for operation, size in operations:
        if operation == "add":
            added += 1
            dropped += buffer.add(PendingReport(added, b"r" * size))
        elif operation == "take" and not buffer._in_flight and buffer.queued:
            seen_in_flight = [item.seq for item in buffer.take_batch(size, 10_000)]
            assert seen_in_flight == sorted(seen_in_flight)
        elif operation == "settle" and buffer._in_flight:
            settled += len(buffer._in_flight)
            buffer.settle()
        elif operation == "give_back":
            dropped += buffer.give_back()
        assert added == settled + dropped + len(buffer)
        queued = [item.seq for item in buffer._queue]
        assert queued == sorted(queued)  # oldest first, always
        if buffer.queued:  # bounds hold whenever something could be dropped
            assert len(buffer) <= max_reports and buffer.total_bytes <= max_bytes


async def test_an_empty_or_missing_token_waits_instead_of_being_refused(
    sink, aiohttp_server, tmp_path
):
    server = await aiohttp_server(sink.app())
    token = tmp_path / "token"
    token.write_text("")  # a rotation caught halfway
    publisher = make_publisher(str(server.make_url("/")), CollectorRegistry(), token_file=token)
    publisher.publish(window(0))
    assert await publisher.drain(0.2) == 1
    token.unlink()
    assert await publisher.drain(0.2) == 1
    assert sink.requests == 0
    token.write_text("fresh\n")
    assert await publisher.drain(10) == 0
    assert [h["Authorization"] for h in sink.headers] == ["Bearer fresh"]
    await publisher.close()


async def test_a_shutdown_cuts_a_long_backoff_short(sink, aiohttp_server, unused_tcp_port):
    registry = CollectorRegistry()
    publisher = make_publisher(
        f"http://127.0.0.1:{unused_tcp_port}",
        registry,
        backoff_initial_seconds=600.0,
        backoff_max_seconds=600.0,
    )
    sender = asyncio.create_task(publisher.run())
    publisher.publish(window(0))
    # refused; the seeded jitter (Random(7)) now waits 194 s of the 600 s ceiling
    await until(lambda: publisher.backoff.attempt == 1)
    server = await aiohttp_server(sink.app(), port=unused_tcp_port)
    publisher.begin_draining()
    await asyncio.wait_for(sender, 30)  # the guard only stops a broken test from hanging
    assert [report["seq"] for report in sink.accepted] == [1]
    await publisher.close()
    await server.close()
