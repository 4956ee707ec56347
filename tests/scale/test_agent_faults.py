"""Faults on the agent's side, with the real agent (sampler over fixture /proc and /sys trees,
publisher with its buffer) delivering over real HTTP to the real collector app.

The tests drive the agent's sampler with a stepped clock instead of its timer loop, so
each window is exactly 15 s of the fixture node's CPU counters, and run its publisher
as the agent does (`Publisher.run`, retrying with backoff). What the collector counted
is compared with a control ledger that applied exactly the reports that should
have arrived.
"""

import asyncio
import contextlib
import random
import socket
import time

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from scale_testkit import (
    REPORTS_PATH,
    FixtureHost,
    RoundRobinProxy,
    SteppedClock,
    exposition_samples,
    fleet_totals,
    total,
    until,
)

from agent.runtime import Agent
from agent.settings import AgentSettings, DeliverySettings, ServerSettings, SourceSettings
from collector.app import create_app
from collector.exposition import Exposition, Scrape
from collector.ingest import Ingestor
from collector.ledger import Ledger
from collector.metadata import StaticMetadataProvider
from collector.settings import Settings
from collector.telemetry import Telemetry

NODE = "worker-7.example.internal"
WINDOW_SECONDS = 15.0
JSON = {"Content-Type": "application/json"}


class DrivenAgent:
    """The real agent on a fixture node, sampled window by window on a stepped clock."""

    def __init__(self, host: FixtureHost, clock: SteppedClock, url: str,
                 buffer_max_reports: int = 5760) -> None:
        self.host, self.clock = host, clock
        settings = AgentSettings(
            node_name=NODE,
            sources=SourceSettings(host_proc=host.proc, host_sys=host.sys),
            delivery=DeliverySettings(collector_url=url, buffer_max_reports=buffer_max_reports,
                                      backoff_initial_seconds=0.02, backoff_max_seconds=0.1,
                                      request_timeout_seconds=5.0),
            server=ServerSettings(listen_host="127.0.0.1", listen_port=0),
        )
        self.agent = Agent(settings, registry=CollectorRegistry(), clock=clock,
                           rng=random.Random(7))
        self.publisher = self.agent.publisher
        self.published: list[dict] = []  # as on the wire, with agent_id and seq
        assert self.agent.sampler.sample() is None  # the first sample is the baseline

    def window(self, busy_ratio: float, seconds: float = WINDOW_SECONDS) -> dict:
        """Let the node run for a window, sample it, hand the report to the publisher."""
        self.clock.advance(seconds)
        self.host.run(seconds, busy_ratio)
        report = self.agent.sampler.sample()
        assert report is not None
        self.publisher.publish(report)
        # DESIGN: seq is +1 per report of an agent_id, from 1
        wire = {**report, "agent_id": self.publisher.agent_id, "seq": len(self.published) + 1}
        self.published.append(wire)
        return wire

    def counter(self, name: str) -> float:
        return total(generate_latest(self.agent.metrics.registry).decode(), name)


def control_totals(reports: list[dict]) -> dict[str, float]:
    """What a collector that applied exactly these reports shows."""
    ingestor = Ingestor(Ledger())
    ingestor.ingest(reports)
    scrape = Scrape(ingestor.ledger.view(time.time()), Telemetry(),
                    StaticMetadataProvider().status())
    return fleet_totals(Exposition().render(scrape))


