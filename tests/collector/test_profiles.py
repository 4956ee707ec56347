"""Profile precedence: config rule > metadata provider > default_profile > model defaults."""

from __future__ import annotations

from collector_testkit import make_report

from collector.ingest import Ingestor
from collector.ledger import Ledger
from collector.metadata import NodeInfo, StaticMetadataProvider
from collector.profiles import parse_profile_document, resolve_node

CONFIG = parse_profile_document({
    "profiles": [
        {"match": {"node": "gpu-*"}, "provider": "baremetal", "pue": 1.2},
        {"match": {"labels": {"pool": "spot"}}, "region": "eu-west-1"},
        {"match": {"node": "gpu-1", "labels": {"never": "matches"}}, "pue": 3.0},
    ],
    "default_profile": {"region": "china", "site": "onprem"},
})


def test_config_rule_beats_metadata():
    info = NodeInfo("gpu-1", provider="aws", region="us-east-1")
    resolved = resolve_node(CONFIG, "gpu-1", info)
    assert resolved.source == "config"
    assert (resolved.profile.kind, resolved.profile.pue) == ("baremetal", 1.2)
    assert resolved.profile.region == "us-east-1"  # not said by the rule: metadata's


def test_metadata_labels_beat_default_profile():
    info = NodeInfo("ip-1", labels={"node.kubernetes.io/instance-type": "n2-standard-8",
                                    "topology.kubernetes.io/region": "europe-west1"},
                    provider="gcp")
    resolved = resolve_node(CONFIG, "ip-1", info)
    assert resolved.source == "metadata"
    assert resolved.profile.kind == "cloud"
    assert resolved.profile.instance_type == "n2-standard-8"
    assert resolved.profile.grid_intensity_grams_per_kilowatt_hour == 212.0
    assert resolved.profile.pue == 1.58  # site onprem from default_profile beats gcp's table


def test_label_selector_rule_and_all_labels_must_match():
    info = NodeInfo("n1", labels={"pool": "spot"}, provider="aws")
    resolved = resolve_node(CONFIG, "n1", info)
    assert resolved.profile.region == "eu-west-1"
    assert resolved.source == "metadata"  # the rule set no provider: the machine is metadata's


def test_unknown_node_gets_the_default_profile():
    resolved = resolve_node(CONFIG, "mystery", None)
    assert resolved.source == "default"
    assert resolved.on_default_profile
    assert resolved.profile.region == "china"
    assert resolved.profile.grid_intensity_grams_per_kilowatt_hour == 530.6


def test_unknown_provider_label_is_priced_as_default():
    resolved = resolve_node(CONFIG, "x", NodeInfo("x", provider="openstack"))
    assert resolved.on_default_profile


def test_state_re_resolves_when_the_provider_learns_about_a_node():
    nodes: dict[str, NodeInfo] = {}
    ingestor = Ingestor(Ledger(), metadata=StaticMetadataProvider(nodes))
    ingestor.ingest([make_report(seq=1)])
    assert ingestor.ledger.latest["ip-10-0-1-17"].on_default_profile
    # the provider's tables are live objects: a watch event replaces the entry
    ingestor.metadata._nodes["ip-10-0-1-17"] = NodeInfo(  # type: ignore[attr-defined]
        "ip-10-0-1-17", provider="aws", region="us-east-1")
    ingestor.ingest([make_report(seq=2, start=make_report()["end"])])
    latest = ingestor.ledger.latest["ip-10-0-1-17"]
    assert not latest.on_default_profile
    assert latest.labels[3] == "cloud_linear"


def test_a_configured_curve_wins_over_a_cloud_provider_label():
    config = parse_profile_document({"profiles": [{
        "match": {"node": "big-*"},
        "power_curve": {"logical_cpus": 64, "watts": [50 + 10 * i for i in range(11)]}}]})
    resolved = resolve_node(config, "big-1", NodeInfo("big-1", provider="aws"))
    assert resolved.profile.kind == "baremetal"
    assert resolved.profile.curve is not None and resolved.profile.curve.logical_cpus == 64
