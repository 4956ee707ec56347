"""Turns cumulative source readings into one report of deltas per window.

The sampler reads every source once per cycle and keeps the previous readings.
The window of a report runs from the previous cycle's timestamp to this one's,
so windows are contiguous however late a cycle runs. Timestamps are wall-clock
seconds anchored once at start and advanced by the monotonic clock, so an NTP
step can neither shorten nor overlap windows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NotRequired, Protocol, TypeVar

from prometheus_client import Gauge

from agent.metrics import AgentMetrics
from agent.sources import Source, SourceError
from agent.sources.density import Density
from agent.sources.meminfo import Memory
from agent.sources.proc_stat import CpuTimes
from agent.sources.rapl import EnergyCounter
from kubecarbon.wire import (
    SCHEMA_VERSION,
    CpuSection,
    PodRow,
    RaplSection,
    Window,
    WindowReport,
)

log = logging.getLogger("agent.sampler")

ReadingT = TypeVar("ReadingT")


class MeasuredWindow(Window):
    """The deltas between two samples; cpu is missing when the cpu source failed."""

    cpu: NotRequired[CpuSection]


class Clock(Protocol):
    def time(self) -> float: ...  # unix seconds

    def monotonic(self) -> float: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class Sample:
    """All readings of one cycle; None where a source failed or is off."""

    timestamp: float
    cpu: CpuTimes | None = None
    memory: Memory | None = None
    pod_cpu: dict[str, int] | None = None  # uid -> CPU nanoseconds
    density: Density | None = None
    rapl: dict[str, EnergyCounter] | None = None


@dataclass(frozen=True)
class Sources:
    cpu: Source[CpuTimes]
    memory: Source[Memory]
    pod_cpu: Source[dict[str, int]]
    density: Source[Density]
    rapl: Source[dict[str, EnergyCounter]] | None = None  # opt-in


class SourceHealth:
    """Runs sources, records success and duration, and logs each new failure reason once."""

    def __init__(
        self, metrics: AgentMetrics, timer: Callable[[], float] = time.perf_counter
    ) -> None:
        self.metrics = metrics
        self.timer = timer
        self._failure_reasons: dict[str, str | None] = {}
        self._gauges: dict[str, tuple[Gauge, Gauge]] = {}  # (duration, success) per source

    def read(self, source: Source[ReadingT]) -> ReadingT | None:
        started = self.timer()
        reading: ReadingT | None = None
        reason: str | None = None
        try:
            reading = source.sample()
        except SourceError as exc:
            reason = str(exc)
        except Exception as exc:  # a parser bug must not stop the other sources
            log.exception("source %s raised unexpectedly", source.name)
            reason = f"unexpected {type(exc).__name__}: {exc}"
        gauges = self._gauges.get(source.name)
        if gauges is None:
            gauges = self._gauges[source.name] = (
                self.metrics.source_duration_seconds.labels(source=source.name),
                self.metrics.source_success.labels(source=source.name),
            )
        gauges[0].set(self.timer() - started)
        gauges[1].set(0 if reason else 1)
        previous = self._failure_reasons.get(source.name)
        if reason is not None and reason != previous:
            log.warning("source %s disabled: %s", source.name, reason)
        elif reason is None and previous is not None:
            log.info("source %s recovered", source.name)
        self._failure_reasons[source.name] = reason
        return reading


def _cpu_section(
    previous: CpuTimes, current: CpuTimes, window: float, user_hz: int
) -> CpuSection:
    busy_seconds = max(0, current.busy_ticks - previous.busy_ticks) / user_hz
    # Tick counts and the window come from different clocks read a few microseconds
    # apart; no node can be busier than all its CPUs for the whole window.
    busy_seconds = min(busy_seconds, current.logical_cpus * window)
    return {"logical_cpus": current.logical_cpus, "busy_seconds": busy_seconds}


def _pod_section(
    previous: dict[str, int], current: dict[str, int], density: Density
) -> list[PodRow]:
    """CPU seconds and running containers per pod in the window.

    A pod absent from the previous (successful) listing was created inside the
    window, so its whole counter belongs to this window. A counter that went
    down was reset inside the window, so its current value is what it counted
    since. Pods that vanished are left out: their cgroup, and what it counted
    since the previous sample, is gone. A pod whose cgroup went away between
    the two reads of this cycle has no running containers.
    """
    containers = density.containers_by_pod.get
    last = previous.get
    return [
        {
            "uid": uid,
            "cpu_seconds": (now if (then := last(uid)) is None or now < then else now - then) / 1e9,
            "containers": containers(uid, 0),
        }
        for uid, now in sorted(current.items())
    ]


def _rapl_section(
    previous: dict[str, EnergyCounter], current: dict[str, EnergyCounter]
) -> RaplSection:
    microjoules: dict[str, int] = {}
    for zone, now in current.items():
        before = previous.get(zone)
        if before is None:
            continue
        used = now.energy_microjoules - before.energy_microjoules
        if used < 0:  # the counter wrapped past max_energy_range_uj
            used += now.max_energy_range_microjoules
        microjoules[now.kind] = microjoules.get(now.kind, 0) + max(0, used)
    section: RaplSection = {"package_joules": microjoules.get("package", 0) / 1e6}
    if "dram" in microjoules:  # many CPUs have no DRAM domain: absent, not zero
        section["dram_joules"] = microjoules["dram"] / 1e6
    return section


def window_report(
    node_name: str, previous: Sample, current: Sample, user_hz: int
) -> MeasuredWindow:
    """The deltas between two samples, without identity (agent_id, seq).

    A section appears only when its source succeeded in both cycles (memory and
    density, being levels rather than counters, only in the current one).
    """
    window = current.timestamp - previous.timestamp
    report: MeasuredWindow = {
        "schema": SCHEMA_VERSION,
        "node": node_name,
        "start": previous.timestamp,
        "end": current.timestamp,
    }
    if previous.cpu is not None and current.cpu is not None:
        report["cpu"] = _cpu_section(previous.cpu, current.cpu, window, user_hz)
    if current.memory is not None:
        report["memory"] = {
            "total_bytes": current.memory.total_bytes,
            "used_bytes": current.memory.used_bytes,
        }
    if current.density is not None:
        report["containers_running"] = current.density.containers_running
    # the collector needs containers on every pod row, so pods come with density only
    if previous.pod_cpu is not None and current.pod_cpu is not None and current.density is not None:
        report["pods"] = _pod_section(previous.pod_cpu, current.pod_cpu, current.density)
    if previous.rapl is not None and current.rapl is not None:
        report["rapl"] = _rapl_section(previous.rapl, current.rapl)
    return report


class Sampler:
    """Reads all sources once per call to `sample()` and returns the window's report."""

    def __init__(
        self,
        node_name: str,
        sources: Sources,
        metrics: AgentMetrics,
        *,
        clock: Clock | None = None,
        user_hz: int = 100,
    ) -> None:
        self.node_name = node_name
        self.sources = sources
        self.metrics = metrics
        self.health = SourceHealth(metrics)
        self.clock = clock if clock is not None else SystemClock()
        self.user_hz = user_hz
        self._anchor_wall = self.clock.time()
        self._anchor_monotonic = self.clock.monotonic()
        self._previous: Sample | None = None

    def now(self) -> float:
        """Wall-clock seconds, advanced by the monotonic clock since start."""
        return self._anchor_wall + (self.clock.monotonic() - self._anchor_monotonic)

    @property
    def last_sample_time(self) -> float | None:
        return None if self._previous is None else self._previous.timestamp

    def take_sample(self) -> Sample:
        """Read every source once, now."""
        timestamp = self.now()
        read = self.health.read
        return Sample(
            timestamp=timestamp,
            cpu=read(self.sources.cpu),
            memory=read(self.sources.memory),
            pod_cpu=read(self.sources.pod_cpu),
            density=read(self.sources.density),
            rapl=read(self.sources.rapl) if self.sources.rapl is not None else None,
        )

    def sample(self) -> WindowReport | None:
        """Take a sample; return the report of the window that it closes.

        None the first time, and for a window without the node's CPU: the
        estimate starts from utilisation, so the collector refuses reports
        without it, and the cpu source's metric and log already say what is wrong.
        Every other section may be missing (its source failed) and the report goes.
        """
        current = self.take_sample()
        previous, self._previous = self._previous, current
        if previous is None:
            return None
        measured = window_report(self.node_name, previous, current, self.user_hz)
        if previous.cpu is not None and current.cpu is not None:
            stolen = max(0, current.cpu.steal_ticks - previous.cpu.steal_ticks)
            self.metrics.cpu_steal_seconds.inc(stolen / self.user_hz)
        cpu = measured.get("cpu")
        if cpu is None:
            return None
        return {**measured, "cpu": cpu}
