"""The agent finds its files through the chart's host mounts, and sees nothing else of /sys.

A fixture node's tree is laid out as the agent's container sees it, from the rendered
DaemonSet's own hostPath -> mountPath pairs (a bind mount follows a symlinked source, like
v1's `cpuacct -> cpu,cpuacct`, and keeps the symlinks inside it); the agent's sources are
then built from the DaemonSet's environment and read once each.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.runtime import host_sources
from agent.settings import SourceSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "agent"
V1 = {"agent": {"cgroupVersion": 1}}
RAPL = {"agent": {"rapl": {"enabled": True}}}


def daemonset_of(render_objects, values: dict[str, Any]) -> dict[str, Any]:
    (daemonset,) = [o for o in render_objects(values) if o["kind"] == "DaemonSet"]
    return daemonset


def pod_view(daemonset: dict[str, Any], host: Path, view: Path) -> None:
    """Lay `host` out under `view` as the container's mounts show it; fail as the kubelet
    would when a hostPath is not of its declared type."""
    spec = daemonset["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    targets = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in spec["volumes"]:
        if "hostPath" not in volume:
            continue
        source = host / volume["hostPath"]["path"].lstrip("/")
        target = view / targets[volume["name"]].lstrip("/")
        kind = volume["hostPath"]["type"]
        assert (source.is_file() if kind == "File" else source.is_dir()), (
            f"hostPath type check failed: {volume['hostPath']['path']} is not a {kind}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "File":
            shutil.copyfile(source, target)
        else:
            shutil.copytree(source.resolve(), target, symlinks=True)


def agent_settings(daemonset: dict[str, Any], view: Path) -> SourceSettings:
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return SourceSettings(host_proc=view / env["KUBECARBON_HOST_PROC"].lstrip("/"),
                          host_sys=view / env["KUBECARBON_HOST_SYS"].lstrip("/"),
                          rapl_enabled=env.get("KUBECARBON_RAPL") == "true")


def node(tmp_path: Path, *fixtures: str) -> Path:
    host = tmp_path / "host"
    for name in fixtures:
        shutil.copytree(FIXTURES / name, host, symlinks=True, dirs_exist_ok=True)
    return host


@pytest.mark.parametrize(("fixture", "values"), [
    ("v2-systemd-containerd", {}),
    ("v2-cgroupfs-crio", {}),
    ("v1-systemd-docker", V1),
    ("v1-cgroupfs-containerd", V1),
])
def test_every_source_reads_through_the_mounts(fixture, values, render_objects, tmp_path):
    daemonset = daemonset_of(render_objects, values)
    view = tmp_path / "container"
    pod_view(daemonset, node(tmp_path, fixture), view)
    sources = host_sources(agent_settings(daemonset, view))
    assert sources.cpu.sample() and sources.memory.sample()
    assert sources.pod_cpu.sample()  # the fixture's pods, found through the one cgroup mount
    assert sources.density.sample()
    assert sources.rapl is None


def test_v1_nodes_show_the_agent_the_cpu_accounting_hierarchy_only(render_objects, tmp_path):
    view = tmp_path / "container"
    pod_view(daemonset_of(render_objects, V1), node(tmp_path, "v1-systemd-docker"), view)
    assert sorted(p.name for p in (view / "host" / "sys" / "fs" / "cgroup").iterdir()) == [
        "cpuacct"]  # no memory, no unified, no cpu: nothing else to write to
    assert sorted(p.name for p in (view / "host" / "proc").iterdir()) == ["meminfo", "stat"]


def test_the_v2_default_on_a_v1_node_still_reads_pods(render_objects, tmp_path):
    # Documented fallback: it works, but the mount holds every v1 hierarchy (operations.md).
    daemonset = daemonset_of(render_objects, {})
    view = tmp_path / "container"
    pod_view(daemonset, node(tmp_path, "v1-systemd-docker"), view)
    assert host_sources(agent_settings(daemonset, view)).pod_cpu.sample()
    assert (view / "host" / "sys" / "fs" / "cgroup" / "memory").is_dir()


def test_v1_layout_on_a_v2_node_fails_like_the_kubelet_would(render_objects, tmp_path):
    with pytest.raises(AssertionError, match="/sys/fs/cgroup/cpuacct is not a Directory"):
        pod_view(daemonset_of(render_objects, V1), node(tmp_path, "v2-systemd-containerd"),
                 tmp_path / "container")


def test_rapl_reads_powercap_through_class_and_devices(render_objects, tmp_path):
    daemonset = daemonset_of(render_objects, RAPL)
    view = tmp_path / "container"
    pod_view(daemonset, node(tmp_path, "v2-systemd-containerd", "rapl-laptop"), view)
    sources = host_sources(agent_settings(daemonset, view))
    assert sources.rapl is not None
    assert sources.rapl.sample()  # zones behind the /sys/class -> /sys/devices symlinks
