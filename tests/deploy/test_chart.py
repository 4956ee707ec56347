"""The Helm chart, through the real Helm engine (helm-python-sdk) and kubernetes-validate."""

from __future__ import annotations

import base64
import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml
from chart_flags import FLAG_VALUES

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "kubecarbon"
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

def schema_versions() -> list[str]:
    """Every Kubernetes minor kubernetes-validate has schemas for, oldest first."""
    return sorted({kv_utils.major_minor(v) for v in kv_utils.all_versions()},
                  key=lambda v: tuple(map(int, v.split("."))))


def newest_kubernetes_versions(count: int = 3) -> list[str]:
    return schema_versions()[-count:]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects
               if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(workload)["containers"]
    return only


def env_of(workload: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(workload)["env"]}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_chart_loads_and_matches_the_package_version():
    with helm.Chart.load(CHART_DIR) as chart:
        assert chart.name == "kubecarbon"
        assert chart.metadata["appVersion"] == version("kubecarbon")
        assert chart.schema is not None and chart.schema["additionalProperties"] is False


@pytest.mark.parametrize("flag", sorted(FLAG_VALUES))
def test_lint_is_clean(flag):
    report = helm.lint(CHART_DIR, FLAG_VALUES[flag], strict=True, namespace="kubecarbon")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == []


def oldest_supported_version() -> str:
    """The floor of Chart.yaml's kubeVersion (">=1.20.0-0" -> "1.20")."""
    with helm.Chart.load(CHART_DIR) as chart:
        floor = re.fullmatch(r">=(\d+\.\d+)\.\d+-0", chart.metadata["kubeVersion"])
    assert floor is not None
    return floor.group(1)


def minor(version: str) -> tuple[int, int]:
    major, minor_number = version.split(".")
    return int(major), int(minor_number)


def validate_strictly(objects: list[dict[str, Any]], versions: list[str]) -> int:
    """Objects validated (operator CRDs aside) against each version; fails naming the field."""
    validated = 0
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue  # kubernetes-validate has no operator CRD schemas; checked below
        for kube_version in versions:
            try:
                kubernetes_validate.validate(obj, kube_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(map(str, exc.path))
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on {kube_version}: "
                            f"{path}: {exc.message}")
        validated += 1
    return validated


def test_claimed_versions_are_the_ones_tested():
    # The floor is tested against a real 1.20 API server (test_helm_release.py,
    # test_plain_install.py); kubernetes-validate has schemas from 1.25 on, all checked below.
    assert oldest_supported_version() == "1.20"
    assert minor(schema_versions()[0]) <= (1, 25)


@pytest.mark.parametrize("flag", sorted(FLAG_VALUES))
def test_every_render_validates_on_the_newest_and_the_oldest_schema(flag, render_objects):
    versions = [*newest_kubernetes_versions(), schema_versions()[0]]
    assert len(set(versions)) == 4
    # two accounts, Secret, Service, DaemonSet, StatefulSet at least
    assert validate_strictly(render_objects(FLAG_VALUES[flag]), versions) >= 6


@pytest.mark.parametrize("flag", ["defaults", "everything"])
def test_renders_validate_on_every_supported_version_with_a_schema(flag, render_objects):
    versions = [v for v in schema_versions() if minor(v) >= minor(oldest_supported_version())]
    assert validate_strictly(render_objects(FLAG_VALUES[flag]), versions) >= 6


def test_strict_validation_catches_a_broken_object(render_objects):
    daemonset = find(render_objects({}), "DaemonSet")
    daemonset["spec"]["template"]["spec"]["hostPid"] = False  # misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, newest_kubernetes_versions()[-1], strict=True)


