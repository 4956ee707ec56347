"""HTTPS between agents and the collector, and a certificate and token rotated under load.

The release is upgraded with `tls.enabled` and a kubernetes.io/tls Secret made here (what
cert-manager makes: tls.crt, tls.key, ca.crt). Agents connect by the Service's ClusterIP
(no cluster DNS) and check the Service's name; the suite's scraper switches to HTTPS as
the chart's ServiceMonitor does. Then both Secrets change at once: a renewed certificate,
and a new token with the old one as `previous-token`; the kubelet refreshes each pod's
files at a moment of its own (syncFrequency 10 s on this node). Reports must keep
arriving with none lost or counted twice, and no pod may restart. Last, the release goes
back to the suite's plain-HTTP values for any test after this one.
"""

from __future__ import annotations

import base64
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import release
from certificates import Authority, ServerCertificate
from kube_objects import describe_pods, put_secret, ready, running_pods, wait_for
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_host import with_collector_tls

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TLS_SECRET = "kubecarbon-tls"
TOKEN_SECRET = "kubecarbon-token"
SERVICE_NAME = f"kubecarbon-collector.{release.NAMESPACE}.svc"
TOKEN_ROTATION_BOUND_SECONDS = 60  # the kubelet's refresh: syncFrequency 10 s plus its jitter


def value(text: str, name: str, default: float | None = None, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    if default is None:
        raise AssertionError(f"no {name} {labels}")
    return default


def component_pods(core: client.CoreV1Api, component: str) -> list[client.V1Pod]:
    return [p for p in running_pods(core, release.NAMESPACE)
            if p.metadata.labels.get("app.kubernetes.io/component") == component
            and p.metadata.deletion_timestamp is None]


def replaced(core: client.CoreV1Api, before: set[str]) -> dict[str, client.V1Pod] | None:
    """One Ready pod per component, none of them from `before` (uids: a StatefulSet pod
    comes back under its old name), and no old one left."""
    pods = {c: component_pods(core, c) for c in ("agent", "collector")}
    if all(len(found) == 1 and ready(found[0]) and found[0].metadata.uid not in before
           for found in pods.values()):
        return {c: found[0] for c, found in pods.items()}
    return None


class HttpsCollector:
    """The collector through its ClusterIP, trusting only the test's CA."""

    def __init__(self, address: str, port: int, ca_file: Path) -> None:
        self.address, self.port = address, port
        self.context = ssl.create_default_context(cafile=str(ca_file))

    def metrics(self) -> str:
        url = f"https://{self.address}:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5, context=self.context) as reply:
            return str(reply.read().decode())

    def served_certificate(self) -> bytes:
        with socket.create_connection((self.address, self.port), timeout=5) as raw, \
                self.context.wrap_socket(raw, server_hostname=SERVICE_NAME) as tls:
            certificate = tls.getpeercert(binary_form=True)
        assert certificate is not None
        return certificate

    def takes_token(self, token: str) -> bool:
        """Whether a request with `token` gets past the check: a bodiless POST then meets 415."""
        request = urllib.request.Request(
            f"https://{self.address}:{self.port}/api/v1/reports", data=b"", method="POST",
            headers={"Authorization": f"Bearer {token}"})
        try:
            urllib.request.urlopen(request, timeout=5, context=self.context)
        except urllib.error.HTTPError as exc:
            return exc.code != 401
        raise AssertionError("a POST without Content-Type was accepted")


def agent_counters(pod: client.V1Pod) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:9881/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {name: value(text, f"kubecarbon_agent_reports_{name}")
            for name in ("sent_total", "failed_total", "dropped_total", "buffered")}


def der(certificate: ServerCertificate) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certificate.cert.read_text())


