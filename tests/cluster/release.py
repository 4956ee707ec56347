"""kubecarbon installed into the cluster with the real Helm engine, from the images built here.

`make image` (deploy/build_images.py) saves the kubecarbon and kubecarbon-agent
images as archives and lists them in images.json; the node imports them, as a
node without a registry must, and the release uses `image.pullPolicy: Never`.
No cluster DNS runs here, so the agents are pointed at the collector Service
through the Service environment variables the kubelet gives every pod.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "kubecarbon"
RELEASE = "kubecarbon"
NAMESPACE = "kubecarbon"
AGENT_INTERVAL_SECONDS = 5
# The collector Service's variables, expanded by the kubelet in the agent's environment.
COLLECTOR_URL_FROM_SERVICE_ENV = (
    "http://$(KUBECARBON_COLLECTOR_SERVICE_HOST):$(KUBECARBON_COLLECTOR_SERVICE_PORT)"
)


def image_cache() -> Path:
    return Path(os.environ.get("KUBECARBON_IMAGE_CACHE", "/var/cache/kubecarbon/images"))


def image_archives() -> list[Path]:
    """The archives `make image` recorded in images.json."""
    listing = image_cache() / "images.json"
    if not listing.is_file():
        raise FileNotFoundError(f"no {listing}: run `make image` first")
    images = json.loads(listing.read_text())["images"]
    return [Path(image["archive"]) for image in images]


def release_values() -> dict[str, Any]:
    """What a user without a registry or cluster DNS sets, plus a short agent interval and
    per-pod series, so the suite can compare pods with the kernel within a minute."""
    return {
        "image": {"pullPolicy": "Never"},
        "agent": {
            "intervalSeconds": AGENT_INTERVAL_SECONDS,
            "extraEnv": [{"name": "KUBECARBON_COLLECTOR_URL",
                          "value": COLLECTOR_URL_FROM_SERVICE_ENV}],
        },
        "collector": {"extraEnv": [{"name": "KUBECARBON_PER_POD_SERIES", "value": "true"}]},
    }


def chart_for(server_minor: int, directory: Path) -> Path:
    """The chart, or a copy without its kubeVersion line if that excludes this server.

    The chart's objects use no API newer than the server's; the copy is how the
    suite shows the chart runs on 1.20 whatever range Chart.yaml declares.
    """
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    constraint = str(chart.get("kubeVersion", ""))
    if not constraint.startswith(">=") or _minor(constraint[2:]) <= server_minor:
        return CHART_DIR
    copy = directory / "kubecarbon"
    shutil.copytree(CHART_DIR, copy, dirs_exist_ok=True)
    lines = (copy / "Chart.yaml").read_text().splitlines(keepends=True)
    (copy / "Chart.yaml").write_text("".join(line for line in lines
                                             if not line.startswith("kubeVersion:")))
    return copy


def _minor(version: str) -> int:
    return int(version.strip().lstrip("v").split(".")[1])


def install(kubeconfig: Path, chart: Path, values: dict[str, Any]) -> dict[str, Any]:
    with helm.Config(kubeconfig_path=kubeconfig, namespace=NAMESPACE) as cluster:
        release: dict[str, Any] = cluster.install(chart, RELEASE, values, create_namespace=True)
        return release


def upgrade(kubeconfig: Path, chart: Path, values: dict[str, Any]) -> dict[str, Any]:
    with helm.Config(kubeconfig_path=kubeconfig, namespace=NAMESPACE) as cluster:
        release: dict[str, Any] = cluster.upgrade(chart, RELEASE, values)
        return release
