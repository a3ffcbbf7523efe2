"""Station nodes over DDS, in the embedded simulation's clock: a process with its feedback and
simulated duration, refusals that change nothing, cancel, injected faults and recovery."""

from __future__ import annotations

import pytest
from conftest import ros_available
from helpers import lab, set_param

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]

SPEED = 1000.0


def vial(i: int, **amounts: float):
    from lab_interfaces.msg import Formulation

    return Formulation(sample_id=f"s{i}", specimen_kind="vial", components=list(amounts),
                       amounts=list(amounts.values()), units=["mL"] * len(amounts))


@pytest.fixture(scope="module")
def stations(tmp_path_factory):
    import rclpy

    from lab.app.commander import LabCommander

    tmp = tmp_path_factory.mktemp("stations")
    # racks are placed by hand here: the presence check is what the robot tests cover
    with lab(tmp, ["robots:=1", f"speed:={SPEED:g}", "record:=false"], keep={"sim", "station"},
             overrides={"station": {"check_presence": False, "fault_recovery": 300.0}},
             stations=("rack_storage", "liquid_dispenser", "photoreactor")) as out:
        context = rclpy.Context()
        rclpy.init(context=context)
        cmd = LabCommander("station_test", context=context)
        statuses: dict = {}
        from lab.ros.qos import LATCHED
        from lab_interfaces.msg import StationStatus

        for name in ("liquid_dispenser", "photoreactor"):
            cmd.create_subscription(StationStatus, f"/stations/{name}/status",
                                    lambda m, n=name: statuses.__setitem__(n, m), LATCHED)
        try:
            yield cmd, statuses, out
        finally:
            cmd.destroy_node()
            context.try_shutdown()


def _levels(cmd, statuses, name: str) -> dict[str, float]:
    from procs import wait_for

    wait_for(lambda: cmd.spin_for(0.05) or name in statuses, 30, period=0.0, what=f"{name} status")
    s = statuses[name]
    return dict(zip(s.stock_names, s.stock_levels, strict=True))


def test_dispensing_runs_its_steps_in_simulated_time_and_draws_stocks(stations) -> None:
    from lab.app.commander import TaskResult

    cmd, statuses, out = stations
    before = _levels(cmd, statuses, "liquid_dispenser")
    task = cmd.run_station("liquid_dispenser", "rack_1", [vial(0, **{"L-Cysteine-100gL": 1.0, "NaCl-3M": 2.0}),
                                                          vial(1, **{"L-Cysteine-100gL": 0.5})])
    steps = set()
    while not cmd.is_task_complete(task, wait=0.02):
        if task.feedback is not None:
            steps.add(task.feedback.step)
    assert cmd.get_result(task) is TaskResult.SUCCEEDED, (task.result.message, out.text(30))
    assert steps == {"dispense_liquids", "cap", "purge"}
    # config: 45 + 10 + 60 s per vial; the lockstep clock runs only for the steps' waits, so
    # however late a starved process reads its messages the duration is the configured one
    assert task.result.duration == pytest.approx(2 * (45 + 10 + 60), abs=0.01)
    dispensed = {m.sample_id: dict(zip(m.as_dispensed.components, m.as_dispensed.amounts, strict=True))
                 for m in task.result.measurements}
    assert dispensed["s0"]["NaCl-3M"] == pytest.approx(2.0, abs=0.05) and dispensed["s0"]["NaCl-3M"] != 2.0
    cmd.spin_for(0.5)
    after = _levels(cmd, statuses, "liquid_dispenser")
    assert after["NaCl-3M"] == pytest.approx(before["NaCl-3M"] - dispensed["s0"]["NaCl-3M"], abs=1e-6)


def test_out_of_bounds_goal_is_refused_and_changes_nothing(stations) -> None:
    from lab.app.commander import TaskResult

    cmd, statuses, _ = stations
    before = _levels(cmd, statuses, "liquid_dispenser")
    task = cmd.run_station("liquid_dispenser", "rack_1", [vial(0, **{"L-Cysteine-100gL": 3.0, "NaCl-3M": 3.0})])
    assert cmd.wait(task, 30) is TaskResult.FAILED
    assert "above the 5 the vial holds" in task.result.message
    cmd.spin_for(0.3)
    assert _levels(cmd, statuses, "liquid_dispenser") == before
    task = cmd.run_station("liquid_dispenser", "rack_1", [vial(0, **{"L-Cysteine-100gL": 1.0})], process="bake")
    assert cmd.wait(task, 30) is TaskResult.FAILED and "no process 'bake'" in task.result.message


def test_cancel_stops_the_process(stations) -> None:
    from lab.app.commander import TaskResult

    cmd, _, _ = stations
    task = cmd.run_station("photoreactor", "rack_2", [vial(0, **{"L-Cysteine-100gL": 1.0})])
    while task.feedback is None:
        cmd.spin_for(0.05)
    assert cmd.cancel(task) is TaskResult.CANCELED
    assert task.result.duration < 3600


