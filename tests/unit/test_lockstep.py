"""The lockstep clock's table (lab.core.robot.lockstep): who the clock waits for."""

from __future__ import annotations

import pytest

from lab.core.robot.lockstep import ClockTable, WallAccount

LM, NAV, ARM, GC = "/lab_manager#a", "/robot1/navigator#b", "/robot1/arm#c", "/stations/gc#d"


def test_a_holder_computes_unless_it_waits_itself() -> None:
    table = ClockTable()
    table.update(GC, 1, hold=False, active=True, until=30.0)
    assert table.computing(0.0) == set() and table.earliest() == 30.0
    table.update(ARM, 1, hold=True, active=True, until=0.0)
    assert table.computing(0.0) == {ARM}                       # the arm between motions: the GC's wait stands
    table.update(ARM, 2, hold=False, active=True, until=5.0)   # the arm waits for its gripper
    assert table.computing(0.0) == set() and table.earliest() == 5.0
    assert not table.landed(4.9) and table.landed(5.0)          # the tick on 5.0 goes out on /clock at once
    table.reached(5.0)
    assert table.computing(0.0) == {ARM} and table.earliest() == 30.0 and not table.landed(5.0)


def test_a_yielding_hold_stands_aside_for_its_robots_actions_and_holds_the_hand_offs() -> None:
    table = ClockTable(handoff_wall=1.0)
    table.update(GC, 1, hold=False, active=True, until=300.0)
    table.update(LM, 1, hold=True, active=True, until=0.0, yields_to="/robot1/")
    assert table.computing(10.0) == {LM}                       # before the drive's goal is accepted
    table.update(NAV, 1, hold=True, active=True, until=0.0)
    table.update(NAV, 2, hold=False, active=True, until=20.0)  # the navigator's wait (its motion)
    assert table.computing(10.2) == set()                      # the drive: the lab manager stands aside
    table.update(NAV, 2, hold=False, active=False, until=0.0)
    assert table.computing(10.3) == {NAV}
    table.update(NAV, 1, hold=True, active=False, until=0.0)   # the drive's result on its way back
    assert table.computing(10.4) == {LM}                       # ... costs no simulated time
    table.update(ARM, 1, hold=True, active=True, until=0.0)
    table.update(ARM, 2, hold=False, active=True, until=25.0)
    assert table.computing(10.5) == set()
    table.update(LM, 1, hold=True, active=False, until=0.0)
    table.update(ARM, 1, hold=True, active=False, until=0.0)
    assert table.computing(10.6) == set()


def test_a_yielding_hold_blocks_a_wall_second_at_most_at_a_stretch() -> None:
    """A lab manager waiting for an operator's resume or an absent robot is not computing: the
    stations' processes run on after a wall second."""
    table = ClockTable(handoff_wall=1.0)
    table.update(LM, 1, hold=True, active=True, until=0.0, yields_to="/robot1/")
    assert table.computing(100.0) == {LM}
    assert table.computing(100.9) == {LM}
    assert table.computing(101.1) == set() and table.expired == 1
    assert table.computing(101.5) == set() and table.expired == 1  # one stretch, counted once
    table.update(ARM, 1, hold=True, active=True, until=0.0)
    assert table.computing(102.0) == {ARM}                     # the stretch ends with the robot's next action
    table.update(ARM, 1, hold=True, active=False, until=0.0)
    assert table.computing(102.5) == {LM}                      # and the next hand-off is held again
    # another robot's nodes do not count: the hold yields to its own robot's
    table.update("/robot2/arm#e", 1, hold=True, active=True, until=0.0)
    assert LM in table.computing(102.6)


def test_a_restarted_node_replaces_its_predecessors_entries() -> None:
    table = ClockTable()
    table.update(ARM, 1, hold=True, active=True, until=0.0)
    table.update(ARM, 2, hold=False, active=True, until=9.0)
    assert table.update("/robot1/arm#new", 1, hold=False, active=False, until=0.0) == 2
    assert table.owners() == set() and table.computing(0.0) == set()


def test_the_wall_account_charges_each_tick_to_what_the_clock_did() -> None:
    account = WallAccount()
    account.charge(0.5, moving=True, computing={ARM}, waiting=True)    # motion first, whoever holds
    account.charge(0.2, moving=False, computing={ARM, LM}, waiting=True)
    account.charge(0.2, moving=False, computing=set(), waiting=True)
    account.charge(0.1, moving=False, computing=set(), waiting=False)
    assert account.seconds == pytest.approx({"moving": 0.5, "held by /robot1/arm": 0.1, "held by /lab_manager": 0.1,
                                             "waits": 0.2, "idle": 0.1})
    assert account.summary(top=2) == "1 wall s: moving 50%, waits 20%"
    assert WallAccount().summary() == ""

