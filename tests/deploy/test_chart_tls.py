"""The chart's transport security: HTTPS from a kubernetes.io/tls Secret (what cert-manager
makes), agents trusting only its CA bundle, monitors scraping over TLS, the previous token
during a rotation, and a warning when reports travel in clear text."""

from __future__ import annotations

import base64

import helm_python as helm
import pytest
from chart_flags import FLAG_VALUES
from test_chart import CHART_DIR, container, env_of, find, pod_spec

SERVICE_NAME = "kubecarbon-collector.kubecarbon.svc"


def volume(workload, name):
    (found,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == name]
    return found


def mount_path(workload, name):
    (found,) = [m for m in container(workload)["volumeMounts"] if m["name"] == name]
    assert found["readOnly"] is True
    return found["mountPath"]


def probe_schemes(workload):
    spec = container(workload)
    return {spec[probe]["httpGet"].get("scheme", "HTTP")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe") if probe in spec}


def test_tls_serves_the_secrets_pair_and_agents_mount_only_its_ca(render_objects):
    objects = render_objects(FLAG_VALUES["tls"])
    collector, agent = find(objects, "StatefulSet"), find(objects, "DaemonSet")
    tls = volume(collector, "tls")["secret"]
    assert tls["secretName"] == "collector-tls"
    assert [item["key"] for item in tls["items"]] == ["tls.crt", "tls.key"]
    directory = mount_path(collector, "tls")
    env = env_of(collector)
    assert env["KUBECARBON_TLS_CERT_FILE"] == f"{directory}/tls.crt"
    assert env["KUBECARBON_TLS_KEY_FILE"] == f"{directory}/tls.key"
    assert probe_schemes(collector) == {"HTTPS"}

    ca = volume(agent, "collector-ca")["secret"]
    # the key stays with the collector: agents get the CA bundle alone
    assert ca == {"secretName": "collector-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    agent_env = env_of(agent)
    ca_directory = mount_path(agent, "collector-ca")
    assert agent_env["KUBECARBON_COLLECTOR_CA_FILE"] == f"{ca_directory}/ca.crt"
    assert agent_env["KUBECARBON_COLLECTOR_SERVER_NAME"] == SERVICE_NAME
    assert agent_env["KUBECARBON_COLLECTOR_URL"] == f"https://{SERVICE_NAME}:9880"


def test_tls_replicas_verify_each_other_with_the_agents_ca_and_name(render_objects):
    objects = render_objects(FLAG_VALUES["tls-replicas"])
    collector, agent = find(objects, "StatefulSet"), find(objects, "DaemonSet")
    assert collector["spec"]["replicas"] == 3
    # the same bundle the agents mount, the CA alone (the key is in the tls volume)
    assert volume(collector, "peer-ca") == {**volume(agent, "collector-ca"), "name": "peer-ca"}
    assert volume(collector, "peer-ca")["secret"]["items"] == [{"key": "ca.crt",
                                                                "path": "ca.crt"}]
    env = env_of(collector)
    assert env["KUBECARBON_PEER_CA_FILE"] == f"{mount_path(collector, 'peer-ca')}/ca.crt"
    assert env["KUBECARBON_PEER_SERVER_NAME"] == env_of(agent)[
        "KUBECARBON_COLLECTOR_SERVER_NAME"] == SERVICE_NAME
    assert mount_path(collector, "peer-ca") != mount_path(collector, "tls")

    separate = {**FLAG_VALUES["tls-ca-configmap"], "collector": {"replicas": 2}}
    objects = render_objects(separate)
    collector = find(objects, "StatefulSet")
    assert volume(collector, "peer-ca")["configMap"] == {
        "name": "corp-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}
    assert env_of(collector)["KUBECARBON_PEER_SERVER_NAME"] == "collector.example.org"


@pytest.mark.parametrize("values", [FLAG_VALUES["tls"], FLAG_VALUES["replicas"]])
def test_replicas_verify_each_other_only_when_both_tls_and_replicas(render_objects, values):
    collector = find(render_objects(values), "StatefulSet")
    assert "peer-ca" not in {v["name"] for v in pod_spec(collector)["volumes"]}
    assert not {k for k in env_of(collector) if k.startswith("KUBECARBON_PEER_")}


def test_plain_http_by_default_with_nothing_of_tls(render_objects):
    objects = render_objects({})
    collector, agent = find(objects, "StatefulSet"), find(objects, "DaemonSet")
    assert probe_schemes(collector) == {"HTTP"}
    assert not {"tls", "collector-ca"} & {v["name"] for v in pod_spec(collector)["volumes"]
                                           + pod_spec(agent)["volumes"]}
    assert not {k for k in env_of(collector) | env_of(agent) if "TLS" in k or "_CA_" in k}
    assert env_of(agent)["KUBECARBON_COLLECTOR_URL"] == f"http://{SERVICE_NAME}:9880"


def test_a_separate_ca_and_server_name_reach_agents_and_the_service_monitor(render_objects):
    objects = render_objects(FLAG_VALUES["tls-ca-configmap"])
    agent = find(objects, "DaemonSet")
    assert volume(agent, "collector-ca")["configMap"] == {
        "name": "corp-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}
    assert env_of(agent)["KUBECARBON_COLLECTOR_SERVER_NAME"] == "collector.example.org"
    (endpoint,) = find(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"ca": {"configMap": {"name": "corp-ca", "key": "bundle.pem"}},
                                     "serverName": "collector.example.org"}


def test_the_service_monitor_scrapes_over_tls_with_the_secrets_ca(render_objects):
    values = {**FLAG_VALUES["tls"], "serviceMonitor": {"enabled": True}}
    (endpoint,) = find(render_objects(values), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": "collector-tls", "key": "ca.crt"}},
                                     "serverName": SERVICE_NAME}
    (plain,) = find(render_objects(FLAG_VALUES["service-monitor"]), "ServiceMonitor")["spec"][
        "endpoints"]
    assert "scheme" not in plain and "tlsConfig" not in plain


def test_service_env_agents_dial_https_by_cluster_ip_and_check_the_service_name(render_objects):
    values = {**FLAG_VALUES["tls"], "agent": {"collectorAddress": "serviceEnv"}}
    env = env_of(find(render_objects(values), "DaemonSet"))
    assert "KUBECARBON_COLLECTOR_URL" not in env  # the agent makes https://IP:PORT itself
    assert env["KUBECARBON_COLLECTOR_SERVICE_HOST"] == "$(KUBECARBON_COLLECTOR_SERVICE_HOST)"
    assert env["KUBECARBON_COLLECTOR_SERVER_NAME"] == SERVICE_NAME
    assert "KUBECARBON_COLLECTOR_CA_FILE" in env


def test_tls_without_a_secret_is_refused_with_a_reason():
    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(helm.HelmValuesError) as caught:
        chart.render({"tls": {"enabled": True}}, name="kubecarbon", namespace="kubecarbon")
    assert "/tls/secretName" in str(caught.value)


def test_the_previous_token_sits_beside_the_token_and_the_collector_reads_it(render_objects):
    objects = render_objects(FLAG_VALUES["token-previous"])
    data = find(objects, "Secret")["data"]
    assert base64.b64decode(data["previous-token"]) == b"old-token-0123456789ab"
    assert base64.b64decode(data["token"]) == b"s3cret-token-0123456789"
    collector = find(objects, "StatefulSet")
    assert env_of(collector)["KUBECARBON_PREVIOUS_TOKEN_FILE"] == (
        mount_path(collector, "token") + "/previous-token")
    assert "previous-token" not in find(render_objects({}), "Secret")["data"]


def test_notes_warn_of_clear_text_only_without_tls(render_module):
    plain = render_module.render_chart({})["kubecarbon/templates/NOTES.txt"]
    assert "reports and the bearer token travel in clear text" in plain
    secured = render_module.render_chart(FLAG_VALUES["tls"])["kubecarbon/templates/NOTES.txt"]
    assert "clear text" not in secured
    assert "open https://localhost:9880/" in secured
    assert "over HTTPS by pod IP" not in secured  # one replica: nothing to forward
    replicas = render_module.render_chart(FLAG_VALUES["tls-replicas"])[
        "kubecarbon/templates/NOTES.txt"]
    assert (f"Replicas forward reports to each other over HTTPS by pod IP, checking the name\n"
            f"   {SERVICE_NAME} in each other's certificate: the Secret collector-tls\n"
            f"   must carry it.") in replicas
