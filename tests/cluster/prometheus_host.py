"""Prometheus as users run it next to a cluster, from Debian's packages.

Targets are found with `kubernetes_sd_configs` against the real API server,
with a ServiceAccount's token and RBAC of its own (what the Prometheus Helm
charts grant), keeping the targets the chart's ServiceMonitor and PodMonitor
describe: the collector Service's `http` endpoints (job = the Service's name,
as prometheus-operator sets it) and the agent pods' `metrics` port (job =
`<namespace>/<PodMonitor name>`).

Debian builds its prometheus without Kubernetes discovery (removed in
1.5.0+ds-1 for client-go's dependencies), so the scrape runs in Debian's
vmagent (VictoriaMetrics' Prometheus-compatible scraper: the same
kubernetes_sd_configs, relabelling and `up` series), which remote-writes every
sample into Debian's prometheus; that one evaluates the chart's rules and
answers the dashboards' queries.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kube_objects import apply, wait_for
from kubernetes import client

PROMETHEUS = "/usr/bin/prometheus"
VMAGENT = "/usr/bin/vmagent"
MONITORING_NAMESPACE = "monitoring"
SCRAPE_SECONDS = 2


def rbac_objects() -> list[dict[str, Any]]:
    """The ServiceAccount and read-only ClusterRole Prometheus discovers targets with."""
    name = "prometheus"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MONITORING_NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": MONITORING_NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "kubecarbon-test-prometheus"},
         "rules": [{"apiGroups": [""], "resources": ["nodes", "services", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "kubecarbon-test-prometheus"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "kubecarbon-test-prometheus"},
         "subjects": [{"kind": "ServiceAccount", "name": name,
                       "namespace": MONITORING_NAMESPACE}]},
    ]


def service_account_token(core: client.CoreV1Api, namespace: str, name: str) -> str:
    """The token the controller-manager minted for a ServiceAccount (1.20 keeps it in a Secret)."""
    def token() -> str | None:
        account = core.read_namespaced_service_account(name, namespace)
        for reference in account.secrets or ():
            secret = core.read_namespaced_secret(reference.name, namespace)
            if secret.type == "kubernetes.io/service-account-token" and secret.data:
                return base64.b64decode(secret.data["token"]).decode()
        return None

    return str(wait_for(f"the token of {namespace}/{name}", token))


def scrape_configs(api_server: str, token_file: Path, ca_file: Path,
                   namespace: str, release: str) -> list[dict[str, Any]]:
    def discovery(role: str) -> list[dict[str, Any]]:
        return [{"role": role, "api_server": api_server,
                 "authorization": {"credentials_file": str(token_file)},
                 "tls_config": {"ca_file": str(ca_file)},
                 "namespaces": {"names": [namespace]}}]

    def keep(label: str, regex: str) -> dict[str, Any]:
        return {"source_labels": [label], "regex": regex, "action": "keep"}

    common = [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]
    return [
        {   # what the chart's ServiceMonitor makes prometheus-operator generate
            "job_name": "kubecarbon-collector",
            "honor_labels": True,  # the ServiceMonitor's honorLabels
            "kubernetes_sd_configs": discovery("endpoints"),
            "relabel_configs": [
                keep("__meta_kubernetes_service_label_app_kubernetes_io_instance", release),
                keep("__meta_kubernetes_service_label_app_kubernetes_io_component", "collector"),
                keep("__meta_kubernetes_endpoint_port_name", "http"),
                *common,
                {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "instance"},
            ],
        },
        {   # ... and its PodMonitor
            "job_name": "kubecarbon-agent",
            "kubernetes_sd_configs": discovery("pod"),
            "relabel_configs": [
                keep("__meta_kubernetes_pod_label_app_kubernetes_io_instance", release),
                keep("__meta_kubernetes_pod_label_app_kubernetes_io_component", "agent"),
                keep("__meta_kubernetes_pod_container_port_name", "metrics"),
                *common,
                {"target_label": "job", "replacement": f"{namespace}/{release}-agent"},
            ],
        },
    ]


def with_collector_tls(scrape: list[dict[str, Any]], ca_file: Path,
                       server_name: str) -> list[dict[str, Any]]:
    """The jobs for a collector serving HTTPS: what the chart's ServiceMonitor sets then
    (scheme https, the CA bundle and the name its certificate carries)."""
    tls = {"scheme": "https", "tls_config": {"ca_file": str(ca_file), "server_name": server_name}}
    return [{**job, **tls} if job["job_name"] == "kubecarbon-collector" else job
            for job in scrape]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Process:
    """A server process on a loopback port of its own, stopped with SIGTERM."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name, self.directory = name, directory
        self.address = f"127.0.0.1:{free_port()}"
        self.log_path = directory / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, argv: list[str], ready_path: str) -> None:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(f"{self.name} {ready_path}", lambda: self._ready(ready_path), timeout=60,
                 explain=lambda: self.log_path.read_text()[-2000:])

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://{self.address}{path}{query}", timeout=10) as reply:
            return json.load(reply)

    def _ready(self, path: str) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"http://{self.address}{path}", timeout=2) as reply:
            return bool(reply.status == 200)
        return False


