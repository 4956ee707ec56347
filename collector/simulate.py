"""A simulated fleet: DESIGN wire-format reports for N nodes, without a cluster.

Used by `kubecarbon demo` (so the numbers are interesting on a laptop) and by
the report, end-to-end and scale tests (so they feed a known fleet). The fleet
is deterministic for a seed and a sequence of clock readings: node profiles,
pod uids and every busy second come from seeded numpy generators.

    fleet = SimulatedFleet(FleetSettings(nodes=300, seed=7))
    metadata = fleet.metadata()            # StaticMetadataProvider: nodes and pods resolve
    reports = fleet.reports()              # one window per node, up to clock()
    fleet.load_scale = 0.2                 # "collapse": utilisation drops to a fifth
    fleet.config_document()                # collector config: a profile rule per node

Each simulated node has its own agent_id; seq rises by one per report and each
window starts where the node's previous one ended.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from collector.metadata import NodeInfo, PodInfo, StaticMetadataProvider
from collector.profiles import ProfileConfig, parse_profile_document
from kubecarbon.wire import SCHEMA_VERSION

GIBIBYTE = 1024**3
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class MachineType:
    """One kind of node the fleet is drawn from."""

    provider: str  # "aws", "gcp", "azure", "alibaba" or "baremetal"
    instance_type: str
    logical_cpus: int
    memory_bytes: int
    regions: tuple[str, ...]  # drawn uniformly for each node of this type
    weight: float  # relative share of the fleet
    utc_offset_hours: tuple[float, ...] = ()  # per region, for the local daily peak


# A mixed fleet: the three big clouds in CCF-listed regions, and bare-metal racks
# on China's regional grids (the case DESIGN's worked example is about).
DEFAULT_MACHINE_TYPES: tuple[MachineType, ...] = (
    MachineType("aws", "m5.4xlarge", 16, 64 * GIBIBYTE,
                ("us-east-1", "eu-west-1", "eu-central-1"), 0.22, (-5, 0, 1)),
    MachineType("aws", "c5.9xlarge", 36, 72 * GIBIBYTE, ("us-east-1", "eu-west-1"), 0.08, (-5, 0)),
    MachineType("gcp", "n2-standard-16", 16, 64 * GIBIBYTE,
                ("us-central1", "europe-west1"), 0.14, (-6, 1)),
    MachineType("azure", "Standard_D16s_v5", 16, 64 * GIBIBYTE,
                ("eastus", "westeurope"), 0.12, (-5, 1)),
    MachineType("alibaba", "ecs.g7.4xlarge", 16, 64 * GIBIBYTE,
                ("cn-hangzhou", "cn-beijing", "cn-shenzhen"), 0.08, (8, 8, 8)),
    MachineType("baremetal", "r740-2x8180", 112, 384 * GIBIBYTE,
                ("china-east", "china-north", "china-south"), 0.12, (8, 8, 8)),
    MachineType("baremetal", "2x-xeon-48t", 48, 256 * GIBIBYTE,
                ("china-east", "china-central", "china-southwest", "china"), 0.24, (8, 8, 8, 8)),
)

# namespace -> (relative CPU weight, workloads in it); kube-system is on every node.
DEFAULT_NAMESPACES: dict[str, tuple[float, tuple[str, ...]]] = {
    "payments": (3.0, ("ledger", "gateway", "settlement")),
    "lending": (2.5, ("credit-api", "loan-origination")),
    "risk": (4.0, ("scoring", "fraud-model", "feature-store")),
    "web": (2.0, ("frontend", "api-gateway")),
    "data-pipeline": (3.5, ("etl", "kafka-connect")),
    "monitoring": (0.6, ("prometheus", "grafana")),
}
# How much each workload requests, as a multiple of its pods' expected use at the node's
# daily peak: these over-request (the common case the rightsizing section is about);
# every other workload requests 1.25x, about right. A node whose requests would exceed
# its allocatable CPU has them scaled down to fit, as the scheduler would have refused them.
DEFAULT_OVER_REQUESTED: dict[str, float] = {
    "fraud-model": 4.0, "etl": 3.0, "frontend": 3.5, "credit-api": 2.5, "grafana": 5.0,
}
RIGHT_SIZED_REQUEST_FACTOR = 1.25
ALLOCATABLE_SHARE = 0.95  # of a node's CPUs and memory; the rest is reserved for the system
REQUESTED_MEMORY_SHARE = 0.4  # of a node's memory, requested by its pods together
SYSTEM_NAMESPACE = "kube-system"
CHINA_DATA_CENTRE_SITE = "china-average-2021"  # PUE 1.49 in the model's site table


@dataclass(frozen=True)
class FleetSettings:
    """What the simulated fleet looks like; every field has a sensible default."""

    nodes: int = 300
    seed: int = 0
    window_seconds: float = 15.0  # length of the first window of each node
    max_window_seconds: float = 3600.0  # longer gaps are split (DESIGN's 1 h window limit)
    pods_per_cpu: float = 0.8  # average application pods per logical CPU
    max_pods_per_node: int = 110  # the kubelet's default pod limit
    peak_utilisation: tuple[float, float] = (0.40, 0.75)  # per-node peak, drawn uniformly
    trough_utilisation: tuple[float, float] = (0.08, 0.20)  # per-node night-time level
    peak_local_hour: float = 14.0  # local time of the daily peak
    noise: float = 0.05  # relative standard deviation of each window's utilisation
    system_share: float = 0.08  # busy time outside any pod (kernel, kubelet, runtime)
    load_scale: float = 1.0  # multiplies every node's utilisation; < 1 simulates a collapse
    rapl_on_baremetal: bool = True  # bare-metal nodes also send RAPL energy
    machine_types: tuple[MachineType, ...] = DEFAULT_MACHINE_TYPES
    namespaces: dict[str, tuple[float, tuple[str, ...]]] = field(
        default_factory=lambda: dict(DEFAULT_NAMESPACES)
    )
    over_requested: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_OVER_REQUESTED))


@dataclass(frozen=True)
class SimulatedPod:
    uid: str
    namespace: str
    name: str
    workload_kind: str
    workload_name: str
    containers: int
    cpu_weight: float  # share of the node's pod CPU time, relative to its neighbours
    cpu_request_cores: float = 0.0
    memory_request_bytes: float = 0.0


@dataclass
class SimulatedNode:
    name: str
    machine: MachineType
    region: str
    utc_offset_hours: float
    peak_utilisation: float
    trough_utilisation: float
    pods: tuple[SimulatedPod, ...]
    agent_id: str
    next_seq: int = 1
    last_end: float | None = None  # end of the last window sent

    def __post_init__(self) -> None:
        # fixed per node: kept ready so a round of reports does no per-pod numpy work
        self.pod_weights = np.array([pod.cpu_weight for pod in self.pods])
        self.containers = sum(pod.containers for pod in self.pods)

    @property
    def logical_cpus(self) -> int:
        return self.machine.logical_cpus


def daily_utilisation(utc_seconds: float, utc_offset_hours: float, peak: float, trough: float,
                      peak_local_hour: float) -> float:
    """The load shape: a cosine day, `peak` at peak_local_hour and `trough` twelve hours off."""
    local_hour = (utc_seconds / SECONDS_PER_HOUR + utc_offset_hours) % 24.0
    phase = 2.0 * math.pi * (local_hour - peak_local_hour) / 24.0
    return trough + (peak - trough) * 0.5 * (1.0 + math.cos(phase))


def _uuid_from(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


class SimulatedFleet:
    """N simulated nodes that report like agents; deterministic for a seed and clock."""

    def __init__(self, settings: FleetSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings or FleetSettings()
        self.clock = clock
        self.load_scale = self.settings.load_scale
        # namespace -> multiplier of its pods' CPU use (< 1: its usage collapses while its
        # requests stay); the node's busy time drops by what those pods no longer use
        self.namespace_load_scale: dict[str, float] = {}
        self.nodes: list[SimulatedNode] = self._build_nodes()
        self._calls = 0

    # -- the fleet's shape -------------------------------------------------------------

    def _build_nodes(self) -> list[SimulatedNode]:
        s = self.settings
        rng = np.random.default_rng([s.seed, 0x6b63])  # "kc": the layout stream
        weights = np.array([m.weight for m in s.machine_types], dtype=float)
        kinds = rng.choice(len(s.machine_types), size=s.nodes, p=weights / weights.sum())
        namespace_names = list(s.namespaces)
        namespace_weights = np.array([s.namespaces[n][0] for n in namespace_names])
        nodes = []
        for index, kind in enumerate(kinds):
            machine = s.machine_types[int(kind)]
            region_index = int(rng.integers(len(machine.regions)))
            offsets = machine.utc_offset_hours or (0.0,) * len(machine.regions)
            name = f"sim-{machine.provider}-{index:04d}"
            pod_count = int(min(s.max_pods_per_node,
                                max(1, rng.poisson(machine.logical_cpus * s.pods_per_cpu))))
            pods = [self._system_pod(rng, name)]
            for _ in range(pod_count):
                ns = namespace_names[int(rng.choice(len(namespace_names),
                                                    p=namespace_weights / namespace_weights.sum()))]
                workload = s.namespaces[ns][1][int(rng.integers(len(s.namespaces[ns][1])))]
                suffix = rng.bytes(3).hex()[:5]
                pods.append(SimulatedPod(
                    uid=_uuid_from(rng), namespace=ns, name=f"{workload}-{suffix}",
                    workload_kind="Deployment", workload_name=workload,
                    containers=int(rng.integers(1, 4)),
                    cpu_weight=float(s.namespaces[ns][0] * rng.lognormal(0.0, 0.5)),
                ))
            nodes.append(SimulatedNode(
                name=name, machine=machine, region=machine.regions[region_index],
                utc_offset_hours=float(offsets[region_index]),
                peak_utilisation=float(rng.uniform(*s.peak_utilisation)),
                trough_utilisation=float(rng.uniform(*s.trough_utilisation)),
                pods=tuple(pods), agent_id=_uuid_from(rng),
            ))
            # requests follow the node's peak, drawn above (no new draw: the same seed
            # keeps giving the same fleet)
            nodes[-1].pods = tuple(self._with_requests(machine, nodes[-1].peak_utilisation,
                                                       pods))
        return nodes

    def _with_requests(self, machine: MachineType, peak: float,
                       pods: list[SimulatedPod]) -> list[SimulatedPod]:
        """The pods with CPU requests from their expected use at a busy peak (see
        DEFAULT_OVER_REQUESTED) and memory requests by CPU weight."""
        s = self.settings
        weights = np.array([pod.cpu_weight for pod in pods])
        shares = weights / weights.sum()
        peak_cores = machine.logical_cpus * peak * (1.0 - s.system_share) * shares
        factors = np.array([s.over_requested.get(pod.workload_name, RIGHT_SIZED_REQUEST_FACTOR)
                            for pod in pods])
        cpu = peak_cores * factors
        room = machine.logical_cpus * ALLOCATABLE_SHARE
        if cpu.sum() > room:
            cpu *= room / cpu.sum()
        memory = machine.memory_bytes * REQUESTED_MEMORY_SHARE * shares
        return [dataclasses.replace(pod, cpu_request_cores=round(float(c), 3),
                                    memory_request_bytes=float(int(m)))
                for pod, c, m in zip(pods, cpu.tolist(), memory.tolist(), strict=True)]

    @staticmethod
    def _system_pod(rng: np.random.Generator, node_name: str) -> SimulatedPod:
        return SimulatedPod(
            uid=_uuid_from(rng), namespace=SYSTEM_NAMESPACE, name=f"kube-proxy-{node_name}",
            workload_kind="DaemonSet", workload_name="kube-proxy", containers=1, cpu_weight=0.3,
        )

    # -- metadata, so the collector resolves nodes and namespaces without Kubernetes ----

    def node_infos(self) -> dict[str, NodeInfo]:
        return {
            node.name: NodeInfo(
                name=node.name,
                labels={
                    "node.kubernetes.io/instance-type": node.machine.instance_type,
                    "topology.kubernetes.io/region": node.region,
                },
                provider=node.machine.provider,
                instance_type=node.machine.instance_type,
                region=node.region,
                cpu_capacity=float(node.machine.logical_cpus),
                memory_capacity_bytes=node.machine.memory_bytes,
                cpu_allocatable=node.machine.logical_cpus * ALLOCATABLE_SHARE,
                memory_allocatable_bytes=int(node.machine.memory_bytes * ALLOCATABLE_SHARE),
            )
            for node in self.nodes
        }

    def pod_infos(self) -> dict[str, PodInfo]:
        return {
            pod.uid: PodInfo(uid=pod.uid, namespace=pod.namespace, name=pod.name,
                             workload_kind=pod.workload_kind, workload_name=pod.workload_name,
                             node_name=node.name, cpu_request_cores=pod.cpu_request_cores,
                             memory_request_bytes=pod.memory_request_bytes)
            for node in self.nodes
            for pod in node.pods
        }

    def metadata(self) -> StaticMetadataProvider:
        return StaticMetadataProvider(nodes=self.node_infos(), pods=self.pod_infos())

    def config_document(self) -> dict[str, Any]:
        """The collector config-file sections (as YAML would load them) for this fleet.

        One profile rule per node, so a collector run as its own process (which cannot
        be handed `metadata()`) prices every node as the metadata would; bare metal on
        China's grids sits in an average Chinese data centre. Pods stay unknown there:
        namespaces need `metadata()` or Kubernetes.
        """
        rules = []
        for node in self.nodes:
            rule: dict[str, Any] = {
                "match": {"node": node.name},
                "provider": node.machine.provider,
                "instance_type": node.machine.instance_type,
                "region": node.region,
            }
            if node.machine.provider == "baremetal" and node.region.startswith("china"):
                rule["site"] = CHINA_DATA_CENTRE_SITE
            rules.append(rule)
        return {"profiles": rules}

    def profile_config(self) -> ProfileConfig:
        """`config_document()` parsed, for an in-process collector (Settings.profiles)."""
        return parse_profile_document(self.config_document())

    # -- reports -----------------------------------------------------------------------

    def utilisation(self, node: SimulatedNode, utc_seconds: float) -> float:
        """The node's expected utilisation at a moment (before noise, after load_scale)."""
        base = daily_utilisation(utc_seconds, node.utc_offset_hours, node.peak_utilisation,
                                 node.trough_utilisation, self.settings.peak_local_hour)
        return min(1.0, base * self.load_scale)

    def reports(self, now: float | None = None) -> list[dict[str, Any]]:
        """One or more reports per node, covering each node's time since its last window.

        The first window of a node is `window_seconds` long and ends at `now`; later
        windows start where the previous one ended. Gaps shorter than a second wait
        for the next call; gaps beyond max_window_seconds are split.
        """
        end = self.clock() if now is None else now
        # One generator per call, seeded by the call's number: the same clock readings
        # give the same reports, and a round of 10,000 nodes seeds once, not 10,000 times.
        rng = np.random.default_rng([self.settings.seed, 0x726570, self._calls])
        self._calls += 1
        out: list[dict[str, Any]] = []
        for node in self.nodes:
            start = end - self.settings.window_seconds if node.last_end is None else node.last_end
            for window_start, window_end in self._split(start, end):
                out.append(self._report(rng, node, window_start, window_end))
                node.last_end = window_end
        return out

    def _split(self, start: float, end: float) -> Iterator[tuple[float, float]]:
        if end - start < 1.0:
            return
        pieces = max(1, math.ceil((end - start) / self.settings.max_window_seconds))
        step = (end - start) / pieces
        for i in range(pieces):
            yield start + i * step, (end if i == pieces - 1 else start + (i + 1) * step)

    def _report(self, rng: np.random.Generator, node: SimulatedNode, start: float,
                end: float) -> dict[str, Any]:
        s = self.settings
        dt = end - start
        middle = (start + end) / 2.0
        noisy = self.utilisation(node, middle) * (1.0 + s.noise * rng.standard_normal())
        utilisation = min(1.0, max(0.005, noisy))
        busy_seconds = utilisation * node.logical_cpus * dt
        weights = node.pod_weights * rng.uniform(0.7, 1.3, size=len(node.pods))
        pod_seconds = (busy_seconds * (1.0 - s.system_share) / weights.sum() * weights).tolist()
        if self.namespace_load_scale:
            for k, pod in enumerate(node.pods):
                scale = self.namespace_load_scale.get(pod.namespace)
                if scale is not None:
                    busy_seconds -= pod_seconds[k] * (1.0 - scale)
                    pod_seconds[k] *= scale
        memory_used = node.machine.memory_bytes * min(0.95, 0.25 + 0.6 * utilisation)
        report: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "node": node.name,
            "agent_id": node.agent_id,
            "seq": node.next_seq,
            "start": start,
            "end": end,
            "cpu": {"logical_cpus": node.logical_cpus, "busy_seconds": busy_seconds},
            "memory": {"total_bytes": node.machine.memory_bytes, "used_bytes": int(memory_used)},
            "containers_running": node.containers,
            "pods": [
                {"uid": pod.uid, "cpu_seconds": seconds, "containers": pod.containers}
                for pod, seconds in zip(node.pods, pod_seconds, strict=True)
            ],
        }
        if s.rapl_on_baremetal and node.machine.provider == "baremetal":
            # A plausible package+DRAM reading: 60 W idle per socket pair rising with load.
            package_watts = node.logical_cpus * (0.55 + 2.6 * utilisation)
            report["rapl"] = {"package_joules": package_watts * dt,
                              "dram_joules": 0.12 * package_watts * dt}
        node.next_seq += 1
        return report


def batches(reports: Sequence[dict[str, Any]], size: int = 500) -> Iterator[dict[str, Any]]:
    """Wire-format request bodies of at most `size` reports (DESIGN's batch limit)."""
    for offset in range(0, len(reports), size):
        yield {"reports": list(reports[offset:offset + size])}


async def post_reports(session: Any, url: str, reports: Sequence[dict[str, Any]],
                       token: str | None = None, batch_size: int = 500) -> tuple[int, int]:
    """POST the reports in batches (an aiohttp ClientSession); returns (accepted, duplicates).

    Raises RuntimeError with the collector's error text on any non-200 reply.
    """
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    accepted = duplicates = 0
    for body in batches(reports, batch_size):
        async with session.post(url, data=orjson.dumps(body), headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
            reply = await response.json()
        accepted += int(reply.get("accepted", 0))
        duplicates += int(reply.get("duplicates", 0))
    return accepted, duplicates
