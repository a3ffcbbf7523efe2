"""The account of a robot's simulated time per leg (lab.analysis.robot_time) on made-up samples."""

from __future__ import annotations

import pytest

from lab.analysis.robot_time import account, changing, report


def test_a_legs_time_splits_into_base_arm_and_still_time_a_station_ran() -> None:
    # the base moves 10-20, the arm 30-40; a station's process runs 0-100; the leg is 0-60
    poses = [(5.0, (0, 0)), (10.0, (0, 0)), (20.0, (1, 0)), (25.0, (1, 0))]
    joints = [(28.0, (0.0,)), (30.0, (0.0,)), (40.0, (0.5,)), (45.0, (0.5,))]
    base, arm = changing(poses), changing(joints)
    assert base == [(10.0, 20.0)] and arm == [(30.0, 40.0)]
    (leg,) = account([(0.0, 60.0, "rack_1 -> photoreactor/rack")], base, arm, [(0.0, 100.0)])
    assert (leg.total, leg.base, leg.arm, leg.neither) == (60.0, 10.0, 10.0, 40.0)
    assert leg.neither_station == pytest.approx(40.0)
    # no station running: the still time is the robot's alone
    (alone,) = account([(0.0, 60.0, "x")], base, arm, [])
    assert alone.neither_station == 0.0 and alone.neither == 40.0
    assert "of which 40 s (67%) while a station's process ran the clock" in report([leg])


def test_stamp_zero_samples_from_before_the_clock_are_left_out() -> None:
    assert changing([(0.0, (9, 9)), (1.0, (0, 0)), (2.0, (0, 0))]) == []
