"""A real Kubernetes API server for tests: etcd + kube-apiserver on loopback.

`LocalCluster` runs Debian's etcd and a kube-apiserver built from Debian's
`kubernetes` source package (tests/k8s/build-apiserver.sh) in a temporary
directory, on free loopback ports, with token-file users and RBAC. No scheduler,
kubelet or controller-manager runs: tests create Nodes, bind Pods through
spec.nodeName and set owner references themselves.

`ExternalCluster` points the same tests at any cluster through a kubeconfig
(KUBECARBON_TEST_KUBECONFIG); it cannot be stopped, so outage tests skip there.

`CuttableProxy` forwards TCP between the provider and the API server and can
cut every connection on demand: a network partition without stopping anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import yaml
from kubernetes import client

from collector.kubernetes import KubernetesMetadataProvider, WatchSettings

ProviderFactory = Callable[..., KubernetesMetadataProvider]

APISERVER_VERSION = "1.20.2"
ADMIN_USER = "kubecarbon-test-admin"
# A user with no groups: it can do only what a test binds to it.
COLLECTOR_USER = "kubecarbon-test-collector"
START_TIMEOUT_SECONDS = 60.0
APISERVER_GRACE_SECONDS = 3.0


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_kubeconfig(path: Path, server: str, ca_file: Path | None, token: str, user: str) -> Path:
    cluster: dict[str, object] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "test", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    path.chmod(0o600)
    return path


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL.

    (Linux prctl PR_SET_PDEATHSIG; it follows the thread that started the
    child, which is pytest's main thread here.)
    """
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes] | None, timeout_seconds: float = 15) -> None:
    """SIGTERM, and SIGKILL if it has not ended after `timeout_seconds`."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout_seconds)


@dataclass
class UserCredentials:
    name: str
    token: str
    kubeconfig: Path


class LocalCluster:
    """etcd + kube-apiserver in `workdir`; start(), stop_apiserver(), start_apiserver(), close()."""

    def __init__(self, workdir: Path, apiserver_binary: Path, etcd_binary: Path) -> None:
        self.workdir = workdir
        self.apiserver_binary = apiserver_binary
        self.etcd_binary = etcd_binary
        self.apiserver_port = free_loopback_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.cert_dir = workdir / "certs"
        # The API server writes a self-signed certificate chain here on first start
        # and reuses it after restarts, so kubeconfigs stay valid.
        self.ca_file = self.cert_dir / "apiserver.crt"
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._etcd_client_url = ""
        self._logs: list[BinaryIO] = []
        tokens = {user: os.urandom(16).hex() for user in (ADMIN_USER, COLLECTOR_USER)}
        self.admin = UserCredentials(ADMIN_USER, tokens[ADMIN_USER], workdir / "admin.kubeconfig")
        self.collector = UserCredentials(
            COLLECTOR_USER, tokens[COLLECTOR_USER], workdir / "collector.kubeconfig"
        )

    # lifecycle
    def start(self) -> None:
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        self._write_token_file()
        self._write_service_account_key()
        self._start_etcd()
        self.start_apiserver()
        for user in (self.admin, self.collector):
            write_kubeconfig(user.kubeconfig, self.server, self.ca_file, user.token, user.name)

    def close(self) -> None:
        stop_process(self._apiserver, timeout_seconds=APISERVER_GRACE_SECONDS)
        stop_process(self._etcd)
        for log in self._logs:
            log.close()

    def start_apiserver(self) -> None:
        if self._apiserver is not None and self._apiserver.poll() is None:
            return
        log_path = self.workdir / "apiserver.log"
        log = log_path.open("ab")
        self._logs.append(log)
        self._apiserver = subprocess.Popen(
            [str(self.apiserver_binary), *self._apiserver_flags()],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready(self._apiserver, log_path)

    def stop_apiserver(self) -> None:
        """SIGTERM, then SIGKILL after a few seconds: on SIGTERM the server stops
        accepting connections but serves open watches until its 60 s shutdown
        timeout, which the tests need not wait out."""
        stop_process(self._apiserver, timeout_seconds=APISERVER_GRACE_SECONDS)

    # configuration
    def _write_token_file(self) -> None:
        # token,user,uid,"groups"
        rows = [
            f'{self.admin.token},{ADMIN_USER},uid-admin,"system:masters"',
            f"{self.collector.token},{COLLECTOR_USER},uid-collector",
        ]
        (self.workdir / "tokens.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    def _write_service_account_key(self) -> None:
        subprocess.run(
            ["openssl", "genrsa", "-out", str(self.workdir / "sa.key"), "2048"],
            check=True,
            capture_output=True,
        )

    def _apiserver_flags(self) -> list[str]:
        return [
            f"--etcd-servers={self._etcd_client_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            "--insecure-port=0",  # 1.20 would otherwise also serve plain HTTP on 8080
            f"--cert-dir={self.cert_dir}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.workdir / 'sa.key'}",
            f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--endpoint-reconciler-type=none",
            # Nothing creates the namespaces' default ServiceAccounts without a
            # controller-manager, so pods are admitted without one.
            "--disable-admission-plugins=ServiceAccount",
        ]

    def _start_etcd(self) -> None:
        client_port, peer_port = free_loopback_port(), free_loopback_port()
        self._etcd_client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        log_path = self.workdir / "etcd.log"
        log = log_path.open("ab")
        self._logs.append(log)
        self._etcd = subprocess.Popen(
            [
                str(self.etcd_binary),
                "--name=kubecarbon-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self._etcd_client_url}",
                f"--advertise-client-urls={self._etcd_client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=kubecarbon-test={peer_url}",
                "--listen-metrics-urls=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._etcd.poll() is not None:
                raise RuntimeError(f"etcd exited with {self._etcd.returncode}:\n{_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{self._etcd_client_url}/health", timeout=2) as reply:
                    if b'"health":"true"' in reply.read():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"etcd not healthy after {START_TIMEOUT_SECONDS:.0f}s:\n{_tail(log_path)}"
        )

    def _wait_ready(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"kube-apiserver exited with {process.returncode}:\n{_tail(log_path)}"
                )
            if self.ca_file.exists() and self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"kube-apiserver not ready after {START_TIMEOUT_SECONDS:.0f}s:\n{_tail(log_path)}"
        )

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False


class ExternalCluster:
    """A cluster the user points at; the collector user is a ServiceAccount token."""

    def __init__(self, kubeconfig: Path) -> None:
        self.admin = UserCredentials("kubeconfig", "", kubeconfig)


class CuttableProxy:
    """Loopback TCP forwarder to `target`; cut() drops and refuses connections until resume().

    One thread multiplexes every connection and is the only one to close
    sockets, so cut() and close() leave no threads or descriptors behind.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._cut = False
        self._closing = False
        self._cut_done = threading.Event()
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._thread = threading.Thread(target=self._serve, name="cuttable-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self._cut = True
        self._cut_done.clear()
        self._wakeup_writer.send(b"c")
        if not self._cut_done.wait(10):
            raise RuntimeError("proxy did not cut its connections")

    def resume(self) -> None:
        self._cut = False

    def close(self) -> None:
        self._closing = True
        self._wakeup_writer.send(b"q")
        self._thread.join(10)
        self._listener.close()
        self._wakeup_reader.close()
        self._wakeup_writer.close()
        self._selector.close()

    def _serve(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wakeup_reader, selectors.EVENT_READ, "wakeup")
        try:
            while not self._closing:
                for key, _ in self._selector.select(timeout=1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if key.data == "wakeup":
                        if b"c" in sock.recv(64):
                            self._drop_all()
                            self._cut_done.set()
                    elif key.data == "accept":
                        self._accept()
                    elif sock in self._peers:
                        self._pump(sock)
        finally:
            self._drop_all()

    def _accept(self) -> None:
        downstream, _ = self._listener.accept()
        if self._cut:
            downstream.close()
            return
        try:
            upstream = socket.create_connection(self._target, timeout=5)
        except OSError:
            downstream.close()
            return
        upstream.settimeout(None)
        self._peers[downstream], self._peers[upstream] = upstream, downstream
        self._selector.register(downstream, selectors.EVENT_READ, "pump")
        self._selector.register(upstream, selectors.EVENT_READ, "pump")

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers[sock]
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        for end in (sock, self._peers.get(sock)):
            if end is None or end not in self._peers:
                continue
            self._selector.unregister(end)
            del self._peers[end]
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def _drop_all(self) -> None:
        for sock in list(self._peers):
            self._drop(sock)


# Quick retries so outage tests take seconds; production defaults are in WatchSettings.
FAST_WATCH = WatchSettings(
    initial_backoff_seconds=0.05,
    max_backoff_seconds=0.5,
    watch_timeout_seconds=60,
    connect_timeout_seconds=2.0,
    list_read_timeout_seconds=10.0,
    list_page_size=2,  # tiny pages, so every list exercises the continue token
    deleted_pod_retention_seconds=0.0,
)
WAIT_SECONDS = 60.0  # generous: the machine may be loaded; a pass never waits this long


def wait_for(predicate: Callable[[], Any], what: str, timeout_seconds: float = WAIT_SECONDS) -> Any:
    """Poll until `predicate()` is truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_seconds:.0f}s waiting for {what}")
        time.sleep(0.05)


async def wait_for_async(
    predicate: Callable[[], Any], what: str, timeout_seconds: float = WAIT_SECONDS
) -> Any:
    """`wait_for` for async tests: the predicate may return an awaitable; never blocks the loop."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_seconds:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class ClusterObjects:
    """Creates test Nodes, Pods and Namespaces, and deletes them all afterwards."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self._nodes: list[str] = []
        self._pods: list[tuple[str, str]] = []
        self._namespaces: list[str] = []

    def namespace(self) -> str:
        name = unique("kc-test")
        self.core.create_namespace({"metadata": {"name": name}})
        self._namespaces.append(name)
        return name

    def node(
        self,
        labels: dict[str, str] | None = None,
        provider_id: str | None = None,
        capacity: dict[str, str] | None = None,
        allocatable: dict[str, str] | None = None,
    ) -> str:
        name = unique("kc-node")
        spec = {"providerID": provider_id} if provider_id else {}
        self.core.create_node({"metadata": {"name": name, "labels": labels or {}}, "spec": spec})
        self._nodes.append(name)
        if capacity:
            # Kubelets report capacity through the status subresource; so do we.
            self.core.patch_node_status(
                name, {"status": {"capacity": capacity, "allocatable": allocatable or capacity}}
            )
        return name

    def pod(
        self,
        namespace: str,
        node: str,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        owner: tuple[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        spec: dict[str, Any] | None = None,
    ) -> str:
        """Creates a pod bound to `node` (one request-less container unless `spec`); its uid."""
        metadata: dict[str, Any] = {
            "name": name or unique("pod"),
            "labels": labels or {},
            "annotations": annotations or {},
        }
        if owner is not None:
            kind, owner_name = owner
            metadata["ownerReferences"] = [
                {
                    "apiVersion": {"Job": "batch/v1", "Node": "v1"}.get(kind, "apps/v1"),
                    "kind": kind,
                    "name": owner_name,
                    "uid": str(uuid.uuid4()),
                    "controller": True,
                }
            ]
        created = self.core.create_namespaced_pod(
            namespace,
            {
                "metadata": metadata,
                "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}],
                         **(spec or {})},
            },
        )
        self._pods.append((namespace, created.metadata.name))
        return str(created.metadata.uid)

    def delete_pod(self, namespace: str, name: str) -> None:
        self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    def cleanup(self) -> None:
        for namespace, name in self._pods:
            try:
                self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        for name in self._nodes:
            try:
                self.core.delete_node(name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        for name in self._namespaces:
            # Without a controller-manager the namespace stays Terminating; harmless here.
            self.core.delete_namespace(name)


def find_etcd() -> Path | None:
    found = shutil.which("etcd")
    return Path(found) if found else None


@contextlib.contextmanager
def local_cluster(
    workdir: Path, apiserver_binary: Path, etcd_binary: Path
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(workdir, apiserver_binary, etcd_binary)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
