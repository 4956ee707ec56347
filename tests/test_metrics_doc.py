"""docs/metrics.md is generated from both parts' metric definitions and matches what they serve."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import agent.metrics
import collector.metrics

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def expected_doc() -> str:
    return collector.metrics.metrics_doc() + agent.metrics.metrics_doc()


def test_metrics_doc_is_generated_from_the_code():
    assert DOC.read_text() == expected_doc(), "regenerate with: make docs"


def test_agent_section_agrees_with_the_agents_exposition():
    metrics = agent.metrics.AgentMetrics()
    for source in ("cpu", "rapl"):
        metrics.source_success.labels(source=source).set(1)
        metrics.source_duration_seconds.labels(source=source).set(0.001)
    exposed = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        if family.name.endswith("_created"):
            continue  # prometheus_client's start time of each counter, named in the doc's intro
        name = family.name + ("_total" if family.type == "counter" else "")
        exposed[name] = (family.type, tuple(family.samples[0].labels))
    section = DOC.read_text().split("\n## Agent\n")[1]
    rows = re.findall(r"^\| `(kubecarbon_\w+)` \| (\w+) \| [^|]+ \| ([^|]+) \|", section,
                      flags=re.MULTILINE)
    documented = {name: (kind, tuple(re.findall(r"`(\w+)`", labels))) for name, kind, labels
                  in rows}
    assert documented == exposed
    # DESIGN's agent metric names, all present
    for name in ("agent_source_success", "agent_source_duration_seconds",
                 "agent_reports_sent_total", "agent_reports_failed_total",
                 "agent_reports_buffered", "agent_reports_dropped_total", "build_info"):
        assert f"kubecarbon_{name}" in documented
