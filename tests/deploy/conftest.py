"""Shared pieces of the chart, rules and dashboard tests.

deploy/render.py, deploy/build_images.py and dashboards/generate.py are scripts, not
packages, so they are loaded from their files; the tests then use exactly the code that
writes the files users apply.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# chart_flags beside this file, and the API server harness of tests/k8s, import by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO_ROOT / "tests" / "k8s"))

from k8s_harness import APISERVER_VERSION, find_etcd, local_cluster  # noqa: E402


def _load_script(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


RENDER = _load_script("kubecarbon_deploy_render", REPO_ROOT / "deploy" / "render.py")
DASHBOARDS = _load_script(
    "kubecarbon_dashboards_generate", REPO_ROOT / "dashboards" / "generate.py"
)
BUILD_IMAGES = _load_script("kubecarbon_build_images", REPO_ROOT / "deploy" / "build_images.py")


@pytest.fixture(scope="session")
def render_module() -> ModuleType:
    return RENDER


@pytest.fixture(scope="session")
def dashboards_module() -> ModuleType:
    return DASHBOARDS


@pytest.fixture(scope="session")
def build_images_module() -> ModuleType:
    return BUILD_IMAGES


@pytest.fixture(scope="session")
def render_objects() -> Callable[..., list[dict[str, Any]]]:
    """values -> the rendered Kubernetes objects (release and namespace "kubecarbon")."""

    def render(values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return RENDER.manifest_objects(RENDER.render_chart(values))

    return render


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `make apt-deps` installs the Debian package prometheus")
    return path



@pytest.fixture(scope="session")
def admin_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Admin kubeconfig of a real kube-apiserver 1.20.2 with etcd, one per session: the one
    tests/k8s builds (`make kube-apiserver`), started through its harness."""
    cache = Path(os.environ.get("KUBECARBON_APISERVER_CACHE", "/var/cache/kubecarbon"))
    binary = cache / f"kube-apiserver-{APISERVER_VERSION}" / "kube-apiserver"
    etcd = find_etcd()
    if not binary.is_file() or etcd is None:
        pytest.fail(f"no kube-apiserver at {binary} or no etcd on PATH: run `make kube-apiserver`")
    with local_cluster(tmp_path_factory.mktemp("k8s"), binary, etcd) as cluster:
        yield cluster.admin.kubeconfig
