"""Fixtures of the scale, fault and fuzz tests: real collector and Prometheus processes."""

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

# tests import the shared helpers of this directory as `scale_testkit`
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_testkit import CollectorProcess, PrometheusProcess


@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[Callable[..., CollectorProcess]]:
    """Start collector subprocesses; every one is stopped after the test."""
    started: list[CollectorProcess] = []

    def start(name: str, args: Sequence[str] = (),
              config: Mapping[str, Any] | None = None) -> CollectorProcess:
        collector = CollectorProcess(tmp_path / name, args, config)
        started.append(collector)
        return collector.start()

    yield start
    for collector in started:
        collector.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., PrometheusProcess]]:
    """Start real Prometheus servers scraping the given jobs; stopped after the test."""
    started: list[PrometheusProcess] = []

    def start(jobs: Mapping[str, Sequence[str]],
              scrape_interval_seconds: float = 1.0) -> PrometheusProcess:
        server = PrometheusProcess(tmp_path / f"prometheus-{len(started)}", jobs,
                                   scrape_interval_seconds)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
