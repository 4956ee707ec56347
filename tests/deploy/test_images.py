"""`make image` (deploy/build_images.py): the host's pip configuration reaches the build, and
the two images hold what they should, looked at inside.

The build test runs the real build with podman, as `make image` does, into the shared cache
(/var/cache/kubecarbon/images): a few seconds warm, about three minutes cold, and the cluster
suite imports the same archives. The image contents are read from podman's storage
(`podman image mount`) and their programs run there under chroot, so no container runtime is
needed to look inside.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"


def test_the_hosts_pip_configuration_and_the_files_it_names_reach_the_build(
    build_images_module, tmp_path, monkeypatch
):
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    index = tmp_path / "mirror" / "simple"
    (index / "aiohttp").mkdir(parents=True)
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\ncert = {bundle}\nextra-index-url = file://{index}\n"
                      "[install]\nno-compile = true\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "7")
    monkeypatch.setenv("PIP_CERT", str(bundle))
    # the real pip of this Python reports what it would use
    sections = build_images_module.pip_config_sections(
        build_images_module.host_pip_listing(sys.executable))
    assert sections["global"]["cert"] == str(bundle)
    assert sections["global"]["default-timeout"] == "7"  # PIP_* variables land in [global]
    assert sections["global"]["extra-index-url"] == f"file://{index}"
    assert sections["install"]["no-compile"] == "true"
    written = configparser.ConfigParser(interpolation=None)
    written.read_string(build_images_module.pip_conf_text(sections))
    assert written["global"]["cert"] == str(bundle)
    mounted = build_images_module.referenced_host_paths(sections)
    assert bundle in mounted
    assert index.parent in mounted  # an index page links to ../../files/<wheel>
    command = build_images_module.build_command("podman", "agent", "x:1", "base:1",
                                                tmp_path / "forwarded.conf", mounted)
    assert f"{bundle}:{bundle}:ro" in command
    assert f"{tmp_path / 'forwarded.conf'}:/etc/pip.conf:ro" in command


def test_variables_outrank_files_and_other_lines_are_ignored(build_images_module):
    listing = ("global.cert='/etc/ssl/host.pem'\n:env:.cert='/etc/ssl/env.pem'\n"
               "install.user='false'\nWARNING: something pip said\n")
    assert build_images_module.pip_config_sections(listing) == {
        "global": {"cert": "/etc/ssl/env.pem"}, "install": {"user": "false"}}
    assert build_images_module.pip_config_sections("") == {}
    assert build_images_module.pip_conf_text({}) == ""


def _podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def built(build_images_module) -> dict[str, Any]:
    assert build_images_module.main(["--offline"]) == 0  # no image downloads in tests
    summary = json.loads((build_images_module.default_cache_dir() / "images.json").read_text())
    return {image["target"]: image for image in summary["images"]} | {"_summary": summary}


@pytest.fixture
def mounted(built) -> Iterator[dict[str, Path]]:
    roots = {}
    try:
        for target in ("agent", "kubecarbon"):
            roots[target] = Path(_podman("image", "mount", built[target]["reference"]))
        yield roots
    finally:
        for target in roots:
            _podman("image", "unmount", built[target]["reference"])


def _site_packages(root: Path) -> set[str]:
    (site,) = (root / "opt" / "kubecarbon" / "lib").glob("python3.*/site-packages")
    return {path.name.lower() for path in site.iterdir()}


def _run(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", "--userspec=10001:10001", str(root), *argv],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_images_are_built_tagged_and_saved_for_containerd(built):
    summary = built["_summary"]
    assert summary["base_origin"].startswith(summary["base"])  # the output says which base
    for target, name in (("agent", "kubecarbon-agent"), ("kubecarbon", "kubecarbon")):
        image = built[target]
        assert image["reference"] == f"docker.io/library/{name}:{VERSION}"
        with tarfile.open(image["archive"]) as archive:  # what `ctr images import` reads
            (manifest,) = json.load(archive.extractfile("manifest.json"))
            assert manifest["RepoTags"] == [image["reference"]]
            assert {Path(layer).name for layer in manifest["Layers"]} <= {
                Path(member).name for member in archive.getnames()}
    # every node pulls the agent image: well under half of the collector's
    assert built["agent"]["size_bytes"] < 0.5 * built["kubecarbon"]["size_bytes"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_agent_image_has_no_numpy_or_kubernetes_client_and_both_run(built, mounted):
    agent, full = _site_packages(mounted["agent"]), _site_packages(mounted["kubecarbon"])
    assert {"aiohttp", "prometheus_client", "psutil", "agent"} <= agent
    assert not {"numpy", "kubernetes"} & agent
    assert {"numpy", "kubernetes", "fastjsonschema"} <= full
    assert not {"pip", "setuptools"} & (agent | full)  # build tools stay in the build stage
    for target, command in (("agent", "agent"), ("kubecarbon", "agent"),
                            ("kubecarbon", "collector")):
        done = _run(mounted[target], "/opt/kubecarbon/bin/kubecarbon", command, "--help")
        assert done.returncode == 0 and "usage: kubecarbon" in done.stdout, done.stderr
    missing = _run(mounted["agent"], "/opt/kubecarbon/bin/kubecarbon", "collector", "--help")
    assert missing.returncode == 2 and "missing dependency" in missing.stderr
    for target in ("agent", "kubecarbon"):
        config = json.loads(_podman("image", "inspect", built[target]["reference"]))[0]
        assert config["Config"]["User"] == "10001:10001"
        assert config["Config"]["Entrypoint"] == ["kubecarbon"]
        passwd = (mounted[target] / "etc" / "passwd").read_text()
        assert "kubecarbon:x:10001:10001:" in passwd
