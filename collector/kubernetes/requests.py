"""A pod's effective resource requests, by the rule the scheduler and ResourceQuota apply.

Pure: a Pod spec (JSON) in, (CPU cores, memory bytes) out. The rule (Kubernetes'
resource helper, `PodRequests`): per resource, the larger of
  - the sum over the app containers, and
  - the largest single init container,
plus the pod's overhead (set by its RuntimeClass). Since 1.28 an init container with
`restartPolicy: Always` (a sidecar) keeps running: it adds to the app sum, and each
later init container runs beside the sidecars started before it. On 1.20-1.27 the
field does not exist and the rule reduces to the one above.

A container without requests requests nothing (the API server already copied its
limits into its requests when only limits were set): a BestEffort pod requests 0.
"""

# The official client ships py.typed but leaves most functions unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity

log = logging.getLogger("collector.kubernetes")  # one logger for the package

SIDECAR_RESTART_POLICY = "Always"


@dataclass(frozen=True, slots=True)
class Requests:
    """CPU (cores) and memory (bytes) one pod or container requests."""

    cpu_cores: float = 0.0
    memory_bytes: float = 0.0

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu_cores + other.cpu_cores, self.memory_bytes + other.memory_bytes)

    def max(self, other: Requests) -> Requests:
        """Per resource, the larger of the two (the rule takes each resource on its own)."""
        return Requests(max(self.cpu_cores, other.cpu_cores),
                        max(self.memory_bytes, other.memory_bytes))


def quantity(value: object, what: str) -> float:
    """A Kubernetes quantity ("250m", "1Gi") as a float; 0 with a warning when unparsable."""
    if value is None:
        return 0.0
    try:
        return float(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        log.warning("%s: ignoring unparsable quantity %r", what, value)
        return 0.0


def resource_list(resources: Mapping[str, Any] | None, what: str) -> Requests:
    """The cpu and memory of a ResourceList ({"cpu": "250m", "memory": "64Mi"})."""
    resources = resources or {}
    return Requests(quantity(resources.get("cpu"), f"{what} cpu"),
                    quantity(resources.get("memory"), f"{what} memory"))


def _container_requests(container: Mapping[str, Any], what: str) -> Requests:
    return resource_list((container.get("resources") or {}).get("requests"),
                         f"{what} {container.get('name', '?')}")


def pod_requests(spec: Mapping[str, Any], what: str = "pod") -> Requests:
    """The effective requests of a pod spec (see the module docstring for the rule)."""
    apps = Requests()
    for container in spec.get("containers") or ():
        apps = apps + _container_requests(container, what)
    init_peak = Requests()
    sidecars = Requests()  # sidecars started so far run beside every later init container
    for container in spec.get("initContainers") or ():
        requests = _container_requests(container, what)
        if container.get("restartPolicy") == SIDECAR_RESTART_POLICY:
            sidecars = sidecars + requests
            init_peak = init_peak.max(sidecars)
        else:
            init_peak = init_peak.max(sidecars + requests)
    effective = (apps + sidecars).max(init_peak)
    return effective + resource_list(spec.get("overhead"), f"{what} overhead")
