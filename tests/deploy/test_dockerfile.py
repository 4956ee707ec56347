"""deploy/Dockerfile against the chart and the package. Docker is not available where these
tests run, so the image is not built here; these checks tie the file to what the chart and
pyproject expect, so a change on one side fails until the other follows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from kubecarbon.cli import SUBCOMMANDS

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def instructions(keyword: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines()
            if line.startswith(keyword + " ")]


def test_slim_python_base_matching_the_package():
    bases = instructions("FROM")
    assert bases and all(re.match(r"python:3\.\d+-slim", base) for base in bases)
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    for base in bases:
        version = re.match(r"python:(3\.\d+)", base).group(1)
        assert tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))


def test_runs_as_the_non_root_user_the_chart_names(render_objects):
    (user,) = instructions("USER")
    uid, gid = map(int, user.split(":"))
    assert uid != 0
    for kind in ("DaemonSet", "Deployment"):
        (workload,) = [o for o in render_objects({}) if o["kind"] == kind]
        context = workload["spec"]["template"]["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert f"--uid {uid}" in DOCKERFILE and f"--gid {gid}" in DOCKERFILE


def test_installs_only_the_runtime_extras():
    (install,) = [line for line in instructions("RUN") if "pip install --no-cache-dir '." in line]
    extras = re.search(r"'\.\[([a-z,]+)\]'", install).group(1).split(",")
    assert sorted(extras) == ["agent", "collector"]
    assert set(extras) < set(PYPROJECT["project"]["optional-dependencies"])
    copied = {line.split()[0] for line in instructions("COPY") if "--from" not in line}
    assert copied == {"pyproject.toml", "kubecarbon", "agent", "collector"}
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied  # every package the wheel includes is copied


def test_entrypoint_is_the_console_script_and_the_chart_args_are_subcommands(render_objects):
    (entrypoint,) = instructions("ENTRYPOINT")
    (script,) = PYPROJECT["project"]["scripts"]
    assert entrypoint == f'["{script}"]'
    for obj in render_objects({}):
        if obj["kind"] in ("DaemonSet", "Deployment"):
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            assert container["args"][0] in SUBCOMMANDS


def test_chart_default_image_is_the_documented_build(render_objects):
    version = PYPROJECT["project"]["version"]
    images = {c["image"] for o in render_objects({}) if o["kind"] in ("DaemonSet", "Deployment")
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {f"kubecarbon:{version}"}
    assert f"docker build -f deploy/Dockerfile -t kubecarbon:{version} ." in DOCKERFILE
