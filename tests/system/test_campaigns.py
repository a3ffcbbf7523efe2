"""The closed loop through real nodes over DDS, in the embedded simulation.

A small photocatalysis campaign and a small printing campaign run end to end (results in
the database and the MCAP recording); a planner killed with SIGKILL mid-campaign and
started again finishes the campaign with exactly its budget and no duplicate; bad goals
are refused with a reason and write nothing.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ros_available
from helpers import LAB, Output, lab, node_pid
from procs import children_of, process, wait_for

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]

SPEED = "1500"


@pytest.fixture
def commander():
    import rclpy

    from lab.app.commander import LabCommander

    context = rclpy.Context()
    rclpy.init(context=context)
    cmd = LabCommander("campaign_test", context=context)
    try:
        yield cmd
    finally:
        cmd.destroy_node()
        context.try_shutdown()


def measured(db: Path, campaign_id: str) -> list[dict]:
    """The campaign's experiments as the store holds them (one dict per row)."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("select * from experiments where campaign_id = ?", (campaign_id,))]


def run(cmd, name: str, budget: int, batch: int, seed: int = 1, timeout: float = 300.0, **kw):
    # the planner's action server may still be starting with the lab: the whole lab's start-up
    # took ~30 s on 2 cores (18 processes importing rclpy, numpy, scikit-learn), more under load
    task = cmd.run_campaign(name, budget=budget, batch_size=batch, seed=seed, server_timeout=120.0, **kw)
    deadline = time.monotonic() + timeout
    while not cmd.is_task_complete(task, wait=0.1):
        assert time.monotonic() < deadline, f"campaign {name} did not finish in {timeout} s"
    return cmd.get_result(task), task.result, task


def test_photocatalysis_and_printing_campaigns_end_to_end(tmp_path: Path, commander) -> None:
    from lab.app.commander import TaskResult

    with lab(tmp_path, ["robots:=1", f"speed:={SPEED}", "record:=true"]) as out:
        outcome, result, _ = run(commander, "photocatalysis", budget=16, batch=8)
        assert outcome is TaskResult.SUCCEEDED, (result.message if result else "", out.text())
        db = tmp_path / result.database if not Path(result.database).is_absolute() else Path(result.database)
        rows = measured(db, result.campaign_id)
        reasons = sorted({r["failure_reason"] for r in rows if r["failure_reason"]})
        assert (result.experiments_done, result.experiments_failed) == (16, 0), (result.message, reasons,
                                                                                   out.text(80))
        assert len(rows) == 16 and all(r["state"] == "done" for r in rows)
        assert sum(r["is_control"] for r in rows) == 4  # 2 controls per batch of 8
        assert result.best and result.best_measurements[0].values[0] > 0
        outcome, printed, _ = run(commander, "photopolymer", budget=8, batch=4)
        assert outcome is TaskResult.SUCCEEDED, (printed.message if printed else "", out.text())
        assert printed.experiments_done == 8 and printed.hypervolume > 0
        assert len(measured(db, printed.campaign_id)) == 8
        recording = result.recording
    assert recording and Path(recording if Path(recording).is_absolute() else tmp_path / recording).stat().st_size > 0
    from mcap.reader import make_reader

    recording = Path(recording) if Path(recording).is_absolute() else tmp_path / recording
    with open(recording, "rb") as f:
        topics = {channel.topic for channel in make_reader(f).get_summary().channels.values()}
    assert {"/lab_status", "/world_state", "/lab_markers", "/robot1/tf", "/robot1/tf_static",
            "/robot1/robot_description", "/lab_status_markers", "/campaign_markers"} <= topics, topics
    from lab.analysis.tf_history import messages

    shown = [m.markers[0].text for _, m in messages(recording, ["/campaign_markers"])]
    assert any(text.startswith(f"{result.campaign_id}: 16 experiments") for text in shown), shown[-5:]
    states = {m.text for _, msg in messages(recording, ["/lab_status_markers"]) for m in msg.markers}
    assert any(text.startswith("busy") for text in states), states
    _the_robot_is_where_its_tf_says_at_every_recorded_time(recording)
    _the_camera_is_recorded_compressed(recording)
    _the_report_draws_the_lab_from_the_recording(db, result.campaign_id, recording)


