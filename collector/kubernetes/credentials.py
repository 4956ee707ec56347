"""Credentials: in-cluster service account, else a kubeconfig; an API client from them."""

# The official client ships py.typed but leaves most functions unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.incluster_config import InClusterConfigLoader

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class ConnectionChoice:
    """Which credentials `load_api_client` used, for the startup log line."""

    source: str  # "in-cluster" or "kubeconfig"
    detail: str = ""


class KubernetesUnavailable(Exception):
    """No in-cluster service account and no usable kubeconfig."""


def load_api_client(
    kubeconfig: str | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> tuple[client.ApiClient, ConnectionChoice]:
    """An API client from an explicit kubeconfig, else in-cluster config, else the kubeconfig
    that $KUBECONFIG names (colon-separated files are merged) or ~/.kube/config.

    In-cluster means KUBERNETES_SERVICE_HOST/PORT in `environ` and the pod's service
    account token and CA in `service_account_dir`; the token file is re-read every
    minute, so rotated tokens are picked up. Raises KubernetesUnavailable (one clear
    line) when nothing works.
    """
    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            InClusterConfigLoader(
                token_filename=str(service_account_dir / "token"),
                cert_filename=str(service_account_dir / "ca.crt"),
                environ=environ,
            ).load_and_set(configuration)
            return _api_client(configuration), ConnectionChoice(source="in-cluster")
        except config.ConfigException as exc:
            in_cluster_error = str(exc)
        # Read here, not at import: the client's own default is fixed when it is imported.
        kubeconfig = environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    else:
        in_cluster_error = "not tried: a kubeconfig was given"
    try:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (config.ConfigException, OSError, TypeError) as exc:
        raise KubernetesUnavailable(
            f"no Kubernetes credentials: in-cluster: {in_cluster_error}; "
            f"kubeconfig {kubeconfig}: {exc}"
        ) from None
    return _api_client(configuration), ConnectionChoice(source="kubeconfig", detail=kubeconfig)


def _api_client(configuration: client.Configuration) -> client.ApiClient:
    # The reflectors back off themselves; urllib3's immediate retries would only
    # hide the first error behind three more attempts.
    configuration.retries = False
    return client.ApiClient(configuration)
