"""deploy/Dockerfile against the chart, the package and the image build script. These checks
tie the file to what the chart and pyproject expect, so a change on one side fails until the
other follows; tests/deploy/test_images.py builds the images and looks inside them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from kubecarbon.cli import SUBCOMMANDS

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
DOCKERIGNORE = (REPO_ROOT / ".dockerignore").read_text().splitlines()


def instructions(keyword: str, text: str = DOCKERFILE) -> list[str]:
    joined = text.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines()
            if line.startswith(keyword + " ")]


def stages() -> dict[str, str]:
    """Stage name -> its text, in file order."""
    parts = re.split(r"^(?=FROM )", DOCKERFILE, flags=re.MULTILINE)[1:]
    return {re.match(r"FROM \S+ AS (\S+)", part).group(1): part for part in parts}


def test_public_base_is_a_slim_python_matching_the_package(build_images_module):
    base = build_images_module.dockerfile_default_base(DOCKERFILE)
    match = re.fullmatch(r"python:(3\.\d+)-slim-(\w+)", base)
    assert match is not None
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, match.group(1).split("."))) >= tuple(map(int, minimum.split(".")))
    # The local base for machines without a registry is the same Debian release.
    assert match.group(2) in build_images_module.LOCAL_BASE
    names = list(stages())
    for index, base_of_stage in enumerate(instructions("FROM")):
        parent = base_of_stage.split()[0]
        assert parent == "${BASE_IMAGE}" or parent in names[:index]


def test_runs_as_the_non_root_user_the_chart_names(render_objects):
    by_stage = stages()
    for target in ("agent", "kubecarbon"):
        (user,) = instructions("USER", by_stage[target])
        uid, gid = map(int, user.split(":"))
        assert uid != 0
    for kind in ("DaemonSet", "StatefulSet"):
        (workload,) = [o for o in render_objects({}) if o["kind"] == kind]
        context = workload["spec"]["template"]["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert f"--uid {uid}" in DOCKERFILE and f"--gid {gid}" in DOCKERFILE


def _installed_extras(stage_text: str) -> list[str]:
    (install,) = [line for line in instructions("RUN", stage_text) if " install " in line
                  and "'." in line]
    return sorted(re.search(r"'\.\[([a-z,]+)\]'", install).group(1).split(","))


def test_agent_image_installs_the_agent_extra_only_and_the_full_image_both():
    by_stage = stages()
    assert _installed_extras(by_stage["build-agent"]) == ["agent"]
    assert _installed_extras(by_stage["build-collector"]) == ["agent", "collector"]
    assert {"agent", "collector"} < set(PYPROJECT["project"]["optional-dependencies"])
    assert "--from=build-agent" in by_stage["agent"]
    assert "--from=build-collector" in by_stage["kubecarbon"]
    assert list(by_stage)[-1] == "kubecarbon"  # what a plain `docker build` makes
    copied = {line.split()[0] for line in instructions("COPY") if "--from" not in line}
    assert copied == {"pyproject.toml", "kubecarbon", "agent", "collector"}
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied  # every package the wheel includes is copied


def test_build_context_is_only_what_the_dockerfile_copies():
    copied = {source for line in instructions("COPY") if "--from" not in line
              for source in line.split()[:-1]}
    assert DOCKERIGNORE[[line.strip() for line in DOCKERIGNORE].index("*")] == "*"
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE if line.startswith("!")}
    assert allowed == copied
    assert "**/__pycache__" in DOCKERIGNORE


def test_entrypoint_is_the_console_script_and_the_chart_args_are_subcommands(render_objects):
    (entrypoint,) = instructions("ENTRYPOINT")
    (script,) = PYPROJECT["project"]["scripts"]
    assert entrypoint == f'["{script}"]'
    for obj in render_objects({}):
        if obj["kind"] in ("DaemonSet", "StatefulSet"):
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            assert container["args"][0] in SUBCOMMANDS


def test_chart_default_images_are_the_documented_builds(render_objects, build_images_module):
    version = PYPROJECT["project"]["version"]
    images = {o["kind"]: c["image"] for o in render_objects({})
              if o["kind"] in ("DaemonSet", "StatefulSet")
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {"DaemonSet": f"kubecarbon-agent:{version}",
                      "StatefulSet": f"kubecarbon:{version}"}
    assert f"docker build -f deploy/Dockerfile -t kubecarbon:{version} ." in DOCKERFILE
    assert (f"docker build -f deploy/Dockerfile --target agent -t kubecarbon-agent:{version} ."
            in DOCKERFILE)
    # make image tags what a kubelet looks for when the chart says kubecarbon:<version>
    assert {build_images_module.image_reference(target, version)
            for target in build_images_module.TARGETS} == {
        f"docker.io/library/{image}" for image in images.values()}
