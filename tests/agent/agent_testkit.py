"""Shared helpers of the agent tests (imported by name: tests run with --import-mode=importlib)."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agent"

UID_GUARANTEED = "0b7a3c5e-2f41-4d8a-9c6b-1e2f3a4b5c6d"
UID_BURSTABLE = "8f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
UID_STATIC_BESTEFFORT = "5b2d6b0f1c1d5e8f9b3a4c2d1e0f9a8b"  # static pods have hash uids

CGROUP_TREES = [
    "v2-systemd-containerd",
    "v2-cgroupfs-crio",
    "v1-systemd-docker",
    "v1-cgroupfs-containerd",
]


class FakeClock:
    """Wall and monotonic clocks that only move when told to."""

    def __init__(self, wall: float = 1_764_072_000.0) -> None:
        self.wall = wall
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds
