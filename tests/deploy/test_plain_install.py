"""deploy/kubecarbon.yaml installed as the README says, with kubectl, on a real kube-apiserver.

The API server is 1.20.2, the oldest Kubernetes the chart supports (tests/deploy/conftest.py
starts the one tests/k8s builds). kubectl validates what it sends against the server's own
OpenAPI schema and refuses unknown fields, so every render of the chart checked here also
passes 1.20's schema; kubernetes-validate covers 1.25 and later (test_chart.py). No kubelet
or controllers run here: that the pods start is the cluster suite's part.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_flags import FLAG_VALUES

REPO_ROOT = Path(__file__).resolve().parents[2]
README = (REPO_ROOT / "README.md").read_text()
OPERATIONS = (REPO_ROOT / "docs" / "operations.md").read_text()
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is missing (the Debian package kubectl)")
    result = subprocess.run([binary, *args], input=stdin, capture_output=True, text=True,
                            cwd=REPO_ROOT, env={**os.environ, "KUBECONFIG": str(kubeconfig)},
                            timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result


def missing_fields(sent: Any, kept: Any, path: str = "") -> list[str]:
    """Where the server's copy lacks or changed what was sent (defaults it adds are fine)."""
    if isinstance(sent, dict):
        if not isinstance(kept, dict):
            return [path]
        return [gap for key, value in sent.items()
                for gap in missing_fields(value, kept.get(key), f"{path}.{key}")]
    if isinstance(sent, list):
        if not isinstance(kept, list) or len(kept) != len(sent):
            return [path]
        return [gap for index, (a, b) in enumerate(zip(sent, kept, strict=True))
                for gap in missing_fields(a, b, f"{path}[{index}]")]
    return [] if sent == kept else [path]


def test_readme_docs_and_file_give_the_same_two_commands(render_module):
    commands = render_module.INSTALL_COMMANDS
    assert commands.startswith("kubectl apply -f deploy/kubecarbon.yaml\n")
    assert f"```sh\n{commands}```" in README
    assert f"```sh\n{commands}```" in OPERATIONS
    header = render_module.MANIFEST_PATH.read_text().split("---\n", 1)[0]
    assert "".join(f"#   {line}\n" for line in commands.splitlines()) in header


def test_the_two_commands_install_every_object_and_the_server_keeps_every_field(
    admin_kubeconfig, render_module
):
    commands = render_module.INSTALL_COMMANDS
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120,
                          env={**os.environ, "KUBECONFIG": str(admin_kubeconfig)})
    assert done.returncode == 0, done.stderr
    assert "namespace/kubecarbon created" in done.stdout
    assert "secret/kubecarbon-token created" in done.stdout

    sent = [o for o in yaml.safe_load_all(render_module.MANIFEST_PATH.read_text()) if o]
    assert sent[0]["kind"] == "Namespace"
    listed = json.loads(kubectl(admin_kubeconfig, "get", "-f", "deploy/kubecarbon.yaml",
                                "-o", "json").stdout)
    kept = listed["items"] if listed.get("kind") == "List" else [listed]
    assert [(o["kind"], o["metadata"]["name"]) for o in kept] == [
        (o["kind"], o["metadata"]["name"]) for o in sent]
    for ours, theirs in zip(sent, kept, strict=True):
        # 1.20 drops fields it does not know without a word; none may be missing.
        assert missing_fields(ours, theirs) == [], ours["kind"]

    secret = json.loads(kubectl(admin_kubeconfig, "-n", "kubecarbon", "get", "secret",
                                "kubecarbon-token", "-o", "json").stdout)
    token = secret["data"]["token"]
    plain = base64.b64decode(token).decode()
    assert len(plain) >= 40 and re.fullmatch(r"[A-Za-z0-9]+", plain)

    # Running both again (an upgrade) changes nothing and never replaces the token.
    again = subprocess.run(["bash", "-c", commands], capture_output=True, text=True,
                           cwd=REPO_ROOT, timeout=120,
                           env={**os.environ, "KUBECONFIG": str(admin_kubeconfig)})
    assert "already exists" in again.stderr and again.returncode != 0
    assert "daemonset.apps/kubecarbon-agent unchanged" in again.stdout
    secret = json.loads(kubectl(admin_kubeconfig, "-n", "kubecarbon", "get", "secret",
                                "kubecarbon-token", "-o", "json").stdout)
    assert secret["data"]["token"] == token


@pytest.fixture(scope="module")
def kubecarbon_namespace(admin_kubeconfig: Path) -> str:
    present = kubectl(admin_kubeconfig, "get", "namespace", "kubecarbon", check=False)
    if present.returncode != 0:
        kubectl(admin_kubeconfig, "create", "namespace", "kubecarbon")
    return "kubecarbon"


def _for_1_20(objects: list[dict[str, Any]]) -> str:
    """The render as 1.20 gets it: offline renders assume policy/v1 PodDisruptionBudgets,
    which the chart switches to v1beta1 against a 1.20 cluster (test_helm_release.py);
    the operator CRDs are not installed here."""
    kept = [o for o in objects if o["kind"] not in CRD_KINDS]
    for obj in kept:
        if obj["kind"] == "PodDisruptionBudget":
            obj["apiVersion"] = "policy/v1beta1"
    return "---\n".join(yaml.safe_dump(o) for o in kept)


@pytest.mark.parametrize("flag", sorted(FLAG_VALUES))
def test_every_render_passes_the_1_20_schema_and_server(flag, admin_kubeconfig,
                                                         kubecarbon_namespace, render_objects):
    objects = render_objects(FLAG_VALUES[flag])
    for obj in objects:
        # a StatefulSet's claim templates cannot change in place: each case's dry run
        # creates its own rather than meeting another case's (or the installed one)
        if obj["kind"] == "StatefulSet":
            obj["metadata"]["name"] += f"-{flag}"
    manifest = _for_1_20(objects)
    done = kubectl(admin_kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=manifest)
    assert "(server dry run)" in done.stdout


def test_the_1_20_schema_check_refuses_an_unknown_field(admin_kubeconfig, kubecarbon_namespace,
                                                         render_objects):
    objects = render_objects({})
    (daemonset,) = [o for o in objects if o["kind"] == "DaemonSet"]
    # recursiveReadOnly (Kubernetes 1.30+) is what the per-hierarchy mounts stand in for
    daemonset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0][
        "recursiveReadOnly"] = "IfPossible"
    refused = kubectl(admin_kubeconfig, "apply", "--dry-run=server", "-f", "-",
                      stdin=yaml.safe_dump(daemonset), check=False)
    assert refused.returncode != 0
    assert 'unknown field "recursiveReadOnly"' in refused.stderr
