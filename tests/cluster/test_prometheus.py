"""Prometheus as users run it: kubecarbon discovered through the real API server with
kubernetes_sd_configs (by Debian's vmagent: prometheus_host.py says why), the chart's rules
loaded in Debian's prometheus, and every dashboard panel's query, with its variables resolved
the way Grafana resolves them, returning data for the real cluster."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request

import pytest
import release
from kube_objects import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LABEL_VALUES = re.compile(r"label_values\((?P<metric>[^,]+),\s*(?P<label>\w+)\)")


def test_kubernetes_discovery_finds_the_collector_and_the_agent(prometheus, node_name):
    prometheus, scraper = prometheus

    def both_up() -> bool:
        jobs = {t["labels"]["job"]: t["health"] for t in scraper.targets()}
        return jobs.get("kubecarbon-collector") == "up" and \
            jobs.get(f"{release.NAMESPACE}/{release.RELEASE}-agent") == "up"

    wait_for("the collector and the agent discovered and up", both_up, timeout=90,
             explain=lambda: json.dumps(scraper.targets(), indent=1)[:3000])
    (agent_target,) = [t for t in scraper.targets() if t["labels"]["job"].endswith("-agent")]
    assert agent_target["discoveredLabels"]["__meta_kubernetes_pod_node_name"] == node_name
    # the real node's numbers arrive through the discovered collector
    wait_for("the node's CPUs in Prometheus", lambda: prometheus.query(
        f'kubecarbon_node_logical_cpus{{job="kubecarbon-collector",node="{node_name}"}}'))
    assert prometheus.query('up{job="kubecarbon-collector"} == 1')


def test_the_rules_load_and_evaluate(prometheus):
    prometheus, _ = prometheus
    def evaluated() -> list[tuple[str, str, str]]:
        health = prometheus.rule_health()
        return health if health and all(h == "ok" for _, h, _ in health) else []

    health = wait_for("every rule evaluated without error", evaluated, timeout=90,
                      explain=lambda: str(prometheus.rule_health()))
    recorded = [name for name, _, _ in health if name.startswith("kubecarbon:")]
    assert recorded
    # the collector is scraped: its down alert stays quiet
    assert not prometheus.query('ALERTS{alertname="KubecarbonCollectorDown"}')


def _variable_values(prometheus, dashboard: dict) -> dict[str, str]:
    """Each query variable set to All, as Grafana sends it: its values as one regex."""
    values = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        match = LABEL_VALUES.fullmatch(text or "")
        if match is None:
            continue
        params = urllib.parse.urlencode({"match[]": match["metric"]})
        url = f"http://{prometheus.address}/api/v1/label/{match['label']}/values?{params}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            found = json.load(reply)["data"]
        assert found, f"variable ${variable['name']} has no values"
        values[variable["name"]] = "|".join(_grafana_regex_escape(value) for value in found)
    return values


def _grafana_regex_escape(value: str) -> str:
    """A label value inside a PromQL regex string, escaped as Grafana's Prometheus source does."""
    return re.sub(r"([$^*{}\[\]'+?.()|\\])", r"\\\\\1", value)


def test_series_keep_the_namespace_and_pod_they_describe(prometheus):
    """The scrape target is the collector's pod in its own namespace; its series describe
    pods in every namespace. Had the target's labels won (honor_labels off), Prometheus
    would rename the series' own labels to exported_namespace and exported_pod, and every
    namespace filter of the dashboards would select the collector's namespace instead."""
    prometheus, _ = prometheus
    def namespaces() -> set[str]:
        found = {series["metric"].get("namespace")
                 for series in prometheus.query("kubecarbon_workload_requested_cpu_cores")}
        return found if {"kc-shop", "kc-tools", "kubecarbon"} <= found else set()

    wait_for("requests of the workloads' own namespaces", namespaces, timeout=90,
             explain=lambda: str(prometheus.query("kubecarbon_workload_requested_cpu_cores")))
    renamed = prometheus.query('{__name__=~"kubecarbon_.+", exported_namespace!=""}')
    renamed += prometheus.query('{__name__=~"kubecarbon_.+", exported_pod!=""}')
    assert not renamed, f"series whose labels the target's replaced: {renamed[:3]}"


def test_every_dashboard_panel_returns_data(prometheus):
    prometheus, _ = prometheus
    wait_for("the recorded series", lambda: prometheus.query("kubecarbon:avoided_servers:sum"),
             timeout=90)
    # release.py's short rightsizing history: the first recommendations come about a
    # minute after the collector starts (a partial interval, three samples, two to close)
    wait_for("a workload's first recommendation",
             lambda: prometheus.query("kubecarbon_workload_avoidable_co2e_grams_per_year"),
             timeout=120)
    empty = []
    for path in sorted((release.REPO_ROOT / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables = _variable_values(prometheus, dashboard)
        def resolve(match: re.Match[str], values: dict[str, str] = variables) -> str:
            return values.get(match[1], match[0])

        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = re.sub(r"\$(\w+)", resolve, target["expr"])
                try:
                    wait_for(expr, lambda e=expr: prometheus.query(e), timeout=30)
                except TimeoutError:
                    empty.append(f"{dashboard['title']} / {panel['title']}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
