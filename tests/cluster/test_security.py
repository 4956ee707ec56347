"""Security as deployed: checked inside the running pods, through the API as kubectl exec does.

The agent: no service-account token, not root, a read-only root filesystem, and
every mount of the host's /proc and /sys read-only, the cgroup hierarchies
included, so no write to them succeeds even as root (the chart's RAPL mode runs
the agent as UID 0; the last test upgrades the release to it). The collector's
service account, with its real token: it can watch pods and nodes, and cannot
read Secrets.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import release
from kube_objects import ready, running_pods, wait_for
from kubernetes import client, config
from kubernetes.stream import stream

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Run inside the agent container: who it runs as, its mounts of the host, and what a
# write into each meets. The values written are the ones the files hold, so nothing would
# change even if a write went through (the test then fails).
PROBE = r"""
import errno, json, os
def attempt(path, data):
    try:
        with open(path, "w") as handle:
            handle.write(data)
        return "written"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
cgroup = "/host/sys/fs/cgroup/cpuacct/kubepods"
mounts = []
with open("/proc/self/mountinfo") as handle:
    for line in handle:
        fields = line.split()
        if fields[4].startswith("/host/"):
            mounts.append([fields[4], fields[5].split(",")[0]])
print(json.dumps({
    "uid": os.getuid(),
    "token": os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"),
    "root_fs": attempt("/kubecarbon-probe", ""),
    "writes": {
        "cgroup notify_on_release": attempt(cgroup + "/notify_on_release", "0"),
        "cgroup tasks": attempt(cgroup + "/tasks", ""),
        "proc stat": attempt("/host/proc/stat", ""),
    },
    "cgroup_readable": os.path.exists(cgroup + "/cpuacct.usage"),
    "mounts": mounts,
}))
"""


def _agent_pod(core: client.CoreV1Api) -> client.V1Pod:
    pods = [p for p in running_pods(core, release.NAMESPACE)
            if p.metadata.labels.get("app.kubernetes.io/component") == "agent" and ready(p)
            and p.metadata.deletion_timestamp is None]
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def _probe(kubeconfig: Path, pod: client.V1Pod) -> dict:
    """PROBE's findings, run in the agent container as `kubectl exec` would."""
    # stream() swaps its client's request method while it runs: a client of its own keeps
    # the recorders' threads, which share the session's client, off the websocket
    with config.new_client_from_config(str(kubeconfig)) as api_client:
        output = stream(client.CoreV1Api(api_client).connect_get_namespaced_pod_exec,
                        pod.metadata.name, release.NAMESPACE, container="agent",
                        command=["python3", "-c", PROBE],
                        stderr=True, stdin=False, stdout=True, tty=False)
    return json.loads(output.strip().splitlines()[-1])


def test_the_agent_has_no_token_is_not_root_and_cannot_write_the_host(core, kubeconfig,
                                                                     kubecarbon):
    pod = _agent_pod(core)
    assert pod.spec.automount_service_account_token is False
    found = _probe(kubeconfig, pod)
    assert found["uid"] == 10001
    assert found["token"] is False
    assert found["root_fs"] == "EROFS"
    assert found["cgroup_readable"]
    assert set(found["writes"].values()) <= {"EROFS", "EACCES"}, found["writes"]
    # Read-only down to every submount: a bind of /sys with only its top read-only
    # leaves the cgroup hierarchies below it writable (1.20 has no recursive read-only).
    assert {mount for mount, _ in found["mounts"]} >= {
        "/host/proc/stat", "/host/proc/meminfo", "/host/sys/fs/cgroup/cpuacct"}
    writable = [mount for mount, mode in found["mounts"] if mode != "ro"]
    assert not writable, f"writable host mounts in the agent: {writable}"


def test_the_collectors_account_watches_pods_and_nodes_and_reads_no_secrets(
        api_client, core, kubecarbon):
    account = core.read_namespaced_service_account("kubecarbon-collector", release.NAMESPACE)
    (secret,) = [core.read_namespaced_secret(s.name, release.NAMESPACE) for s in account.secrets
                 if s.name.startswith("kubecarbon-collector-token-")]
    configuration = client.Configuration()
    configuration.host = api_client.configuration.host
    configuration.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": "Bearer " +
                             base64.b64decode(secret.data["token"]).decode()}
    with client.ApiClient(configuration) as collector_api:
        as_collector = client.CoreV1Api(collector_api)
        assert as_collector.list_pod_for_all_namespaces(watch=False, limit=1).items
        assert as_collector.list_node(limit=1).items
        for call in (lambda: as_collector.list_namespaced_secret(release.NAMESPACE),
                     lambda: as_collector.list_secret_for_all_namespaces(),
                     lambda: as_collector.read_namespaced_secret("kubecarbon-token",
                                                                 release.NAMESPACE)):
            with pytest.raises(client.ApiException) as refused:
                call()
            assert refused.value.status == 403
    review = client.AuthorizationV1Api(api_client).create_subject_access_review({
        "spec": {"user": f"system:serviceaccount:{release.NAMESPACE}:kubecarbon-collector",
                 "resourceAttributes": {"verb": "watch", "resource": "pods"}}})
    assert review.status.allowed


def test_as_root_for_rapl_the_agent_still_cannot_write_the_host(core, kubeconfig, kubecarbon):
    # Last in the session: it replaces the agent the other tests measured.
    before = _agent_pod(core).metadata.name
    values = release.release_values()
    values["agent"]["rapl"] = {"enabled": True}
    upgraded = release.upgrade(kubeconfig, release.CHART_DIR, values)
    assert upgraded["revision"] == 2
    pod = wait_for("the RAPL-mode agent Ready",
                   lambda: next((p for p in running_pods(core, release.NAMESPACE)
                                 if p.metadata.labels.get("app.kubernetes.io/component") ==
                                 "agent" and p.metadata.name != before and ready(p)), None))
    found = _probe(kubeconfig, pod)
    assert found["uid"] == 0
    # root owns the cgroup files: only the read-only mount stops the writes
    assert found["writes"]["cgroup notify_on_release"] == "EROFS"
    assert found["writes"]["cgroup tasks"] == "EROFS"
    assert found["writes"]["proc stat"] in ("EROFS", "EACCES")  # mode 0444
    writable = [mount for mount, mode in found["mounts"] if mode != "ro"]
    assert not writable, f"writable host mounts in the agent: {writable}"
