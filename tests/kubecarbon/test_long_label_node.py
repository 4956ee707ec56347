"""A node whose name has a part longer than 63 characters is a valid Kubernetes node: the
real agent's reports about it reach the real collector app and count.

Before the agent and the collector shared one node-name rule (kubecarbon.wire), the
collector refused such a name with 422 while the agent accepted it, so the agent dropped
every report and the node was invisible.
"""

from __future__ import annotations

import random
import shutil

import aiohttp
from agent_testkit import FIXTURES, FakeClock
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from agent.runtime import Agent
from agent.settings import AgentSettings, DeliverySettings, ServerSettings, SourceSettings
from collector.app import create_app
from collector.settings import Settings
from kubecarbon import wire

NODE = "worker-" + "x" * 60 + ".example.internal"  # its first part has 67 characters


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == name}


async def test_reports_of_a_node_with_a_long_name_part_are_counted(aiohttp_server, tmp_path):
    assert wire.is_node_name(NODE) and len(NODE.split(".")[0]) > 63
    collector = await aiohttp_server(
        create_app(Settings(kubernetes="off"), registry=CollectorRegistry(), status_page=False),
        host="127.0.0.1",
    )
    host = tmp_path / "node"
    shutil.copytree(FIXTURES / "v2-systemd-containerd", host, symlinks=True)
    clock = FakeClock()
    agent = Agent(
        AgentSettings(
            node_name=NODE,
            sources=SourceSettings(host_proc=host / "proc", host_sys=host / "sys"),
            delivery=DeliverySettings(collector_url=f"http://127.0.0.1:{collector.port}"),
            server=ServerSettings(listen_host="127.0.0.1", listen_port=0),
        ),
        registry=CollectorRegistry(), clock=clock, rng=random.Random(1),
    )
    assert agent.sampler.sample() is None  # the baseline
    for _ in range(2):
        clock.advance(15.0)
        window = agent.sampler.sample()
        assert window is not None and window["node"] == NODE
        agent.publisher.publish(window)
    try:
        assert await agent.publisher.drain(timeout_seconds=30) == 0
    finally:
        await agent.publisher.close()

    registry = agent.metrics.registry
    assert registry.get_sample_value("kubecarbon_agent_reports_sent_total") == 2
    assert registry.get_sample_value("kubecarbon_agent_reports_failed_total") == 0
    metrics_url = f"http://127.0.0.1:{collector.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
        text = await response.text()
    assert samples(text, "kubecarbon_collector_reports_total")[(("result", "accepted"),)] == 2
    energy = {dict(labels)["node"]: value for labels, value in
              samples(text, "kubecarbon_node_energy_joules_total").items()}
    assert list(energy) == [NODE] and energy[NODE] > 0
