"""The exposition against its documentation, a golden file and promtool.

Regenerate the golden file and the docs after an intended change with

    KUBECARBON_REGENERATE=1 .venv/bin/python -m pytest tests/collector/test_exposition.py
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from collector_testkit import T0, FakeClock, make_report
from prometheus_client.parser import text_string_to_metric_families

from collector.capacity import PodUsageTracker
from collector.capacity_exposition import CapacityInputs
from collector.exposition import Exposition, Scrape
from collector.ingest import Ingestor
from collector.ledger import Ledger
from collector.metadata import NodeInfo, PodInfo, ProviderStatus, StaticMetadataProvider
from collector.metrics import CATALOGUE, metrics_doc
from collector.profiles import parse_profile_document
from collector.rightsizing import Recommendation
from collector.settings import ExportSettings
from collector.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "metrics.txt"
DOC = ROOT / "docs" / "metrics.md"
REGENERATE = os.environ.get("KUBECARBON_REGENERATE") == "1"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def golden_state() -> tuple[Ingestor, Telemetry]:
    """A fixed fleet: AWS and GCP VMs, a bare-metal node with RAPL, a config-file bare-metal
    node, an unknown node, one node gone stale; pods in two namespaces and one unknown."""
    clock = FakeClock(T0)
    metadata = StaticMetadataProvider(
        nodes={
            "aws-1": NodeInfo("aws-1", provider="aws", instance_type="m5.4xlarge",
                              region="us-east-1", cpu_allocatable=15.89,
                              memory_allocatable_bytes=60 * 2**30),
            "gcp-1": NodeInfo("gcp-1", labels={
                "node.kubernetes.io/instance-type": "n2-standard-16",
                "topology.kubernetes.io/region": "europe-west1"}, provider="gcp"),
            "metal-1": NodeInfo("metal-1", provider="baremetal", instance_type="r740",
                                region="china-east"),
        },
        pods={
            "p1": PodInfo("p1", "payments", "ledger-5d8-x1", "Deployment", "ledger", "aws-1",
                          4.0, 2**30),
            "p2": PodInfo("p2", "payments", "ledger-5d8-x2", "Deployment", "ledger", "aws-1",
                          4.0, 2**30),
            "p3": PodInfo("p3", "risk", "scoring-0", "StatefulSet", "scoring", "gcp-1", 1.0),
            "p4": PodInfo("p4", "risk", "nightly-29312-abc", "CronJob", "nightly", "metal-1"),
            "p5": PodInfo("p5", "risk", "nightly-29311-abc", "CronJob", "nightly", "metal-1",
                          2.0, holds_requests=False),  # finished: frees its requests
        },
    )
    profiles = parse_profile_document({
        "profiles": [{"match": {"node": "rack-*"}, "provider": "baremetal",
                      "instance_type": "2x-xeon-48t", "region": "china-north", "pue": 1.4,
                      "power_curve": {"name": "2x-xeon-48t", "logical_cpus": 48,
                                      "watts": [60, 90, 105, 120, 135, 150, 168, 186, 205,
                                                226, 250]}}],
    })
    ingestor = Ingestor(
        Ledger(dataclasses.replace(ExportSettings(), per_pod_series=True)),
        profiles=profiles, metadata=metadata, clock=clock, pod_usage=PodUsageTracker(),
    )
    pods = [{"uid": "p1", "cpu_seconds": 30.0, "containers": 2},
            {"uid": "p2", "cpu_seconds": 20.0, "containers": 2},
            {"uid": "p3", "cpu_seconds": 40.0, "containers": 1},
            {"uid": "p4", "cpu_seconds": 5.0, "containers": 1},
            {"uid": "ghost", "cpu_seconds": 1.0, "containers": 1}]
    clock.now = T0 - 400  # this node stops reporting: stale at T0
    ingestor.ingest([make_report("old-1", 1, agent_id="old", start=T0 - 415, busy_seconds=30.0)])
    clock.now = T0
    ingestor.ingest([
        make_report("aws-1", 1, agent_id="a1", busy_seconds=120.0, pods=pods[:2]),
        make_report("gcp-1", 1, agent_id="g1", busy_seconds=60.0, pods=pods[2:3]),
        make_report("metal-1", 1, agent_id="m1", logical_cpus=112, busy_seconds=800.0,
                    memory_total_bytes=384 * 2**30, pods=pods[3:],
                    rapl={"package_joules": 3000.0, "dram_joules": 400.0}),
        make_report("rack-7", 1, agent_id="r7", logical_cpus=48, busy_seconds=300.0, pods=[]),
        make_report("mystery-1", 1, agent_id="x1", logical_cpus=8, busy_seconds=12.0, pods=[]),
    ])
    ingestor.ingest([make_report("aws-1", 1, agent_id="a1")])  # a duplicate
    telemetry = Telemetry(rejected_by_status={401: 2, 422: 1})
    return ingestor, telemetry


def golden_text(sharded: bool = False) -> str:
    """The golden fleet's exposition; `sharded`: as one of several replicas would show it."""
    ingestor, telemetry = golden_state()
    status = ProviderStatus(source="static", synced=True, connected=True)
    metadata = ingestor.metadata
    assert isinstance(metadata, StaticMetadataProvider) and ingestor.pod_usage is not None
    recommendations = {  # one workload with enough history, one without
        ("payments", "Deployment", "ledger"): Recommendation(86_400.0, 0.9, 0.69),
        ("risk", "StatefulSet", "scoring"): Recommendation(3_600.0, 0.7, None),
    }
    capacity = CapacityInputs(metadata.nodes(), metadata.pod_requests(),
                              ingestor.pod_usage.latest(), recommendations, untracked_workloads=0)
    return Exposition(version_="0.0.0-golden", sharded=sharded).render(
        Scrape(ingestor.ledger.view(T0), telemetry, status, capacity))


