"""A lab manager SIGKILLed mid-batch and a planner SIGKILLed mid-campaign, through real nodes over
DDS: the campaign ends with exactly its budget, nothing failed, lost or counted twice."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from conftest import ros_available
from helpers import Output, lab, measured, node_pid, run
from procs import process, wait_for

pytestmark = [pytest.mark.system, pytest.mark.slow,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]

SPEED = "1500"


def test_lab_manager_and_planner_killed_mid_campaign_lose_nothing(tmp_path: Path, commander) -> None:
    """The lab manager SIGKILLed while the photoreactor illuminates a rack: bringup restarts it, it takes
    the batch on again from its record (what each sample received, the station goal under way),
    the planner sends the batch again and gets its result; then the planner SIGKILLed and
    started again resumes the campaign. It ends with exactly its budget, nothing failed, nothing
    counted twice, and no result measured before a kill lost or changed."""
    from lab.app.commander import TaskResult
    from lab.ros.qos import LATCHED
    from lab_interfaces.msg import StationStatus

    db = tmp_path / "campaigns.db"
    planner_cmd = [sys.executable, "-m", "lab.nodes.planner", "--ros-args", "-p", "use_sim_time:=true",
                   "-p", f"database:={db}"]
    photoreactor: dict[str, int] = {}
    commander.create_subscription(StationStatus, "/stations/photoreactor/status",
                                  lambda m: photoreactor.update(state=m.state), LATCHED)
    with lab(tmp_path, ["robots:=1", f"speed:={SPEED}"], keep={"sim", "navigator", "arm", "station", "lab_manager"},
             overrides={"lab_manager": {"database": str(db)}}) as lab_out:
        with process(planner_cmd, cwd=tmp_path) as planner:
            Output(planner)
            task = commander.run_campaign("photocatalysis", budget=16, batch_size=8, seed=3)
            wait_for(lambda: commander.is_task_complete(task, wait=0.05) or
                     photoreactor.get("state") == StationStatus.BUSY, 240, period=0.01,
                     what="the photoreactor illuminating a rack")
            os.kill(node_pid(lab_out, "lab_manager"), signal.SIGKILL)
            try:
                wait_for(lambda: commander.is_task_complete(task, wait=0.05) or
                         (task.feedback is not None and task.feedback.experiments_done >= 8), 300, period=0.01,
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
            Output(planner)
            outcome, result, _ = run(commander, "photocatalysis", budget=16, batch=8, seed=3, resume=True,
                                     campaign_id=campaign_id)
        assert outcome is TaskResult.SUCCEEDED, result.message if result else ""
    rows = measured(db, campaign_id)
    reasons = sorted({r["failure_reason"] for r in rows if r["failure_reason"]})
    assert (result.experiments_done, result.experiments_failed) == (16, 0), (result.message, reasons)
    assert len(rows) == 16, "an experiment counted twice"
    kept = {(r["idx"], r["vals"]) for r in before if r["state"] == "done"}
    now = {(r["idx"], r["vals"]) for r in rows}
    assert kept <= now, "a result measured before the kill was lost or changed"