def test_injected_fault_fails_the_run_and_the_station_recovers(stations) -> None:
    from procs import wait_for

    from lab.app.commander import TaskResult
    from lab_interfaces.msg import StationStatus

    cmd, statuses, _ = stations
    set_param(cmd, "/stations/photoreactor", "fail_next", 1)
    task = cmd.run_station("photoreactor", "rack_2", [vial(0, **{"L-Cysteine-100gL": 1.0})])
    assert cmd.wait(task, 60) is TaskResult.FAILED and "simulated instrument fault" in task.result.message
    wait_for(lambda: cmd.spin_for(0.05) or statuses["photoreactor"].state == StationStatus.FAULT, 10, period=0.0,
             what="fault status")
    # fault_recovery 300 simulated s: then idle again and runs succeed
    wait_for(lambda: cmd.spin_for(0.05) or statuses["photoreactor"].state == StationStatus.IDLE, 30, period=0.0,
             what="recovery")
    task = cmd.run_station("photoreactor", "rack_2", [vial(0, **{"L-Cysteine-100gL": 1.0})])
    assert cmd.wait(task, 60) is TaskResult.SUCCEEDED
    assert task.result.duration >= 3600 - 1.0


def test_a_station_killed_mid_process_comes_back_with_its_stocks_and_reports_what_it_interrupted(stations) -> None:
    """SIGKILL the liquid dispenser after it dispensed (purging): bringup restarts it; it has the
    stock levels it had, and its status reports the interrupted process under the goal's id
    until its next process, which runs."""
    import os
    import signal

    from helpers import node_pid
    from procs import wait_for

    from lab.app.commander import TaskResult

    cmd, statuses, out = stations
    start = _levels(cmd, statuses, "liquid_dispenser")
    # 16 vials: the purge lasts 16 min, ~1 s of wall time at this speed
    rack = [vial(i, **{"L-Cysteine-100gL": 0.25, "NaCl-3M": 0.25}) for i in range(16)]
    task = cmd.run_station("liquid_dispenser", "rack_1", rack)
    wait_for(lambda: cmd.spin_for(0.01) or task.done.is_set() or
             (task.feedback is not None and task.feedback.step == "purge"), 60, period=0.0,
             what="the dispenser purging")
    assert not task.done.is_set(), (task.result.message if task.result else "", out.text(30))
    levels = _levels(cmd, statuses, "liquid_dispenser")
    goal_id = bytes(task.goal_handle.goal_id.uuid).hex()
    old = node_pid(out, "liquid_dispenser")
    os.kill(old, signal.SIGKILL)

    def restarted() -> bool:  # a new process under the bringup (none for the supervisor's back-off)
        try:
            return node_pid(out, "liquid_dispenser") != old
        except StopIteration:
            return False

    # the new process first: a status heard before it is the old one's (one failed run read it
    # and found no dispenser process yet)
    wait_for(lambda: cmd.spin_for(0.05) or restarted(), 30, period=0.0, what="bringup to restart the dispenser")
    statuses.pop("liquid_dispenser", None)
    wait_for(lambda: cmd.spin_for(0.05) or bool(getattr(statuses.get("liquid_dispenser"), "interrupted", "")),
             30, period=0.0, what="the restarted dispenser's report of what it interrupted")
    status = statuses["liquid_dispenser"]
    assert status.interrupted_goal == goal_id, (status.interrupted, out.text(40))
    assert status.interrupted.startswith("dispense_cap_purge on rack_1 was interrupted by a restart of the station "
                                         "at purge"), status.interrupted
    assert "its 16 samples cannot be measured" in status.interrupted
    assert not status.interrupted_untouched  # purging: the samples were acted on
    assert _levels(cmd, statuses, "liquid_dispenser") == pytest.approx(levels, abs=1e-9)
    assert levels["NaCl-3M"] == pytest.approx(start["NaCl-3M"] - 16 * 0.25, abs=0.2)  # dispensed stays drawn

    # killed again before the instrument acted (an injected hang holds the process at its first
    # step, before it dispenses anything): the restarted station says the samples are untouched
    set_param(cmd, "/stations/liquid_dispenser", "hang_next", 1)
    task = cmd.run_station("liquid_dispenser", "rack_1", [vial(0, **{"L-Cysteine-100gL": 1.0})])
    wait_for(lambda: cmd.spin_for(0.01) or task.done.is_set() or task.feedback is not None, 60, period=0.0,
             what="the dispenser's process started")
    assert not task.done.is_set(), (task.result.message if task.result else "", out.text(30))
    goal_id = bytes(task.goal_handle.goal_id.uuid).hex()
    old = node_pid(out, "liquid_dispenser")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: cmd.spin_for(0.05) or restarted(), 30, period=0.0, what="bringup to restart the dispenser")
    statuses.pop("liquid_dispenser", None)
    wait_for(lambda: cmd.spin_for(0.05) or getattr(statuses.get("liquid_dispenser"), "interrupted_goal", "") == goal_id,
             30, period=0.0, what="the restarted dispenser's report of the hung process")
    status = statuses["liquid_dispenser"]
    assert status.interrupted_untouched, status.interrupted
    assert status.interrupted.endswith("before it acted on its 1 samples: they can run it again"), status.interrupted
    task = cmd.run_station("liquid_dispenser", "rack_1", [vial(0, **{"L-Cysteine-100gL": 1.0})])
    assert cmd.wait(task, 60) is TaskResult.SUCCEEDED, task.result.message if task.result else ""
    cmd.spin_for(0.3)
    assert statuses["liquid_dispenser"].interrupted == "" and statuses["liquid_dispenser"].interrupted_goal == ""
