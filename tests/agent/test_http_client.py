"""The agent's own HTTP client: answers however they are framed and split, one kept connection,
a fresh one whenever the old one's state is unknown, TLS verified."""

import asyncio
import shutil
import ssl
import subprocess

import pytest
from aiohttp import web

from agent.http_client import RECEIVE_BYTES, HttpError, KeepAliveClient, ResponseParser


def parse_in_pieces(data: bytes, size: int, *, then_close: bool = False) -> ResponseParser:
    parser = ResponseParser()
    for start in range(0, len(data), size):
        parser.feed(data[start : start + size])
    if then_close:
        parser.end_of_stream()
    return parser


RESPONSES = {
    "content-length": (
        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
        b'{"accepted": 1}',
        (202, b'{"accepted": 1}', True),
    ),
    "chunked, with an extension and a trailer": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n",
        (200, b"hello, world", True),
    ),
    "interim 100 Continue first": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno",
        (400, b"no", True),
    ),
    "connection: close": (
        b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        (503, b"", False),
    ),
    "HTTP/1.0 without keep-alive": (
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        (200, b"ok", False),
    ),
    "no content": (b"HTTP/1.1 204 No Content\r\n\r\n", (204, b"", True)),
}


@pytest.mark.parametrize("size", [1, 3, 1000])
@pytest.mark.parametrize("case", RESPONSES)
def test_answers_are_read_however_the_bytes_arrive(case, size):
    data, (status, body, keep_alive) = RESPONSES[case]
    response = parse_in_pieces(data, size).response
    assert response is not None
    assert (response.status, response.body, response.keep_alive) == (status, body, keep_alive)


def test_a_body_without_length_ends_when_the_server_closes():
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial and then"
    parser = parse_in_pieces(data, 7)
    assert parser.response is None
    parser.end_of_stream()
    assert parser.response is not None
    assert (parser.response.body, parser.response.keep_alive) == (b"partial and then", False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.x response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
def test_what_is_not_http_is_an_error(data, message):
    with pytest.raises(HttpError, match=message):
        parse_in_pieces(data, 1000)


def test_an_answer_cut_short_or_too_large_is_an_error():
    with pytest.raises(HttpError, match="closed before the response was complete"):
        parse_in_pieces(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 4, then_close=True)
    parser = ResponseParser(max_bytes=100)
    with pytest.raises(HttpError, match="larger than 100 bytes"):
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b"x" * 200)


class Collector:
    """A stand-in collector that records which client connection each request came on."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.bodies: list[bytes] = []
        self.mode = "accept"  # accept | close | hang | chunked
        self.release = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/base/api/v1/reports", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.peers.append(request.transport.get_extra_info("peername"))
        self.bodies.append(await request.read())
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "chunked":
            response = web.StreamResponse(status=200)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b'{"accepted":', b" 1}"):
                await response.write(part)
            await response.write_eof()
            return response
        headers = {"Connection": "close"} if self.mode == "close" else {}
        return web.json_response({"accepted": 1}, status=202, headers=headers)


async def test_requests_share_one_connection_until_the_server_closes_it(aiohttp_server):
    collector = Collector()
    server = await aiohttp_server(collector.app())
    client = KeepAliveClient(str(server.make_url("/base/")), timeout_seconds=5)
    for body in (b"one", b"two", b"three"):
        response = await client.post("/api/v1/reports", body, {"Content-Type": "application/json"})
        assert (response.status, response.text()) == (202, '{"accepted": 1}')
    assert collector.bodies == [b"one", b"two", b"three"]
    assert len(set(collector.peers)) == 1  # one connection, kept alive
    collector.mode = "close"
    await client.post("/api/v1/reports", b"four", {})
    collector.mode = "chunked"
    response = await client.post("/api/v1/reports", b"five", {})
    assert response.body == b'{"accepted": 1}'
    assert len(set(collector.peers)) == 2  # the server closed after "four": a new one
    await client.close()


async def test_answers_longer_than_one_read_arrive_whole_and_each_its_own(aiohttp_server):
    """Every read lands in the connection's one buffer, so the parser must copy what it gets."""

    async def echo_long(request: web.Request) -> web.Response:
        fill = await request.read()
        return web.Response(body=fill * (2 * RECEIVE_BYTES + 7))

    app = web.Application()
    app.router.add_post("/api/v1/reports", echo_long)
    server = await aiohttp_server(app)
    client = KeepAliveClient(str(server.make_url("/")), timeout_seconds=5)
    first = await client.post("/api/v1/reports", b"a", {})
    second = await client.post("/api/v1/reports", b"b", {})
    assert first.body == b"a" * (2 * RECEIVE_BYTES + 7)
    assert second.body == b"b" * (2 * RECEIVE_BYTES + 7)
    await client.close()


async def test_a_timed_out_request_never_leaves_its_connection_for_the_next(aiohttp_server):
    collector = Collector()
    server = await aiohttp_server(collector.app())
    client = KeepAliveClient(str(server.make_url("/base")), timeout_seconds=0.2)
    collector.mode = "hang"
    with pytest.raises(TimeoutError):
        await client.post("/api/v1/reports", b"late", {})
    collector.mode = "accept"
    collector.release.set()  # the hanging answer is written to a connection nobody reads
    response = await client.post("/api/v1/reports", b"next", {})
    assert (response.status, collector.bodies) == (202, [b"late", b"next"])
    assert len(set(collector.peers)) == 2
    await client.close()


async def test_a_refused_connection_is_an_os_error(unused_tcp_port):
    client = KeepAliveClient(f"http://127.0.0.1:{unused_tcp_port}", timeout_seconds=5)
    with pytest.raises(OSError):
        await client.post("/api/v1/reports", b"{}", {})


@pytest.fixture
def self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


async def test_https_is_verified_against_the_trusted_certificates(aiohttp_server, self_signed):
    key, cert = self_signed
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    collector = Collector()
    server = await aiohttp_server(collector.app(), ssl=server_context)
    url = f"https://localhost:{server.port}/base"
    # the system's CA certificates do not know this one
    with pytest.raises(ssl.SSLCertVerificationError):
        await KeepAliveClient(url, timeout_seconds=5).post("/api/v1/reports", b"{}", {})
    trusting = ssl.create_default_context(cafile=str(cert))
    client = KeepAliveClient(url, timeout_seconds=5, ssl_context=trusting)
    assert (await client.post("/api/v1/reports", b"{}", {})).status == 202
    await client.close()
