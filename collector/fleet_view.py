"""The fleet view: gauges of the live nodes, a pure function of their latest windows.

A node is live when it reported within --stale-after. `compute_fleet_view` runs the
model over the live nodes' latest windows (fleet gauges, the avoided-emission band,
grid intensity per region); `FleetViewCache` computes it once per change of the
ledger, for /metrics, /readyz and the status page alike, on any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from collector.intensity import HourlyIntensity
from collector.ledger import LedgerView, NodeLatest
from collector.model import coefficients as c
from collector.model.estimate import WindowBatch, WindowEstimate, estimate_windows
from collector.model.fleet import (
    UNCERTAINTY_DRAWS,
    UNCERTAINTY_SEED,
    AvoidedBand,
    FleetGauges,
    FloatArray,
    Quantiles,
    avoided_rate_samples,
    fleet_gauges,
)
from collector.model.parameters import ModelParameters, ProfileArrays
from collector.settings import ExportSettings


@dataclass(frozen=True)
class FleetView:
    """Everything the readers derive from the live nodes."""

    live: list[NodeLatest]
    stale_count: int
    gauges: FleetGauges
    avoided_quantiles: Quantiles | None  # grams per hour; None without live nodes
    avoided_servers_quantiles: Quantiles | None
    grid_intensity_by_region: dict[str, float]
    estimate: WindowEstimate | None = None  # of `live`, in its order (rightsizing costs nodes)
    # grams per hour of each draw behind avoided_quantiles; replicas sum them per draw
    avoided_draws: FloatArray | None = None


def split_live(windows: Sequence[NodeLatest], now: float, stale_after_seconds: float
               ) -> tuple[list[NodeLatest], int]:
    """The windows of nodes that reported within --stale-after, and how many did not."""
    horizon = now - stale_after_seconds
    live = [n for n in windows if n.received_at >= horizon]
    return live, len(windows) - len(live)


def compute_fleet_view(
    windows: Sequence[NodeLatest],
    now: float,
    params: ModelParameters,
    stale_after_seconds: float,
    hourly_intensity: HourlyIntensity | None = None,
) -> FleetView:
    """Gauges from the latest window of every node live at `now`."""
    live, stale_count = split_live(windows, now, stale_after_seconds)
    batch = WindowBatch(
        duration_seconds=np.array([n.duration_seconds for n in live], dtype=np.float64),
        logical_cpus=np.array([n.logical_cpus for n in live], dtype=np.float64),
        busy_seconds=np.array([n.busy_seconds for n in live], dtype=np.float64),
        memory_total_bytes=np.array([n.memory_total_bytes for n in live], dtype=np.float64),
        rapl_joules=np.array([n.rapl_joules for n in live], dtype=np.float64),
    )
    profile_arrays = ProfileArrays.from_profiles([n.profile for n in live], params)
    regions = [n.profile.region for n in live]
    midpoints = [n.window_end - n.duration_seconds / 2 for n in live]
    estimate = estimate_windows(
        batch, profile_arrays, params,
        None if hourly_intensity is None else hourly_intensity.lookup(regions, midpoints),
        np.array([n.overhead_cpu_seconds for n in live], dtype=np.float64),
    )
    samples = (
        avoided_rate_samples(batch, estimate, params, UNCERTAINTY_DRAWS, UNCERTAINTY_SEED)
        if live
        else None
    )
    band = None if samples is None else AvoidedBand.of(samples, c.SECONDS_PER_HOUR)
    intensity: dict[str, float] = {}
    for n, grams in zip(live, estimate.grid_intensity_grams_per_kilowatt_hour.tolist(),
                        strict=True):
        intensity.setdefault(n.labels[1], grams)
    return FleetView(
        live=live,
        stale_count=stale_count,
        gauges=fleet_gauges(batch, estimate, params),
        avoided_quantiles=None if band is None else band.co2e_grams,
        avoided_servers_quantiles=None if band is None else band.servers,
        grid_intensity_by_region=intensity,
        estimate=estimate,
        avoided_draws=None if samples is None else samples.co2e_grams,
    )


class FleetViewCache:
    """`compute_fleet_view` of a ledger view, computed again only when the ledger changed."""

    def __init__(
        self,
        params: ModelParameters | None = None,
        stale_after_seconds: float = ExportSettings.stale_after_seconds,
        hourly_intensity: HourlyIntensity | None = None,
    ) -> None:
        self.params = params if params is not None else ModelParameters()
        self.stale_after_seconds = stale_after_seconds
        self.hourly_intensity = hourly_intensity
        self._cached: tuple[tuple[int, int, int], FleetView] | None = None

    def view(self, ledger: LedgerView) -> FleetView:
        # Between two versions of the ledger the live windows only shrink as time passes:
        # the version and the two counts name one set of windows.
        live, _ = split_live(ledger.windows, ledger.now, self.stale_after_seconds)
        key = (ledger.version, len(live), len(ledger.windows))
        cached = self._cached  # one read: another thread may replace it meanwhile
        if cached is not None and cached[0] == key:
            return cached[1]
        view = compute_fleet_view(ledger.windows, ledger.now, self.params,
                                  self.stale_after_seconds, self.hourly_intensity)
        self._cached = (key, view)
        return view
