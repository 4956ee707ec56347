"""Collector replicas: which replica owns a node, where the replicas are, the hop to the owner.

With `--replicas N` every node is owned by exactly one replica, `owner_of(node, N)`: a
stable hash of the node name modulo the configured N (not the replicas that happen to be
up, so ownership never moves while a replica restarts and no dedupe history has to move
with it). A replica applies the reports of the nodes it owns and forwards the others to
their owner, answering the agent with the owner's reply; when the owner cannot be reached
it answers 503, which agents retry (they buffer meanwhile). So each node's counters,
gauges and `(agent_id, seq)` history live on one replica and Prometheus simply sums
replicas (docs/scaling.md). Replicas are StatefulSet pods `<set>-0 .. <set>-(N-1)`; their
addresses come from the pod watch the collector runs anyway (`PodPeers`) or, without
the Kubernetes API, from a file (`PeersFile`). When the collector serves HTTPS the hop
is HTTPS too (`PeerTrust`): each peer's certificate must chain to the agents' CA bundle
and carry the name the agents check, and a peer that fails that is an unavailable owner.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import msgspec
import orjson

from collector.metadata import ClusterInventory, PodInfo
from kubecarbon.trust import CaBundle
from kubecarbon.wire import REPORTS_PATH, Report

log = logging.getLogger(__name__)

# A request one replica forwards to another carries this header (the sender's ordinal):
# the receiver applies it whatever it thinks the owner is, so no request goes round in
# circles while two replicas disagree on N (during a rollout that changes it).
FORWARDED_HEADER = "X-Kubecarbon-Forwarded-By"
# Headers of the agent's request the owner needs to read it the same way.
PASSED_HEADERS = ("Content-Type", "Content-Encoding", "Authorization")
_ORDINAL = re.compile(r"^(?P<set>.+)-(?P<ordinal>0|[1-9][0-9]*)$")


def owner_of(node: str, replicas: int) -> int:
    """The ordinal of the replica that owns `node`: the same on every replica and release."""
    digest = hashlib.blake2b(node.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % replicas


def replica_ordinal(replica_name: str) -> tuple[str, int]:
    """(StatefulSet name, ordinal) of a replica's pod name such as `kubecarbon-collector-2`."""
    match = _ORDINAL.match(replica_name)
    if match is None:
        raise ValueError(f"{replica_name!r} does not end in -<ordinal> like a StatefulSet pod")
    return match["set"], int(match["ordinal"])


class PeerDirectory(Protocol):
    """Where replica `ordinal` serves its API, or None while that is not known."""

    def url(self, ordinal: int) -> str | None: ...

    def invalidate(self) -> None:
        """An address did not answer: look again before the next use."""


@dataclass(frozen=True)
class StaticPeers:
    """Fixed base URLs, index = ordinal (tests, and replicas started by hand)."""

    urls: tuple[str, ...]

    def url(self, ordinal: int) -> str | None:
        return self.urls[ordinal] if ordinal < len(self.urls) else None

    def invalidate(self) -> None:
        """Fixed addresses: nothing to look up again."""


class PeersFile:
    """Base URLs from a file, one per line, line i for replica i; read again when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._peers = StaticPeers(())

    def url(self, ordinal: int) -> str | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        if (stat.st_mtime_ns, stat.st_size) != self._seen:
            lines = self.path.read_text().splitlines()
            self._peers = StaticPeers(tuple(line.strip() for line in lines if line.strip()))
            self._seen = (stat.st_mtime_ns, stat.st_size)
        return self._peers.url(ordinal)

    def invalidate(self) -> None:
        """The file is read again whenever it changes anyway."""


class PodInventory(ClusterInventory, Protocol):
    def pod_generation(self) -> int: ...


class PodPeers:
    """Replica addresses from the pod watch: pod `<set>-<ordinal>` in `namespace`, its IP.

    The table is rebuilt when the watch saw new pods, when an ordinal is missing or
    an address did not answer (a restarted pod keeps its name and gets a new IP), at
    most once per `refresh_seconds`: a list of every pod in a large cluster is not free.
    """

    def __init__(self, inventory: PodInventory, namespace: str, set_name: str, port: int,
                 *, scheme: str = "http", refresh_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inventory = inventory
        self.namespace = namespace
        self.set_name = set_name
        self.port = port
        self.scheme = scheme  # "https" when the replicas serve HTTPS
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._generation = -1
        self._built_at = float("-inf")
        self._urls: dict[int, str] = {}
        self._doubted = False

    def url(self, ordinal: int) -> str | None:
        generation = self.inventory.pod_generation()
        now = self.clock()
        outdated = (generation != self._generation or self._doubted
                    or ordinal not in self._urls)
        if outdated and now - self._built_at >= self.refresh_seconds:
            self._urls = self._table(self.inventory.pods())
            self._generation, self._built_at, self._doubted = generation, now, False
        return self._urls.get(ordinal)

    def invalidate(self) -> None:
        self._doubted = True

    def _table(self, pods: list[PodInfo]) -> dict[int, str]:
        urls: dict[int, str] = {}
        for pod in pods:
            if pod.namespace != self.namespace or not pod.ip:
                continue
            try:
                set_name, ordinal = replica_ordinal(pod.name)
            except ValueError:
                continue
            if set_name == self.set_name:
                urls[ordinal] = f"{self.scheme}://{pod.ip}:{self.port}"
        return urls


def reports_by_owner(reports: list[Report], replicas: int) -> dict[int, list[Report]]:
    """The batch split by owning replica, each part in the batch's order."""
    parts: dict[int, list[Report]] = {}
    for report in reports:
        parts.setdefault(owner_of(report["node"], replicas), []).append(report)
    return parts


