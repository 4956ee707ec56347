"""Sources: each reads one thing from the host and returns a cumulative reading.

Every source has a `name` (the `source` label of the agent's metrics) and one
method, `sample()`. A source that cannot read the host raises `SourceError`
with a reason an operator can act on; the sampler then disables that source for
the cycle and keeps the others. Parsing lives in pure functions next to each
source so that it can be tested on fixture text without touching files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, TypeVar

ReadingT_co = TypeVar("ReadingT_co", covariant=True)


class SourceError(Exception):
    """A source could not produce a reading; the message says why."""


class Source(Protocol[ReadingT_co]):
    """One host source behind one method."""

    @property
    def name(self) -> str: ...

    def sample(self) -> ReadingT_co: ...


def read_text(path: Path) -> str:
    """Read a small pseudo-file, turning OS errors into a `SourceError` naming the path."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