def test_golden_exposition_matches():
    text = golden_text()
    if REGENERATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "run with KUBECARBON_REGENERATE=1 after an intended change"


def test_golden_file_passes_promtool():
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=GOLDEN.read_bytes(),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_catches_a_broken_exposition():
    broken = GOLDEN.read_text().replace("# TYPE kubecarbon_node_energy_joules_total counter",
                                        "# TYPE kubecarbon_node_energy_joules_total gauge")
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=broken.encode(),
                          capture_output=True, timeout=60)
    assert done.returncode != 0


def test_exposition_families_are_exactly_the_catalogue():
    families = {family.name: family
                for family in text_string_to_metric_families(golden_text(sharded=True))}
    # prometheus_client's parser drops the _total of counter families
    exposed = {name + ("_total" if family.type == "counter" else ""): family.type
               for name, family in families.items()}
    documented = {spec.full_name: spec.kind.replace("untyped", "unknown") for spec in CATALOGUE}
    assert exposed == documented
    for spec in CATALOGUE:
        family = families[spec.full_name.removesuffix("_total") if spec.kind == "counter"
                          else spec.full_name]
        for sample in family.samples:
            assert tuple(sample.labels) == spec.labels, spec.name
        assert family.samples, f"{spec.name} has no sample in the golden fleet"


def collector_section() -> str:
    """docs/metrics.md up to the agent's section (tests/test_metrics_doc.py checks that one)."""
    return DOC.read_text().split("\n## Agent\n")[0]


def test_docs_are_generated_from_the_catalogue():
    assert DOC.read_text().startswith(metrics_doc()), "regenerate: make docs"


def test_docs_table_agrees_with_the_exposition():
    rows = re.findall(r"^\| `(kubecarbon_\w+)` \| (\w+) \| [^|]+ \| ([^|]+) \|",
                      collector_section(), flags=re.MULTILINE)
    documented = {name: (kind, tuple(re.findall(r"`(\w+)`", labels))) for name, kind, labels
                  in rows}
    exposed = {}
    for family in text_string_to_metric_families(golden_text(sharded=True)):
        kind = {"unknown": "untyped"}.get(family.type, family.type)
        name = family.name + ("_total" if kind == "counter" else "")
        exposed[name] = (kind, tuple(family.samples[0].labels) if family.samples else ())
    assert documented == exposed


@pytest.mark.parametrize("name", ["node_power_watts", "avoided_co2e_grams_total",
                                  "namespace_co2e_grams_total"])
def test_design_names_are_present(name):
    assert f"kubecarbon_{name}" in {spec.full_name for spec in CATALOGUE}


def test_stale_node_keeps_counters_only():
    text = golden_text()
    assert 'kubecarbon_node_energy_joules_total{node="old-1"' in text
    assert 'kubecarbon_node_power_watts{node="old-1"' not in text


def test_label_values_are_escaped():
    odd = 'rack "7"\\east\nwing'
    metadata = StaticMetadataProvider(nodes={"n1": NodeInfo("n1", instance_type=odd)})
    ingestor = Ingestor(Ledger(), metadata=metadata, clock=FakeClock(T0))
    ingestor.ingest([make_report("n1")])
    status = ProviderStatus(source="static", synced=True, connected=True)
    text = Exposition(version_="x").render(Scrape(ingestor.ledger.view(T0), Telemetry(), status))
    parsed = {sample.labels.get("instance_type") for family in text_string_to_metric_families(text)
              if family.name == "kubecarbon_node_power_watts" for sample in family.samples}
    assert parsed == {odd}
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
