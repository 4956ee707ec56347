"""The one retry backoff: doubling ceilings, the random share of each delay, reset."""

from __future__ import annotations

import random

import pytest

from kubecarbon.backoff import Backoff


class Recording(random.Random):
    """Answers uniform(a, b) with b and remembers the bounds it was asked for."""

    def __init__(self) -> None:
        super().__init__(0)
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b


def test_ceilings_double_up_to_the_maximum_and_reset_starts_over():
    backoff = Backoff(0.5, 10.0, rng=Recording())
    assert [backoff.next_delay_seconds() for _ in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert backoff.attempt == 7
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay_seconds() == 0.5


def test_full_jitter_draws_from_zero_to_the_ceiling():
    rng = Recording()
    backoff = Backoff(1.0, 60.0, rng=rng)
    for _ in range(3):
        backoff.next_delay_seconds()
    assert rng.calls == [(0, 1.0), (0, 2.0), (0, 4.0)]


@pytest.mark.parametrize("seed", range(20))
def test_equal_jitter_never_waits_less_than_half_the_ceiling(seed):
    backoff = Backoff(0.8, 30.0, jitter=0.5, rng=random.Random(seed))
    for attempt in range(12):
        ceiling = min(30.0, 0.8 * 2**attempt)
        assert ceiling / 2 <= backoff.next_delay_seconds() <= ceiling


def test_seeded_delays_repeat_and_different_seeds_spread():
    def first_delay(seed: int) -> float:
        return Backoff(1.0, 30.0, rng=random.Random(seed)).next_delay_seconds()

    assert first_delay(3) == first_delay(3)
    assert len({round(first_delay(seed), 6) for seed in range(50)}) == 50


def test_a_jitter_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="jitter"):
        Backoff(1.0, 2.0, jitter=1.5)
