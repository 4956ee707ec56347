"""A value loaded from files, loaded again when they change; the last good value kept.

The CA bundle the agent trusts, the collector's certificate and the bearer tokens it
accepts all come from mounted Secrets that change under a running process: the
kubelet swaps a symlink, another writer rewrites a file in place. Each use compares
the files' identity (one stat each) with what was loaded and reloads on a change.
A file caught half-written, or gone for a moment, makes the reload fail: the last
good value stays in use and the identities stay old, so the next use tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from kubecarbon.file_identity import FileIdentity, file_identity

ValueT = TypeVar("ValueT")


def _identity_or_none(path: Path) -> FileIdentity | None:
    """None when the file cannot be stat'ed: a change, which the load then explains."""
    try:
        return file_identity(path)
    except OSError:
        return None


class FileBackedValue(Generic[ValueT]):
    """`current()` is what `load` gives for the files as they are now, or the last good one.

    `load` must raise one of `bad_content` for files it cannot use; that error stops
    the start, and later only keeps the value loaded before (logged at `level` on
    `logger`, with `what` naming the value). Any other exception propagates.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        load: Callable[[], ValueT],
        *,
        bad_content: tuple[type[Exception], ...],
        logger: logging.Logger,
        what: str,
        level: int = logging.WARNING,
    ) -> None:
        self.paths = tuple(paths)
        self.reloads = 0
        self._load = load
        self._bad_content = bad_content
        self._logger = logger
        self._what = what
        self._level = level
        # taken before the load, so a change while it reads shows at the next use
        self._identities = self._identities_now()
        self._value = load()

    def current(self) -> ValueT:
        identities = self._identities_now()
        if identities == self._identities:
            return self._value
        try:
            value = self._load()
        except self._bad_content as exc:
            self._logger.log(self._level, "%s; keeping the %s loaded before", exc, self._what)
            return self._value
        self._value, self._identities = value, identities
        self.reloads += 1
        self._logger.info("%s changed: reloaded", self._what)
        return value

    def _identities_now(self) -> tuple[FileIdentity | None, ...]:
        return tuple(_identity_or_none(path) for path in self.paths)
