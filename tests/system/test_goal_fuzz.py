"""Random goals to the action servers over DDS (hypothesis): every goal is refused with a reason
or completes, a refused goal changes nothing (world state, the robot's true pose), and the
servers still answer afterwards. The robot, its arm and every station of the lab are real
nodes in the embedded simulation."""

from __future__ import annotations

import math

import pytest
from conftest import ros_available
from helpers import Probe, lab, spin_for, spin_until, wait_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.system, pytest.mark.slow,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]

STATIONS = ["liquid_dispenser", "solid_dispenser", "photoreactor", "gas_chromatograph", "printer"]
COMPONENTS = ["P10-MIX1", "NaCl-3M", "L-Cysteine-100gL", "theta", "IBOA", "Unobtainium", ""]
WORDS = st.sampled_from(["", "rack_1", "rack_9", "robot1/deck1", "robot1/gripper", "rack_storage/slot1",
                         "photoreactor/rack", "photoreactor/nowhere", "espresso/rack", "robot2/deck1", "x" * 300,
                         "home", "stow", "inspect", "dispense", "illuminate"])
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 2.5, -1.0, 1e9]))
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _formulation(draw_components, amounts, units, kind):
    from lab_interfaces.msg import Formulation

    return Formulation(sample_id="s", specimen_kind=kind, components=draw_components, amounts=amounts, units=units)


FORMULATIONS = st.lists(st.builds(
    _formulation, st.lists(st.sampled_from(COMPONENTS), max_size=4), st.lists(NUMBERS, max_size=4),
    st.lists(st.sampled_from(["mL", "mg", "L", ""]), max_size=4), st.sampled_from(["", "vial", "photopolymer"])),
    max_size=18)


def _settled(cmd, probe) -> tuple[dict, tuple]:
    spin_for(cmd, 0.3)
    return dict(probe.world), probe.truth


def _check(cmd, probe, task, what: str) -> None:
    """The goal completed, or was refused with a reason and changed nothing."""
    from lab.app.commander import TaskResult

    # what the world was before the goal: every check ends settled (below), so it is current
    before = dict(probe.world), probe.truth
    outcome, result = wait_result(cmd, task, timeout=120.0)
    if outcome is TaskResult.SUCCEEDED:
        _settled(cmd, probe)  # (the world the next goal starts from)
        return
    assert outcome in (TaskResult.FAILED, TaskResult.REJECTED), (what, outcome)
    if outcome is TaskResult.FAILED:
        assert result is not None and result.message.strip(), f"{what}: refused without a reason"
    world, truth = _settled(cmd, probe)
    assert world == before[0], f"{what}: refused ({result.message if result else ''}) but the world changed"
    assert truth == pytest.approx(before[1], abs=1e-6), f"{what}: refused but the robot moved"


def test_random_goals_are_refused_with_a_reason_or_complete(tmp_path) -> None:
    import rclpy
    from geometry_msgs.msg import Pose2D

    from lab.app.commander import LabCommander, TaskResult
    from lab_interfaces.action import NavigateToPose, RunStation

    with lab(tmp_path, ["robots:=1", "speed:=2000", "record:=false"],
             keep={"safety", "sim", "navigator", "arm", "station"}, stations=("rack_storage", *STATIONS)):
        context = rclpy.Context()
        rclpy.init(context=context)
        cmd = LabCommander("fuzz", context=context)
        probe = Probe(cmd)
        try:
            spin_until(cmd, lambda: probe.truth is not None and probe.world, 60, what="the simulation's topics")
            _settled(cmd, probe)

            @SETTINGS
            @given(station=st.sampled_from(STATIONS), rack=WORDS, process=WORDS, formulations=FORMULATIONS)
            def station_goal(station, rack, process, formulations):
                goal = RunStation.Goal(rack_id=rack, process=process, formulations=formulations)
                task = cmd._send_goal(RunStation, f"/stations/{station}/run_station", goal)
                _check(cmd, probe, task, f"{station} {rack!r} {process!r} {len(formulations)} samples")

            @SETTINGS
            @given(operation=st.sampled_from(["pick", "place", "transfer", "move", "", "juggle"]),
                   source=WORDS, target=WORDS, object_id=WORDS)
            def arm_goal(operation, source, target, object_id):
                task = cmd.manipulate("robot1", operation, source, target, object_id)
                _check(cmd, probe, task, f"manipulate {operation} {source!r} -> {target!r}")

            @SETTINGS
            @given(station=WORDS, x=NUMBERS, y=NUMBERS, theta=NUMBERS)
            def nav_goal(station, x, y, theta):
                _check(cmd, probe, cmd.navigate_to_station("robot1", station), f"navigate to {station!r}")
                pose = Pose2D(x=x, y=y, theta=theta)
                task = cmd._send_goal(NavigateToPose, "/robot1/navigate_to_pose", NavigateToPose.Goal(pose=pose))
                _check(cmd, probe, task, f"navigate to ({x}, {y}, {theta})")

            station_goal()
            arm_goal()
            nav_goal()
            # every server still answers: a plain goal to each
            assert wait_result(cmd, cmd.manipulate("robot1", "move", "", "stow"))[0] is TaskResult.SUCCEEDED
            assert wait_result(cmd, cmd.navigate_to_station("robot1", "charger"))[0] is TaskResult.SUCCEEDED
            outcome, result = wait_result(cmd, cmd.run_station("photoreactor", "rack_1"))
            assert outcome is TaskResult.FAILED and "rack_1 is not in photoreactor" in result.message
            assert math.isfinite(probe.truth[0])
        finally:
            cmd.destroy_node()
            context.try_shutdown()
