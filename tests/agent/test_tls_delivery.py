"""Delivery over HTTPS as deployed: a CA bundle file, a server name other than the address,
the bundle re-read when the kubelet swaps it, one handshake per kept connection, and a
certificate that fails verification keeping every report for the retry."""

import asyncio
import contextlib
import logging
import ssl

import pytest
from agent_testkit import Sink, until
from certificates import Authority, SecretVolume, openssl_missing
from prometheus_client import CollectorRegistry
from test_publisher import make_publisher, metric, window

pytestmark = pytest.mark.skipif(openssl_missing(), reason="no openssl command for certificates")

SERVICE_NAME = "kubecarbon-collector.kubecarbon.svc"


class HandshakeCountingServer:
    """The TLS context of a stand-in collector, counting the handshakes it does."""

    def __init__(self, cert, key) -> None:
        self.handshakes = 0
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.sni_callback = self._count

    def _count(self, connection, server_name, context) -> None:
        self.handshakes += 1


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    authority = Authority.create(directory / "ca")
    other = Authority.create(directory / "other", "other-ca")
    return {
        "authority": authority,
        "other": other,
        "service": authority.issue(directory / "service", [SERVICE_NAME]),
        "other_service": other.issue(directory / "other-service", [SERVICE_NAME]),
    }


async def serve(aiohttp_server, sink, certificate):
    """The sink over HTTPS on 127.0.0.1: its handshake counter and its URL."""
    server_tls = HandshakeCountingServer(certificate.cert, certificate.key)
    server = await aiohttp_server(sink.app(), ssl=server_tls.context, host="127.0.0.1")
    return server_tls, f"https://127.0.0.1:{server.port}"


async def run_until(publisher, predicate):
    delivery = asyncio.create_task(publisher.run())
    try:
        await until(predicate)
    finally:
        delivery.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivery


async def test_reports_go_over_one_verified_connection_by_address_with_the_service_name(
    aiohttp_server, pki
):
    sink = Sink()
    server_tls, url = await serve(aiohttp_server, sink, pki["service"])
    registry = CollectorRegistry()
    publisher = make_publisher(url, registry, ca_file=pki["authority"].cert,
                               server_name=SERVICE_NAME, batch_max_reports=1)
    for index in range(5):
        publisher.publish(window(index))
    assert await publisher.drain(10) == 0
    assert [report["seq"] for report in sink.accepted] == [1, 2, 3, 4, 5]
    assert sink.requests == 5
    assert server_tls.handshakes == 1  # keep-alive: the handshake is paid once
    await publisher.close()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("a CA that did not sign it", "unable to get local issuer certificate"),
        ("the address instead of the name", "IP address mismatch"),
    ],
)
async def test_a_certificate_failing_verification_keeps_every_report(
    aiohttp_server, pki, caplog, case, expected
):
    sink = Sink()
    _, url = await serve(aiohttp_server, sink, pki["service"])
    registry = CollectorRegistry()
    trusted = pki["other"].cert if case.startswith("a CA") else pki["authority"].cert
    server_name = SERVICE_NAME if case.startswith("a CA") else None
    publisher = make_publisher(url, registry, ca_file=trusted, server_name=server_name)
    for index in range(3):
        publisher.publish(window(index))
    with caplog.at_level(logging.WARNING, logger="agent.publisher"):
        assert await publisher.drain(0.5) == 3
    assert sink.requests == 0
    assert metric(registry, "kubecarbon_agent_reports_failed_total") == 0
    assert "the collector's certificate is not trusted for the name" in caplog.text
    assert str(trusted) in caplog.text
    assert expected in caplog.text
    await publisher.close()


async def test_a_swapped_ca_bundle_is_used_for_the_next_connection(aiohttp_server, pki, tmp_path):
    # The collector's certificate was renewed by another CA; the agents' bundle follows
    # when the kubelet swaps the mounted file, and the reports waited for it.
    sink = Sink()
    _, url = await serve(aiohttp_server, sink, pki["other_service"])
    bundle = SecretVolume(tmp_path / "ca")
    bundle.write({"ca.crt": pki["authority"].cert.read_bytes()})
    registry = CollectorRegistry()
    publisher = make_publisher(url, registry, ca_file=bundle.path("ca.crt"),
                               server_name=SERVICE_NAME)
    publisher.publish(window(0))
    assert await publisher.drain(0.3) == 1
    bundle.write({"ca.crt": pki["other"].cert.read_bytes()})
    publisher.publish(window(1))
    await run_until(publisher, lambda: len(sink.accepted) == 2)
    assert [report["seq"] for report in sink.accepted] == [1, 2]
    assert metric(registry, "kubecarbon_agent_reports_failed_total") == 0
    await publisher.close()


async def test_a_bundle_caught_half_written_keeps_the_one_loaded(pki, tmp_path, caplog):
    from kubecarbon.trust import CaBundle

    path = tmp_path / "ca.crt"
    path.write_bytes(pki["authority"].cert.read_bytes())
    bundle = CaBundle(path)
    loaded = bundle.context()
    path.write_bytes(pki["authority"].cert.read_bytes()[:100])  # in place, cut short
    with caplog.at_level(logging.WARNING, logger="kubecarbon.trust"):
        assert bundle.context() is loaded
    assert f"CA bundle {path}" in caplog.text
    path.write_bytes(pki["other"].cert.read_bytes())
    renewed = bundle.context()
    assert renewed is not loaded
    assert [c["subject"] for c in renewed.get_ca_certs()] == [
        ((("commonName", "other-ca"),),)]
