"""The running agent: sampling schedule, delivery and HTTP server in one event loop.

`Agent` (start/stop) and `run_agent` are the programmatic entry points used by
the CLI, the demo and end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random

from prometheus_client import CollectorRegistry

from agent.metrics import AgentMetrics
from agent.publisher import Publisher
from agent.sampler import Clock, Sampler, Sources
from agent.server import AgentHttpServer
from agent.settings import AgentSettings, SourceSettings
from agent.sources.density import DensitySource
from agent.sources.meminfo import MeminfoSource
from agent.sources.pod_cpu import PodCpuSource
from agent.sources.pod_listing import PodListing
from agent.sources.proc_stat import ProcStatSource
from agent.sources.rapl import RaplSource
from kubecarbon.wire import MIN_WINDOW_SECONDS

log = logging.getLogger("agent")

# /healthz fails once no sample has completed for this many intervals.
HEALTHY_MISSED_INTERVALS = 3


def host_sources(settings: SourceSettings) -> Sources:
    pods = PodListing(settings.host_sys / "fs" / "cgroup")  # one listing per cycle for both
    return Sources(
        cpu=ProcStatSource(settings.host_proc),
        memory=MeminfoSource(settings.host_proc),
        pod_cpu=PodCpuSource(settings.host_sys, listing=pods),
        density=DensitySource(settings.host_sys, listing=pods),
        rapl=RaplSource(settings.host_sys) if settings.rapl_enabled else None,
    )


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        sources: Sources | None = None,
        agent_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = AgentMetrics(registry)
        self.sampler = Sampler(
            settings.node_name,
            sources if sources is not None else host_sources(settings.sources),
            self.metrics,
            clock=clock,
            user_hz=settings.sources.user_hz,
        )
        self.publisher = Publisher(settings.delivery, self.metrics, agent_id=agent_id, rng=rng)
        self.server = AgentHttpServer(
            self.metrics, self.health, settings.server.listen_host, settings.server.listen_port
        )
        self._sampling: asyncio.Task[None] | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._last_cycle_monotonic = self.sampler.clock.monotonic()
        self.http_port: int | None = None

    async def start(self) -> None:
        """Serve /metrics and /healthz, take the first (baseline) sample, start the loops."""
        self.http_port = await self.server.start()
        self._cycle()
        self._sampling = asyncio.create_task(self._sampling_loop(), name="kubecarbon-sampler")
        self._delivery = asyncio.create_task(self.publisher.run(), name="kubecarbon-publisher")
        log.info(
            "agent %s for node %s: sampling every %g s, reporting to %s, serving on port %d",
            self.publisher.agent_id,
            self.settings.node_name,
            self.settings.sampler.interval_seconds,
            self.publisher.url,
            self.http_port,
        )

    async def stop(self) -> None:
        """Close the current window, deliver what the grace period allows, shut down."""
        log.info(
            "stopping: closing the current window, delivering for up to %g s",
            self.settings.delivery.shutdown_grace_seconds,
        )
        grace = self.settings.delivery.shutdown_grace_seconds
        if self._sampling is not None:
            self._sampling.cancel()
            await asyncio.gather(self._sampling, return_exceptions=True)
            self._sampling = None
        last = self.sampler.last_sample_time
        # the collector would refuse a shorter last window
        if last is not None and self.sampler.now() - last >= MIN_WINDOW_SECONDS:
            self._cycle()
        if self._delivery is not None:
            # the request in flight completes: cancelling it could send its reports twice
            self.publisher.begin_draining()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._delivery, grace)  # cancels it when time is up
            self._delivery = None
        left = len(self.publisher.buffer)
        if left:
            log.warning("stopping with %d undelivered report(s)", left)
        await self.publisher.close()
        await self.server.stop()

    def health(self) -> tuple[bool, str]:
        since = self.sampler.clock.monotonic() - self._last_cycle_monotonic
        limit = HEALTHY_MISSED_INTERVALS * self.settings.sampler.interval_seconds
        if since > limit:
            return False, f"no sample for {since:.1f} s (limit {limit:g} s)"
        return True, f"ok: last sample {since:.1f} s ago, {len(self.publisher.buffer)} buffered"

    def _cycle(self) -> None:
        report = self.sampler.sample()
        if report is not None:
            self.publisher.publish(report)
        self._last_cycle_monotonic = self.sampler.clock.monotonic()

    async def _sampling_loop(self) -> None:
        """One cycle per interval on a fixed grid; a late cycle skips the ticks it missed.

        Skipped ticks lose nothing: the next window simply starts where the last one ended.
        """
        interval = self.settings.sampler.interval_seconds
        clock = self.sampler.clock
        next_tick = clock.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_tick - clock.monotonic()))
            self._cycle()
            next_tick += interval
            behind = clock.monotonic() - next_tick
            if behind >= 0:
                next_tick += interval * math.ceil((behind + 1e-9) / interval)


async def run_agent(
    settings: AgentSettings,
    *,
    stop: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Run an agent until `stop` is set (for ever without one), then stop it gracefully."""
    agent = Agent(settings, registry=registry)
    await agent.start()
    try:
        await (stop if stop is not None else asyncio.Event()).wait()
    finally:
        await agent.stop()
