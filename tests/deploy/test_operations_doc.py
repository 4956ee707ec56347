"""docs/operations.md names every chart value, threshold, alert and recorded series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = (REPO_ROOT / "docs" / "operations.md").read_text()
VALUES = yaml.safe_load((REPO_ROOT / "helm" / "kubecarbon" / "values.yaml").read_text())
RULES = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "kubecarbon-rules.yaml").read_text())
# Values documented as one row, however many keys they hold.
WHOLE = {"resources", "nodeSelector", "updateStrategy", "podSelector", "namespaceSelector",
         "thresholds"}


def documented_keys(node: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in WHOLE:
            keys += documented_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def test_every_value_is_in_the_reference_table():
    missing = [key for key in documented_keys(VALUES) if f"| `{key}` |" not in DOC]
    assert missing == []


def test_every_threshold_alert_and_recorded_series_is_described():
    for key in VALUES["prometheusRule"]["thresholds"]:
        assert f"`{key}`" in DOC, key
    for group in RULES["groups"]:
        for rule in group["rules"]:
            assert f"`{rule.get('alert') or rule['record']}`" in DOC


def test_default_resources_in_the_doc_match_the_chart():
    agent = VALUES["agent"]["resources"]
    row = next(line for line in DOC.splitlines() if line.startswith("| `agent.resources` |"))
    assert (f"requests {agent['requests']['cpu']} / {agent['requests']['memory']}, "
            f"limits {agent['limits']['cpu']} / {agent['limits']['memory']}") in row
