"""Collector replicas serving HTTPS: the hop to a node's owner is HTTPS, verified like the agents'.

Three real collector apps serve HTTPS on loopback with certificates from a Secret
volume (tests/pki) that carry only the Service's name, as cert-manager issues them;
replicas reach each other by address and check that name against the agents' CA
bundle. A report goes to whichever replica the test picks; the owner's /metrics must
show it once, and an owner whose certificate fails verification must move nothing.
"""

from __future__ import annotations

import logging
import re
import ssl
from pathlib import Path

import aiohttp
import pytest
from certificates import Authority, SecretVolume, ServerCertificate, openssl_missing
from collector_testkit import JSON, body_of, gzipped, make_report, value

from collector.app import ReplicaSetupError, create_app
from collector.metadata import StaticMetadataProvider
from collector.options import SettingsError, parse_settings
from collector.settings import ReplicaSettings, ServerSettings, Settings
from collector.sharding import owner_of
from collector.tls import ReloadingCertificate

REPLICAS = 3
NAME = "kubecarbon-collector.kubecarbon.svc"  # the Service's name, which agents check

pytestmark = pytest.mark.skipif(openssl_missing(), reason="no openssl command")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    authority, stranger = (Authority.create(directory / "ca", "cluster-ca"),
                           Authority.create(directory / "other", "other-ca"))
    return {
        "authority": authority,
        "stranger": stranger,
        "good": authority.issue(directory / "good", [NAME]),
        "other ca": stranger.issue(directory / "other-ca", [NAME]),
        "other name": authority.issue(directory / "other-name",
                                      ["kubecarbon-collector.elsewhere.svc"]),
    }


class Peers:
    """Replica URLs the test fills in once the servers listen (as a pod watch would)."""

    def __init__(self) -> None:
        self.urls: dict[int, str] = {}

    def url(self, ordinal: int) -> str | None:
        return self.urls.get(ordinal)

    def invalidate(self) -> None:
        """The test's addresses do not move."""


def nodes_owned_by(ordinal: int, count: int) -> list[str]:
    names = (f"node-{i}" for i in range(10_000))
    return [n for n in names if owner_of(n, REPLICAS) == ordinal][:count]


def secret(tmp_path: Path, ordinal: int, certificate: ServerCertificate) -> SecretVolume:
    volume = SecretVolume(tmp_path / f"tls-{ordinal}")
    volume.write(certificate.secret_data())
    return volume


class Replicas:
    """HTTPS replicas 0..2 of three, and an agent's view of them (it trusts the cluster CA)."""

    def __init__(self, aiohttp_server, clock, tmp_path: Path, pki) -> None:
        self.aiohttp_server = aiohttp_server
        self.clock = clock
        self.tmp_path = tmp_path
        self.peers = Peers()
        self.urls: list[str] = []
        self.agent_trust = ssl.create_default_context(cafile=str(pki["authority"].cert))
        self.session = aiohttp.ClientSession()
        self.handshakes = [0] * REPLICAS  # TLS handshakes each replica served

    def _counting(self, ordinal, choose):
        def counted(connection, server_name, context):
            self.handshakes[ordinal] += 1
            return choose(connection, server_name, context)
        return counted

    async def start(self, certificates: list[ServerCertificate],
                    peer_ca_file: Path | None = None) -> None:
        for ordinal, certificate in enumerate(certificates):
            volume = secret(self.tmp_path, ordinal, certificate)
            settings = Settings(
                server=ServerSettings(tls_cert_file=volume.path("tls.crt"),
                                      tls_key_file=volume.path("tls.key")),
                replicas=ReplicaSettings(replicas=REPLICAS, replica_name=f"kc-collector-{ordinal}",
                                         peer_ca_file=peer_ca_file, peer_server_name=NAME))
            app = create_app(settings, clock=self.clock, status_page=False, peers=self.peers,
                             metadata=StaticMetadataProvider())
            served = ReloadingCertificate(volume.path("tls.crt"), volume.path("tls.key"))
            served.context.sni_callback = self._counting(ordinal, served.context.sni_callback)
            server = await self.aiohttp_server(app, ssl=served.context, host="127.0.0.1")
            self.urls.append(f"https://127.0.0.1:{server.port}")
            self.peers.urls[ordinal] = self.urls[-1]

    async def post(self, ordinal: int, body: bytes, headers: dict[str, str] = JSON
                   ) -> tuple[int, dict]:
        async with self.session.post(self.urls[ordinal] + "/api/v1/reports", data=body,
                                     headers=headers, ssl=self.agent_trust,
                                     server_hostname=NAME) as response:
            return response.status, await response.json()

    async def metrics(self, ordinal: int) -> str:
        async with self.session.get(self.urls[ordinal] + "/metrics", ssl=False) as response:
            assert response.status == 200
            return await response.text()


