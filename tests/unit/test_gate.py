"""The lab manager's start gate without ROS: a pause is exact, a cancel gets out, a stop holds."""

from __future__ import annotations

import threading
import time

import pytest

from lab.core.operations.gate import PAUSED, RUNNING, STOPPED, Interrupted, StartGate


def _in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_pause_returns_only_after_the_start_in_progress_is_answered_and_nothing_starts_after_it() -> None:
    gate = StartGate(poll=0.005)
    sending, answer = threading.Event(), threading.Event()
    started_at: list[float] = []

    def first() -> None:  # passed the gate before the pause; its goal's answer comes late
        with gate.start(lambda: False) as started:
            sending.set()
            answer.wait(5.0)
            started()

    def second() -> None:  # reaches the gate after the pause
        with gate.start(lambda: False):
            started_at.append(time.monotonic())

    a = _in_thread(first)
    assert sending.wait(5.0)
    paused: list[float] = []
    p = _in_thread(lambda: (gate.set_mode(PAUSED, wait=5.0), paused.append(time.monotonic())))
    time.sleep(0.1)
    assert not paused, "the pause returned while a goal sent before it was unanswered"
    answer.set()
    p.join(5.0)
    assert paused and gate.starting == 0
    b = _in_thread(second)
    time.sleep(0.2)
    assert not started_at, "a start passed the gate after the pause had returned"
    resumed = time.monotonic()
    gate.set_mode(RUNNING)
    b.join(5.0)
    a.join(5.0)
    assert started_at and started_at[0] >= resumed


def test_pause_says_when_a_start_was_still_unanswered() -> None:
    gate = StartGate()
    with gate.start(lambda: False):
        assert gate.set_mode(PAUSED, wait=0.05) is False
        assert gate.starting == 1
    assert gate.starting == 0 and gate.set_mode(PAUSED, wait=0.05) is True


def test_a_cancelled_batch_gets_out_of_a_paused_or_stopped_gate() -> None:
    for mode in (PAUSED, STOPPED):
        gate = StartGate(poll=0.005)
        gate.set_mode(mode)
        cancel = threading.Event()
        outcome: list[str] = []

        def wait(gate: StartGate = gate, cancel: threading.Event = cancel, outcome: list[str] = outcome) -> None:
            try:
                with gate.start(cancel.is_set):
                    outcome.append("started")
            except Interrupted:
                outcome.append("interrupted")

        t = _in_thread(wait)
        time.sleep(0.05)
        assert not outcome
        cancel.set()
        t.join(5.0)
        assert outcome == ["interrupted"] and gate.starting == 0


def test_an_error_inside_the_start_block_still_counts_it_answered() -> None:
    gate = StartGate()
    with pytest.raises(RuntimeError), gate.start(lambda: False):
        raise RuntimeError("send failed")
    assert gate.starting == 0
    with pytest.raises(ValueError, match="unknown mode"):
        gate.set_mode("sleeping")