def test_flags_add_exactly_their_objects(render_objects):
    base = {(o["kind"], o["metadata"]["name"]) for o in render_objects({})}
    assert ("Secret", "kubecarbon-token") in base
    assert not {kind for kind, _ in base} & (CRD_KINDS | {"NetworkPolicy", "PodDisruptionBudget",
                                                          "PersistentVolumeClaim", "ConfigMap"})
    expected_extra = {
        "network-policy": {("NetworkPolicy", "kubecarbon-collector")},
        "cgroup-v1": set(),
        "service-env": set(),
        "service-monitor": {("ServiceMonitor", "kubecarbon-collector")},
        "pod-monitor": {("PodMonitor", "kubecarbon-agent")},
        "prometheus-rule": {("PrometheusRule", "kubecarbon")},
        "replicas": {("PodDisruptionBudget", "kubecarbon-collector")},
        "persistence": set(),  # a claim template in the StatefulSet, one claim per replica
        "existing-claim": set(),
        "collector-config": {("ConfigMap", "kubecarbon-collector")},
        "dashboards": {("ConfigMap", f"kubecarbon-dashboard-kubecarbon-{name}")
                       for name in ("fleet", "node", "namespaces", "rightsizing")},
    }
    for flag, extra in expected_extra.items():
        rendered = {(o["kind"], o["metadata"]["name"]) for o in render_objects(FLAG_VALUES[flag])}
        assert rendered - base == extra, flag


# --- the agent DaemonSet ------------------------------------------------------------------


