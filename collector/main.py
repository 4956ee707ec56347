"""`kubecarbon collector`: parse settings, pick a metadata provider, serve the app."""

from __future__ import annotations

import logging
import sys

from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.app import ReplicaSetupError, create_app, default_registry
from collector.auth import TokenFileError
from collector.heap import freeze_startup_heap, tune_for_serving
from collector.metadata import MetadataProvider, StaticMetadataProvider
from collector.options import SettingsError, parse_settings
from collector.settings import Settings
from collector.tls import CertificateError, ReloadingCertificate

log = logging.getLogger("collector")


def build_metadata_provider(settings: Settings, registry: CollectorRegistry) -> MetadataProvider:
    """The provider `--kubernetes` asks for.

    "off": the static provider (config file only). "auto": the Kubernetes API when the
    client is installed and in-cluster credentials or a kubeconfig are present, else
    static. The Kubernetes provider's own health metrics are registered on `registry`.
    """
    static = StaticMetadataProvider()
    if settings.kubernetes == "off":
        return static
    try:
        from collector import kubernetes
    except ImportError as exc:
        log.warning("Kubernetes metadata unavailable (%s): using the config file only", exc)
        return static
    try:
        api_client, choice = kubernetes.load_api_client(
            str(settings.kubeconfig) if settings.kubeconfig is not None else None
        )
    except kubernetes.KubernetesUnavailable as exc:
        log.info("%s: using the config file only", exc)
        return static
    log.info("node and pod metadata from the Kubernetes API (%s)", choice.source)
    provider = kubernetes.KubernetesMetadataProvider(api_client)
    registry.register(kubernetes.KubernetesWatchMetrics(provider))
    return provider


def main(argv: list[str]) -> int:
    try:
        settings = parse_settings(argv)
    except SettingsError as exc:
        print(f"kubecarbon collector: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    registry = default_registry()
    metadata = build_metadata_provider(settings, registry)
    server = settings.server
    try:
        app = create_app(settings, metadata=metadata, registry=registry)
        certificate = (ReloadingCertificate(server.tls_cert_file, server.tls_key_file)
                       if server.tls_cert_file and server.tls_key_file else None)
    except (TokenFileError, CertificateError, ReplicaSetupError) as exc:
        print(f"kubecarbon collector: error: {exc}", file=sys.stderr)
        return 2
    if certificate is None:
        log.warning("serving plain HTTP: reports and the bearer token travel in clear text "
                    "(--tls-cert-file and --tls-key-file turn on HTTPS)")
    log.info(
        "kubecarbon collector serving %s on %s:%d (metadata: %s, state file: %s, auth: %s, "
        "replica: %s of %d)",
        "HTTPS" if certificate else "HTTP", server.listen_host, server.listen_port,
        metadata.status().source, settings.state.state_file or "none",
        "bearer token" if settings.server.token_file else "none",
        settings.replicas.replica_name or "the only one", settings.replicas.replicas,
    )
    tune_for_serving()
    app.on_startup.append(freeze_startup_heap)
    web.run_app(
        app,
        host=settings.server.listen_host,
        port=settings.server.listen_port,
        ssl_context=certificate.context if certificate else None,
        access_log=None,
        print=None,
        handle_signals=True,
    )
    return 0
