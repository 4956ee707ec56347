"""Delivers reports to the collector: bounded buffer, batches, retries, no loss, no repeats.

Each report is serialised once, when the sampler hands it over, and waits in
the buffer until the collector answers 2xx. The sender takes the oldest
reports as one batch (bounded by count and body size), so a backlog after an
outage is replayed oldest first. Outcomes:

* 2xx: delivered (`reports_sent_total`).
* 5xx, 408, 425, 429, timeouts, refused connections: the batch goes back to the
  front of the buffer and the sender waits with exponential backoff and full
  jitter (a random delay between 0 and min(max, initial * 2^attempt)).
* 400, 413, 422: the collector refuses the whole batch for one bad report; the
  sender halves the batch until the bad report is alone, then drops it
  (`reports_failed_total`), so one bad report never takes good ones with it.
* 401, 403: the token was refused, most likely mid-rotation (agents and the
  collector see a rotated Secret at different moments). The token file is read
  again before each request, so the batch goes back to the buffer and is retried
  with backoff, like an outage: a rotation loses no report.
* any other 4xx (404, 405, ...): retrying cannot help; the batch is dropped and
  counted as failed, with the collector's error in the log.

When the buffer is over its count or byte bound, the oldest reports that are
not in flight are dropped (`reports_dropped_total`). Every report ends up in
exactly one of sent, failed, dropped, or still buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
import ssl
import uuid
from collections import deque
from dataclasses import dataclass
from enum import Enum

import orjson

from agent.http_client import HttpError, KeepAliveClient
from agent.metrics import AgentMetrics
from agent.settings import DeliverySettings
from kubecarbon.backoff import Backoff
from kubecarbon.trust import CaBundle
from kubecarbon.wire import REPORTS_PATH, Report, WindowReport

log = logging.getLogger("agent.publisher")

_BATCH_PREFIX = b'{"reports":['
_BATCH_SUFFIX = b"]}"
_RETRYABLE_4XX = frozenset({408, 425, 429})  # timeouts and rate limits pass
_BISECT_4XX = frozenset({400, 413, 422})  # about the content of the batch
_AUTH_4XX = frozenset({401, 403})  # about the token, which is re-read for the retry
DRAINING_BACKOFF_SECONDS = 0.5  # during a shutdown's grace period, retry sooner


@dataclass(frozen=True)
class PendingReport:
    seq: int
    body: bytes  # the report as JSON, ready to be joined into a batch


def batch_body(batch: list[PendingReport]) -> bytes:
    """The request body, made with one copy of the reports' bytes."""
    parts = [_BATCH_PREFIX]
    for index, item in enumerate(batch):
        if index:
            parts.append(b",")
        parts.append(item.body)
    parts.append(_BATCH_SUFFIX)
    return b"".join(parts)


class ReportBuffer:
    """Reports waiting for acknowledgement, oldest first, bounded by count and bytes."""

    def __init__(self, max_reports: int, max_bytes: int) -> None:
        self.max_reports = max_reports
        self.max_bytes = max_bytes
        self._queue: deque[PendingReport] = deque()
        self._queued_bytes = 0
        self._in_flight: list[PendingReport] = []
        self._in_flight_bytes = 0

    def __len__(self) -> int:
        return len(self._queue) + len(self._in_flight)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def total_bytes(self) -> int:
        return self._queued_bytes + self._in_flight_bytes

    def add(self, item: PendingReport) -> int:
        """Append a report; return how many old reports were dropped to stay in bounds."""
        self._queue.append(item)
        self._queued_bytes += len(item.body)
        return self._enforce_bounds()

    def take_batch(self, max_reports: int, max_body_bytes: int) -> list[PendingReport]:
        """Move the oldest reports that fit one request into flight (at least one)."""
        if self._in_flight:
            raise RuntimeError("a batch is already in flight")
        size = len(_BATCH_PREFIX) + len(_BATCH_SUFFIX)
        batch: list[PendingReport] = []
        while self._queue and len(batch) < max_reports:
            extra = len(self._queue[0].body) + (1 if batch else 0)
            if batch and size + extra > max_body_bytes:
                break
            item = self._queue.popleft()
            self._queued_bytes -= len(item.body)
            batch.append(item)
            size += extra
        self._in_flight = batch
        self._in_flight_bytes = sum(len(item.body) for item in batch)
        return batch

    def settle(self) -> None:
        """The batch in flight is done with (delivered or rejected)."""
        self._in_flight = []
        self._in_flight_bytes = 0

    def give_back(self) -> int:
        """Put the batch in flight back in front; return how many were dropped to fit."""
        self._queue.extendleft(reversed(self._in_flight))
        self._queued_bytes += self._in_flight_bytes
        self.settle()
        return self._enforce_bounds()

    def _enforce_bounds(self) -> int:
        dropped = 0
        while self._queue and (len(self) > self.max_reports or self.total_bytes > self.max_bytes):
            item = self._queue.popleft()
            self._queued_bytes -= len(item.body)
            dropped += 1
        return dropped


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    BISECT = "bisect"
    REJECTED = "rejected"