def host_mounts(daemonset: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    """Host path -> (its hostPath type, where the container sees it, read-only)."""
    mounts = {m["name"]: m for m in container(daemonset)["volumeMounts"]}
    return {v["hostPath"]["path"]: (v["hostPath"]["type"], mounts[v["name"]]["mountPath"],
                                    mounts[v["name"]].get("readOnly", False))
            for v in pod_spec(daemonset)["volumes"] if "hostPath" in v}


def test_agent_is_unprivileged_and_reads_host_proc_and_sys_read_only(render_objects):
    objects = render_objects({})
    daemonset = find(objects, "DaemonSet")
    spec = pod_spec(daemonset)
    assert spec["automountServiceAccountToken"] is False
    account = find(objects, "ServiceAccount", "kubecarbon-agent")
    assert account["automountServiceAccountToken"] is False
    # unset is false (and the form the API server stores: test_plain_install.py re-applies)
    assert not {"hostPID", "hostNetwork", "hostIPC"} & spec.keys()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container(daemonset)["securityContext"]
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    # Only what the agent reads, each its own read-only mount: no /proc or /sys whole, whose
    # read-only bind would leave the mounts below it (cgroup hierarchies) writable.
    env = env_of(daemonset)
    proc, sys_root = env["KUBECARBON_HOST_PROC"], env["KUBECARBON_HOST_SYS"]
    assert host_mounts(daemonset) == {
        "/proc/stat": ("File", f"{proc}/stat", True),
        "/proc/meminfo": ("File", f"{proc}/meminfo", True),
        "/sys/fs/cgroup": ("Directory", f"{sys_root}/fs/cgroup", True),
    }


def test_agent_mounts_one_cgroup_hierarchy_per_cgroup_version(render_objects):
    v1 = find(render_objects(FLAG_VALUES["cgroup-v1"]), "DaemonSet")
    sys_root = env_of(v1)["KUBECARBON_HOST_SYS"]
    cgroups = {path: mount for path, mount in host_mounts(v1).items() if "cgroup" in path}
    # the CPU accounting hierarchy (a symlink to cpu,cpuacct where systemd co-mounts them)
    assert cgroups == {
        "/sys/fs/cgroup/cpuacct": ("Directory", f"{sys_root}/fs/cgroup/cpuacct", True)}
    assert _differences(find(render_objects({}), "DaemonSet"), v1) == {
        ".spec.template.spec.volumes[2].hostPath.path",
        ".spec.template.spec.containers[0].volumeMounts[2].mountPath",
    }


def test_agent_node_name_comes_from_the_downward_api(render_objects):
    env = env_of(find(render_objects({}), "DaemonSet"))
    assert env["KUBECARBON_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_agent_posts_to_the_collector_service(render_objects):
    objects = render_objects({})
    service = find(objects, "Service")
    env = env_of(find(objects, "DaemonSet"))
    url = env["KUBECARBON_COLLECTOR_URL"]
    port = service["spec"]["ports"][0]["port"]
    assert url == f"http://{service['metadata']['name']}.kubecarbon.svc:{port}"
    assert "KUBECARBON_COLLECTOR_SERVICE_HOST" not in env
    assert selects(service["spec"]["selector"],
                   find(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("release", ["kubecarbon", "prod"])
def test_without_dns_agents_take_the_service_variables_the_kubelet_sets(release, render_module):
    objects = render_module.manifest_objects(
        render_module.render_chart(FLAG_VALUES["service-env"], release=release))
    service = find(objects, "Service")["metadata"]["name"]
    daemonset = find(objects, "DaemonSet")
    env = env_of(daemonset)
    assert "KUBECARBON_COLLECTOR_URL" not in env
    # The kubelet's names for a Service: upper case, dashes as underscores.
    prefix = service.upper().replace("-", "_")
    assert env["KUBECARBON_COLLECTOR_SERVICE_HOST"] == f"$({prefix}_SERVICE_HOST)"
    assert env["KUBECARBON_COLLECTOR_SERVICE_PORT"] == f"$({prefix}_SERVICE_PORT)"
    assert pod_spec(daemonset)["enableServiceLinks"] is True


def test_collector_service_keeps_each_agent_on_one_replica_unless_asked(render_objects):
    # docs/scaling.md: with affinity, retries meet the replica holding the agent's dedupe
    # history and a node counts in one replica's fleet gauges
    assert find(render_objects({}), "Service")["spec"]["sessionAffinity"] == "ClientIP"
    spread = render_objects({"collector": {"service": {"sessionAffinity": "None"}}})
    assert find(spread, "Service")["spec"]["sessionAffinity"] == "None"


def test_agent_resources_come_from_values_and_tolerations_cover_every_node(render_objects):
    with helm.Chart.load(CHART_DIR) as chart:
        defaults = chart.values
    daemonset = find(render_objects({}), "DaemonSet")
    resources = container(daemonset)["resources"]
    assert resources == {"requests": {"cpu": "10m", "memory": "48Mi"},
                         "limits": {"cpu": "100m", "memory": "96Mi"}}
    assert resources == defaults["agent"]["resources"]
    assert pod_spec(daemonset)["tolerations"] == [{"operator": "Exists"}]
    narrowed = find(render_objects({"agent": {"tolerations": [
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}}), "DaemonSet")
    assert pod_spec(narrowed)["tolerations"] == [
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "tolerations" not in pod_spec(find(render_objects({"agent": {"tolerations": []}}),
                                              "DaemonSet"))


def _differences(left: Any, right: Any, path: str = "") -> set[str]:
    if isinstance(left, dict) and isinstance(right, dict):
        return {d for key in left.keys() | right.keys()
                for d in _differences(left.get(key), right.get(key), f"{path}.{key}")}
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return {d for i, (a, b) in enumerate(zip(left, right, strict=True))
                for d in _differences(a, b, f"{path}[{i}]")}
    return set() if left == right else {path}


def test_rapl_opt_in_changes_only_the_user_and_mounts_powercap(render_objects):
    plain = find(render_objects({}), "DaemonSet")
    rapl = find(render_objects(FLAG_VALUES["rapl"]), "DaemonSet")
    assert _differences(plain, rapl) == {
        ".spec.template.spec.securityContext.runAsUser",
        ".spec.template.spec.securityContext.runAsGroup",
        ".spec.template.spec.securityContext.runAsNonRoot",
        ".spec.template.spec.containers[0].env",
        ".spec.template.spec.containers[0].volumeMounts",
        ".spec.template.spec.volumes",
    }
    # powercap zones are symlinks from /sys/class into /sys/devices; neither has mounts below
    sys_root = env_of(rapl)["KUBECARBON_HOST_SYS"]
    assert set(host_mounts(rapl).items()) - set(host_mounts(plain).items()) == {
        ("/sys/class", ("Directory", f"{sys_root}/class", True)),
        ("/sys/devices", ("Directory", f"{sys_root}/devices", True)),
    }
    assert env_of(rapl)["KUBECARBON_RAPL"] == "true" and "KUBECARBON_RAPL" not in env_of(plain)
    assert pod_spec(rapl)["securityContext"]["runAsUser"] == 0
    assert container(rapl)["securityContext"]["privileged"] is False
    assert container(rapl)["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_host_network_only_when_asked(render_objects):
    spec = pod_spec(find(render_objects(FLAG_VALUES["host-network"]), "DaemonSet"))
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"  # still resolves the Service name


# --- the collector ------------------------------------------------------------------------


def test_collector_is_non_root_read_only_and_probed(render_objects):
    collector = find(render_objects({}), "StatefulSet")
    spec = pod_spec(collector)
    assert collector["spec"]["replicas"] == 1
    assert spec["securityContext"]["runAsNonRoot"] is True
    security = container(collector)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    probes = container(collector)
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"] for p in probes["ports"]}
    assert probes["readinessProbe"]["httpGet"]["port"] in ports
    agent = container(find(render_objects({}), "DaemonSet"))
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    resources = probes["resources"]
    assert resources["requests"] and resources["limits"]


def test_collector_cluster_role_is_read_only_on_nodes_and_pods(render_objects):
    objects = render_objects({})
    role = find(objects, "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes", "pods"],
                              "verbs": ["get", "list", "watch"]}]
    binding = find(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (subject,) = binding["subjects"]
    assert subject["name"] == pod_spec(find(objects, "StatefulSet"))["serviceAccountName"]
    assert subject["namespace"] == "kubecarbon"


def test_kubernetes_off_drops_the_role_and_the_api_token(render_objects):
    objects = render_objects(FLAG_VALUES["kubernetes-off"])
    assert not {"ClusterRole", "ClusterRoleBinding"} & {o["kind"] for o in objects}
    collector = find(objects, "StatefulSet")
    assert pod_spec(collector)["automountServiceAccountToken"] is False
    assert env_of(collector)["KUBECARBON_KUBERNETES"] == "off"


def test_state_volume_is_empty_dir_by_default_and_a_claim_per_replica_when_asked(
        render_objects):
    def state_volume(values):
        statefulset = find(render_objects(values), "StatefulSet")
        volumes = [v for v in pod_spec(statefulset)["volumes"] if v["name"] == "state"]
        templates = [t for t in statefulset["spec"].get("volumeClaimTemplates", ())
                     if t["metadata"]["name"] == "state"]
        assert len(volumes + templates) == 1  # one source of the state volume
        mount = next(m for m in container(statefulset)["volumeMounts"] if m["name"] == "state")
        assert env_of(statefulset)["KUBECARBON_STATE_FILE"].startswith(mount["mountPath"] + "/")
        return (volumes + templates)[0]

    assert "emptyDir" in state_volume({})
    claimed = state_volume(FLAG_VALUES["persistence"])
    assert claimed["spec"]["storageClassName"] == "fast"
    assert claimed["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claimed["spec"]["resources"]["requests"]["storage"] == "1Gi"
    both = {"collector": {**FLAG_VALUES["persistence"]["collector"], "replicas": 3}}
    assert state_volume(both) == claimed  # each replica gets its own claim from the template
    existing = state_volume(FLAG_VALUES["existing-claim"])
    assert existing["persistentVolumeClaim"]["claimName"] == "mine"


def test_replicas_are_a_statefulset_told_their_count_name_and_namespace(render_objects):
    statefulset = find(render_objects(FLAG_VALUES["replicas"]), "StatefulSet")
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert statefulset["spec"]["serviceName"] == "kubecarbon-collector"
    variables = {e["name"]: e for e in container(statefulset)["env"]}
    assert variables["KUBECARBON_REPLICAS"]["value"] == "3"
    assert variables["KUBECARBON_REPLICA_NAME"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["KUBECARBON_REPLICA_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}}


def test_disruption_budget_only_with_several_replicas(render_objects):
    objects = render_objects(FLAG_VALUES["replicas"])
    assert find(objects, "StatefulSet")["spec"]["replicas"] == 3
    budget = find(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert selects(budget["spec"]["selector"]["matchLabels"],
                   find(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"])
    assert "PodDisruptionBudget" not in {o["kind"] for o in render_objects({})}
    # policy/v1 where the cluster serves it (1.21+); test_helm_release.py installs on 1.20
    assert budget["apiVersion"] == "policy/v1"


def test_collector_config_is_mounted_and_named_by_env(render_objects):
    objects = render_objects(FLAG_VALUES["collector-config"])
    config_map = find(objects, "ConfigMap", "kubecarbon-collector")
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == {
        "default_profile": {"provider": "baremetal"}}
    collector = find(objects, "StatefulSet")
    path = Path(env_of(collector)["KUBECARBON_CONFIG"])
    mount = next(m for m in container(collector)["volumeMounts"] if m["name"] == "config")
    assert str(path.parent) == mount["mountPath"] and path.name in config_map["data"]


# --- the token ----------------------------------------------------------------------------


def _token(objects):
    return base64.b64decode(find(objects, "Secret")["data"]["token"]).decode()


def test_token_is_generated_and_mounted_into_agents_and_collector(render_objects):
    objects = render_objects({})
    first, second = _token(objects), _token(render_objects({}))
    assert len(first) == 48 and first.isalnum()
    assert first != second  # random per install; upgrades reuse it through `lookup`
    secret_name = find(objects, "Secret")["metadata"]["name"]
    for kind in ("DaemonSet", "StatefulSet"):
        workload = find(objects, kind)
        (volume,) = [v for v in pod_spec(workload)["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == secret_name
        mount = next(m for m in container(workload)["volumeMounts"] if m["name"] == volume["name"])
        assert mount["readOnly"] is True
        assert env_of(workload)["KUBECARBON_TOKEN_FILE"] == mount["mountPath"] + "/token"
        assert pod_spec(workload)["securityContext"]["fsGroup"] is not None  # file mode 0440
        assert first not in json.dumps(workload)  # a file, never an environment variable


def test_given_token_and_existing_secret_are_respected(render_objects):
    assert _token(render_objects(FLAG_VALUES["token-value"])) == "s3cret-token-0123456789"
    objects = render_objects(FLAG_VALUES["token-existing"])
    assert "Secret" not in {o["kind"] for o in objects}
    for kind in ("DaemonSet", "StatefulSet"):
        (volume,) = [v for v in pod_spec(find(objects, kind))["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == "my-token"


def test_token_template_reuses_the_installed_secret():
    # Offline renders have no cluster, so `lookup` cannot be exercised here; this pins that the
    # template asks the cluster for its own Secret before generating a new token.
    template = (CHART_DIR / "templates" / "token-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template
    assert "b64dec" in template and "randAlphaNum 48" in template


# --- NetworkPolicy and prometheus-operator objects ---------------------------------------


def test_network_policy_admits_only_agents_other_replicas_and_prometheus(render_objects):
    objects = render_objects(FLAG_VALUES["network-policy"])
    policy = find(objects, "NetworkPolicy")["spec"]
    collector_labels = find(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    agent_labels = find(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"]["matchLabels"], collector_labels)
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    agents, replicas, prometheus = rule["from"]
    assert selects(agents["podSelector"]["matchLabels"], agent_labels)
    assert not selects(agents["podSelector"]["matchLabels"], collector_labels)
    # replicas forward reports to each other
    assert selects(replicas["podSelector"]["matchLabels"], collector_labels)
    assert not selects(replicas["podSelector"]["matchLabels"], agent_labels)
    assert prometheus["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    assert "namespaceSelector" in prometheus  # Prometheus usually lives in another namespace
    extended = find(render_objects(FLAG_VALUES["everything"]), "NetworkPolicy")["spec"]
    assert extended["ingress"][0]["from"][-1] == {"ipBlock": {"cidr": "10.0.0.0/16"}}


def test_monitors_point_at_real_ports_and_labels(render_objects):
    objects = render_objects(FLAG_VALUES["everything"])
    service = find(objects, "Service")
    monitor = find(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and DURATION.match(endpoint["interval"])
    # the collector's namespace and pod labels name what they describe, not the target
    assert endpoint["honorLabels"] is True
    # a replica's series keep its StatefulSet pod name across restarts, not its pod IP
    assert endpoint["relabelings"] == [{"sourceLabels": ["__meta_kubernetes_pod_name"],
                                        "targetLabel": "instance"}]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kubecarbon"]}

    pod_monitor = find(objects, "PodMonitor")
    daemonset = find(objects, "DaemonSet")
    assert selects(pod_monitor["spec"]["selector"]["matchLabels"],
                   daemonset["spec"]["template"]["metadata"]["labels"])
    (pod_endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert pod_endpoint["port"] in {p["name"] for p in container(daemonset)["ports"]}
    assert DURATION.match(pod_endpoint["scrapeTimeout"])

    labelled = find(render_objects(FLAG_VALUES["service-monitor"]), "ServiceMonitor")
    assert labelled["metadata"]["labels"]["release"] == "kps"


def test_prometheus_rule_carries_the_rule_file(render_objects, render_module):
    rule = find(render_objects(FLAG_VALUES["prometheus-rule"]), "PrometheusRule")
    plain = yaml.safe_load(render_module.RULES_PATH.read_text())
    assert rule["spec"] == plain
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for entry in group["rules"]:
            assert ("record" in entry) != ("alert" in entry) and entry["expr"]
            if "for" in entry:
                assert DURATION.match(entry["for"])


def test_dashboards_ship_as_sidecar_config_maps(render_objects):
    objects = render_objects(FLAG_VALUES["dashboards"])
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    assert len(maps) == 4
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Carbon"}
        ((file_name, text),) = config_map["data"].items()
        assert json.loads(text) == json.loads((REPO_ROOT / "dashboards" / file_name).read_text())


# --- values schema and NOTES --------------------------------------------------------------

BAD_VALUES = [
    ({"collector": {"replicas": 0}}, "/collector/replicas", "minimum"),
    ({"collector": {"kubernetes": "yes"}}, "/collector/kubernetes", "'auto', 'off'"),
    ({"agent": {"rapl": {"enabled": "true"}}}, "/agent/rapl/enabled", "want boolean"),
    ({"agent": {"intervalSeconds": 0}}, "/agent/intervalSeconds", "minimum"),
    ({"agent": {"port": 70000}}, "/agent/port", "maximum"),
    ({"agent": {"resources": {"limits": {"memory": "lots"}}}}, "/agent/resources/limits/memory",
     ""),
    ({"agnet": {}}, "additional properties 'agnet' not allowed", ""),
    ({"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval", "pattern"),
    ({"prometheusRule": {"thresholds": {"fleetUtilisationBelowRatio": 30}}},
     "/prometheusRule/thresholds/fleetUtilisationBelowRatio", ""),
    ({"token": {"value": "short"}}, "/token/value", "pattern"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", ""),
    ({"agent": {"cgroupVersion": 3}}, "/agent/cgroupVersion", "1, 2"),
    ({"agent": {"collectorAddress": "clusterIP"}}, "/agent/collectorAddress",
     "'dns', 'serviceEnv'"),
    ({"agent": {"image": {"repository": ""}}}, "/agent/image/repository", "minLength"),
]


@pytest.mark.parametrize(("values", "where", "why"), BAD_VALUES)
def test_bad_values_are_refused_with_the_key_named(values, where, why):
    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(helm.HelmValuesError) as caught:
        chart.render(values, name="kubecarbon", namespace="kubecarbon")
    assert where in str(caught.value) and why in str(caught.value)


@pytest.mark.parametrize(("values", "reason"), [
    # one existing claim cannot hold several replicas' snapshots
    ({"collector": {"replicas": 2, "persistence": {"enabled": True, "existingClaim": "mine"}}},
     "existingClaim is one claim for one replica"),
    # without the API the replicas cannot find each other
    ({"collector": {"replicas": 2, "kubernetes": "off"}},
     "replicas > 1 needs collector.kubernetes: auto"),
])
def test_replica_settings_that_cannot_work_are_refused_with_a_reason(values, reason):
    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(
        helm.HelmRenderError, match=re.escape(reason)
    ):
        chart.render(values, name="kubecarbon", namespace="kubecarbon")


def test_persistence_with_several_replicas_renders_a_claim_per_replica(render_objects):
    objects = render_objects({"collector": {"replicas": 2, "persistence": {"enabled": True}}})
    statefulset = find(objects, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 2
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "state"
    assert "PersistentVolumeClaim" not in {o["kind"] for o in objects}


def _key_tree(node: Any) -> Any:
    return {k: _key_tree(v) for k, v in node.items()} if isinstance(node, dict) else None


def _schema_tree(schema: dict[str, Any], values: Any) -> Any:
    """The schema's declared keys, following values where the schema closes an object."""
    if schema.get("additionalProperties") is False and "properties" in schema:
        return {k: _schema_tree(s, values.get(k) if isinstance(values, dict) else None)
                for k, s in schema["properties"].items()}
    return _key_tree(values) if isinstance(values, dict) else None


def test_schema_and_values_declare_the_same_keys():
    with helm.Chart.load(CHART_DIR) as chart:
        values, schema = chart.values, chart.schema
    assert _schema_tree(schema, values) == _key_tree(values)


def test_notes_say_where_to_look_next(render_module):
    plain = render_module.render_chart({})["kubecarbon/templates/NOTES.txt"]
    assert "port-forward svc/kubecarbon-collector 9880" in plain
    assert "docs/operations.md" in plain and "serviceMonitor.enabled is off" in plain
    full = render_module.render_chart(FLAG_VALUES["everything"])["kubecarbon/templates/NOTES.txt"]
    assert "a ServiceMonitor and a PodMonitor were created" in full
    assert "PrometheusRule kubecarbon" in full and "grafana_dashboard=\"1\"" in full
    assert "UID 0" in full
    assert "kubecarbon-agent:0.1.0 (agents) and kubecarbon:0.1.0 (collector)" in plain
    assert "rollout restart daemonset/kubecarbon-agent" in full and "rollout" not in plain
    assert "hostPath type error" in full and "hostPath type error" not in plain
    assert "get statefulset kubecarbon-collector" in plain
    # several replicas: the Service shows one share, Prometheus must scrape every pod
    assert "each pod holds the nodes it owns" in full and "each pod holds" not in plain
    sharded = render_module.render_chart(FLAG_VALUES["replicas"])["kubecarbon/templates/NOTES.txt"]
    assert "scrape every collector pod" in sharded


def test_collector_down_alert_watches_the_job_the_service_monitor_creates(render_module):
    values = {"fullnameOverride": "carbon", "serviceMonitor": {"enabled": True},
              "prometheusRule": {"enabled": True}}
    objects = render_module.manifest_objects(render_module.render_chart(values, release="prod"))
    # prometheus-operator names the job after the Service the ServiceMonitor selects.
    job = find(objects, "Service")["metadata"]["name"]
    assert job == "carbon-collector"
    (down,) = [rule for group in find(objects, "PrometheusRule")["spec"]["groups"]
               for rule in group["rules"] if rule.get("alert") == "KubecarbonCollectorDown"]
    assert f'up{{job=~"{job}"}} == 0' in down["expr"]
