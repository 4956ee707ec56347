"""Collector replicas in one process: each node is applied by its owner only, exactly once.

Three real collector apps (create_app, loopback HTTP) configured as replicas 0..2 of
three; reports are posted to whichever replica the test picks, as a Service without
affinity would, and the owner's /metrics must show each report once.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import numpy as np
import pytest
from collector_testkit import JSON, body_of, gzipped, make_report, samples, value

from collector.app import ReplicaSetupError, create_app
from collector.metadata import PodInfo, StaticMetadataProvider
from collector.options import SettingsError, parse_settings
from collector.settings import ReplicaSettings, Settings
from collector.sharding import PodPeers, owner_of, replica_ordinal, reports_by_owner

REPLICAS = 3


class Peers:
    """Replica URLs the test fills in once the servers listen (as a pod watch would)."""

    def __init__(self) -> None:
        self.urls: dict[int, str] = {}
        self.invalidations = 0

    def url(self, ordinal: int) -> str | None:
        return self.urls.get(ordinal)

    def invalidate(self) -> None:
        self.invalidations += 1


def nodes_owned_by(ordinal: int, count: int) -> list[str]:
    names = (f"node-{i}" for i in range(10_000))
    return [n for n in names if owner_of(n, REPLICAS) == ordinal][:count]


@pytest.fixture
async def replicas(aiohttp_client, clock):
    peers = Peers()
    clients = []
    for ordinal in range(REPLICAS):
        settings = Settings(replicas=ReplicaSettings(replicas=REPLICAS,
                                                     replica_name=f"kc-collector-{ordinal}"))
        app = create_app(settings, clock=clock, status_page=False, peers=peers,
                         metadata=StaticMetadataProvider())
        client = await aiohttp_client(app)
        peers.urls[ordinal] = str(client.make_url("")).rstrip("/")
        clients.append(client)
    return clients, peers


async def metrics(client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


def accepted(text: str) -> float:
    return value(text, "kubecarbon_collector_reports_total", result="accepted")


def test_ownership_is_stable_and_balanced():
    names = [f"ip-10-0-{i // 250}-{i % 250}" for i in range(3000)]
    owners = Counter(owner_of(n, REPLICAS) for n in names)
    assert set(owners) == {0, 1, 2}
    assert all(abs(count - 1000) < 100 for count in owners.values()), owners
    # a pure function of the name and the configured count: the same in every process
    assert owner_of("ip-10-0-1-17", 3) == owner_of("ip-10-0-1-17", 3)
    # pinned: a change of hash would move every node to another replica on upgrade
    assert [owner_of(f"node-{i}", 3) for i in range(8)] == [2, 1, 2, 0, 1, 2, 1, 0]
    assert {owner_of(n, 1) for n in names} == {0}


def test_replica_ordinal_parses_statefulset_pod_names():
    assert replica_ordinal("kubecarbon-collector-0") == ("kubecarbon-collector", 0)
    assert replica_ordinal("a-b-12") == ("a-b", 12)
    for bad in ("collector", "collector-", "collector-01", "collector-x"):
        with pytest.raises(ValueError, match="-<ordinal>"):
            replica_ordinal(bad)


def test_a_batch_splits_by_owner_in_order():
    a, b = nodes_owned_by(1, 2)
    (c,) = nodes_owned_by(2, 1)
    reports = [make_report(a, 1), make_report(c, 1), make_report(b, 1), make_report(a, 2)]
    parts = reports_by_owner(reports, REPLICAS)  # type: ignore[arg-type]
    assert {owner: [(r["node"], r["seq"]) for r in part] for owner, part in parts.items()} == {
        1: [(a, 1), (b, 1), (a, 2)], 2: [(c, 1)]}


async def test_a_report_sent_to_a_non_owner_is_applied_once_at_the_owner(replicas):
    clients, _ = replicas
    (node,) = nodes_owned_by(2, 1)
    response = await clients[0].post("/api/v1/reports", data=body_of(make_report(node)),
                                      headers=JSON)
    assert response.status == 200
    assert await response.json() == {"accepted": 1, "duplicates": 0}
    texts = [await metrics(c) for c in clients]
    assert [accepted(t) for t in texts] == [0, 0, 1]
    assert value(texts[0], "kubecarbon_collector_forwarded_requests_total",
                 result="applied") == 1
    assert [sum(v for (name, labels), v in samples(t).items()
                if name == "kubecarbon_node_energy_joules_total") > 0 for t in texts] == [
        False, False, True]


async def test_a_retry_through_another_replica_is_not_counted_twice(replicas):
    clients, _ = replicas
    (node,) = nodes_owned_by(1, 1)
    body = gzipped(body_of(make_report(node, seq=7, agent_id="agent-x")))
    headers = {**JSON, "Content-Encoding": "gzip"}
    # the first attempt's acknowledgement is lost; the agent retries and the Service
    # sends the retry elsewhere, then to the owner itself
    answers = [await (await clients[i].post("/api/v1/reports", data=body, headers=headers)).json()
               for i in (0, 2, 1)]
    assert answers == [{"accepted": 1, "duplicates": 0}, {"accepted": 0, "duplicates": 1},
                       {"accepted": 0, "duplicates": 1}]
    texts = [await metrics(c) for c in clients]
    assert [accepted(t) for t in texts] == [0, 1, 0]
    assert value(texts[1], "kubecarbon_collector_reports_total", result="duplicate") == 2


async def test_a_mixed_batch_is_split_and_each_part_applied_by_its_owner(replicas):
    clients, _ = replicas
    reports = [make_report(n, 1, agent_id=f"agent-{n}")
               for ordinal in range(REPLICAS) for n in nodes_owned_by(ordinal, 2)]
    response = await clients[1].post("/api/v1/reports", data=body_of(*reports), headers=JSON)
    assert await response.json() == {"accepted": 6, "duplicates": 0}
    again = await clients[2].post("/api/v1/reports", data=body_of(*reports), headers=JSON)
    assert await again.json() == {"accepted": 0, "duplicates": 6}
    assert [accepted(await metrics(c)) for c in clients] == [2, 2, 2]


async def test_owner_down_answers_503_and_counts_nothing(replicas):
    clients, peers = replicas
    (node,) = nodes_owned_by(2, 1)
    (local,) = nodes_owned_by(0, 1)
    await clients[2].close()  # the owner's pod is gone
    body = body_of(make_report(local, 1, agent_id="a-local"), make_report(node, 1))
    response = await clients[0].post("/api/v1/reports", data=body, headers=JSON)
    assert response.status == 503
    assert "owner replica 2 unavailable" in (await response.json())["error"]
    text = await metrics(clients[0])
    assert accepted(text) == 0  # not even the receiver's own share: the retry brings it
    assert value(text, "kubecarbon_collector_forwarded_requests_total",
                 result="unavailable") == 1
    assert peers.invalidations == 1
    del peers.urls[2]  # address not known at all: the same answer
    response = await clients[1].post("/api/v1/reports", data=body_of(make_report(node)),
                                     headers=JSON)
    assert response.status == 503
    assert accepted(await metrics(clients[1])) == 0


async def test_the_owners_refusal_is_passed_to_the_agent(aiohttp_client, clock):
    peers = Peers()
    clients = []
    for ordinal, token in enumerate((b"token-a", b"token-b")):  # replica 1 misconfigured
        settings = Settings(replicas=ReplicaSettings(replicas=2,
                                                     replica_name=f"kc-collector-{ordinal}"))
        client = await aiohttp_client(create_app(settings, clock=clock, status_page=False,
                                                 peers=peers, token=token,
                                                 metadata=StaticMetadataProvider()))
        peers.urls[ordinal] = str(client.make_url("")).rstrip("/")
        clients.append(client)
    node = next(f"node-{i}" for i in range(100) if owner_of(f"node-{i}", 2) == 1)
    response = await clients[0].post("/api/v1/reports", data=body_of(make_report(node)),
                                     headers={**JSON, "Authorization": "Bearer token-a"})
    assert response.status == 401
    text = await metrics(clients[0])
    assert value(text, "kubecarbon_collector_forwarded_requests_total", result="refused") == 1
    assert accepted(text) == 0 and accepted(await metrics(clients[1])) == 0


async def test_replicas_export_the_draws_that_sum_to_the_fleet_band(replicas, aiohttp_client,
                                                                  clock):
    clients, _ = replicas
    fleet = [make_report(n, 1, agent_id=f"agent-{n}", busy_seconds=30.0 + 20 * i)
             for i, n in enumerate(f"node-{i}" for i in range(12))]
    single = await aiohttp_client(create_app(clock=clock, status_page=False,
                                             metadata=StaticMetadataProvider()))
    for report in fleet:
        for client in (clients[owner_of(report["node"], REPLICAS) - 1], single):
            response = await client.post("/api/v1/reports", data=body_of(report), headers=JSON)
            assert response.status == 200
    per_draw: Counter[str] = Counter()
    for client in clients:
        for (name, labels), grams in samples(await metrics(client)).items():
            if name == "kubecarbon_avoided_co2e_grams_per_hour_draw":
                per_draw[dict(labels)["draw"]] += grams
    assert len(per_draw) == 1000
    band = np.quantile(list(per_draw.values()), [0.05, 0.5, 0.95])
    text = await metrics(single)
    for q, got in zip(("0.05", "0.5", "0.95"), band, strict=True):
        expected = value(text, "kubecarbon_avoided_co2e_grams_per_hour", quantile=q)
        assert got == pytest.approx(expected, rel=1e-9)
    assert "kubecarbon_avoided_co2e_grams_per_hour_draw" not in text  # one collector: no draws
    assert "kubecarbon_collector_forwarded_requests_total" not in text


def test_more_than_one_replica_needs_a_way_to_find_the_others():
    settings = Settings(replicas=ReplicaSettings(replicas=2, replica_name="c-0",
                                                 namespace="kubecarbon"))
    with pytest.raises(ReplicaSetupError, match="--peers-file or run one replica"):
        create_app(settings, metadata=StaticMetadataProvider(), status_page=False)
    with pytest.raises(ReplicaSetupError, match="--replica-name"):
        create_app(dataclasses.replace(settings, replicas=ReplicaSettings(replicas=2)),
                   metadata=StaticMetadataProvider(), status_page=False)


def test_pod_peers_follow_the_pod_watch():
    class Inventory:
        def __init__(self) -> None:
            self.pod_list: list[PodInfo] = []
            self.generation = 0

        def nodes(self) -> list:
            return []

        def pods(self) -> list[PodInfo]:
            return list(self.pod_list)

        def pod_generation(self) -> int:
            return self.generation

    def pod(name: str, ip: str | None, namespace: str = "kc") -> PodInfo:
        return PodInfo(f"uid-{name}-{ip}", namespace, name, "StatefulSet", "kc-collector",
                       ip=ip)

    now = [0.0]
    inventory = Inventory()
    inventory.pod_list = [pod("kc-collector-0", "10.1.0.5"), pod("kc-collector-1", None),
                          pod("kc-collector-2", "10.1.0.9", namespace="other"),
                          pod("kc-agent-x1", "10.1.0.6"), pod("kc-collector-web-0", "10.1.0.7")]
    peers = PodPeers(inventory, "kc", "kc-collector", 9880, clock=lambda: now[0])
    assert peers.url(0) == "http://10.1.0.5:9880"
    assert peers.url(1) is None and peers.url(2) is None
    # the restarted pod keeps its name and gets an IP later (no new uid): looked up again
    # once the refresh interval has passed
    inventory.pod_list[1] = pod("kc-collector-1", "10.1.0.8")
    assert peers.url(1) is None
    now[0] = 1.5
    assert peers.url(1) == "http://10.1.0.8:9880"
    inventory.pod_list[0] = pod("kc-collector-0", "10.1.0.20")
    now[0] = 3.0
    assert peers.url(0) == "http://10.1.0.5:9880"  # nothing says it moved yet
    peers.invalidate()  # it did not answer
    assert peers.url(0) == "http://10.1.0.20:9880"
    secure = PodPeers(inventory, "kc", "kc-collector", 9880, scheme="https")
    assert secure.url(0) == "https://10.1.0.20:9880"  # replicas serving HTTPS


@pytest.mark.parametrize(("argv", "message"), [
    (["--replicas", "3"], "--replica-name: needed with --replicas 3"),
    (["--replicas", "3", "--replica-name", "collector"], "does not end in -<ordinal>"),
    (["--replicas", "3", "--replica-name", "c-3", "--replica-namespace", "kc"],
     "ordinal 3 is not below --replicas 3"),
    (["--replicas", "2", "--replica-name", "c-1", "--kubernetes", "off"],
     "give --replica-namespace with --kubernetes auto (the pod watch), or --peers-file"),
])
def test_replica_flags_that_cannot_work_stop_the_start(argv, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        parse_settings(argv, env={})


def test_static_replicas_start_with_a_peers_file(tmp_path):
    settings = parse_settings(["--replicas", "2", "--replica-name", "c-1", "--kubernetes", "off",
                               "--peers-file", str(tmp_path / "peers")], env={})
    assert settings.replicas == ReplicaSettings(replicas=2, replica_name="c-1",
                                                peers_file=tmp_path / "peers")
