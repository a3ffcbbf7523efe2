"""The closed loop through real nodes over DDS, in the embedded simulation: a small photocatalysis
campaign and a small printing campaign run end to end (results in the database and the MCAP
recording, the report drawn from it), every station driving its instrument over SiLA 2
(instruments:=sila: the emulators served by `lab instrument serve`, TLS; the in-process emulators
are what every other system test runs); bad goals are refused with a reason and write nothing.
(The kill and cancel scenarios have files of their own, so that pytest-xdist can run them
beside this one.)
"""

from __future__ import annotations

import math
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import ros_available
from helpers import LAB, lab, measured, run
from procs import children_of

pytestmark = [pytest.mark.system, pytest.mark.slow,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]

SPEED = "3000"


def test_photocatalysis_and_printing_campaigns_end_to_end(tmp_path: Path, commander) -> None:
    from lab.app.commander import TaskResult

    with lab(tmp_path, ["robots:=1", f"speed:={SPEED}", "record:=true", "instruments:=sila"]) as out:
        killed = _kill_the_photoreactors_server_mid_illumination(commander, out)
        outcome, result, _ = run(commander, "photocatalysis", budget=8, batch=8)
        assert outcome is TaskResult.SUCCEEDED, (result.message if result else "", out.text())
        db = tmp_path / result.database if not Path(result.database).is_absolute() else Path(result.database)
        rows = measured(db, result.campaign_id)
        reasons = sorted({r["failure_reason"] for r in rows if r["failure_reason"]})
        assert (result.experiments_done, result.experiments_failed) == (8, 0), (result.message, reasons,
                                                                                   out.text(80))
        assert len(rows) == 8 and all(r["state"] == "done" for r in rows)
        assert sum(r["is_control"] for r in rows) == 2  # 2 controls per batch of 8
        assert result.best and result.best_measurements[0].values[0] > 0
        outcome, printed, _ = run(commander, "photopolymer", budget=4, batch=4)
        assert outcome is TaskResult.SUCCEEDED, (printed.message if printed else "", out.text())
        assert printed.experiments_done == 4 and printed.hypervolume > 0
        assert len(measured(db, printed.campaign_id)) == 4
        recording = result.recording
        served = [line for line in out.lines if "over SiLA 2 on 127.0.0.1" in line]
        assert len(served) == 9 and sum("instrument connected" in line for line in out.lines) >= 9, served
        # the server SIGKILLed mid-illumination: a station fault with its reason, the server restarted
        # by the bringup, the station connected again, and no experiment lost (8 measured above)
        assert killed, "the photoreactor never illuminated"
        lost = [line for line in out.lines if "lost the instrument at 127.0.0.1" in line]
        assert lost and "during illuminate" in lost[0], out.text(80)
        assert any("restarted /instruments/photoreactor" in line for line in out.lines), out.text(80)
        as_dispensed = rows[0]["as_dispensed"]
        assert as_dispensed and as_dispensed != rows[0]["point"], "the dispensers' own figures, not the request"
    assert recording and Path(recording if Path(recording).is_absolute() else tmp_path / recording).stat().st_size > 0
    from mcap.reader import make_reader

    recording = Path(recording) if Path(recording).is_absolute() else tmp_path / recording
    with open(recording, "rb") as f:
        topics = {channel.topic for channel in make_reader(f).get_summary().channels.values()}
    assert {"/lab_status", "/world_state", "/lab_markers", "/robot1/tf", "/robot1/tf_static",
            "/robot1/robot_description", "/lab_status_markers", "/campaign_markers"} <= topics, topics
    from lab.analysis.tf_history import messages

    shown = [m.markers[0].text for _, m in messages(recording, ["/campaign_markers"])]
    assert any(text.startswith(f"{result.campaign_id}: 8 experiments") for text in shown), shown[-5:]
    states = {m.text for _, msg in messages(recording, ["/lab_status_markers"]) for m in msg.markers}
    assert any(text.startswith("busy") for text in states), states
    _the_robot_is_where_its_tf_says_at_every_recorded_time(recording)
    _the_camera_is_recorded_compressed(recording)
    _the_report_draws_the_lab_from_the_recording(db, result.campaign_id, recording)


def _kill_the_photoreactors_server_mid_illumination(commander, out) -> list[int]:
    """SIGKILL the photoreactor's SiLA server the first time its station reports the illuminate
    step (from the commander's executor, while the test waits on the campaign)."""
    import os
    import signal

    from lab.ros.qos import LATCHED
    from lab_interfaces.msg import StationStatus

    killed: list[int] = []

    def status(msg) -> None:
        if msg.current_step == "illuminate" and not killed:
            pid = next(p for p in children_of(out.proc.pid)
                       if {"__node:=photoreactor", "__ns:=/instruments"}
                       <= set(Path(f"/proc/{p}/cmdline").read_text(errors="replace").split("\0")))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    commander.create_subscription(StationStatus, "/stations/photoreactor/status", status, LATCHED)
    return killed


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
                                                 ("broken", 16, 8, 1, "broken.yaml"),
                                                 (str(bad / "photocatalysis.yaml"), 16, 8, 1, "is not such a name")):
            outcome, result, _ = run(commander, name, budget=budget, batch=batch, seed=seed, timeout=60)
            assert outcome is TaskResult.FAILED and words in result.message, result.message
        # the operator's own file (`--file`): checked, put in the planner's folder, run by its name
        # (here refused by the planner for its budget, so nothing runs)
        mine = tmp_path / "my_screen.yaml"
        mine.write_text(config_path("campaigns", "photocatalysis.yaml").read_text())
        cli = subprocess.run([*LAB, "campaign", "run", "--file", str(mine), "--budget", "4"], capture_output=True,
                             text=True, cwd=tmp_path, timeout=120)
        assert cli.returncode == 1 and f"is campaign 'my_screen' in {bad}" in cli.stdout, cli.stdout + cli.stderr
        assert "below one batch" in cli.stderr and (bad / "my_screen.yaml").read_bytes() == mine.read_bytes()
        broken = subprocess.run([*LAB, "campaign", "run", "--file", str(bad / "broken.yaml")], capture_output=True,
                                text=True, cwd=tmp_path, timeout=120)
        assert broken.returncode == 2 and "broken.yaml" in broken.stderr, broken.stderr
    # nothing written but the audit trail, which has each refusal as refused
    db = tmp_path / "runs" / "campaigns.db"
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'") if r[0] != "audit"]
        assert all(conn.execute(f"select count(*) from {t}").fetchone()[0] == 0 for t in tables)
        refused = conn.execute("select count(*) from audit where ok = 0 and command = 'run_campaign'").fetchone()[0]
        assert refused == 7 and conn.execute("select count(*) from audit where ok = 1").fetchone()[0] == 0
