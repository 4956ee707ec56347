"""A /metrics body rendered in a forked child: the bytes come back, failures are errors."""

from __future__ import annotations

import os
import time

import pytest

from collector.render_process import CHILD_NICENESS, RenderFailed, render_in_child


def test_the_childs_bytes_come_back_whole_and_the_parent_is_untouched():
    state = {"renders": 0}

    def render() -> bytes:
        state["renders"] += 1  # in the child's copy only
        return b"x" * (5 * 2**20) + str(os.getpid()).encode()

    body = render_in_child(render)
    assert body[: 5 * 2**20] == b"x" * (5 * 2**20)
    assert int(body[5 * 2**20:]) != os.getpid()  # rendered by another process
    assert state == {"renders": 0}


def test_a_render_that_raises_is_a_failure_and_the_parent_goes_on(capfd):
    def render() -> bytes:
        raise ValueError("broken family")

    with pytest.raises(RenderFailed, match="exit status"):
        render_in_child(render)
    assert "ValueError: broken family" in capfd.readouterr().err
    assert render_in_child(lambda: b"ok") == b"ok"


def test_a_render_that_never_ends_is_stopped():
    def render() -> bytes:
        time.sleep(60)
        return b"late"

    with pytest.raises(RenderFailed, match=r"took over 0\.2 s"):
        render_in_child(render, timeout_seconds=0.2)


def test_the_child_runs_below_the_serving_process():
    niceness = int(render_in_child(lambda: str(os.getpriority(os.PRIO_PROCESS, 0)).encode()))
    assert niceness == min(os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICENESS, 19)
