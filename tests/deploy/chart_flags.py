"""The chart's values flags the deploy tests render, each alone and all at once (imported by
name: tests run with --import-mode=importlib and tests/deploy/conftest.py puts this folder on
sys.path)."""

from __future__ import annotations

from typing import Any

# One render per values flag, plus everything at once.
FLAG_VALUES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "rapl": {"agent": {"rapl": {"enabled": True}}},
    "host-network": {"agent": {"hostNetwork": True}},
    "cgroup-v1": {"agent": {"cgroupVersion": 1}},
    "service-env": {"agent": {"collectorAddress": "serviceEnv"}},
    "replicas": {"collector": {"replicas": 3}},
    "persistence": {"collector": {"persistence": {"enabled": True, "storageClassName": "fast"}}},
    "existing-claim": {"collector": {"persistence": {"enabled": True, "existingClaim": "mine"}}},
    "kubernetes-off": {"collector": {"kubernetes": "off"}},
    "collector-config": {"collector": {"config": {"default_profile": {"provider": "baremetal"}}}},
    "token-value": {"token": {"value": "s3cret-token-0123456789"}},
    "token-existing": {"token": {"existingSecret": "my-token"}},
    "token-previous": {"token": {"value": "s3cret-token-0123456789",
                                 "previous": "old-token-0123456789ab"}},
    "tls": {"tls": {"enabled": True, "secretName": "collector-tls"}},
    "tls-replicas": {"tls": {"enabled": True, "secretName": "collector-tls"},
                     "collector": {"replicas": 3}},
    "tls-ca-configmap": {"tls": {"enabled": True, "secretName": "collector-tls",
                                 "ca": {"configMapName": "corp-ca", "key": "bundle.pem"},
                                 "serverName": "collector.example.org"},
                         "serviceMonitor": {"enabled": True}},
    "network-policy": {"networkPolicy": {"enabled": True}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
    "pod-monitor": {"podMonitor": {"enabled": True}},
    "prometheus-rule": {"prometheusRule": {"enabled": True}},
    "dashboards": {"dashboards": {"enabled": True, "annotations": {"grafana_folder": "Carbon"}}},
    "everything": {
        "agent": {"rapl": {"enabled": True}, "hostNetwork": True, "cgroupVersion": 1,
                  "collectorAddress": "serviceEnv",
                  "extraEnv": [{"name": "KUBECARBON_LOG_LEVEL", "value": "debug"}]},
        "collector": {"replicas": 2, "config": {"model": {}}},
        "networkPolicy": {"enabled": True,
                          "additionalFrom": [{"ipBlock": {"cidr": "10.0.0.0/16"}}]},
        "serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True}, "dashboards": {"enabled": True},
        "imagePullSecrets": [{"name": "regcred"}],
        "tls": {"enabled": True, "secretName": "collector-tls"},
        "token": {"previous": "old-token-0123456789ab"},
    },
}
