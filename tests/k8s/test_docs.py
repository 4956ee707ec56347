"""docs/kubernetes.md states what the code does: metric table and watch defaults.

The metric table is generated from WATCH_METRICS (`make docs`). When it was written
by hand it drifted (four meanings differed from the HELP texts) while the first test
below passed: it compares names, types and labels only, and fills in the label of a
family without samples itself. The table is now compared as text with the generated
section, and the list with what a provider watching the real API server serves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from k8s_harness import ClusterObjects, ProviderFactory, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.kubernetes import (
    KubernetesMetadataProvider,
    KubernetesWatchMetrics,
    WatchSettings,
    load_api_client,
)
from collector.kubernetes.metrics import WATCH_METRICS
from collector.kubernetes.metrics_doc import (
    BEGIN_MARKER,
    END_MARKER,
    main,
    metrics_doc,
    with_generated_section,
)
from collector.kubernetes.objects import CRONJOB_SUFFIX_MINUTES_RANGE

DOC = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"
ROW = re.compile(
    r"^\| `(kubecarbon_kubernetes_\w+)` \| (\w+) \| \w+ \| ((?:`\w+`(?:, )?)+) \| (.+) \|$"
)


def test_metric_table_matches_the_exported_metrics(tmp_path: Path) -> None:
    documented = {
        match.group(1): (match.group(2), ",".join(sorted(match.group(3)[1:-1].split("`, `"))))
        for line in DOC.read_text().splitlines()
        if (match := ROW.match(line))
    }
    # A provider that never started still exports every family (all zero).
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    api_client, _ = load_api_client(str(kubeconfig))
    provider = KubernetesMetadataProvider(api_client)
    registry = CollectorRegistry()
    registry.register(KubernetesWatchMetrics(provider))
    exported = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        sample_names = {sample.name for sample in family.samples}
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {key for sample in family.samples for key in sample.labels}
        exported[name] = (family.type, ",".join(sorted(labels)))
        assert sample_names <= {name, f"{family.name}_created"}
    provider.stop()
    # last_sync has no sample before the first list, so compare names and types
    assert set(documented) == set(exported) | {"kubecarbon_kubernetes_last_sync_timestamp_seconds"}
    for name, (kind, labels) in exported.items():
        assert documented[name] == (kind, labels or "resource"), name


def test_documented_defaults_are_the_code_defaults() -> None:
    text = DOC.read_text()
    defaults = WatchSettings()
    assert f"pages of {defaults.list_page_size}" in text
    assert f"doubles from {defaults.initial_backoff_seconds:g} s up to " in text
    assert f"up to {defaults.max_backoff_seconds:g} s" in text
    watch_minutes = defaults.watch_timeout_seconds / 60
    assert f"for {watch_minutes:g} to {2 * watch_minutes:g} minutes" in text
    assert f"for {defaults.deleted_pod_retention_seconds / 60:g} minutes after" in text
    low, high = CRONJOB_SUFFIX_MINUTES_RANGE
    assert f"between\n{low:,}" in text or f"between {low:,}" in text
    assert f"{high:,}" in text


def test_metric_section_is_generated_from_the_spec() -> None:
    text = DOC.read_text()
    begin, end = text.index(BEGIN_MARKER), text.index(END_MARKER) + len(END_MARKER) + 1
    assert text[begin:end] == metrics_doc(), "regenerate with: make docs"
    assert with_generated_section(text) == text


def test_regenerating_replaces_only_the_section(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\nbefore\n\n{BEGIN_MARKER}\n| stale |\n{END_MARKER}\nafter\n")
    assert main([str(page)]) == 0
    assert page.read_text() == f"# Title\n\nbefore\n\n{metrics_doc()}after\n"
    page.write_text("# no markers\n")
    with pytest.raises(ValueError, match=r"no .*begin: generated"):
        main([str(page)])
    assert page.read_text() == "# no markers\n"


def test_a_real_providers_exposition_is_the_spec(
    cluster: object, objects: ClusterObjects, start_provider: ProviderFactory
) -> None:
    node = objects.node()
    provider = start_provider(cluster.admin.kubeconfig)  # type: ignore[attr-defined]
    wait_for(lambda: provider.node(node) and provider.status().synced, "both first lists")
    registry = CollectorRegistry()
    registry.register(KubernetesWatchMetrics(provider))
    served = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        series = {
            tuple(sorted(sample.labels.items()))
            for sample in family.samples
            if sample.name == name
        }
        served[name] = (family.type, family.documentation, series)
    every_resource = {(("resource", "nodes"),), (("resource", "pods"),)}
    every_resource_and_reason = {
        spec.name: {(("reason", reason), ("resource", resource))
                    for resource in ("nodes", "pods") for reason in spec.reasons}
        for spec in WATCH_METRICS if spec.reasons
    }
    assert served == {
        spec.name: (spec.kind, spec.help, every_resource_and_reason.get(spec.name, every_resource))
        for spec in WATCH_METRICS
    }
    # the values are the reflectors' own, through each spec's value function
    nodes = provider.reflector_states()[0]
    assert registry.get_sample_value(
        "kubecarbon_kubernetes_last_sync_timestamp_seconds", {"resource": "nodes"}
    ) == nodes.last_sync_timestamp_seconds
