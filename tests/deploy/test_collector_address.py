"""How agents reach the collector without cluster DNS (agent.collectorAddress: serviceEnv).

The kubelet sets <SERVICE>_SERVICE_HOST and <SERVICE>_SERVICE_PORT in every pod for each
Service of the pod's namespace and expands `$(NAME)` in env values from them; the chart maps
the collector Service's onto KUBECARBON_COLLECTOR_SERVICE_HOST/PORT, and the agent builds its
URL from those when no --collector-url is given. The cluster suite shows it on a real kubelet.
"""

from __future__ import annotations

import os
import re

import pytest
from chart_flags import FLAG_VALUES

from agent.cli import main, parse_settings

ARGS = ["--node-name", "node-1"]


def url_from(env: dict[str, str], argv: list[str] | None = None) -> str:
    settings, _ = parse_settings([*ARGS, *(argv or [])], env=env)
    return settings.delivery.collector_url


def test_the_service_variables_give_the_url():
    env = {"KUBECARBON_COLLECTOR_SERVICE_HOST": "10.96.0.12",
           "KUBECARBON_COLLECTOR_SERVICE_PORT": "9880"}
    assert url_from(env) == "http://10.96.0.12:9880"
    ipv6 = {**env, "KUBECARBON_COLLECTOR_SERVICE_HOST": "fd00:10:96::c"}
    assert url_from(ipv6) == "http://[fd00:10:96::c]:9880"


def test_a_given_url_wins_over_the_service_variables():
    env = {"KUBECARBON_COLLECTOR_SERVICE_HOST": "10.96.0.12",
           "KUBECARBON_COLLECTOR_SERVICE_PORT": "9880"}
    assert url_from(env, ["--collector-url", "http://collector:1"]) == "http://collector:1"
    dns_name = "http://kubecarbon-collector.kubecarbon.svc:9880"
    assert url_from({**env, "KUBECARBON_COLLECTOR_URL": dns_name}) == dns_name


@pytest.mark.parametrize(("env", "message"), [
    # a pod created before its Service: the kubelet leaves the reference unexpanded
    ({"KUBECARBON_COLLECTOR_SERVICE_HOST": "$(PROD_KUBECARBON_COLLECTOR_SERVICE_HOST)",
      "KUBECARBON_COLLECTOR_SERVICE_PORT": "$(PROD_KUBECARBON_COLLECTOR_SERVICE_PORT)"},
     "KUBECARBON_COLLECTOR_SERVICE_HOST: '$(PROD_KUBECARBON_COLLECTOR_SERVICE_HOST)' is not an "
     "IP address"),
    ({"KUBECARBON_COLLECTOR_SERVICE_HOST": "10.96.0.12",
      "KUBECARBON_COLLECTOR_SERVICE_PORT": "http"}, "_SERVICE_PORT: 'http' is not a port"),
    ({"KUBECARBON_COLLECTOR_SERVICE_PORT": "9880"}, "_SERVICE_HOST: '' is not an IP address"),
    ({}, "the following arguments are required: --collector-url (or "
         "KUBECARBON_COLLECTOR_SERVICE_HOST and KUBECARBON_COLLECTOR_SERVICE_PORT)"),
])
def test_missing_or_unexpanded_variables_stop_the_agent_with_one_line(env, message, capsys,
                                                                     monkeypatch):
    for key in [key for key in os.environ if key.startswith("KUBECARBON_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(ARGS) == 2  # the kubelet restarts it, with the variables of that moment
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def kubelet_environment(container: dict, services: dict[str, tuple[str, int]]) -> dict[str, str]:
    """The container's variables as a kubelet composes them: each Service's
    <NAME>_SERVICE_HOST/_PORT, then the container's env with `$(NAME)` expanded."""
    service_env: dict[str, str] = {}
    for name, (cluster_ip, port) in services.items():
        prefix = name.upper().replace("-", "_")
        service_env[f"{prefix}_SERVICE_HOST"] = cluster_ip
        service_env[f"{prefix}_SERVICE_PORT"] = str(port)
    declared: dict[str, str] = {}

    def expand(reference: re.Match[str]) -> str:  # an unknown name stays as written
        return {**service_env, **declared}.get(reference.group(1), reference.group(0))

    for variable in container["env"]:
        if "value" in variable:
            declared[variable["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand,
                                                variable["value"])
    return {**service_env, **declared}


@pytest.mark.parametrize("release", ["kubecarbon", "prod"])
def test_the_chart_and_the_agent_meet_on_the_collector_service(release, render_module):
    objects = render_module.manifest_objects(
        render_module.render_chart(FLAG_VALUES["service-env"], release=release))
    (service,) = [o for o in objects if o["kind"] == "Service"]
    (daemonset,) = [o for o in objects if o["kind"] == "DaemonSet"]
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    port = service["spec"]["ports"][0]["port"]
    env = kubelet_environment(container, {service["metadata"]["name"]: ("10.96.0.12", port),
                                          "kubernetes": ("10.96.0.1", 443)})
    # what the agent reads of it here (the host paths exist only in the pod)
    collector_env = {k: v for k, v in env.items() if k.startswith("KUBECARBON_COLLECTOR_")}
    assert url_from(collector_env) == f"http://10.96.0.12:{port}"
