"""docs/kubernetes.md states what the code does: metric table and watch defaults."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.kubernetes import (
    CRONJOB_SUFFIX_MINUTES_RANGE,
    KubernetesMetadataProvider,
    KubernetesWatchMetrics,
    WatchSettings,
    load_api_client,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"
ROW = re.compile(r"^\| `(kubecarbon_kubernetes_\w+)` \| (\w+) \| `(\w+)` \| (.+) \|$")


def test_metric_table_matches_the_exported_metrics(tmp_path: Path) -> None:
    documented = {
        match.group(1): (match.group(2), match.group(3))
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
