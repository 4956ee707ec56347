"""A real single-node Kubernetes 1.20 cluster, run from the binaries the suite builds.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
kubelet and kube-proxy run inside a `NodeSandbox` (its own cgroup and
network, mount and cgroup namespaces), with the configuration a small kubeadm
cluster would have: Node and RBAC authorisation, one identity per component,
service-account tokens from the controller-manager, the cgroupfs driver,
iptables kube-proxy, the CNI bridge and host-local plugins. The host reaches
the API server, pods and Services through the sandbox's veth.

Where this machine kind differs from a usual node (each with why):
- containerd's `restrict_oom_score_adj`: the machine lacks CAP_SYS_RESOURCE,
  so runc cannot lower a sandbox's oom_score_adj below the runtime's own;
- no registry: images (the pause image included) are imported into
  containerd's `k8s.io` namespace, and image garbage collection is off;
- no cluster DNS (Debian has no CoreDNS): pods reach Services through the
  Service environment variables or the ClusterIP;
- `oomScoreAdj: 0` for kubelet and kube-proxy, and kube-proxy leaves the
  conntrack sysctls alone (they are global).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml
from k8s_harness import ADMIN_USER, UserCredentials, stop_process, write_kubeconfig
from node_sandbox import NodeSandbox
from oci_image import write_image_archive

KUBERNETES_VERSION = "1.20.2"
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager", "pause")
CNI_PLUGIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
PAUSE_IMAGE = "localhost/kubecarbon-test/pause:3.4"
APISERVER_PORT = 6443
START_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 5.0


def cache_root() -> Path:
    return Path(os.environ.get("KUBECARBON_APISERVER_CACHE", "/var/cache/kubecarbon"))


def cached_binary(name: str) -> Path:
    """Where tests/k8s/build-kubernetes.sh caches `name`."""
    return cache_root() / f"{name}-{KUBERNETES_VERSION}" / name


def missing_binaries() -> list[str]:
    names = ("kube-apiserver", *NODE_BINARIES)
    missing = [name for name in names if not cached_binary(name).is_file()]
    for tool in ("etcd", "containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables",
                 "unshare", "nsenter", "gcc"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if not (CNI_PLUGIN_DIR / "bridge").is_file():
        missing.append(str(CNI_PLUGIN_DIR / "bridge"))
    return missing


@dataclass
class Component:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class LocalNodeCluster:
    """start() brings up the control plane and a Ready node; close() removes every trace."""

    def __init__(self, node_name: str = "", audited_groups: Sequence[str] = ()) -> None:
        """`audited_groups`: the LIST and WATCH requests of their members go to `audit_log`
        (Metadata level, nothing else is audited), to count a client's load on the server."""
        self.sandbox = NodeSandbox()
        slot = self.sandbox.slot
        self.slot = slot
        self.node_name = node_name or slot.name
        self.workdir = self.sandbox.workdir
        self.server = f"https://{slot.node_ip}:{APISERVER_PORT}"
        self.cert_dir = self.workdir / "pki"
        self.ca_file = self.cert_dir / "apiserver.crt"  # self-signed by the API server
        self.containerd_socket = self.workdir / "run" / "containerd" / "containerd.sock"
        self.static_pod_dir = self.workdir / "manifests"  # the kubelet's static pods
        # the kubelet's self-signed serving certificate (it makes one in --cert-dir)
        self.kubelet_ca_file = self.workdir / "kubelet" / "pki" / "kubelet.crt"
        self.audited_groups = tuple(audited_groups)
        self.audit_log = self.workdir / "logs" / "audit.log"  # JSON lines, one per stage
        self.started_seconds: dict[str, float] = {}
        self._components: list[Component] = []
        self._tokens = {
            ADMIN_USER: (os.urandom(16).hex(), "system:masters"),
            f"system:node:{self.node_name}": (os.urandom(16).hex(), "system:nodes"),
            "system:kube-proxy": (os.urandom(16).hex(), ""),
            "system:kube-controller-manager": (os.urandom(16).hex(), ""),
            "system:kube-scheduler": (os.urandom(16).hex(), ""),
        }
        self.admin = UserCredentials(
            ADMIN_USER, self._tokens[ADMIN_USER][0], self.workdir / "admin.kubeconfig"
        )

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        self.sandbox.start()
        self._write_credentials()
        self._start("etcd", self._etcd_argv())
        # the API server waits for etcd itself
        self._start("kube-apiserver", self._apiserver_argv())
        self._wait_apiserver()
        self.started_seconds["control plane"] = time.monotonic() - began
        self._start("kube-controller-manager", self._controller_manager_argv())
        self._start("kube-scheduler", self._scheduler_argv())
        self._start("containerd", ["containerd", "--config", str(self._containerd_config())])
        self._wait_for_file(self.containerd_socket, "containerd")
        self.import_images([self._pause_archive()])
        self._start("kubelet", self._kubelet_argv())
        self._start("kube-proxy", self._proxy_argv())
        self._wait_node_ready()
        self.started_seconds["node ready"] = time.monotonic() - began

    def close(self) -> list[str]:
        """Stop the components in reverse order, then let the sandbox remove everything."""
        for component in reversed(self._components):
            process = component.process
            if process is not None and process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for component in reversed(self._components):
            process = component.process
            if process is None:
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for component in self._components:
            if component.log is not None:
                component.log.close()
        return self.sandbox.close()

    def restart(self, name: str) -> float:
        """Stop a component with SIGTERM (SIGKILL after the grace period) and start it again
        with the same arguments, configuration and state directories, as `systemctl restart`
        does; wait until it serves again. Returns the seconds it was down.

        Pods keep running through a restart of containerd or the kubelet: only the component
        gets the signal (systemd's containerd unit has KillMode=process), so containerd's
        shims and the pods outlive it, and a new kubelet finds its pods again through the
        runtime. Restarting kube-apiserver is what an upgrade of the control plane does.
        """
        (component,) = [c for c in self._components if c.name == name]
        assert component.log is not None
        stopped = time.monotonic()
        stop_process(component.process, STOP_GRACE_SECONDS)
        component.process = self.sandbox.run(name, component.argv, component.log)
        if name == "kube-apiserver":
            self._wait_apiserver()
        else:
            ready = {"containerd": self._containerd_serves, "kubelet": self._kubelet_healthy}
            self._wait(f"{name} after its restart", ready[name])
        return time.monotonic() - stopped

    def started_at(self, name: str) -> float:
        """Unix time at which the running process of component `name` started (/proc)."""
        (component,) = [c for c in self._components if c.name == name]
        assert component.process is not None
        stat = Path(f"/proc/{component.process.pid}/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")

    # --- images ----------------------------------------------------------------

    def import_images(self, archives: Sequence[Path]) -> None:
        """`ctr -n k8s.io images import` each OCI or docker archive (no registry to pull from)."""
        for archive in archives:
            subprocess.run(
                ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", "images",
                 "import", "--no-unpack=false", str(archive)],
                check=True, capture_output=True,
            )

    def _pause_archive(self) -> Path:
        return write_image_archive(
            self.workdir / "pause.tar", PAUSE_IMAGE, {"pause": cached_binary("pause")},
            entrypoint=["/pause"],
        )

    # --- configuration -----------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def kubeconfig_for(self, user: str) -> Path:
        token = self._tokens[user][0]
        path = self.workdir / f"{user.replace(':', '-')}.kubeconfig"
        return write_kubeconfig(path, self.server, self.ca_file, token, user)

    def _write_credentials(self) -> None:
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.static_pod_dir.mkdir(exist_ok=True)
        # token,user,uid[,"groups"]: the token file of --token-auth-file
        rows = [f'{token},{user},uid-{user.replace(":", "-")}' + (f',"{groups}"' if groups else "")
                for user, (token, groups) in self._tokens.items()]
        (self.workdir / "tokens.csv").write_text("\n".join(rows) + "\n")
        pki = self.cert_dir
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        # the API server's client certificate for the kubelet API (logs, exec)
        ca, client = pki / "kubelet-client-ca", pki / "apiserver-kubelet-client"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=kubecarbon-test-kubelet-client-ca",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.crt")
        _openssl("req", "-newkey", "rsa:2048", "-nodes",
                 "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client",
                 "-keyout", f"{client}.key", "-out", f"{client}.csr")
        _openssl("x509", "-req", "-days", "2", "-in", f"{client}.csr", "-CA", f"{ca}.crt",
                 "-CAkey", f"{ca}.key", "-CAcreateserial", "-out", f"{client}.crt")

    def _etcd_argv(self) -> list[str]:
        return [
            "etcd", "--name=node", f"--data-dir={self.workdir / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=node=http://127.0.0.1:2380",
            "--listen-metrics-urls=",
        ]

    def _audit_argv(self) -> list[str]:
        if not self.audited_groups:
            return []
        policy = {
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
            # every stage: 1.20 logs a watch's ResponseStarted only when it ends, so an
            # open watch is one whose RequestReceived has no ResponseComplete yet
            "rules": [
                {"level": "Metadata", "userGroups": list(self.audited_groups),
                 "verbs": ["list", "watch"]},
                {"level": "None"},
            ],
        }
        path = self.workdir / "audit-policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        return [f"--audit-policy-file={path}", f"--audit-log-path={self.audit_log}"]

    def _apiserver_argv(self) -> list[str]:
        pki = self.cert_dir
        return [
            str(cached_binary("kube-apiserver")),
            "--etcd-servers=http://127.0.0.1:2379",
            "--bind-address=0.0.0.0",
            f"--advertise-address={self.slot.node_ip}",
            f"--secure-port={APISERVER_PORT}",
            "--insecure-port=0",
            f"--cert-dir={pki}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={self.slot.service_cidr}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            *self._audit_argv(),
        ]

    def _controller_manager_argv(self) -> list[str]:
        kubeconfig = self.kubeconfig_for("system:kube-controller-manager")
        return [
            str(cached_binary("kube-controller-manager")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", "--port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.cert_dir / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            f"--service-cluster-ip-range={self.slot.service_cidr}",
            # the node has its pod CIDR from the CNI configuration, not from node IPAM
            "--controllers=*,-nodeipam",
        ]

    def _scheduler_argv(self) -> list[str]:
        kubeconfig = self.kubeconfig_for("system:kube-scheduler")
        return [
            str(cached_binary("kube-scheduler")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", "--port=0",
            "--leader-elect=false",
        ]

    def _containerd_config(self) -> Path:
        root = self.workdir / "containerd"
        cni_conf = self.workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-kubecarbon.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0",
            "name": "kubecarbon-test",
            "plugins": [
                {
                    "type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.slot.pod_cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=2))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        text = f"""\
version = 2
root = "{root / 'root'}"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "/run/containerd/containerd.sock"
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / 'opt'}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{shutil.which('runc')}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_PLUGIN_DIR}"
    conf_dir = "{cni_conf}"
"""
        path = self.workdir / "containerd.toml"
        path.write_text(text)
        return path

    def _kubelet_argv(self) -> list[str]:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.slot.node_ip,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "cgroupDriver": "cgroupfs",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cert_dir / "kubelet-client-ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "failSwapOn": False,
            # imported images cannot be pulled again: never collect them
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%"},
            "maxPods": 150,
            "staticPodPath": str(self.static_pod_dir),
            "oomScoreAdj": 0,
            "serializeImagePulls": False,
            "registryPullQPS": 0,
            # Secret volumes are refreshed on a pod's periodic sync: 10 s instead of a minute,
            # so test_tls.py sees a rotated certificate and token within its time budget
            "syncFrequency": "10s",
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        return [
            str(cached_binary("kubelet")),
            f"--config={path}",
            f"--kubeconfig={self.kubeconfig_for(f'system:node:{self.node_name}')}",
            "--container-runtime=remote",
            "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
            f"--root-dir={self.workdir / 'kubelet'}",
            f"--cert-dir={self.workdir / 'kubelet' / 'pki'}",
            f"--volume-plugin-dir={self.workdir / 'kubelet' / 'volume-plugins'}",
            f"--node-ip={self.slot.node_ip}",
            f"--hostname-override={self.node_name}",
            f"--pod-infra-container-image={PAUSE_IMAGE}",
        ]

    def _proxy_argv(self) -> list[str]:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clusterCIDR": self.slot.pod_cidr,
            "hostnameOverride": self.node_name,
            "bindAddress": "0.0.0.0",
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "oomScoreAdj": 0,
            # 0: leave nf_conntrack_max and the TCP timeouts as they are (they are global)
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
            "clientConnection": {"kubeconfig": str(self.kubeconfig_for("system:kube-proxy"))},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        return [str(cached_binary("kube-proxy")), f"--config={path}"]

    # --- processes and waiting ---------------------------------------------------------

    def _start(self, name: str, argv: list[str]) -> None:
        log = self.log_path(name).open("ab")
        process = self.sandbox.run(name, argv, log)
        self._components.append(Component(name, argv, process, log))

    def _check_alive(self) -> None:
        for component in self._components:
            if component.process is not None and component.process.poll() is not None:
                raise RuntimeError(
                    f"{component.name} exited with {component.process.returncode}:\n"
                    f"{_tail(self.log_path(component.name))}"
                )

    def _wait(self, what: str, ready: Callable[[], bool],
              timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if ready():
                return
            time.sleep(0.1)
        logs = "\n".join(f"--- {c.name}\n{_tail(self.log_path(c.name), 10)}"
                         for c in self._components)
        raise RuntimeError(f"{what} not ready after {timeout:.0f}s\n{logs}")

    def _wait_for_file(self, path: Path, what: str) -> None:
        self._wait(what, path.exists)

    def _wait_apiserver(self) -> None:
        def ready() -> bool:
            if not self.ca_file.exists():
                return False
            context = ssl.create_default_context(cafile=str(self.ca_file))
            request = urllib.request.Request(
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin.token}"})
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as reply:
                    return bool(reply.status == 200)
            except (urllib.error.URLError, OSError, ssl.SSLError):
                return False

        self._wait("kube-apiserver", ready)
        write_kubeconfig(self.admin.kubeconfig, self.server, self.ca_file, self.admin.token,
                         self.admin.name)

    def _containerd_serves(self) -> bool:
        version = subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "--timeout", "2s", "version"],
            capture_output=True, check=False)
        return version.returncode == 0

    def _kubelet_healthy(self) -> bool:
        """The kubelet's /healthz on its authenticated port (its sync loop is running)."""
        context = ssl.create_default_context(cafile=str(self.kubelet_ca_file))
        context.check_hostname = False  # its self-signed certificate names the host, not the IP
        request = urllib.request.Request(
            f"https://{self.slot.node_ip}:10250/healthz",
            headers={"Authorization": f"Bearer {self.admin.token}"})
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _wait_node_ready(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))

        def ready() -> bool:
            request = urllib.request.Request(
                f"{self.server}/api/v1/nodes/{self.node_name}",
                headers={"Authorization": f"Bearer {self.admin.token}"})
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as reply:
                    node = json.load(reply)
            except (urllib.error.URLError, OSError):
                return False
            conditions = node.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait(f"node {self.node_name}", ready)
