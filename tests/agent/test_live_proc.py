"""The agent on this machine's own /proc agrees with an independent reading of /proc/stat."""

import os
import time

import psutil
from prometheus_client import CollectorRegistry

from agent.metrics import AgentMetrics
from agent.runtime import host_sources
from agent.sampler import Sampler
from agent.settings import SourceSettings


def busy_and_total(times) -> tuple[float, float]:
    # steal is not busy (docs/agent.md), but it is CPU time the window holds
    busy = times.user + times.nice + times.system + times.irq + times.softirq
    return busy, busy + times.idle + times.iowait + times.steal


def test_node_utilisation_matches_psutil_over_the_same_window():
    sampler = Sampler("live", host_sources(SourceSettings()), AgentMetrics(CollectorRegistry()))
    before = busy_and_total(psutil.cpu_times())
    sampler.sample()
    deadline = time.perf_counter() + 2.0
    while time.perf_counter() < deadline:  # keep one CPU busy so the ratio is not ~0
        pass
    after = busy_and_total(psutil.cpu_times())
    report = sampler.sample()
    cpu = report["cpu"]
    agent_utilisation = cpu["busy_seconds"] / (
        cpu["logical_cpus"] * (report["end"] - report["start"])
    )
    psutil_utilisation = (after[0] - before[0]) / (after[1] - before[1])
    assert cpu["logical_cpus"] == os.cpu_count()
    assert agent_utilisation >= 0.9 / cpu["logical_cpus"]  # our own busy loop is in there
    # the two readings are microseconds apart at each end; a few percent covers a
    # preemption between them on a loaded machine
    assert abs(agent_utilisation - psutil_utilisation) <= 0.05
    assert report["memory"]["total_bytes"] == psutil.virtual_memory().total
