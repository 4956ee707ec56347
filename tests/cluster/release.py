"""kubecarbon installed into the cluster with the real Helm engine, from the images built here.

`make image` (deploy/build_images.py) saves the kubecarbon and kubecarbon-agent
images as archives and lists them in images.json; the node imports them, as a
node without a registry must, and the release uses `image.pullPolicy: Never`.
No cluster DNS runs here, so the agents find the collector Service through the
Service environment variables the kubelet gives every pod
(`agent.collectorAddress: serviceEnv`), and the node is cgroup v1
(`agent.cgroupVersion: 1`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import helm_python as helm

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "kubecarbon"
RELEASE = "kubecarbon"
NAMESPACE = "kubecarbon"
AGENT_INTERVAL_SECONDS = 5


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
    """What a user without a registry or cluster DNS on a cgroup v1 node sets, plus a short
    agent interval and per-pod series, so the suite can compare pods with the kernel
    within a minute, and rightsizing history short enough to give recommendations."""
    return {
        "image": {"pullPolicy": "Never"},
        "agent": {
            "intervalSeconds": AGENT_INTERVAL_SECONDS,
            "collectorAddress": "serviceEnv",
            "cgroupVersion": 1,
        },
        "collector": {"extraEnv": [
            {"name": "KUBECARBON_PER_POD_SERIES", "value": "true"},
            # rightsizing needs history (a day by default): a sample every 10 s and 30 s of
            # history let the suite's few minutes produce recommendations for every panel
            {"name": "KUBECARBON_RIGHTSIZING_SAMPLE_INTERVAL", "value": "10"},
            {"name": "KUBECARBON_RIGHTSIZING_MIN_HISTORY", "value": "30"},
            {"name": "KUBECARBON_RIGHTSIZING_WINDOW", "value": "600"},
        ]},
    }


def rule_groups() -> dict[str, Any]:
    """The chart's recording rules and alerts with default thresholds (deploy/render.py)."""
    name = "kubecarbon_deploy_render"  # deploy/ holds scripts, not a package
    render = sys.modules.get(name)
    if render is None:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "deploy" / "render.py")
        assert spec is not None and spec.loader is not None
        render = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(render)
    groups: dict[str, Any] = render.rule_groups()
    return groups


# Evaluated beside the chart's rules, at the same instants: which collectors' samples
# an evaluation of the fleet sums had, and how old the oldest was. Samples arrive by
# remote write and a scrape can fail, so an evaluation may lack a replica's samples.
RULE_INPUTS = {
    "kubecarbon_test:avoided_servers_inputs:instances":
        "count(count by (instance) (kubecarbon_avoided_servers))",
    "kubecarbon_test:avoided_servers_inputs:oldest":
        "min(timestamp(kubecarbon_avoided_servers))",
}


def rule_groups_watching_inputs() -> dict[str, Any]:
    """rule_groups(), with RULE_INPUTS recorded in the group that holds the fleet sums."""
    groups = rule_groups()
    (sums,) = [g for g in groups["groups"]
               if any(r.get("record") == "kubecarbon:avoided_servers:sum" for r in g["rules"])]
    sums["rules"] += [{"record": name, "expr": expr} for name, expr in RULE_INPUTS.items()]
    return groups


def install(kubeconfig: Path, chart: Path, values: dict[str, Any]) -> dict[str, Any]:
    with helm.Config(kubeconfig_path=kubeconfig, namespace=NAMESPACE) as cluster:
        release: dict[str, Any] = cluster.install(chart, RELEASE, values, create_namespace=True)
        return release


def upgrade(kubeconfig: Path, chart: Path, values: dict[str, Any],
            reuse_values: bool = False) -> dict[str, Any]:
    """`helm upgrade`; with reuse_values, `values` go over the release's current ones."""
    with helm.Config(kubeconfig_path=kubeconfig, namespace=NAMESPACE) as cluster:
        release: dict[str, Any] = cluster.upgrade(chart, RELEASE, values,
                                                  reuse_values=reuse_values)
        return release
