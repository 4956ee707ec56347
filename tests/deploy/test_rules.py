"""Prometheus rules: promtool checks them, promtool's unit tests exercise every alert."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "kubecarbon-rules.yaml"
UNIT_TESTS = Path(__file__).parent / "promtool" / "kubecarbon-rules.test.yaml"
# The week-over-week alert needs eight days of samples; its file evaluates every 5 minutes.
WEEKLY_UNIT_TESTS = Path(__file__).parent / "promtool" / "kubecarbon-rules-weekly.test.yaml"
ALL_UNIT_TESTS = (UNIT_TESTS, WEEKLY_UNIT_TESTS)


def _rules(groups: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [rule for group in groups["groups"] for rule in group["rules"] if key in rule]


def _promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_promtool_accepts_the_rule_file(promtool):
    done = _promtool(promtool, "check", "rules", RULES_FILE)
    assert done.returncode == 0, done.stdout + done.stderr
    groups = yaml.safe_load(RULES_FILE.read_text())
    assert f"SUCCESS: {len(_rules(groups, 'expr'))} rules found" in done.stdout


def _test_cases() -> list[dict[str, Any]]:
    return [case for path in ALL_UNIT_TESTS for case in yaml.safe_load(path.read_text())["tests"]]


def test_promtool_unit_tests_pass(promtool):
    done = _promtool(promtool, "test", "rules", *ALL_UNIT_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_can_fail(promtool, tmp_path):
    # The same tests against a rule file whose utilisation threshold is off must fail,
    # so a passing run above means the expectations were really compared.
    broken = RULES_FILE.read_text().replace("kubecarbon:fleet_cpu_usage:ratio < 0.3",
                                            "kubecarbon:fleet_cpu_usage:ratio < 0.01")
    assert broken != RULES_FILE.read_text()
    rules_copy = tmp_path / "rules.yaml"
    rules_copy.write_text(broken)
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(rules_copy)]
    tests_copy = tmp_path / "tests.yaml"
    tests_copy.write_text(yaml.safe_dump(tests))
    done = _promtool(promtool, "test", "rules", tests_copy)
    assert done.returncode != 0
    assert "KubecarbonFleetUtilisationLow" in done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_silent():
    groups = yaml.safe_load(RULES_FILE.read_text())
    cases = [case for test in _test_cases() for case in test.get("alert_rule_test", [])]
    for alert in _rules(groups, "alert"):
        name = alert["alert"]
        own = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in own), f"{name} never tested firing"
        assert any(not case["exp_alerts"] for case in own), f"{name} never tested silent"


def test_every_recording_rule_is_tested_or_feeds_a_tested_alert():
    groups = yaml.safe_load(RULES_FILE.read_text())
    tested = " ".join(case["expr"] for test in _test_cases()
                      for case in test.get("promql_expr_test", []))
    alert_exprs = " ".join(alert["expr"] for alert in _rules(groups, "alert"))
    for rule in _rules(groups, "record"):
        name = rule["record"]
        assert re.search(rf"{re.escape(name)}\b", tested + " " + alert_exprs), name


def test_alerts_carry_severity_and_runbook_text():
    groups = yaml.safe_load(RULES_FILE.read_text())
    for alert in _rules(groups, "alert"):
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook"} <= annotations.keys(), alert["alert"]
        assert len(annotations["runbook"].split()) >= 25, alert["alert"]


def test_runbooks_name_dashboards_and_panels_that_exist():
    titles = set()
    for path in (REPO_ROOT / "dashboards").glob("*.json"):
        dashboard = yaml.safe_load(path.read_text())
        titles.add(dashboard["title"])
        titles.update(panel["title"] for panel in dashboard["panels"])
    groups = yaml.safe_load(RULES_FILE.read_text())
    for alert in _rules(groups, "alert"):
        for quoted in re.findall(r'"([^"]+)"', alert["annotations"]["runbook"]):
            if quoted.startswith("kubecarbon / ") or quoted[0].isupper():
                assert quoted in titles, f"{alert['alert']} runbook names {quoted!r}"


def test_thresholds_come_from_values(render_module, promtool, tmp_path):
    groups = render_module.rule_groups({"prometheusRule": {"thresholds": {
        "fleetUtilisationBelowRatio": 0.45, "fleetUtilisationFor": "30m",
        "agentMissingAfterSeconds": 90, "collectorJobRegex": "my-collector"}}})
    alerts = {alert["alert"]: alert for alert in _rules(groups, "alert")}
    low = alerts["KubecarbonFleetUtilisationLow"]
    assert low["expr"] == "kubecarbon:fleet_cpu_usage:ratio < 0.45" and low["for"] == "30m"
    assert "below 45 %" in low["annotations"]["summary"]
    assert "> 90)" in alerts["KubecarbonAgentMissing"]["expr"]
    assert 'up{job=~"my-collector"}' in alerts["KubecarbonCollectorDown"]["expr"]
    variant = tmp_path / "rules.yaml"
    variant.write_text(yaml.safe_dump(groups))
    done = _promtool(promtool, "check", "rules", variant)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_come_after_the_recorded_series_they_read_in_the_same_group():
    # Groups are evaluated independently; only within a group is the order fixed.
    groups = yaml.safe_load(RULES_FILE.read_text())
    for group in groups["groups"]:
        recorded_so_far: set[str] = set()
        for rule in group["rules"]:
            if "record" in rule:
                recorded_so_far.add(rule["record"])
                continue
            for name in re.findall(r"\bkubecarbon:[a-z0-9_:]+", rule["expr"]):
                assert name in recorded_so_far, f"{rule['alert']} reads {name} from elsewhere"
