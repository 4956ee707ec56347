"""Numeric flag values with bounds, for argparse `type=` in every command line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def bounded(
    kind: Callable[[str], Number], low: float, high: float | None = None
) -> Callable[[str], Number]:
    """A parser of `kind` (int or float) accepting low..high (no upper bound without high).

    A bad value raises argparse.ArgumentTypeError saying what was wrong with it; NaN
    is never accepted.
    """

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            wanted = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}") from None
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is outside {low:g}..{high:g}")
        if not value >= low:
            raise argparse.ArgumentTypeError(f"{text!r} is below the minimum {low:g}")
        return value

    return parse
