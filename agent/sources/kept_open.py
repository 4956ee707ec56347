"""Pseudo-files kept open between cycles and re-read from offset 0.

cgroupfs and procfs generate a file's content on every read that starts at
offset 0, so one `pread` on a descriptor kept from the previous cycle replaces
open + read + close, at a quarter of the cost; with hundreds of pods per node
that is most of a cycle. The kernel rewrites these files in place, never by
replacing them, so a kept descriptor always sees the current value. When a
cgroup is removed, reads on its old descriptors fail with ENODEV; the path is
then opened afresh, which tells whether it still exists.
"""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

from agent.sources import SourceError

READ_BYTES = 65536  # the pseudo-files read here are a few hundred bytes


def default_budget() -> int:
    """Descriptors to keep: half the soft limit, at most 4096 (enough for 2,000 pods)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(0, min(4096, soft // 2))


def _read_fresh(path: str) -> tuple[int, bytes]:
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return descriptor, os.pread(descriptor, READ_BYTES, 0)
    except BaseException:
        os.close(descriptor)
        raise


class KeptOpenFiles:
    """Reads small pseudo-files, keeping up to `budget` descriptors open across cycles."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = default_budget() if budget is None else budget
        self._open: dict[str, int] = {}
        self._read_this_cycle: set[str] = set()

    def __len__(self) -> int:
        return len(self._open)

    def read(self, path: str) -> bytes:
        """The file's current content; raises FileNotFoundError once it is gone."""
        descriptor = self._open.get(path)
        if descriptor is not None:
            self._read_this_cycle.add(path)
            try:
                return os.pread(descriptor, READ_BYTES, 0)
            except OSError as exc:
                del self._open[path]
                os.close(descriptor)
                if exc.errno != errno.ENODEV:
                    raise
        descriptor, data = _read_fresh(path)
        self._read_this_cycle.add(path)
        if len(self._open) < self.budget:
            self._open[path] = descriptor
        else:
            os.close(descriptor)
        return data

    def end_cycle(self) -> None:
        """Close the descriptors of files not read since the last call (their pods are gone)."""
        read = self._read_this_cycle
        if not read.issuperset(self._open):
            for path in [path for path in self._open if path not in read]:
                os.close(self._open.pop(path))
        read.clear()

    def close(self) -> None:
        for descriptor in self._open.values():
            os.close(descriptor)
        self._open.clear()
        self._read_this_cycle = set()

    def __del__(self) -> None:  # descriptors are plain ints: nothing else would close them
        self.close()


class KeptOpenFile:
    """One pseudo-file of /proc, opened once and re-read from offset 0 every cycle."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor: int | None = None

    def read_text(self) -> str:
        """The file's current content; a `SourceError` naming the path if it cannot be read."""
        try:
            if self._descriptor is None:
                self._descriptor, data = _read_fresh(str(self.path))
            else:
                data = os.pread(self._descriptor, READ_BYTES, 0)
        except OSError as exc:
            self.close()  # opened afresh next time
            raise SourceError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        return data.decode("ascii", errors="replace")

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def __del__(self) -> None:
        self.close()
