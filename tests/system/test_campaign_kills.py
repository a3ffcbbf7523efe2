"""A lab manager SIGKILLed mid-batch and a planner SIGKILLed mid-campaign (started again, it
takes the campaign up by itself), through real nodes over DDS: the campaign ends with exactly
its budget, nothing failed, lost or counted twice; and a photoreactor SIGKILLed with its rack
inside: its samples are made again and none is lost."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from conftest import ros_available
from helpers import PHOTOCATALYSIS, Output, lab, measured, node_pid, run, set_param
from procs import process, wait_for

pytestmark = [pytest.mark.system, pytest.mark.slow,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]

SPEED = "3000"


@pytest.fixture(scope="module")
def kills_lab(tmp_path_factory):
    """One bring-up for the module without the planner (each test starts its own, to kill it or
    not): (folder, database, the bring-up's output)."""
    tmp = tmp_path_factory.mktemp("kills")
    db = tmp / "campaigns.db"
    with lab(tmp, ["robots:=1", f"speed:={SPEED}"], keep={"sim", "navigator", "arm", "station", "lab_manager"},
             overrides={"lab_manager": {"database": str(db)}}, stations=PHOTOCATALYSIS) as out:
        yield tmp, db, out


def _planner(db: Path) -> list[str]:
    return [sys.executable, "-m", "lab.nodes.planner", "--ros-args", "-p", "use_sim_time:=true",
            "-p", f"database:={db}"]


def test_lab_manager_and_planner_killed_mid_campaign_lose_nothing(kills_lab, commander) -> None:
    """The lab manager SIGKILLed while the photoreactor illuminates a rack: bringup restarts it, it takes
    the batch on again from its record (what each sample received, the station goal under way),
    the planner sends the batch again and gets its result; then the planner SIGKILLed and
    started again takes the campaign up by itself and finishes it. It ends with exactly its
    budget, nothing failed, nothing counted twice, and no result measured before a kill lost or
    changed."""
    from lab.app.commander import TaskResult
    from lab.ros.qos import LATCHED
    from lab_interfaces.msg import StationStatus

    tmp_path, db, lab_out = kills_lab
    planner_cmd = _planner(db)
    photoreactor: dict[str, int] = {}
    commander.create_subscription(StationStatus, "/stations/photoreactor/status",
                                  lambda m: photoreactor.update(state=m.state), LATCHED)
    with process(planner_cmd, cwd=tmp_path) as planner:
        Output(planner)
        task = commander.run_campaign("photocatalysis", budget=8, batch_size=4, seed=3)
        wait_for(lambda: commander.is_task_complete(task, wait=0.05) or
                 photoreactor.get("state") == StationStatus.BUSY, 240, period=0.01,
                 what="the photoreactor illuminating a rack")
        os.kill(node_pid(lab_out, "lab_manager"), signal.SIGKILL)
        try:
            wait_for(lambda: commander.is_task_complete(task, wait=0.05) or
                     (task.feedback is not None and task.feedback.experiments_done >= 4), 300, period=0.01,
                     what="the first batch measured after the lab manager's restart")
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{lab_out.text(300)}")
        assert "restarted /lab_manager" in lab_out.text(2000)
        assert "in flight when the lab manager stopped" in lab_out.text(2000), lab_out.text(100)
        assert "this goal gets its result" in lab_out.text(2000), lab_out.text(100)
        assert "photoreactor's result, asked for after the restart, merged" in lab_out.text(2000)
        campaign_id = task.feedback.campaign_id
        os.kill(planner.pid, signal.SIGKILL)
        planner.wait()
    before = measured(db, campaign_id)
    with process(planner_cmd, cwd=tmp_path) as planner:
        planner_out = Output(planner)
        # started again, the planner takes the campaign up by itself: no goal is sent until it ends
        try:
            wait_for(lambda: sum(r["state"] == "done" for r in measured(db, campaign_id)) == 8, 300, period=0.5,
                     what="the campaign finished by the restarted planner")
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{planner_out.text(60)}\n{lab_out.text(100)}")
        assert f"taking up campaign {campaign_id}" in planner_out.text(), planner_out.text(60)
        # a resume of it now (what `lab campaign run` sends when its goal was lost) gets its result
        outcome, result, _ = run(commander, "photocatalysis", budget=8, batch=4, seed=3, resume=True,
                                 campaign_id=campaign_id)
    assert outcome is TaskResult.SUCCEEDED, result.message if result else ""
    rows = measured(db, campaign_id)
    reasons = sorted({r["failure_reason"] for r in rows if r["failure_reason"]})
    assert (result.experiments_done, result.experiments_failed) == (8, 0), (result.message, reasons)
    assert len(rows) == 8, "an experiment counted twice"
    kept = {(r["idx"], r["vals"]) for r in before if r["state"] == "done"}
    now = {(r["idx"], r["vals"]) for r in rows}
    assert kept <= now, "a result measured before the kill was lost or changed"


def test_a_photoreactor_killed_with_its_rack_inside_costs_no_experiment(kills_lab, commander) -> None:
    """The photoreactor SIGKILLed while it illuminates the campaign's only batch: restarted, it
    reports the process interrupted; its samples are the equipment's failure, and the planner
    makes each again on a fresh sample. The campaign ends with its budget measured, none failed."""
    from lab.app.commander import TaskResult
    from lab.ros.qos import LATCHED
    from lab_interfaces.msg import StationStatus

    tmp_path, db, lab_out = kills_lab
    photoreactor: dict[str, int] = {}
    commander.create_subscription(StationStatus, "/stations/photoreactor/status",
                                  lambda m: photoreactor.update(state=m.state, progress=m.progress), LATCHED)
    with process(_planner(db), cwd=tmp_path) as planner:
        Output(planner)
        # the hour's illumination is 1.2 wall s at 3000x, and once (make test, 2026-12-04 15:32) the
        # campaign ended before the test saw it 20 % done, and the kill came after: at 300x it is 12 s
        set_param(commander, "/sim", "speed", 300.0)
        try:
            task = commander.run_campaign("photocatalysis", budget=4, batch_size=4, seed=4)
            # well into the illumination (a kill before the station's record of the process is saved
            # leaves samples it never touched: the lab manager runs the step again on them)
            wait_for(lambda: commander.is_task_complete(task, wait=0.05) or
                     (photoreactor.get("state") == StationStatus.BUSY and photoreactor.get("progress", 0.0) > 0.2),
                     240, period=0.01, what="the photoreactor illuminating a rack")
            assert not commander.is_task_complete(task, wait=0.0), "the campaign ended before the kill"
            os.kill(node_pid(lab_out, "photoreactor"), signal.SIGKILL)
        finally:
            set_param(commander, "/sim", "speed", float(SPEED))
        try:
            wait_for(lambda: commander.is_task_complete(task, wait=0.05), 300, period=0.05, what="the campaign's end")
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{lab_out.text(300)}")
        outcome, result = commander.get_result(task), task.result
        assert outcome is TaskResult.SUCCEEDED, (result.message if result else "", lab_out.text(100))
        assert "restarted /stations/photoreactor" in lab_out.text(5000)
    rows = measured(db, result.campaign_id)
    assert (result.experiments_done, result.experiments_failed, result.experiments_made_again) == (4, 0, 4), \
        (result.message, sorted({r["failure_reason"] for r in rows if r["failure_reason"]}))
    assert len(rows) == 4 and all(r["state"] == "done" and r["attempts"] == 2 for r in rows)
    assert all("interrupted by a restart of the station" in r["earlier"] for r in rows)
    assert len({r["sample_id"] for r in rows}) == 4 and all(r["sample_id"].endswith("-a2") for r in rows)