class PrometheusServer(Process):
    """Debian's prometheus: the chart's rules, and samples remote-written by the scraper."""

    def __init__(self, directory: Path, rule_groups: dict[str, Any]) -> None:
        super().__init__("prometheus", directory)
        (directory / "rules.yaml").write_text(yaml.safe_dump(rule_groups))
        (directory / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "rule_files": [str(directory / "rules.yaml")],
        }))

    def run(self) -> None:
        self.start([PROMETHEUS, f"--config.file={self.directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.directory / 'tsdb'}",
                    f"--web.listen-address={self.address}", "--web.enable-remote-write-receiver",
                    "--log.level=warn"], "/-/ready")

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query, now or `at` (Unix seconds)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        try:
            body = self.get("/api/v1/query", params)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{expr}: {exc.code} {exc.read().decode()}") from exc
        if body["status"] != "success":
            raise AssertionError(f"{expr}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def rule_health(self) -> list[tuple[str, str, str]]:
        groups = self.get("/api/v1/rules")["data"]["groups"]
        return [(rule["name"], rule["health"], rule.get("lastError", ""))
                for group in groups for rule in group["rules"]]


class Scraper(Process):
    """Debian's vmagent: kubernetes_sd_configs discovery and scrapes, written to Prometheus."""

    def __init__(self, directory: Path, scrape: list[dict[str, Any]]) -> None:
        super().__init__("vmagent", directory)
        self.scrape = scrape
        self._write(scrape)

    def reconfigure(self, scrape: list[dict[str, Any]]) -> None:
        """New scrape jobs, taken on SIGHUP as a running Prometheus takes them."""
        self.scrape = scrape
        self._write(scrape)
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)

    def _write(self, scrape: list[dict[str, Any]]) -> None:
        (self.directory / "scrape.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s"},
            "scrape_configs": scrape,
        }))

    def run(self, prometheus: PrometheusServer) -> None:
        self.start([VMAGENT, f"-promscrape.config={self.directory / 'scrape.yml'}",
                    "-promscrape.config.strictParse",
                    f"-remoteWrite.url=http://{prometheus.address}/api/v1/write",
                    f"-remoteWrite.tmpDataPath={self.directory / 'vmagent-queue'}",
                    f"-httpListenAddr={self.address}", "-loggerLevel=WARN"], "/health")

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.get("/api/v1/targets")["data"]["activeTargets"]
        return active


@contextlib.contextmanager
def running_prometheus(directory: Path, scrape: list[dict[str, Any]],
                       rule_groups: dict[str, Any]) -> Iterator[tuple[PrometheusServer, Scraper]]:
    prometheus = PrometheusServer(directory, rule_groups)
    scraper = Scraper(directory, scrape)
    try:
        prometheus.run()
        scraper.run(prometheus)
        yield prometheus, scraper
    finally:
        scraper.stop()
        prometheus.stop()


def setup_monitoring(api_client: client.ApiClient, directory: Path) -> Path:
    """Apply Prometheus's RBAC; returns the file holding its token."""
    apply(api_client, rbac_objects())
    token = service_account_token(client.CoreV1Api(api_client), MONITORING_NAMESPACE,
                                  "prometheus")
    path = directory / "token"
    path.write_text(token)
    path.chmod(0o600)
    return path

