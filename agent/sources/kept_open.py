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
    """Reads a set of small pseudo-files, keeping up to `budget` descriptors open across cycles."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = default_budget() if budget is None else budget
        self._open: dict[str, int] = {}
        # the paths of the last read_all, and whether a descriptor was opened or closed since
        self._last_paths: list[str] | None = None
        self._moved = False

    def __len__(self) -> int:
        return len(self._open)

    def read_all(self, paths: list[str]) -> list[bytes | None]:
        """Each file's current content, None for a file that is gone.

        Descriptors of files not among `paths` (their pods are gone) are closed at
        the end. An OSError other than "gone" is raised with the path as filename.
        """
        contents: list[bytes | None] = []
        append = contents.append
        kept = self._open.get
        pread = os.pread
        for path in paths:
            descriptor = kept(path)
            if descriptor is not None:
                try:
                    append(pread(descriptor, READ_BYTES, 0))
                    continue
                except OSError as exc:
                    self._close(path)
                    if exc.errno != errno.ENODEV:  # ENODEV: the cgroup was removed
                        raise OSError(exc.errno, exc.strerror, path) from exc
            append(self._read_fresh(path))
        if self._moved or paths is not self._last_paths:
            for path in self._open.keys() - set(paths):
                self._close(path)
            self._moved = False
        self._last_paths = paths
        return contents

    def _read_fresh(self, path: str) -> bytes | None:
        try:
            descriptor, data = _read_fresh(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, path) from exc
        if len(self._open) < self.budget:
            self._open[path] = descriptor
        else:
            os.close(descriptor)
        self._moved = True
        return data

    def _close(self, path: str) -> None:
        os.close(self._open.pop(path))
        self._moved = True

    def close(self) -> None:
        for descriptor in self._open.values():
            os.close(descriptor)
        self._open.clear()
        self._last_paths = None

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
