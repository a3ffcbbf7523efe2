"""The emergency stop over DDS: the safety node, the simulation, a navigator, an arm and the
stations as processes. Whoever sent a goal, the nodes that move or run enforce the stop
themselves: running motion and processes stop, new goals are refused with who stopped the
lab and why, `lab estop --release` lifts it (no lab manager here: the stop needs none)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import ros_available
from helpers import Probe, lab, spin_for, spin_until

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]


@pytest.fixture(scope="module")
def safety_lab(tmp_path_factory):
    import rclpy

    from lab.app.commander import LabCommander

    tmp = tmp_path_factory.mktemp("safety")
    overrides = {"navigator": {"refine": False}, "station": {"check_presence": False}}
    with lab(tmp, ["robots:=1", "speed:=200"], keep={"safety", "sim", "navigator", "arm", "station"},
             overrides=overrides) as out:
        context = rclpy.Context()
        rclpy.init(context=context)
        cmd = LabCommander("safety_test", context=context)
        probe = Probe(cmd)
        try:
            spin_until(cmd, lambda: probe.truth is not None, 60, what="the robot's ground truth")
            yield cmd, probe, out, tmp
        finally:
            cmd.destroy_node()
            context.try_shutdown()


def _result(cmd, task, timeout=120.0):
    outcome = cmd.wait(task, timeout=timeout)
    return outcome, (task.result.message if task.result is not None else "")


def test_estop_stops_a_direct_navigation_goal_and_refuses_every_new_goal(safety_lab) -> None:
    from lab.app.cli import _set_sim_speed
    from lab.app.commander import TaskResult

    cmd, probe, out, _ = safety_lab
    _set_sim_speed(cmd, 2.0)  # slow enough that the drive is still going when the stop comes
    try:
        task = cmd.navigate_to_station("robot1", "gas_chromatograph")
        spin_until(cmd, lambda: task.feedback is not None and task.feedback.phase == "driving" and probe.speed > 0,
                   60, what="driving")
        ok, message = cmd.estop(reason="person in the aisle", by="test")
        assert ok, message
        outcome, why = _result(cmd, task)
        assert outcome is TaskResult.FAILED and "emergency stop by test: person in the aisle" in why, why
    finally:
        _set_sim_speed(cmd, 200.0)
    spin_for(cmd, 0.3)
    stopped_at = probe.truth
    spin_for(cmd, 0.5)
    assert probe.speed == 0.0 and probe.truth == pytest.approx(stopped_at, abs=1e-6)
    # nothing new moves or runs while stopped, whoever asks: each refusal says who and why
    for task in (cmd.navigate_to_station("robot1", "photoreactor"),
                 cmd.manipulate("robot1", "move", "", "inspect"),
                 cmd.run_station("photoreactor", "rack_1")):
        outcome, why = _result(cmd, task)
        assert outcome is TaskResult.FAILED and "refused: emergency stop by test" in why, f"{why}\n{out.text(60)}"
    spin_for(cmd, 0.3)
    assert probe.truth == pytest.approx(stopped_at, abs=1e-6)
    ok, message = cmd.estop(release=True, by="test")
    assert ok and "released" in message
    spin_for(cmd, 0.3)  # the release reaches every node (latched topic)
    outcome, why = _result(cmd, cmd.navigate_to_station("robot1", "photoreactor"))
    assert outcome is TaskResult.SUCCEEDED, (why, out.text(40))


def test_estop_ends_a_running_station_process_and_the_cli_releases_it(safety_lab) -> None:
    from lab.app.commander import TaskResult

    cmd, _, out, tmp = safety_lab
    task = cmd.run_station("photoreactor", "rack_2")  # 60 simulated minutes of illumination
    spin_until(cmd, lambda: task.feedback is not None and task.feedback.step == "illuminate", 60,
               what="the illumination to start")
    run = subprocess.run([sys.executable, "-m", "lab.app.cli", "estop", "--reason", "lamp check"], cwd=tmp,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "emergency stop by" in run.stdout, run.stdout + run.stderr
    outcome, why = _result(cmd, task)
    assert outcome is TaskResult.FAILED and why.startswith("stopped: emergency stop by") and "lamp check" in why
    assert task.result.duration < 3600.0
    released = subprocess.run([sys.executable, "-m", "lab.app.cli", "estop", "--release"], cwd=tmp,
                              capture_output=True, text=True, timeout=60)
    assert released.returncode == 0 and "released" in released.stdout, released.stdout + released.stderr
    started = time.monotonic()
    outcome, why = _result(cmd, cmd.run_station("sonicator", "rack_3"))  # 10 simulated minutes
    assert outcome is TaskResult.SUCCEEDED, (why, time.monotonic() - started, out.text(40))

