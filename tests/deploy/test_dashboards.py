"""Grafana dashboards: generated files up to date, datasource variable, units, descriptions,
queries that parse and name only metrics the collector exports or the rules record."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.metrics import CATALOGUE, PREFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_FILES = sorted((REPO_ROOT / "dashboards").glob("*.json"))
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "kubecarbon-rules.yaml"
# Grafana variables and the values the query check substitutes for them.
VARIABLE_VALUES = {"$node": ".*", "$namespace": ".*"}
METRIC_NAME = re.compile(r"\b(kubecarbon[a-z0-9_:]*)")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, panel) for path in DASHBOARD_FILES for panel in load(path)["panels"]]


def substitute_variables(expr: str) -> str:
    for variable, value in VARIABLE_VALUES.items():
        expr = expr.replace(variable, value)
    return expr


def test_generated_files_are_up_to_date(dashboards_module):
    stale = [str(path.relative_to(REPO_ROOT))
             for path, text in dashboards_module.generated_files().items()
             if not path.exists() or path.read_text() != text]
    assert stale == [], "run: .venv/bin/python dashboards/generate.py"
    assert [p.name for p in DASHBOARD_FILES] == sorted(dashboards_module.DASHBOARDS)


def test_four_dashboards_with_unique_uids_and_a_datasource_variable():
    dashboards = [load(path) for path in DASHBOARD_FILES]
    assert {d["title"] for d in dashboards} == {
        "kubecarbon / Fleet overview", "kubecarbon / Node", "kubecarbon / Namespaces",
        "kubecarbon / Where servers can still be saved"}
    assert len({d["uid"] for d in dashboards}) == 4
    for dashboard in dashboards:
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for variable in variables.values():
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == "${datasource}"
                assert f"${variable['name']}" in VARIABLE_VALUES


@pytest.mark.parametrize(("file_name", "panel"), all_panels(),
                         ids=[f"{f}:{p['title']}" for f, p in all_panels()])
def test_every_panel_has_datasource_description_and_unit(file_name, panel):
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    assert len(panel["description"].split()) >= 8
    assert panel["fieldConfig"]["defaults"]["unit"]
    assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])


# What a query computes decides its unit: tonnes for CO2e / 1e6, kWh for joules / 3.6e6, ...
UNIT_RULES = [
    (re.compile(r"co2e.*/ 1e6|co2e_tonnes"), "masst"),
    (re.compile(r"co2e.*/ 1e3"), "masskg"),
    (re.compile(r"co2e_grams.*\* 3600|co2e_grams_per_hour"), "massg"),
    (re.compile(r"joules.*/ 3\.6e6"), "kwatth"),
    (re.compile(r"power_watts|energy_watts"), "watt"),
    (re.compile(r"usage_ratio|usage:ratio"), "percentunit"),
    (re.compile(r"grams_per_kilowatt_hour"), "suffix: gCO2e/kWh"),
    (re.compile(r"_servers"), "none"),
]


@pytest.mark.parametrize(("file_name", "panel"), all_panels(),
                         ids=[f"{f}:{p['title']}" for f, p in all_panels()])
def test_units_match_what_the_query_computes(file_name, panel):
    unit = panel["fieldConfig"]["defaults"]["unit"]
    first = panel["targets"][0]["expr"]
    expected = next((u for pattern, u in UNIT_RULES if pattern.search(first)), None)
    if expected is not None:
        assert unit == expected, f"{panel['title']}: {first} shown in {unit}"


def test_panels_fit_the_grid_without_overlap():
    for path in DASHBOARD_FILES:
        cells: set[tuple[int, int]] = set()
        ids = [panel["id"] for panel in load(path)["panels"]]
        assert len(ids) == len(set(ids))
        for panel in load(path)["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
            own = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                   for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not cells & own, f"{path.name}: {panel['title']} overlaps"
            cells |= own


def _known_names() -> set[str]:
    exported = {PREFIX + spec.name for spec in CATALOGUE}
    groups = yaml.safe_load(RULES_FILE.read_text())
    recorded = {rule["record"] for g in groups["groups"] for rule in g["rules"] if "record" in rule}
    return exported | recorded


def test_queries_name_only_exported_metrics_and_recorded_series():
    known = _known_names()
    for _, panel in all_panels():
        for target in panel["targets"]:
            for name in METRIC_NAME.findall(target["expr"]):
                assert name in known, f"{panel['title']}: unknown series {name}"


def test_every_query_parses(promtool, tmp_path):
    # promtool parses each query as the expression of a recording rule: the real PromQL parser.
    rules = [{"record": f"dashboard:query_{i}:check", "expr": substitute_variables(t["expr"])}
             for i, (_, panel) in enumerate(all_panels()) for t in panel["targets"]]
    for path in DASHBOARD_FILES:
        for variable in load(path)["templating"]["list"]:
            if variable["type"] == "query":
                inner = re.fullmatch(r"label_values\((.+), \w+\)", variable["definition"])
                assert inner, variable["definition"]
                rules.append({"record": f"dashboard:variable_{variable['name']}:check",
                              "expr": inner.group(1)})
    rule_file = tmp_path / "queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _fleet_queries() -> str:
    fleet = load(REPO_ROOT / "dashboards" / "kubecarbon-fleet.json")
    return "\n".join(t["expr"] for panel in fleet["panels"] for t in panel["targets"])


@pytest.mark.parametrize("needed", [
    "kubecarbon:avoided_servers:sum",                          # avoided servers now and over time
    "delta(kubecarbon_avoided_co2e_grams_total[1d])",          # last day
    "delta(kubecarbon_avoided_co2e_grams_total[30d])",         # month
    "sum(kubecarbon_avoided_co2e_grams_total) / 1e6",          # since install
    'quantile{quantile="0.05"}', 'quantile{quantile="0.95"}',  # the p05-p95 band
    "kubecarbon:fleet_power_watts:rate5m", "kubecarbon:baseline_power_watts:rate5m",
    "kubecarbon_node_energy_joules_total", "kubecarbon_baseline_energy_joules_total",
    "kubecarbon:fleet_cpu_usage:ratio", "kubecarbon:baseline_cpu_usage:ratio",
    "kubecarbon_node_pods", "kubecarbon_node_containers",
    "kubecarbon_grid_carbon_intensity_grams_per_kilowatt_hour",
])
def test_fleet_overview_shows(needed):
    assert needed in _fleet_queries()


def test_band_is_shaded_between_p05_and_p95():
    fleet = load(REPO_ROOT / "dashboards" / "kubecarbon-fleet.json")
    (band_panel,) = [p for p in fleet["panels"] if p["title"].endswith("p05-p95")]
    fills = [prop for override in band_panel["fieldConfig"]["overrides"]
             for prop in override["properties"] if prop["id"] == "custom.fillBelowTo"]
    assert fills == [{"id": "custom.fillBelowTo", "value": "p05"}]
    legends = {t["legendFormat"] for t in band_panel["targets"]}
    assert {"p05", "p95"} <= legends


def test_namespace_dashboard_ranks_namespaces_by_co2e_and_energy():
    namespaces = load(REPO_ROOT / "dashboards" / "kubecarbon-namespaces.json")
    queries = [t["expr"] for p in namespaces["panels"] for t in p["targets"]]
    assert any(q.startswith("topk(10,") and "namespace_co2e_grams_total" in q for q in queries)
    assert any("namespace_energy_joules_total" in q and "3.6e6" in q for q in queries)