@pytest.fixture
async def replicas(aiohttp_server, clock, tmp_path, pki):
    group = Replicas(aiohttp_server, clock, tmp_path, pki)
    yield group
    await group.session.close()


def accepted(text: str) -> float:
    return value(text, "kubecarbon_collector_reports_total", result="accepted")


def forwarded(text: str, result: str) -> float:
    return value(text, "kubecarbon_collector_forwarded_requests_total", result=result)


async def test_a_report_sent_to_a_non_owner_over_https_is_applied_once_at_the_owner(
        replicas, pki):
    await replicas.start([pki["good"]] * REPLICAS)
    (node,) = nodes_owned_by(2, 1)
    status, answer = await replicas.post(0, body_of(make_report(node)))
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
    texts = [await replicas.metrics(i) for i in range(REPLICAS)]
    assert [accepted(t) for t in texts] == [0, 0, 1]
    assert forwarded(texts[0], "applied") == 1
    assert forwarded(texts[0], "untrusted") == forwarded(texts[0], "unavailable") == 0


async def test_the_hop_keeps_its_connection_one_handshake_for_many_reports(replicas, pki):
    await replicas.start([pki["good"]] * REPLICAS)
    (node,) = nodes_owned_by(2, 1)
    for seq in range(1, 6):
        status, _ = await replicas.post(0, body_of(make_report(node, seq)))
        assert status == 200
    assert replicas.handshakes == [1, 0, 1]  # the agent's and the hop's: both kept alive
    assert accepted(await replicas.metrics(2)) == 5


async def test_a_retry_through_another_replica_over_https_is_not_counted_twice(replicas, pki):
    await replicas.start([pki["good"]] * REPLICAS)
    (node,) = nodes_owned_by(1, 1)
    body = gzipped(body_of(make_report(node, seq=7, agent_id="agent-x")))
    headers = {**JSON, "Content-Encoding": "gzip"}
    answers = [await replicas.post(i, body, headers) for i in (0, 2, 1)]
    assert answers == [(200, {"accepted": 1, "duplicates": 0}),
                       (200, {"accepted": 0, "duplicates": 1}),
                       (200, {"accepted": 0, "duplicates": 1})]
    texts = [await replicas.metrics(i) for i in range(REPLICAS)]
    assert [accepted(t) for t in texts] == [0, 1, 0]
    assert value(texts[1], "kubecarbon_collector_reports_total", result="duplicate") == 2


@pytest.mark.parametrize(("served", "failure"), [
    ("other ca", "unable to get local issuer certificate"),
    ("other name", "Hostname mismatch"),
])
async def test_an_owner_whose_certificate_fails_verification_gets_nothing(
        replicas, pki, caplog, served, failure):
    await replicas.start([pki["good"], pki["good"], pki[served]])
    (node,) = nodes_owned_by(2, 1)
    (local,) = nodes_owned_by(0, 1)
    body = body_of(make_report(local, 1, agent_id="a-local"), make_report(node, 1))
    with caplog.at_level(logging.WARNING, logger="collector.sharding"):
        for _ in range(2):  # the agent retries
            status, answer = await replicas.post(0, body)
            assert status == 503
            assert "owner replica 2 unavailable" in answer["error"]
            assert failure in answer["error"]
    texts = [await replicas.metrics(i) for i in range(REPLICAS)]
    assert [accepted(t) for t in texts] == [0, 0, 0]  # not even the receiver's own share
    assert forwarded(texts[0], "untrusted") == 2
    assert forwarded(texts[0], "applied") == forwarded(texts[0], "unavailable") == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "collector.sharding"]
    assert len(warnings) == 1, warnings  # once per owner and failure, not per report
    assert re.search(rf"owner replica 2: certificate of {re.escape(replicas.urls[2])} is not "
                     rf"trusted for the name '{re.escape(NAME)}' by .*: .*{failure}",
                     warnings[0]), warnings[0]


