"""The settings the chart passes are the ones the real agent and collector parse.

The rendered containers' KUBECARBON_* variables go through agent.cli.parse_settings and
collector.options.parse_settings, the functions `kubecarbon agent` and `kubecarbon
collector` start with, with the pod's paths mapped onto this machine (/host/proc -> /proc,
mounted files -> temporary files). A renamed flag, or a value a parser refuses, fails here
before it fails in a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agent.cli import parse_settings as parse_agent_settings
from collector.options import parse_settings as parse_collector_settings

EVERYTHING = {
    "agent": {"rapl": {"enabled": True}, "intervalSeconds": 30, "port": 9991,
              "extraEnv": [{"name": "KUBECARBON_GZIP", "value": "true"}]},
    "collector": {"port": 9990, "kubernetes": "off",
                  "config": {"default_profile": {"provider": "baremetal", "region": "china"}},
                  "extraEnv": [{"name": "KUBECARBON_STALE_AFTER", "value": "120"}]},
}


def container_env(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (workload,) = [o for o in objects if o["kind"] == kind]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def on_this_machine(env: dict[str, Any], tmp_path: Path, objects: list[dict[str, Any]]) -> dict:
    """The pod's environment with mounted paths replaced by real ones here."""
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    mapped = dict(env)
    for name, value in env.items():
        if name == "KUBECARBON_HOST_PROC":
            mapped[name] = "/proc"
        elif name == "KUBECARBON_HOST_SYS":
            mapped[name] = "/sys"
        elif name == "KUBECARBON_TOKEN_FILE":
            mapped[name] = str(token)
        elif name == "KUBECARBON_STATE_FILE":
            mapped[name] = str(tmp_path / "state.json")
        elif name == "KUBECARBON_CONFIG":
            (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
            path = tmp_path / "config.yaml"
            path.write_text(config_map["data"][Path(value).name])
            mapped[name] = str(path)
    return mapped


def test_agent_parses_the_chart_environment(render_objects, tmp_path):
    objects = render_objects(EVERYTHING)
    env = container_env(objects, "DaemonSet")
    assert env.pop("KUBECARBON_NODE_NAME") == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    env["KUBECARBON_NODE_NAME"] = "ip-10-0-1-17.ec2.internal"  # what the kubelet fills in
    settings, _ = parse_agent_settings([], on_this_machine(env, tmp_path, objects))
    assert settings.node_name == "ip-10-0-1-17.ec2.internal"
    assert settings.sampler.interval_seconds == 30
    assert settings.sources.rapl_enabled is True
    assert settings.server.listen_port == 9991
    assert settings.delivery.gzip is True
    assert settings.delivery.token_file == tmp_path / "token"
    assert settings.delivery.collector_url.rstrip("/") == (
        "http://kubecarbon-collector.kubecarbon.svc:9990")


def test_agent_without_rapl_does_not_read_it(render_objects, tmp_path):
    objects = render_objects({})
    env = container_env(objects, "DaemonSet")
    env["KUBECARBON_NODE_NAME"] = "node-a"
    settings, _ = parse_agent_settings([], on_this_machine(env, tmp_path, objects))
    assert settings.sources.rapl_enabled is False
    assert settings.sampler.interval_seconds == 15


def test_collector_parses_the_chart_environment_and_config(render_objects, tmp_path):
    objects = render_objects(EVERYTHING)
    env = container_env(objects, "StatefulSet")
    # what the kubelet fills in from the pod
    assert env.pop("KUBECARBON_REPLICA_NAME") == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env.pop("KUBECARBON_REPLICA_NAMESPACE") == {
        "fieldRef": {"fieldPath": "metadata.namespace"}}
    env |= {"KUBECARBON_REPLICA_NAME": "kubecarbon-collector-0",
            "KUBECARBON_REPLICA_NAMESPACE": "kubecarbon"}
    settings = parse_collector_settings([], on_this_machine(env, tmp_path, objects))
    assert settings.server.listen_port == 9990
    assert settings.server.token_file == tmp_path / "token"
    assert settings.state.state_file == tmp_path / "state.json"
    assert settings.kubernetes == "off"
    assert settings.export.stale_after_seconds == 120
    assert settings.config_file == tmp_path / "config.yaml"
    assert yaml.safe_load(settings.config_file.read_text()) == EVERYTHING["collector"]["config"]
    assert (settings.replicas.replicas, settings.replicas.replica_name) == (
        1, "kubecarbon-collector-0")


def test_collector_replicas_parse_the_chart_environment(render_objects, tmp_path):
    objects = render_objects({"collector": {"replicas": 3}})
    env = container_env(objects, "StatefulSet")
    env |= {"KUBECARBON_REPLICA_NAME": "kubecarbon-collector-2",
            "KUBECARBON_REPLICA_NAMESPACE": "kubecarbon"}
    settings = parse_collector_settings([], on_this_machine(env, tmp_path, objects))
    assert settings.replicas.replicas == 3
    assert settings.replicas.namespace == "kubecarbon"
    assert settings.kubernetes == "auto" and settings.replicas.peers_file is None


def test_tls_replicas_parse_the_chart_environment(render_objects, tmp_path):
    objects = render_objects({"collector": {"replicas": 2},
                              "tls": {"enabled": True, "secretName": "collector-tls"}})
    env = container_env(objects, "StatefulSet")
    env |= {"KUBECARBON_REPLICA_NAME": "kubecarbon-collector-1",
            "KUBECARBON_REPLICA_NAMESPACE": "kubecarbon"}
    mapped = on_this_machine(env, tmp_path, objects)
    for name in ("KUBECARBON_TLS_CERT_FILE", "KUBECARBON_TLS_KEY_FILE",
                 "KUBECARBON_PEER_CA_FILE"):
        mapped[name] = str(tmp_path / Path(env[name]).name)
    settings = parse_collector_settings([], mapped)
    assert settings.server.tls_cert_file == tmp_path / "tls.crt"
    assert settings.replicas.peer_ca_file == tmp_path / "ca.crt"
    assert settings.replicas.peer_server_name == "kubecarbon-collector.kubecarbon.svc"