def _the_report_draws_the_lab_from_the_recording(db: Path, campaign_id: str, recording: Path) -> None:
    """`lab campaign report` finds the recording beside the database and draws the lab from above;
    the racks' time at the stations comes from the recorded world state."""
    from lab.analysis.tf_history import rack_time
    from lab.app.campaign_info import campaign_report
    from lab.core.campaign.store import CampaignStore

    assert recording.parent == db.parent
    assert campaign_report(db, campaign_id, db.parent / "report") == 0
    page = (db.parent / "report" / "index.html").read_text()
    assert "lab_map.png" in page and str(recording) in page
    assert (db.parent / "report" / "lab_map.png").stat().st_size > 10_000
    store = CampaignStore(db)
    intervals = store.intervals(campaign_id)
    store.close()
    start, end = min(i[1] for i in intervals), max(i[2] for i in intervals)
    spent = rack_time(recording, start, end)
    at = {owner for where in spent.values() for owner, seconds in where.items() if seconds > 0}
    assert {"photoreactor", "gas_chromatograph", "robot1"} <= at, spent
    assert all(sum(where.values()) <= end - start + 1e-6 for where in spent.values()), (end - start, spent)


def _the_camera_is_recorded_compressed(recording: Path) -> None:
    """The wrist camera at a reduced rate, JPEG: the marker panels the robot docked at."""
    import cv2
    import numpy as np

    from lab.analysis.tf_history import messages

    frames = [m for _, m in messages(recording, ["/robot1/wrist_camera/image/compressed"])]
    assert frames, "no compressed camera frames recorded"
    images = [cv2.imdecode(np.frombuffer(bytes(f.data), np.uint8), cv2.IMREAD_GRAYSCALE) for f in frames[:40]]
    assert all(image is not None and image.size > 10_000 for image in images)
    assert max(float(image.std()) for image in images) > 10  # a marker panel in some frame, not only blank ones


def _the_robot_is_where_its_tf_says_at_every_recorded_time(recording: Path) -> None:
    """The recording replays: at each recorded tf time the robot's pose reconstructed from the
    recorded tf is the pose its odometry gave at that time, and the arm's tool is placed (the
    static transforms from the base to the arm were recorded)."""
    from lab.analysis.tf_history import TfHistory, messages, stamp_seconds

    history = TfHistory.read(recording, "robot1")
    # odometry by stamp: the lockstep clock holds while nodes compute, so several messages may share
    # a stamp (the localisation estimate can move meanwhile, e.g. a docking refinement)
    odometry: dict[float, list[tuple[float, float]]] = {}
    for _, m in messages(recording, ["/robot1/odom"]):
        odometry.setdefault(stamp_seconds(m.header.stamp), []).append((m.pose.pose.position.x, m.pose.pose.position.y))
    times = history.edges["robot1/base_footprint"].times  # tf goes out with odometry, at a lower rate
    matched = [at for at in times if at in odometry]  # (the recorder may drop a message under load)
    assert len(times) > 100 and len(matched) >= 0.9 * len(times), (len(times), len(matched))
    moved, last = 0.0, None
    for at in sorted(set(matched)):
        base = history.pose("robot1/base_footprint", at)
        assert base is not None, f"no tf for the base at {at:.2f} s"
        assert min(math.dist(base[:2, 3], xy) for xy in odometry[at]) < 1e-6, (at, base[:2, 3], odometry[at])
        assert history.pose("robot1/tool0", at) is not None
        moved += math.dist(base[:2, 3], last) if last is not None else 0.0
        last = base[:2, 3]
    assert moved > 5.0  # the robot drove between stations: the check above saw it move


def test_bad_goals_are_refused_and_write_nothing(tmp_path: Path, commander) -> None:
    from lab.app.commander import TaskResult

    bad = tmp_path / "campaigns"
    bad.mkdir()
    (bad / "broken.yaml").write_text("name: broken\nvariables: [{name: x, kind: stepped, low: 1}]\n")
    from lab.paths import config_path

    (bad / "photocatalysis.yaml").write_text(config_path("campaigns", "photocatalysis.yaml").read_text())
    with lab(tmp_path, ["robots:=1", f"speed:={SPEED}"], keep={"planner"},
             overrides={"planner": {"campaigns_dir": str(bad)}}):
        for name, budget, batch, seed, words in (("no_such_campaign", 16, 8, 1, "unknown campaign"),
                                                 ("photocatalysis", 4, 8, 1, "below one batch"),
                                                 ("photocatalysis", 64, 17, 1, "does not fit one carrier"),
                                                 ("photocatalysis", 64, 16, -5, "seed must be 0 or more"),
                                                 ("broken", 16, 8, 1, "broken.yaml")):
            outcome, result, _ = run(commander, name, budget=budget, batch=batch, seed=seed, timeout=60)
            assert outcome is TaskResult.FAILED and words in result.message, result.message
    db = tmp_path / "runs" / "campaigns.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
            assert all(conn.execute(f"select count(*) from {t}").fetchone()[0] == 0 for t in tables)


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


