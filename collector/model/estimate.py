"""Per-window estimation: power, energy, CO2e and the non-elastic baseline, vectorised.

One element per report (a node's window). Everything a window contributes to a counter
is a per-element array here, so counters are plain sums and collector replicas add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.model import coefficients as c
from collector.model.curve import curve_watts_at
from collector.model.parameters import (
    KIND_CLOUD,
    KIND_DEFAULT,
    ModelParameters,
    ProfileArrays,
)

FloatArray = npt.NDArray[np.float64]

# power_source codes (WindowEstimate.power_source) index into this tuple; the names are
# the values of the `power_source` metric label.
POWER_SOURCES: tuple[str, ...] = ("cloud_linear", "specpower_curve", "default_profile", "rapl")
SOURCE_CLOUD, SOURCE_RAPL = 0, 3  # the other codes equal the profile's kind code

_BYTES_PER_GIBIBYTE = float(2**30)


def _as_float_array(name: str, values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {array.shape}")
    return array


@dataclass(frozen=True)
class WindowBatch:
    """The measured inputs of n windows (one per report), as parallel 1-d arrays.

    rapl_joules is package + DRAM energy in the window, NaN where the report has none.
    Construction validates: equal lengths, finite, duration > 0, logical_cpus > 0,
    busy_seconds and memory >= 0; a bad element raises ValueError naming field and index.
    """

    duration_seconds: FloatArray
    logical_cpus: FloatArray
    busy_seconds: FloatArray  # core-seconds busy in the window
    memory_total_bytes: FloatArray
    rapl_joules: FloatArray

    def __post_init__(self) -> None:
        n = None
        for name in (
            "duration_seconds",
            "logical_cpus",
            "busy_seconds",
            "memory_total_bytes",
            "rapl_joules",
        ):
            array = _as_float_array(name, getattr(self, name))
            object.__setattr__(self, name, array)
            if n is None:
                n = array.shape[0]
            elif array.shape[0] != n:
                raise ValueError(f"{name}: length {array.shape[0]}, expected {n}")
        # One pass over all four arrays for the usual, valid batch (ingest builds one per
        # model run, so the number of numpy calls here is a fixed cost of every run); the
        # field-by-field checks only run to name what is wrong.
        checked = np.vstack((self.duration_seconds, self.logical_cpus, self.busy_seconds,
                             self.memory_total_bytes))
        if not (np.isfinite(checked).all() and (checked[:2] > 0).all()
                and (checked[2:] >= 0).all()):
            _require(self.duration_seconds, "duration_seconds", positive=True)
            _require(self.logical_cpus, "logical_cpus", positive=True)
            _require(self.busy_seconds, "busy_seconds")
            _require(self.memory_total_bytes, "memory_total_bytes")
        rapl = self.rapl_joules
        # NaN (absent) passes both tests; a negative or infinite reading fails one
        bad = (rapl < 0) | np.isinf(rapl)
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"rapl_joules[{index}]: must be finite and >= 0 (or NaN when absent), "
                f"got {rapl[index]}"
            )

    def __len__(self) -> int:
        return int(self.duration_seconds.shape[0])

    @classmethod
    def of(
        cls,
        duration_seconds: npt.ArrayLike,
        logical_cpus: npt.ArrayLike,
        busy_seconds: npt.ArrayLike,
        memory_total_bytes: npt.ArrayLike | None = None,
        rapl_joules: npt.ArrayLike | None = None,
    ) -> WindowBatch:
        """Convenience constructor: scalars broadcast, missing memory is 0, RAPL absent."""
        arrays = np.broadcast_arrays(
            np.atleast_1d(np.asarray(duration_seconds, dtype=np.float64)),
            np.atleast_1d(np.asarray(logical_cpus, dtype=np.float64)),
            np.atleast_1d(np.asarray(busy_seconds, dtype=np.float64)),
            np.atleast_1d(
                np.asarray(0.0 if memory_total_bytes is None else memory_total_bytes, np.float64)
            ),
            np.atleast_1d(
                np.asarray(np.nan if rapl_joules is None else rapl_joules, dtype=np.float64)
            ),
        )
        return cls(*(np.array(a) for a in arrays))


def _require(array: FloatArray, name: str, positive: bool = False) -> None:
    ok = np.isfinite(array) & ((array > 0) if positive else (array >= 0))
    if not ok.all():
        index = int(np.flatnonzero(~ok)[0])
        rule = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}[{index}]: must be finite and {rule}, got {array[index]}")


@dataclass(frozen=True)
class WindowEstimate:
    """Model output for n windows. Energy is IT energy unless named facility; CO2e in grams.

    Baseline fields follow DESIGN: baseline_servers and actual_servers are the window's
    time-average server counts, the energies and CO2e are the window's contribution to
    the matching counters (avoided values may be negative: the fleet was less efficient
    than the dedicated baseline in that window).
    """

    utilisation: FloatArray  # busy / (logical_cpus * dt), clipped to [0, 1]
    power_watts: FloatArray  # IT power, average over the window
    idle_power_watts: FloatArray  # the part that would be drawn at 0 % CPU
    power_source: npt.NDArray[np.int8]  # index into POWER_SOURCES
    energy_joules: FloatArray  # IT energy
    idle_energy_joules: FloatArray  # kept at node level, never attributed to pods
    dynamic_energy_joules: FloatArray  # energy_joules - idle_energy_joules, split over pods
    facility_energy_joules: FloatArray  # energy_joules * PUE
    operational_co2e_grams: FloatArray  # facility energy * grid intensity
    embodied_co2e_grams: FloatArray  # (logical_cpus / ref_cpus) * EMB * dt / LIFE
    pue: FloatArray  # as used (echoed for fleet gauges and uncertainty)
    grid_intensity_grams_per_kilowatt_hour: FloatArray  # as used
    demand_cpus: FloatArray  # busy logical CPUs the baseline is sized for (overhead excluded)
    baseline_servers: FloatArray
    actual_servers: FloatArray
    baseline_energy_joules: FloatArray  # the baseline's reference servers
    # memory above the reference server's share (cloud nodes without RAPL): in energy_joules,
    # and held by the baseline too, so avoided = baseline + shared memory - energy
    shared_memory_energy_joules: FloatArray
    avoided_energy_joules: FloatArray
    avoided_operational_co2e_grams: FloatArray
    avoided_embodied_co2e_grams: FloatArray

    def __len__(self) -> int:
        return int(self.utilisation.shape[0])


def estimate_windows(
    batch: WindowBatch,
    profiles: ProfileArrays,
    params: ModelParameters | None = None,
    grid_intensity_grams_per_kilowatt_hour: npt.ArrayLike | None = None,
    overhead_cpu_seconds: npt.ArrayLike | None = None,
) -> WindowEstimate:
    """Estimate power, energy, CO2e and the baseline for every window of the batch.

    grid_intensity_grams_per_kilowatt_hour optionally overrides the profile's value per
    element (e.g. from an hourly intensity file); NaN elements keep the profile's value.
    overhead_cpu_seconds: per window, CPU time of the pods in params.overhead_namespaces
    (the platform's own overhead), left out of the demand the baseline is sized for.
    """
    params = params or ModelParameters()
    n = len(batch)
    if len(profiles) != n:
        raise ValueError(f"profiles: {len(profiles)} elements for a batch of {n}")
    dt = batch.duration_seconds
    cpus = batch.logical_cpus
    utilisation = np.clip(batch.busy_seconds / (cpus * dt), 0.0, 1.0)

    # Modelled IT power for every element, then measured RAPL where present.
    kind = profiles.kind
    ref = params.reference_curve
    # Only memory above the reference server's share is charged: the per-vCPU watts,
    # like the reference curve, already carry a SPECpower server's own memory.
    memory_gibibytes = batch.memory_total_bytes / _BYTES_PER_GIBIBYTE
    memory_above_reference = np.maximum(
        0.0, memory_gibibytes - cpus * ref.memory_gibibytes_per_logical_cpu
    )
    memory_watts = memory_above_reference * params.memory_watts_per_gibibyte
    cloud_idle = cpus * profiles.min_watts_per_vcpu + memory_watts
    cloud_power = cloud_idle + cpus * utilisation * (
        profiles.max_watts_per_vcpu - profiles.min_watts_per_vcpu
    )
    # Default-kind nodes are a share of the reference server; bare metal is the whole curve.
    curve_share = np.where(kind == KIND_DEFAULT, cpus / profiles.curve_logical_cpus, 1.0)
    curve_power = curve_watts_at(profiles.curve_watts, utilisation) * curve_share
    curve_idle = profiles.curve_watts[:, 0] * curve_share
    is_cloud = kind == KIND_CLOUD
    modelled_power = np.where(is_cloud, cloud_power, curve_power)
    modelled_idle = np.where(is_cloud, cloud_idle, curve_idle)

    has_rapl = ~np.isnan(batch.rapl_joules)
    measured_power = np.where(has_rapl, batch.rapl_joules, 0.0) / dt * params.rapl_platform_factor
    power = np.where(has_rapl, measured_power, modelled_power)
    # RAPL has no idle reading: keep the model's idle share of the measured power, so
    # idle never exceeds the total and a window with no CPU use is all idle.
    with np.errstate(divide="ignore", invalid="ignore"):
        idle_share = np.where(modelled_power > 0, modelled_idle / modelled_power, 1.0)
    idle_power = np.where(has_rapl, measured_power * idle_share, modelled_idle)
    # POWER_SOURCES lists the modelled sources in kind-code order.
    source = np.where(has_rapl, SOURCE_RAPL, kind).astype(np.int8)
    # The extra memory the fleet holds, the dedicated baseline would hold too: counted on
    # both sides, it never makes a fleet look better or worse than the baseline.
    shared_memory_power = np.where(is_cloud & ~has_rapl, memory_watts, 0.0)

    pue = profiles.pue
    intensity = profiles.grid_intensity_grams_per_kilowatt_hour
    if grid_intensity_grams_per_kilowatt_hour is not None:
        override = np.broadcast_to(
            np.asarray(grid_intensity_grams_per_kilowatt_hour, dtype=np.float64), (n,)
        )
        bad = ~np.isnan(override) & ~((override >= 0) & np.isfinite(override))
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"grid_intensity_grams_per_kilowatt_hour[{index}]: must be finite and >= 0"
            )
        intensity = np.where(np.isnan(override), intensity, override)

    energy = power * dt
    idle_energy = idle_power * dt
    facility_energy = energy * pue
    grams_per_joule = intensity / c.JOULES_PER_KILOWATT_HOUR
    operational = facility_energy * grams_per_joule

    lifetime_seconds = params.server_lifetime_years * c.SECONDS_PER_YEAR
    embodied_grams_per_server_second = (
        params.embodied_kilograms_per_server * 1000.0 / lifetime_seconds
    )
    actual_servers = cpus / ref.logical_cpus
    embodied = actual_servers * embodied_grams_per_server_second * dt

    u_b = params.baseline_utilisation
    # busy time beyond capacity is counter skew, not work: use the clipped utilisation
    demand_cpus = utilisation * cpus
    if overhead_cpu_seconds is not None:
        overhead = np.broadcast_to(np.asarray(overhead_cpu_seconds, dtype=np.float64), (n,))
        _require(overhead, "overhead_cpu_seconds")
        demand_cpus = np.maximum(demand_cpus - overhead / dt, 0.0)
    baseline_servers = demand_cpus / (ref.logical_cpus * u_b)
    baseline_power_per_server = params.baseline_server_watts
    baseline_energy = baseline_servers * baseline_power_per_server * dt
    shared_memory_energy = shared_memory_power * dt
    avoided_energy = baseline_energy + shared_memory_energy - energy
    baseline_pue = pue if params.baseline_pue is None else params.baseline_pue
    avoided_operational = avoided_energy * baseline_pue * grams_per_joule
    avoided_embodied = (
        params.credited_server_seconds((baseline_servers - actual_servers) * dt)
        * embodied_grams_per_server_second
    )

    return WindowEstimate(
        utilisation=utilisation,
        power_watts=power,
        idle_power_watts=idle_power,
        power_source=source,
        energy_joules=energy,
        idle_energy_joules=idle_energy,
        dynamic_energy_joules=energy - idle_energy,
        facility_energy_joules=facility_energy,
        operational_co2e_grams=operational,
        embodied_co2e_grams=embodied,
        pue=pue,
        grid_intensity_grams_per_kilowatt_hour=intensity,
        demand_cpus=demand_cpus,
        baseline_servers=baseline_servers,
        actual_servers=actual_servers,
        baseline_energy_joules=baseline_energy,
        shared_memory_energy_joules=shared_memory_energy,
        avoided_energy_joules=avoided_energy,
        avoided_operational_co2e_grams=avoided_operational,
        avoided_embodied_co2e_grams=avoided_embodied,
    )