async def test_a_plain_http_peer_address_gets_nothing_while_replicas_serve_https(replicas, pki):
    await replicas.start([pki["good"]] * REPLICAS)
    (node,) = nodes_owned_by(2, 1)
    replicas.peers.urls[2] = replicas.urls[2].replace("https://", "http://")
    status, answer = await replicas.post(0, body_of(make_report(node)))
    assert status == 503
    assert "is not an https:// address" in answer["error"]  # the token is not sent in clear
    texts = [await replicas.metrics(i) for i in range(REPLICAS)]
    assert [accepted(t) for t in texts] == [0, 0, 0]
    assert forwarded(texts[0], "unavailable") == 1


async def test_a_renewed_ca_bundle_is_picked_up_without_a_restart(replicas, pki, tmp_path,
                                                                    caplog):
    bundle = SecretVolume(tmp_path / "peer-ca")
    bundle.write({"ca.crt": pki["authority"].cert.read_bytes()})
    # replica 1 already serves a certificate from the CA the cluster rotates to
    await replicas.start([pki["good"], pki["other ca"], pki["good"]],
                         peer_ca_file=bundle.path("ca.crt"))
    (node,) = nodes_owned_by(1, 1)
    body = body_of(make_report(node, 1))
    assert (await replicas.post(0, body))[0] == 503
    # both CAs during the rotation, as trust-manager or cert-manager's ca.crt carries them
    bundle.write({"ca.crt": pki["authority"].cert.read_bytes()
                  + pki["stranger"].cert.read_bytes()})
    with caplog.at_level(logging.INFO, logger="collector.sharding"):
        assert await replicas.post(0, body) == (200, {"accepted": 1, "duplicates": 0})
    assert f"owner replica 1 at {replicas.urls[1]}: certificate verified again" in caplog.text
    text = await replicas.metrics(0)
    assert forwarded(text, "untrusted") == 1 and forwarded(text, "applied") == 1
    assert accepted(await replicas.metrics(1)) == 1


def test_https_replicas_verify_with_the_ca_beside_their_certificate_by_default(tmp_path, pki):
    volume = secret(tmp_path, 0, pki["good"])
    settings = Settings(
        server=ServerSettings(tls_cert_file=volume.path("tls.crt"),
                              tls_key_file=volume.path("tls.key")),
        replicas=ReplicaSettings(replicas=2, replica_name="c-0", peer_server_name=NAME,
                                 peers_file=tmp_path / "peers"))
    assert settings.replicas.peer_ca(volume.path("tls.crt")) == volume.path("ca.crt")
    create_app(settings, metadata=StaticMetadataProvider(), status_page=False)
    (volume.directory / "ca.crt").unlink()
    with pytest.raises(ReplicaSetupError,
                       match=re.escape(f"argument --peer-ca-file: CA bundle "
                                       f"{volume.path('ca.crt')}: cannot read it")):
        create_app(settings, metadata=StaticMetadataProvider(), status_page=False)


TLS = ["--tls-cert-file", "tls.crt", "--tls-key-file", "tls.key"]
REPLICA = ["--replicas", "2", "--replica-name", "c-1", "--kubernetes", "off",
           "--peers-file", "peers"]


@pytest.mark.parametrize(("argv", "message"), [
    (TLS + REPLICA, "argument --peer-server-name: needed with --replicas 2 and --tls-cert-file"),
    ([*REPLICA, "--peer-server-name", NAME], "they need --tls-cert-file"),
    (["--peer-ca-file", "ca.crt"], "they need --tls-cert-file"),
])
def test_peer_flags_that_cannot_work_stop_the_start(argv, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        parse_settings(argv, env={})


def test_peer_flags_reach_the_replica_settings():
    settings = parse_settings([*TLS, *REPLICA, "--peer-server-name", NAME,
                               "--peer-ca-file", "/etc/ca/ca.crt"], env={})
    assert settings.replicas.peer_server_name == NAME
    assert settings.replicas.peer_ca_file == Path("/etc/ca/ca.crt")
