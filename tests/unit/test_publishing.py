"""When the embedded simulation sends /clock and a robot's state (lab.core.robot.publishing)."""

from __future__ import annotations

from lab.core.robot.publishing import StateGate, clock_due


def _clock(time: float, wall: float, **kw) -> bool:
    args = {"sent": 10.0, "sent_at": 0.0, "before": time - 1.0, "moving_before": False, "moving": False,
            "landed": False, "lockstep": True, "rate": 20.0} | kw
    return clock_due(time, args.pop("sent"), wall, args.pop("sent_at"), **args)


def test_a_running_clock_goes_out_at_its_rate_and_at_once_where_a_reader_acts_on_it() -> None:
    assert not _clock(11.0, 0.01)                             # running for a station's wait: 20 Hz, not 100
    assert _clock(11.0, 0.05)
    assert _clock(11.0, 0.01, landed=True)                    # the tick landed on a time a node waits for
    assert _clock(11.0, 0.01, moving_before=True)             # a robot came to rest
    assert not _clock(11.0, 0.01, moving_before=True, moving=True)  # still moving: the rate
    assert _clock(11.0, 0.01, before=11.0)                    # the clock holds now: its exact time
    assert _clock(11.0, 0.01, lockstep=False)                 # free-running: every tick
    assert not _clock(10.0, 0.5, before=10.0) and _clock(10.0, 1.0, before=10.0)  # held: once a wall second


def test_each_state_topic_goes_out_when_it_changes_or_at_the_idle_rate_with_tf_at_its_own() -> None:
    gate = StateGate(idle_due=0.1)
    still = {"base": ("pose0",), "joints": (0.0,), "battery": False}
    due, moved = gate.due("robot1", still, 0.0, with_tf=True)
    assert due == {"base", "joints", "battery", "tf_base", "tf_links"} and moved == {"base", "joints"}
    assert gate.due("robot1", still, 0.01, with_tf=True) == (set(), set())   # the clock's advance is no change
    arm = still | {"joints": (0.1,)}
    due, moved = gate.due("robot1", arm, 0.02, with_tf=False)
    assert due == {"joints"} and moved == {"joints"}                        # no odometry while only the arm moves
    due, _ = gate.due("robot1", arm | {"joints": (0.2,)}, 0.03, with_tf=True)
    assert due == {"joints", "tf_links"}                                     # tf carries the links at the tf rate
    due, moved = gate.due("robot1", arm | {"joints": (0.2,), "battery": True}, 0.04, with_tf=False)
    assert due == {"battery"} and not moved                                  # charging starts: at once
    due, moved = gate.due("robot1", arm | {"joints": (0.2,), "battery": True}, 0.2, with_tf=False)
    assert due == {"base", "joints", "battery", "tf_base", "tf_links"} and not moved  # idle repeats, tf with them
    assert gate.due("robot2", still, 0.2, with_tf=True)[1] == {"base", "joints"}  # each robot its own


def test_a_state_asked_for_goes_out_at_the_next_tick_unchanged_and_not_as_a_move() -> None:
    """The simulation asks again for a robot's odometry when one of its nodes takes the clock (the
    arm's action reads the base's pose first): out at once, not at the idle rate, and no move."""
    gate = StateGate(idle_due=0.1)
    still = {"base": ("pose0",), "joints": (0.0,), "battery": False}
    gate.due("robot1", still, 0.0, with_tf=True)
    assert gate.due("robot1", still, 0.01, with_tf=True) == (set(), set())
    gate.again("robot1", "base")
    gate.again("robot2", "base")  # a robot not heard of yet: nothing to repeat
    due, moved = gate.due("robot1", still, 0.02, with_tf=True)
    assert due == {"base", "tf_base"} and moved == set()
    assert gate.due("robot1", still, 0.03, with_tf=True) == (set(), set())  # once