async def scrape(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as response:
        assert response.status == 200
        return await response.text()


@pytest.fixture
async def collector_url(aiohttp_server) -> str:
    app = create_app(Settings(kubernetes="off"), registry=CollectorRegistry())
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
def refused_url():
    """A loopback URL that refuses connections: a port held bound but never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_outage_longer_than_the_buffer_drops_exactly_what_it_counts(
        aiohttp_server, collector_url, refused_url, tmp_path):
    buffer_max_reports, windows = 5, 12
    host, clock = FixtureHost(tmp_path / "node"), SteppedClock(time.time())
    proxy = RoundRobinProxy([refused_url])  # the collector is unreachable
    front = await aiohttp_server(proxy.app(), host="127.0.0.1")
    agent = DrivenAgent(host, clock, f"http://127.0.0.1:{front.port}", buffer_max_reports)
    delivery = asyncio.create_task(agent.publisher.run())
    try:
        for i in range(windows):
            agent.window(busy_ratio=0.2 + 0.05 * i)
            await asyncio.sleep(0.02)  # the publisher tries, fails and backs off meanwhile
        await until(lambda: proxy.unreachable >= 3, what="delivery attempts during the outage")
        assert agent.counter("kubecarbon_agent_reports_sent_total") == 0
        proxy.upstreams[0] = collector_url  # the collector is back
        await until(lambda: len(agent.publisher.buffer) == 0, what="replay of the buffer")
    finally:
        delivery.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivery
        await agent.publisher.close()

    dropped = agent.counter("kubecarbon_agent_reports_dropped_total")
    assert dropped == windows - buffer_max_reports
    arrived = [seq for agent_id, seq in proxy.delivered if agent_id == agent.publisher.agent_id]
    assert len(proxy.delivered) == len(arrived) == buffer_max_reports
    # every report either arrived once or was dropped and counted: nothing else lost
    assert arrived == sorted(set(arrived)) and set(arrived) <= set(range(1, windows + 1))
    assert len(arrived) + dropped == windows
    assert agent.counter("kubecarbon_agent_reports_sent_total") == len(arrived)
    assert agent.counter("kubecarbon_agent_reports_failed_total") == 0

    async with aiohttp.ClientSession() as session:
        text = await scrape(session, collector_url)
    assert total(text, "kubecarbon_collector_reports_total", result="accepted") == len(arrived)
    expected = control_totals([r for r in agent.published if r["seq"] in arrived])
    assert fleet_totals(text) == pytest.approx(expected, rel=1e-9)


async def test_restarted_agent_gets_a_new_id_and_nothing_counts_twice(
        aiohttp_server, collector_url, tmp_path):
    host, clock = FixtureHost(tmp_path / "node"), SteppedClock(time.time())
    proxy = RoundRobinProxy([collector_url])
    front = await aiohttp_server(proxy.app(), host="127.0.0.1")
    url = f"http://127.0.0.1:{front.port}"

    first = DrivenAgent(host, clock, url)
    before = [first.window(0.3 + 0.1 * i) for i in range(3)]
    assert await first.publisher.drain(10) == 0
    await first.publisher.close()
    clock.advance(8.0)  # the pod restarts; the node keeps working
    host.run(8.0, 0.5)
    second = DrivenAgent(host, clock, url)
    after = [second.window(0.6 + 0.1 * i) for i in range(3)]
    assert await second.publisher.drain(10) == 0

    assert first.publisher.agent_id != second.publisher.agent_id
    assert proxy.delivered == ([(first.publisher.agent_id, s) for s in (1, 2, 3)]
                               + [(second.publisher.agent_id, s) for s in (1, 2, 3)])
    # the new process starts a new window: none overlaps the old process's windows
    assert after[0]["start"] >= before[-1]["end"]

    async with aiohttp.ClientSession() as session:
        text = await scrape(session, collector_url)
        # a late retry of the old process's last report still counts once
        async with session.post(collector_url + REPORTS_PATH, headers=JSON,
                                data=orjson.dumps({"reports": [before[-1]]})) as response:
            assert await response.json() == {"accepted": 0, "duplicates": 1}
        again = await scrape(session, collector_url)
    await second.publisher.close()
    assert total(text, "kubecarbon_collector_reports_total", result="accepted") == 6
    assert total(text, "kubecarbon_collector_reports_total", result="duplicate") == 0
    assert fleet_totals(text) == pytest.approx(control_totals(before + after), rel=1e-9)
    assert fleet_totals(again) == fleet_totals(text)


@pytest.mark.parametrize("skew_seconds", [-600.0, 420.0])
async def test_clock_skew_between_agent_and_collector(collector_url, tmp_path, skew_seconds):
    """Windows stamped minutes off the collector's clock are accepted and applied once."""
    host = FixtureHost(tmp_path / "node")
    clock = SteppedClock(time.time() + skew_seconds)
    agent = DrivenAgent(host, clock, collector_url)
    reports = [agent.window(0.25 + 0.15 * i) for i in range(4)]
    assert await agent.publisher.drain(10) == 0
    await agent.publisher.close()
    assert abs(reports[-1]["end"] - time.time() - skew_seconds) < 4 * WINDOW_SECONDS + 5

    async with aiohttp.ClientSession() as session:
        text = await scrape(session, collector_url)
        # the whole backlog replayed (a lost acknowledgement): all duplicates
        async with session.post(collector_url + REPORTS_PATH, headers=JSON,
                                data=orjson.dumps({"reports": reports})) as response:
            assert await response.json() == {"accepted": 0, "duplicates": len(reports)}
        again = await scrape(session, collector_url)

    assert total(text, "kubecarbon_collector_reports_total", result="accepted") == len(reports)
    assert fleet_totals(text) == pytest.approx(control_totals(reports), rel=1e-9)
    assert fleet_totals(again) == fleet_totals(text)
    # liveness is judged by the collector's clock, so the skewed node is live, not stale
    assert total(text, "kubecarbon_collector_live_nodes") == 1
    assert total(text, "kubecarbon_collector_stale_nodes") == 0
    last_seen = [v for (name, labels), v in exposition_samples(text).items()
                 if name == "kubecarbon_node_last_report_timestamp_seconds"]
    assert len(last_seen) == 1 and abs(last_seen[0] - time.time()) < 60