@dataclass(frozen=True)
class OwnerReply:
    """What the owner answered (or the 503 standing in for an owner that did not)."""

    status: int
    body: bytes
    # None: the owner answered. "unavailable": unknown or unreachable; "untrusted": its
    # certificate failed verification (collector_forwarded_requests_total's result).
    failure: str | None = None


@dataclass(frozen=True)
class PeerTrust:
    """How a replica serving HTTPS checks the replica it forwards to.

    Peers are reached by pod IP, so the name to verify is given: the one the agents
    check (the Service's), which every replica's certificate carries.
    """

    bundle: CaBundle
    server_name: str


class Forwarder:
    """Posts one owner's share of a batch to that owner, with the agent's own headers.

    With `trust` only HTTPS peers are used, each verified on every new connection
    against the bundle as it is then (a renewed bundle is read on its next change).
    """

    def __init__(self, ordinal: int, peers: PeerDirectory, timeout_seconds: float = 10.0,
                 *, trust: PeerTrust | None = None) -> None:
        self.ordinal = ordinal
        self.peers = peers
        self.trust = trust
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._untrusted: dict[int, str] = {}  # owner -> failure already logged

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(self, owner: int, body: bytes, headers: Mapping[str, str]
                      ) -> OwnerReply:
        """`body` as the agent sent it (when all of it is the owner's) or a re-encoded part."""
        url = self.peers.url(owner)
        if url is None:
            return _unavailable(owner, "address not known (pod not running?)")
        if self.trust is not None and not url.startswith("https://"):
            # the bearer token would travel in clear text
            return _unavailable(owner, f"{url} is not an https:// address and replicas "
                                       "serve HTTPS")
        sent = {name: headers[name] for name in PASSED_HEADERS if name in headers}
        sent[FORWARDED_HEADER] = str(self.ordinal)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            tls: dict[str, Any] = {} if self.trust is None else {
                "ssl": self.trust.bundle.context(), "server_hostname": self.trust.server_name}
            async with self._session.post(url + REPORTS_PATH, data=body, headers=sent,
                                          **tls) as response:
                reply = OwnerReply(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.peers.invalidate()  # a restarted pod has a new address, and an IP a new pod
            if self.trust is not None and isinstance(exc,
                                                     aiohttp.ClientConnectorCertificateError):
                return self._untrusted_peer(owner, url, self.trust, exc.certificate_error)
            return _unavailable(owner, f"{type(exc).__name__}: {exc}")
        if self._untrusted.pop(owner, None) is not None:
            log.info("owner replica %d at %s: certificate verified again", owner, url)
        return reply

    def _untrusted_peer(self, owner: int, url: str, trust: PeerTrust, error: Exception
                        ) -> OwnerReply:
        detail = getattr(error, "verify_message", None) or str(error)
        reason = (f"certificate of {url} is not trusted for the name "
                  f"{trust.server_name!r} by {trust.bundle.path}: {detail}")
        if self._untrusted.get(owner) != reason:  # once per owner and failure, not per report
            log.warning("owner replica %d: %s; answering 503 to its reports", owner, reason)
            self._untrusted[owner] = reason
        return _unavailable(owner, reason, failure="untrusted")


def encode_part(reports: list[Report]) -> bytes:
    """A share of a batch as a plain JSON body of its own (msgspec: pod rows are structs)."""
    return msgspec.json.encode({"reports": reports})


def _unavailable(owner: int, reason: str, failure: str = "unavailable") -> OwnerReply:
    body = orjson.dumps({"error": f"owner replica {owner} unavailable, retry later: {reason}"})
    return OwnerReply(503, body, failure)
