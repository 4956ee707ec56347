"""Bounded numeric flag values, as both command lines parse them."""

from __future__ import annotations

import argparse

import pytest

from kubecarbon.bounds import bounded


def test_values_within_bounds_keep_their_kind():
    assert bounded(int, 1, 10)("10") == 10 and type(bounded(int, 1, 10)("1")) is int
    assert bounded(float, 0.5)("1e6") == 1e6 and type(bounded(float, 0.5)("2")) is float


@pytest.mark.parametrize(("parse", "text", "message"), [
    (bounded(int, 1, 10), "11", "'11' is outside 1..10"),
    (bounded(int, 1, 10), "0", "'0' is outside 1..10"),
    (bounded(int, 1, 10), "1.5", "'1.5' is not an integer"),
    (bounded(float, 1.0, 3600.0), "abc", "'abc' is not a number"),
    (bounded(float, 1.0, 3600.0), "nan", "'nan' is outside 1..3600"),
    (bounded(float, 1.0), "0.5", "'0.5' is below the minimum 1"),
    (bounded(float, 1.0), "nan", "'nan' is below the minimum 1"),
    (bounded(int, 0), "-1", "'-1' is below the minimum 0"),
])
def test_bad_values_say_what_is_wrong(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as bad:
        parse(text)
    assert str(bad.value) == message