def test_reports_flow_over_tls_through_a_certificate_and_token_rotation(
        core, kubeconfig, kubecarbon, prometheus, tmp_path):
    wall_start = time.monotonic()
    service = core.read_namespaced_service("kubecarbon-collector", release.NAMESPACE)
    address, port = service.spec.cluster_ip, service.spec.ports[0].port
    authority = Authority.create(tmp_path / "ca")
    first = authority.issue(tmp_path / "first", [SERVICE_NAME, address])
    renewed = authority.issue(tmp_path / "renewed", [SERVICE_NAME, address])
    put_secret(core, release.NAMESPACE, TLS_SECRET, first.secret_data(), "kubernetes.io/tls")
    _, scraper = prometheus
    plain_scrape = scraper.scrape
    before = {p.metadata.uid for p in running_pods(core, release.NAMESPACE)}
    values = release.release_values()
    values["tls"] = {"enabled": True, "secretName": TLS_SECRET}
    rolled_out = rotation_done = wall_start  # for the timings printed however the test ends
    try:
        release.upgrade(kubeconfig, release.CHART_DIR, values)
        pods = wait_for("the HTTPS collector and its agent Ready", lambda: replaced(core, before),
                        timeout=180, explain=lambda: describe_pods(core))
        rolled_out = time.monotonic()
        collector = HttpsCollector(address, port, authority.cert)
        wait_for("reports accepted over HTTPS", lambda: agent_counters(pods["agent"])[
            "sent_total"] >= 2, timeout=60)
        assert collector.served_certificate() == der(first)
        assert value(collector.metrics(), "kubecarbon_collector_reports_total",
                     result="accepted") >= 2

        # Prometheus scrapes /metrics over TLS, as the chart's ServiceMonitor has it do.
        scraper.reconfigure(with_collector_tls(plain_scrape, authority.cert, SERVICE_NAME))

        def scraped_over_https() -> bool:
            return any(t["labels"].get("job") == "kubecarbon-collector"
                       and t["scrapeUrl"].startswith("https://") and t["health"] == "up"
                       for t in scraper.targets())

        wait_for("the collector scraped over HTTPS", scraped_over_https, timeout=60)

        # The rotation: both Secrets change at once, as a renewal and a new token would.
        old_token = base64.b64decode(
            core.read_namespaced_secret(TOKEN_SECRET, release.NAMESPACE).data["token"]).decode()
        new_token = secrets.token_urlsafe(36)
        accepted_before = value(collector.metrics(), "kubecarbon_collector_reports_total",
                                result="accepted")
        refused_before = value(collector.metrics(), "kubecarbon_collector_rejected_requests_total",
                               0.0, code="401")
        rotated = time.monotonic()
        put_secret(core, release.NAMESPACE, TLS_SECRET, renewed.secret_data(), "kubernetes.io/tls")
        put_secret(core, release.NAMESPACE, TOKEN_SECRET, {"token": new_token.encode(),
                                        "previous-token": old_token.encode()})
        probes_refused = 0
        took_effect: dict[str, float] = {}
        while len(took_effect) < 2:
            elapsed = time.monotonic() - rotated
            assert elapsed < TOKEN_ROTATION_BOUND_SECONDS, (
                f"after {elapsed:.0f} s only {sorted(took_effect)} took effect")
            if "certificate" not in took_effect and collector.served_certificate() == der(renewed):
                took_effect["certificate"] = elapsed
            if "token" not in took_effect:
                if collector.takes_token(new_token):
                    took_effect["token"] = elapsed
                else:
                    probes_refused += 1
            time.sleep(0.5)
        # Agents catch up with the new token by themselves; then the old one is retired.
        def accepted_now() -> float:
            return value(collector.metrics(), "kubecarbon_collector_reports_total",
                         result="accepted")

        wait_for("reports accepted after the rotation",
                 lambda: accepted_now() >= accepted_before + 3,
                 timeout=TOKEN_ROTATION_BOUND_SECONDS)
        put_secret(core, release.NAMESPACE, TOKEN_SECRET, {"token": new_token.encode()})
        retired = time.monotonic()
        wait_for("the old token refused", lambda: not collector.takes_token(old_token),
                 timeout=TOKEN_ROTATION_BOUND_SECONDS)
        retire_seconds = time.monotonic() - retired
        probes_refused += 1  # the probe that saw the old token refused
        accepted_at_retirement = accepted_now()
        # a delivery now can only carry the new token
        wait_for("a delivery with the new token alone, the agent's buffer empty", lambda: (
            accepted_now() > accepted_at_retirement
            and agent_counters(pods["agent"])["buffered"] == 0),
            timeout=TOKEN_ROTATION_BOUND_SECONDS)

        rotation_done = time.monotonic()
        agent = agent_counters(pods["agent"])
        metrics = collector.metrics()
        accepted = value(metrics, "kubecarbon_collector_reports_total", result="accepted")
        duplicates = value(metrics, "kubecarbon_collector_reports_total", result="duplicate")
        refused = value(metrics, "kubecarbon_collector_rejected_requests_total", 0.0, code="401")
        agent_refusals = refused - refused_before - probes_refused
        now = {c: component_pods(core, c) for c in ("agent", "collector")}
        print(f"\nTLS rotation: reports accepted over HTTPS {accepted_before:.0f} before the "
              f"rotation, {accepted - accepted_before:.0f} after; agent sent "
              f"{agent['sent_total']:.0f}, failed {agent['failed_total']:.0f}, dropped "
              f"{agent['dropped_total']:.0f}; collector accepted {accepted:.0f}, duplicates "
              f"{duplicates:.0f}; 401s answered to the agent {agent_refusals:.0f}; renewed "
              f"certificate served after {took_effect['certificate']:.1f} s, new token taken "
              f"after {took_effect['token']:.1f} s, old token refused "
              f"{retire_seconds:.1f} s after its removal (bound "
              f"{TOKEN_ROTATION_BOUND_SECONDS} s)")
        # Nothing lost, nothing counted twice, no restart.
        assert agent["sent_total"] == accepted
        assert agent["failed_total"] == agent["dropped_total"] == 0
        assert duplicates == 0
        assert agent_refusals >= 0
        for component, pod in pods.items():
            (still,) = now[component]
            assert still.metadata.name == pod.metadata.name
            assert all(s.restart_count == 0 for s in still.status.container_statuses)
    finally:
        scraper.reconfigure(plain_scrape)
        restoring = time.monotonic()
        before = {p.metadata.uid for p in running_pods(core, release.NAMESPACE)}
        release.upgrade(kubeconfig, release.CHART_DIR, release.release_values())
        wait_for("the plain-HTTP release back", lambda: replaced(core, before), timeout=180,
                 explain=lambda: describe_pods(core))
        core.delete_namespaced_secret(TLS_SECRET, release.NAMESPACE)
        print(f"test_tls wall time {time.monotonic() - wall_start:.0f} s: upgrade to HTTPS and "
              f"its rollout {rolled_out - wall_start:.0f} s, deliveries, scrape and rotation "
              f"{rotation_done - rolled_out:.0f} s, back to plain HTTP "
              f"{time.monotonic() - restoring:.0f} s")
