"""The one HTTP request the agent makes: a POST to the collector, on a connection kept open.

A request is one write of head and body on the kept connection and a small
parser for the answer. aiohttp's client spent about half a millisecond of CPU
per request in the running agent (docs/benchmarks.md, node agent overhead), as
much as reading 300 pods; the agent needs little of what it offers. What it
does need is here: http and https (the system's CA certificates or a CA bundle
file, the server's name checked, a name to check other than the host's when
connecting by IP), one total timeout per request, and answers whose body is
delimited by Content-Length, by chunks or by the server closing. The TLS
handshake is paid once per connection, which is kept between requests.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent import __version__
from kubecarbon.trust import CaBundle

MAX_RESPONSE_BYTES = 1024 * 1024  # the collector answers in a few hundred bytes
RECEIVE_BYTES = 16 * 1024  # at most this much per read; a longer answer takes more reads
USER_AGENT = f"kubecarbon-agent/{__version__}"


class HttpError(Exception):
    """The connection failed or closed early, or the answer was not HTTP/1.x."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    keep_alive: bool  # the connection may carry the next request

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class ResponseParser:
    """Parses one HTTP/1.x response from the bytes fed to it, however they are split."""

    def __init__(self, max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.response: HttpResponse | None = None
        self._buffer = bytearray()
        self._status = 0
        self._keep_alive = True
        self._length: int | None = None  # body length when known
        self._chunked = False
        self._in_body = False
        self._body = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take more bytes; `response` is set once the answer is complete."""
        if self.response is not None:
            raise HttpError("data after the end of the response")
        self._buffer += data
        if len(self._buffer) + len(self._body) > self.max_bytes:
            raise HttpError(f"response larger than {self.max_bytes} bytes")
        while self.response is None and self._step():
            pass

    def end_of_stream(self) -> None:
        """The server closed: that ends a body without length; anything else was cut short."""
        if self.response is not None:
            return
        if self._in_body and self._length is None and not self._chunked:
            self._finish(bytes(self._body + self._buffer))
            return
        raise HttpError("connection closed before the response was complete")

    def _step(self) -> bool:
        """Parse what the buffer allows; True when it should be called again."""
        if not self._in_body:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self._buffer[:end]).decode("latin-1")
            del self._buffer[: end + 4]
            self._read_head(head)
            return True
        if self._chunked:
            return self._step_chunk()
        if self._length is not None and len(self._buffer) >= self._length:
            self._finish(bytes(self._buffer[: self._length]))
        return False

    def _read_head(self, head: str) -> None:
        status_line, *header_lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not (version.startswith("HTTP/1.") and code.isdigit()):
            raise HttpError(f"not an HTTP/1.x response: {status_line[:80]!r}")
        status = int(code)
        if 100 <= status < 200:  # an interim answer (100 Continue); the real one follows
            return
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        self._keep_alive = "close" not in connection and (
            version != "HTTP/1.0" or "keep-alive" in connection
        )
        self._status = status
        self._in_body = True
        if status in (204, 304):
            self._length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            try:
                self._length = int(headers["content-length"])
            except ValueError as exc:
                raise HttpError(f"bad Content-Length {headers['content-length']!r}") from exc
        else:
            self._keep_alive = False  # the body ends when the server closes
        if self._length == 0:
            self._finish(b"")

    def _step_chunk(self) -> bool:
        line_end = self._buffer.find(b"\r\n")
        if line_end < 0:
            return False
        size_text = bytes(self._buffer[:line_end]).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise HttpError(f"bad chunk size {size_text[:20]!r}") from exc
        if size == 0:  # the last chunk; an empty line ends the trailers, if there are any
            if self._buffer.find(b"\r\n\r\n", line_end) < 0:
                return False
            self._finish(bytes(self._body))
            return False
        chunk_end = line_end + 2 + size
        if len(self._buffer) < chunk_end + 2:
            return False
        self._body += self._buffer[line_end + 2 : chunk_end]
        del self._buffer[: chunk_end + 2]
        return True

    def _finish(self, body: bytes) -> None:
        self.response = HttpResponse(self._status, body, self._keep_alive)


class _Connection(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[HttpResponse] | None = None
        # Every read lands in this one buffer. For a plain Protocol asyncio makes a new
        # 256 KiB bytes object per read, which the allocator maps and unmaps each time:
        # three system calls and a page fault per answer of a few hundred bytes.
        self._received = bytearray(RECEIVE_BYTES)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, data: bytes, waiter: asyncio.Future[HttpResponse]) -> None:
        assert self.transport is not None
        self._parser, self._waiter = ResponseParser(), waiter
        self.transport.write(data)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._received

    def buffer_updated(self, nbytes: int) -> None:
        if self._parser is None or self._waiter is None or self._waiter.done():
            self.close()  # nothing was asked: the connection is not in a known state
            return
        try:
            # the parser copies what it is fed into its own buffer, so a view suffices: the
            # kept buffer takes the next read only after this returns
            self._parser.feed(memoryview(self._received)[:nbytes])
        except HttpError as exc:
            self._fail(exc)
            return
        if self._parser.response is not None:
            self._waiter.set_result(self._parser.response)
            self._parser = self._waiter = None

    def eof_received(self) -> bool:
        if self._parser is not None and self._waiter is not None and not self._waiter.done():
            try:
                self._parser.end_of_stream()
            except HttpError as exc:
                self._fail(exc)
                return False
            if self._parser.response is not None:
                self._waiter.set_result(self._parser.response)
        self.closed = True
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            reason = f": {exc}" if exc else ""
            self._waiter.set_exception(HttpError(f"connection closed by the server{reason}"))

    def _fail(self, exc: HttpError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class KeepAliveClient:
    """POSTs to one origin (scheme, host, port) over a connection it keeps between requests."""

    def __init__(
        self,
        base_url: str,
        timeout_seconds: float,
        *,
        ssl_context: ssl.SSLContext | None = None,
        ca_bundle: CaBundle | None = None,
        server_name: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http:// or https:// URL")
        self.timeout_seconds = timeout_seconds
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if default_port else f"{host}:{self.port}"
        self._base_path = parts.path.rstrip("/")
        self._ssl_context = ssl_context  # None: the system's CA certificates, on first use
        self._ca_bundle = ca_bundle  # when set, beats ssl_context (it is re-read on change)
        self.server_name = server_name or self.host  # the name the certificate must carry
        self._connection: _Connection | None = None

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        """Send one request and read its answer; HttpError, OSError or TimeoutError on failure."""
        head = [
            f"POST {self._base_path}{path} HTTP/1.1",
            f"Host: {self._host_header}",
            f"User-Agent: {USER_AGENT}",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        connection = None
        try:
            async with asyncio.timeout(self.timeout_seconds):
                connection = await self._connect()
                waiter: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()
                connection.send(request, waiter)
                response = await waiter
        except BaseException:
            if connection is not None:  # its state is unknown: never reuse it
                connection.close()
                self._connection = None
            raise
        if not response.keep_alive:
            connection.close()
            self._connection = None
        return response

    async def _connect(self) -> _Connection:
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            _Connection,
            self.host,
            self.port,
            ssl=self._tls_context() if self.tls else None,
            server_hostname=self.server_name if self.tls else None,
        )
        self._connection = connection
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._ca_bundle is not None:
            return self._ca_bundle.context()
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
