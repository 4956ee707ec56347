"""Shared pieces of the chart, rules and dashboard tests.

deploy/render.py, deploy/build_images.py and dashboards/generate.py are scripts, not
packages, so they are loaded from their files; the tests then use exactly the code that
writes the files users apply.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


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