class Publisher:
    """Owns the buffer and the HTTP client; `publish()` never waits for the network."""

    def __init__(
        self,
        settings: DeliverySettings,
        metrics: AgentMetrics,
        *,
        agent_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.agent_id = agent_id if agent_id is not None else uuid.uuid4().hex
        self.backoff = Backoff(
            settings.backoff_initial_seconds, settings.backoff_max_seconds, rng=rng
        )
        self.url = settings.collector_url.rstrip("/") + REPORTS_PATH
        self.buffer = ReportBuffer(settings.buffer_max_reports, settings.buffer_max_bytes)
        self._next_seq = 1
        self._work = asyncio.Event()
        self._batch_limit = settings.batch_max_reports
        self._client = KeepAliveClient(
            settings.collector_url,
            settings.request_timeout_seconds,
            ca_bundle=CaBundle(settings.ca_file) if settings.ca_file is not None else None,
            server_name=settings.server_name,
        )
        self._outage_reason: str | None = None
        self._draining = False
        self._drain_requested = asyncio.Event()

    def publish(self, window: WindowReport) -> None:
        """Give the window its identity and buffer the report for delivery."""
        report: Report = {**window, "agent_id": self.agent_id, "seq": self._next_seq}
        self._next_seq += 1
        item = PendingReport(seq=report["seq"], body=orjson.dumps(report))
        if len(item.body) + len(_BATCH_PREFIX) + len(_BATCH_SUFFIX) > self.settings.batch_max_bytes:
            log.error(
                "report seq %d is %d bytes, more than the %d-byte body limit; not sent",
                item.seq,
                len(item.body),
                self.settings.batch_max_bytes,
            )
            self.metrics.reports_failed.inc()
            return
        self._count_dropped(self.buffer.add(item))
        self._work.set()

    async def run(self) -> None:
        """Deliver until cancelled, or until empty once `begin_draining()` was called.

        A cancelled run puts its batch in flight back in the buffer.
        """
        while True:
            while not self.buffer.queued:
                if self._draining:
                    return
                self._work.clear()
                await self._work.wait()
            if await self._deliver_next_batch() is Outcome.RETRY:
                await self._back_off()

    async def _back_off(self) -> None:
        """Wait before a retry; a shutdown cuts a long wait short and retries more often."""
        backoff = self.backoff.next_delay_seconds()
        if self._draining:
            await asyncio.sleep(min(backoff, DRAINING_BACKOFF_SECONDS))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain_requested.wait(), backoff)

    def begin_draining(self) -> None:
        """Let `run()` finish the request in flight and return once the buffer is empty.

        Stopping this way, rather than by cancelling a request the collector may
        already have applied, keeps a shutdown from sending any report twice.
        """
        self._draining = True
        self._drain_requested.set()
        self._work.set()

    async def drain(self, timeout_seconds: float) -> int:
        """Deliver everything within the timeout (no `run()` task needed); return what is left."""
        self.begin_draining()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.run(), timeout_seconds)
        finally:
            self._draining = False
            self._drain_requested.clear()
        return len(self.buffer)

    async def close(self) -> None:
        await self._client.close()

    def _count_dropped(self, dropped: int) -> None:
        if dropped:
            self.metrics.reports_dropped.inc(dropped)
            log.warning("buffer full: dropped the %d oldest report(s)", dropped)
        self.metrics.reports_buffered.set(len(self.buffer))

    async def _deliver_next_batch(self) -> Outcome:
        batch = self.buffer.take_batch(self._batch_limit, self.settings.batch_max_bytes)
        self.metrics.reports_buffered.set(len(self.buffer))
        outcome = Outcome.RETRY
        try:
            outcome = await self._send(batch)
        finally:
            if outcome is Outcome.DELIVERED:
                self.buffer.settle()
                self.metrics.reports_sent.inc(len(batch))
                self.backoff.reset()
            elif outcome is Outcome.REJECTED:
                self.buffer.settle()
                self.metrics.reports_failed.inc(len(batch))
                self._batch_limit = self.settings.batch_max_reports
                self.backoff.reset()
            elif outcome is Outcome.BISECT:
                self._batch_limit = max(1, len(batch) // 2)
                self._count_dropped(self.buffer.give_back())
            else:
                self._count_dropped(self.buffer.give_back())
            if not self.buffer.queued:
                self._batch_limit = self.settings.batch_max_reports
            self.metrics.reports_buffered.set(len(self.buffer))
        return outcome

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.settings.token_file is not None:
            token = self.settings.token_file.read_text().strip()
            if not token:  # caught mid-rotation: a 401 would drop the batch, so wait instead
                raise OSError(f"{self.settings.token_file} is empty")
            headers["Authorization"] = f"Bearer {token}"
        if self.settings.gzip:
            headers["Content-Encoding"] = "gzip"
        return headers

    async def _send(self, batch: list[PendingReport]) -> Outcome:
        body = batch_body(batch)
        try:
            headers = self._headers()
        except OSError as exc:
            return self._retry(f"cannot read the token: {exc.strerror or exc}")
        if self.settings.gzip:
            body = gzip.compress(body, compresslevel=5)
        try:
            response = await self._client.post(REPORTS_PATH, body, headers)
        except ssl.SSLCertVerificationError as exc:
            trusted = self.settings.ca_file or "the system's CA certificates"
            return self._retry(f"the collector's certificate is not trusted for the name "
                               f"{self._client.server_name!r} by {trusted}: {exc.verify_message}")
        except (HttpError, OSError, TimeoutError) as exc:
            return self._retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        status, text = response.status, response.text()
        if 200 <= status < 300:
            if self._outage_reason is not None:
                log.info(
                    "collector reachable again; replaying %d buffered report(s)", len(self.buffer)
                )
                self._outage_reason = None
            return Outcome.DELIVERED
        if status < 400 or status >= 500 or status in _RETRYABLE_4XX:
            return self._retry(f"HTTP {status}: {text[:200]}")
        if status in _AUTH_4XX:
            return self._retry(f"HTTP {status}: {_collector_error(text)}; the token is read "
                               "again for the retry")
        if status in _BISECT_4XX and len(batch) > 1:
            return Outcome.BISECT
        log.error(
            "collector rejected %d report(s) (seq %d..%d) with HTTP %d: %s; dropped",
            len(batch),
            batch[0].seq,
            batch[-1].seq,
            status,
            _collector_error(text),
        )
        return Outcome.REJECTED

    def _retry(self, reason: str) -> Outcome:
        if self._outage_reason is None:
            log.warning(
                "cannot deliver to %s (%s); keeping %d report(s) and retrying with backoff",
                self.url,
                reason,
                len(self.buffer),
            )
        self._outage_reason = reason
        return Outcome.RETRY


def _collector_error(text: str) -> str:
    try:
        error = orjson.loads(text).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    return str(error) if error else text[:300]
