"""TLS and bearer tokens as a Secret volume delivers them: files the kubelet swaps in place.

The collector serves HTTPS with the certificate in its files and takes a renewed
one on the next handshake; the token files are re-read when they change, and the
previous token is accepted beside the new one during a rotation. Files that
cannot be used stop the start with an error naming them.
"""

from __future__ import annotations

import ssl

import aiohttp
import pytest
from certificates import Authority, SecretVolume, openssl_missing
from collector_testkit import JSON, body_of, make_report, metadata_for_tests, value

from collector.app import create_app
from collector.main import main
from collector.settings import ServerSettings, Settings
from collector.tls import CertificateError, ReloadingCertificate, load_server_context

NAME = "kubecarbon-collector.kubecarbon.svc"
needs_openssl = pytest.mark.skipif(openssl_missing(), reason="no openssl command")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    first, renewed = Authority.create(directory / "a", "first-ca"), Authority.create(
        directory / "b", "renewing-ca")
    return {"first": first.issue(directory / "a", [NAME, "127.0.0.1"]),
            "renewed": renewed.issue(directory / "b", [NAME, "127.0.0.1"])}


def trusting(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificate.ca))
    return context


async def served_by(session: aiohttp.ClientSession, url: str, certificate) -> int:
    """The status of GET /healthz made on a new connection that trusts only `certificate`'s CA."""
    async with session.get(url + "/healthz", ssl=trusting(certificate)) as response:
        return response.status


@needs_openssl
@pytest.mark.parametrize("update", ["kubelet symlink swap", "rewritten in place"])
async def test_https_serves_a_renewed_certificate_without_a_restart(
    aiohttp_server, pki, tmp_path, clock, update
):
    volume = SecretVolume(tmp_path / "tls")
    volume.write(pki["first"].secret_data())
    certificate = ReloadingCertificate(volume.path("tls.crt"), volume.path("tls.key"))
    app = create_app(metadata=metadata_for_tests(), clock=clock, status_page=False)
    server = await aiohttp_server(app, ssl=certificate.context, host="127.0.0.1")
    url = f"https://127.0.0.1:{server.port}"
    connector = aiohttp.TCPConnector(force_close=True)  # a handshake per request
    async with aiohttp.ClientSession(connector=connector) as session:
        assert await served_by(session, url, pki["first"]) == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await served_by(session, url, pki["renewed"])
        if update == "kubelet symlink swap":
            volume.write(pki["renewed"].secret_data())
        else:  # same inodes, new bytes
            for name, data in pki["renewed"].secret_data().items():
                volume.path(name).write_bytes(data)
        assert await served_by(session, url, pki["renewed"]) == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await served_by(session, url, pki["first"])
    assert certificate.reloads == 1


@needs_openssl
def test_a_certificate_caught_mid_update_keeps_the_last_good_pair(pki, tmp_path, caplog):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki["first"].cert.read_bytes())
    key.write_bytes(pki["first"].key.read_bytes())
    certificate = ReloadingCertificate(cert, key)
    loaded = certificate.current()
    cert.write_bytes(pki["renewed"].cert.read_bytes())  # the key follows a moment later
    assert certificate.current() is loaded
    assert "is not the key of the certificate" in caplog.text
    key.write_bytes(pki["renewed"].key.read_bytes())
    assert certificate.current() is not loaded
    assert certificate.reloads == 1


@needs_openssl
@pytest.mark.parametrize(
    ("files", "message"),
    [
        (("missing", "first.key"), "argument --tls-cert-file: cannot read {dir}/missing: "
                                   "No such file or directory"),
        (("first.crt", "renewed.key"), "argument --tls-key-file: {dir}/renewed.key is not the "
                                       "key of the certificate in {dir}/first.crt"),
        (("first.key", "first.key"), "not a PEM certificate and key"),
    ],
)
def test_unusable_certificate_files_stop_the_start_naming_the_file(
    pki, tmp_path, capsys, files, message
):
    for name in ("first", "renewed"):
        (tmp_path / f"{name}.crt").write_bytes(pki[name].cert.read_bytes())
        (tmp_path / f"{name}.key").write_bytes(pki[name].key.read_bytes())
    cert, key = (tmp_path / name for name in files)
    with pytest.raises(CertificateError, match=message.format(dir=tmp_path).split(":")[0]):
        load_server_context(cert, key)
    argv = ["--kubernetes", "off", "--listen", "127.0.0.1:0",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    assert main(argv) == 2
    assert message.format(dir=tmp_path) in capsys.readouterr().err


def test_a_certificate_without_its_key_is_refused(capsys):
    assert main(["--kubernetes", "off", "--tls-cert-file", "/x.crt"]) == 2
    assert "--tls-cert-file and --tls-key-file go together" in capsys.readouterr().err


async def post(client, token: str, seq: int) -> int:
    response = await client.post("/api/v1/reports", data=body_of(make_report(seq=seq)),
                                 headers={**JSON, "Authorization": f"Bearer {token}"})
    return response.status


async def test_a_rotated_token_takes_effect_without_a_restart_with_an_overlap(
    aiohttp_client, tmp_path, clock, caplog
):
    volume = SecretVolume(tmp_path / "token")
    volume.write({"token": b"old-token\n"})
    settings = Settings(server=ServerSettings(
        token_file=volume.path("token"), previous_token_file=volume.path("previous-token")))
    client = await aiohttp_client(create_app(settings, metadata=metadata_for_tests(),
                                             clock=clock, status_page=False))
    assert await post(client, "old-token", 1) == 200
    assert await post(client, "new-token", 2) == 401
    # step 1 of the rotation: the new token, and the old one as the previous token
    volume.write({"token": b"new-token\n", "previous-token": b"old-token\n"})
    assert await post(client, "old-token", 2) == 200  # agents not updated yet
    assert await post(client, "new-token", 3) == 200  # agents updated
    # caught empty mid-update (an in-place writer): the tokens loaded before stay
    volume.path("token").write_bytes(b"")
    assert await post(client, "new-token", 4) == 200
    assert "is empty; keeping the token(s) loaded before" in caplog.text
    # step 2, once every agent sends the new token: the previous one goes
    volume.write({"token": b"new-token\n"})
    assert await post(client, "old-token", 5) == 401
    assert await post(client, "new-token", 5) == 200
    metrics = await (await client.get("/metrics")).text()
    assert value(metrics, "kubecarbon_collector_rejected_requests_total", code="401") == 2
    assert value(metrics, "kubecarbon_collector_reports_total", result="accepted") == 5


def test_an_unusable_token_file_stops_the_start(tmp_path, capsys):
    (tmp_path / "empty").write_text("\n")
    assert main(["--kubernetes", "off", "--token-file", str(tmp_path / "empty")]) == 2
    assert f"argument --token-file: {tmp_path}/empty is empty" in capsys.readouterr().err
    (tmp_path / "token").write_text("t\n")
    (tmp_path / "previous").mkdir()
    assert main(["--kubernetes", "off", "--token-file", str(tmp_path / "token"),
                 "--previous-token-file", str(tmp_path / "previous")]) == 2
    assert f"argument --previous-token-file: cannot read {tmp_path}/previous: Is a directory" in (
        capsys.readouterr().err)
