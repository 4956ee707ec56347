"""The app's own telemetry: what its HTTP side refused and what its state file did.

These are the only numbers a rejected request moves; none of them is part of the
ledger or of the state file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SNAPSHOT_RESTORE_RESULTS = ("restored", "missing", "corrupt", "disabled")
# requests forwarded to the owning replica: it answered 200, it answered otherwise, it
# could not be reached, or its certificate failed verification (the last two: a 503)
FORWARD_RESULTS = ("applied", "refused", "unavailable", "untrusted")


@dataclass
class Telemetry:
    rejected_by_status: dict[int, int] = field(default_factory=dict)
    snapshot_writes: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    snapshot_last_success_timestamp_seconds: float = 0.0
    snapshot_restore: str = "disabled"  # one of SNAPSHOT_RESTORE_RESULTS
    forwarded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FORWARD_RESULTS, 0))

    def reject(self, status: int) -> None:
        self.rejected_by_status[status] = self.rejected_by_status.get(status, 0) + 1

    def copy(self) -> Telemetry:
        """A copy for a reader on another thread: nothing in it changes afterwards."""
        return replace(self, rejected_by_status=dict(self.rejected_by_status),
                       snapshot_writes=dict(self.snapshot_writes),
                       forwarded=dict(self.forwarded))