def test_one_campaign_at_a_time_cancel_by_id_and_ctrl_c_cancels(tmp_path: Path, commander) -> None:
    """A second campaign is refused with the reason; `lab campaign cancel ID` ends the running one
    (resumable); Ctrl-C on `lab campaign run` cancels its campaign, says how to resume, exits 130.
    (The planner alone: its batches wait for a lab manager that is not there.)"""
    from lab.app.commander import TaskResult

    with lab(tmp_path, ["robots:=1", f"speed:={SPEED}"], keep={"planner"}) as lab_out:
        bringup = lab_out.proc
        first = commander.run_campaign("photocatalysis", budget=64, batch_size=16, seed=1)
        wait_for(lambda: commander.is_task_complete(first, wait=0.05) or
                 (first.feedback is not None and bool(first.feedback.campaign_id)), 60, what="the campaign's id")
        ident = first.feedback.campaign_id
        outcome, result, _ = run(commander, "photocatalysis", budget=64, batch=16, timeout=60)
        assert outcome is TaskResult.FAILED and f"campaign {ident} is running" in result.message, result.message
        wrong = subprocess.run([*LAB, "campaign", "cancel", "no-such-id"], capture_output=True, text=True,
                               cwd=tmp_path, timeout=60)
        assert wrong.returncode == 1 and f"not running here (running: {ident})" in wrong.stderr, wrong
        right = subprocess.run([*LAB, "campaign", "cancel", ident], capture_output=True, text=True,
                               cwd=tmp_path, timeout=60)
        assert right.returncode == 0 and f"cancelling {ident}" in right.stdout, right
        assert commander.wait(first, timeout=90) is TaskResult.FAILED
        assert "cancelled by the operator" in first.result.message, first.result.message
        assert f"lab campaign resume {ident}" in first.result.message

        with process([*LAB, "campaign", "run", "photocatalysis", "--budget", "64"], cwd=tmp_path) as cli:
            out = Output(cli)
            wait_for(lambda: "photocatalysis-" in out.text(), 60, what="the campaign's progress line")
            cli.send_signal(signal.SIGINT)
            code = cli.wait(timeout=120)
        assert code == 130, out.text()
        assert "resume it with `lab campaign resume photocatalysis-" in out.text(), out.text()
        assert "Traceback" not in out.text(), out.text()
        # the planner is free again: the next campaign is not refused
        again = commander.run_campaign("photocatalysis", budget=64, batch_size=16, seed=2)
        wait_for(lambda: commander.is_task_complete(again, wait=0.05) or
                 (again.feedback is not None and bool(again.feedback.campaign_id)), 60, what="a new campaign")
        assert not again.done.is_set(), again.result
        commander.cancel(again, timeout=60)

        # the planner SIGKILLed under `lab campaign run`: bringup restarts it, and the command
        # says what happened and how to go on instead of waiting for ever
        with process([*LAB, "campaign", "run", "photocatalysis", "--budget", "64"], cwd=tmp_path) as cli:
            out = Output(cli)
            wait_for(lambda: "photocatalysis-" in out.text(), 60, what="the campaign's progress line")
            planner = next(p for p in children_of(bringup.pid)
                           if "planner" in Path(f"/proc/{p}/cmdline").read_text(errors="replace"))
            os.kill(planner, signal.SIGKILL)
            code = cli.wait(timeout=90)
        assert code == 1, out.text()
        assert "the planner went away during the campaign" in out.text(), out.text()
        assert "lab campaign resume photocatalysis-" in out.text(), out.text()
        wait_for(lambda: "restarted /planner" in lab_out.text(), 30, what="bringup to restart the planner")
