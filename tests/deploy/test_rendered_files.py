"""deploy/kubecarbon.yaml and deploy/prometheus/kubecarbon-rules.yaml are the chart rendered
with default values; these tests fail when either is stale (fix: python deploy/render.py)."""

from __future__ import annotations

import yaml


def test_plain_manifests_are_the_default_render(render_module):
    expected = render_module.default_manifest_text()
    assert render_module.MANIFEST_PATH.read_text() == expected, (
        "deploy/kubecarbon.yaml is stale: run .venv/bin/python deploy/render.py")


def test_plain_rule_file_is_the_default_render(render_module):
    expected = render_module.default_rules_text()
    assert render_module.RULES_PATH.read_text() == expected, (
        "deploy/prometheus/kubecarbon-rules.yaml is stale: run .venv/bin/python deploy/render.py")


def test_plain_manifests_hold_no_token_and_name_the_secret_to_create(render_module):
    text = render_module.MANIFEST_PATH.read_text()
    objects = [o for o in yaml.safe_load_all(text) if o]
    assert "Secret" not in {o["kind"] for o in objects}
    assert "create secret generic kubecarbon-token" in text
    volumes = [v for o in objects if o["kind"] in ("DaemonSet", "StatefulSet")
               for v in o["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert [v["secret"]["secretName"] for v in volumes] == ["kubecarbon-token"] * 2
    # Everything else is the default render: same objects, in dependency order.
    kinds = [o["kind"] for o in objects]
    assert kinds.index("ServiceAccount") < kinds.index("DaemonSet")
    assert kinds.index("ClusterRoleBinding") < kinds.index("StatefulSet")


def test_check_mode_reports_a_stale_file(render_module, tmp_path, monkeypatch, capsys):
    stale = tmp_path / "kubecarbon.yaml"
    stale.write_text("# edited by hand\n")
    monkeypatch.setattr(render_module, "MANIFEST_PATH", stale)
    monkeypatch.setattr(render_module, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(render_module, "RULES_PATH", tmp_path / "rules.yaml")
    assert render_module.main(["--check"]) == 1
    assert "kubecarbon.yaml is stale" in capsys.readouterr().err
    assert stale.read_text() == "# edited by hand\n"  # --check never writes
    assert render_module.main([]) == 0
    assert render_module.main(["--check"]) == 0
