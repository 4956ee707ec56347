"""Exponential backoff with jitter, for every retry loop in the product.

The n-th delay after a failure (n from 0) has the ceiling c = min(max, initial * 2**n);
`jitter` is the random share of it: the delay is drawn from [c * (1 - jitter), c].
Full jitter (1.0, the default) spreads many clients retrying against one server the
most; 0.5 ("equal jitter") never retries sooner than half the ceiling.
"""

from __future__ import annotations

import random

MAX_DOUBLINGS = 30  # keeps 2**n a float-exact number long after any ceiling is reached


class Backoff:
    """Delays for successive retries; `reset()` after a success starts over."""

    def __init__(
        self,
        initial_seconds: float,
        max_seconds: float,
        *,
        jitter: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter: must be 0..1, got {jitter!r}")
        self.initial_seconds = initial_seconds
        self.max_seconds = max_seconds
        self.jitter = jitter
        self.rng = rng if rng is not None else random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Delays handed out since the last reset: the failures in a row."""
        return self._attempt

    def next_delay_seconds(self) -> float:
        doublings = min(self._attempt, MAX_DOUBLINGS)
        ceiling = min(self.max_seconds, self.initial_seconds * 2.0**doublings)
        self._attempt += 1
        return ceiling * (1.0 - self.jitter) + self.rng.uniform(0, ceiling * self.jitter)

    def reset(self) -> None:
        self._attempt = 0
