"""One campaign at a time; `lab campaign cancel ID` and Ctrl-C on `lab campaign run` end a
campaign (resumable); a planner killed under `lab campaign run` is restarted and followed again;
`lab campaign list` says who started a running campaign."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import ros_available
from helpers import LAB, Output, lab, run
from procs import children_of, process, wait_for

pytestmark = [pytest.mark.system, pytest.mark.slow,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]

SPEED = "1500"
#: with no lab manager each batch fails after the planner's wait for its server (15 s): a budget
#: that lasts (1024 / 16 batches x 15 s = 16 min) keeps each campaign running until the test ends
#: it, however slowly a loaded machine starts `lab campaign run` (with 64 the campaign once ended
#: on its own before the Ctrl-C, and the command exited 1, not 130)
BUDGET = 1024


def test_one_campaign_at_a_time_cancel_by_id_and_ctrl_c_cancels(tmp_path: Path, commander) -> None:
    """A second campaign is refused with the reason; `lab campaign cancel ID` ends the running one
    (resumable); Ctrl-C on `lab campaign run` cancels its campaign, says how to resume, exits 130.
    (The planner alone: its batches wait for a lab manager that is not there.)"""
    from lab.app.commander import TaskResult

    with lab(tmp_path, ["robots:=1", f"speed:={SPEED}"], keep={"planner"}) as lab_out:
        bringup = lab_out.proc
        # the planner starting as the suite starts, beside another worker's lab on 2 cores: more
        # than run_campaign's default 30 s for its action server (a clean clone at 68f3a2d gave up)
        first = commander.run_campaign("photocatalysis", budget=BUDGET, batch_size=16, seed=1, server_timeout=120.0)
        wait_for(lambda: commander.is_task_complete(first, wait=0.05) or
                 (first.feedback is not None and bool(first.feedback.campaign_id)), 150, what="the campaign's id")
        assert first.feedback is not None, (first.result.message if first.result else "no result", lab_out.text(40))
        ident = first.feedback.campaign_id
        # `lab campaign list` says who started it (the goal's requested_by: this test's user@host)
        from lab.app.commander import requester

        listed = subprocess.run([*LAB, "campaign", "list"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        row = next(r for r in listed.stdout.splitlines() if r.startswith(ident))
        assert row.endswith(f"running, started by {requester()}"), row
        outcome, result, _ = run(commander, "photocatalysis", budget=BUDGET, batch=16, timeout=60)
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
        # the audit trail has each: the second campaign refused, both cancels, the first's run (ended)
        audit = subprocess.run([*LAB, "audit"], capture_output=True, text=True, cwd=tmp_path, timeout=60).stdout
        lines = audit.splitlines()
        assert any("refused  run_campaign" in line and "is running on this lab" in line for line in lines), audit
        assert any("refused  cancel_campaign" in line and "no-such-id" in line for line in lines), audit
        assert any("ok       cancel_campaign" in line and ident in line for line in lines), audit
        assert any("refused  run_campaign" in line and f"by {requester()}" in line and "cancelled by the operator"
                   in line for line in lines), audit

        with process([*LAB, "campaign", "run", "photocatalysis", "--budget", str(BUDGET)], cwd=tmp_path) as cli:
            out = Output(cli)
            wait_for(lambda: "photocatalysis-" in out.text(), 60, what="the campaign's progress line")
            cli.send_signal(signal.SIGINT)
            try:
                # past the command's own 120 s wait for the planner to confirm the cancel: a clean-clone
                # run once timed out here at 120 s (cause not found; the output is shown if it recurs)
                code = cli.wait(timeout=200)
            except subprocess.TimeoutExpired:
                pytest.fail(f"Ctrl-C did not end `lab campaign run`:\n{out.text()}\n--- lab:\n{lab_out.text(60)}")
        assert code == 130, out.text()
        assert "resume it with `lab campaign resume photocatalysis-" in out.text(), out.text()
        assert "Traceback" not in out.text(), out.text()
        # the planner is free again: the next campaign is not refused
        again = commander.run_campaign("photocatalysis", budget=BUDGET, batch_size=16, seed=2)
        wait_for(lambda: commander.is_task_complete(again, wait=0.05) or
                 (again.feedback is not None and bool(again.feedback.campaign_id)), 60, what="a new campaign")
        assert not again.done.is_set(), again.result
        commander.cancel(again, timeout=60)

        # the planner SIGKILLed under `lab campaign run`: bringup restarts it, the new planner takes
        # the campaign up, and the command follows it (then Ctrl-C still cancels it)
        with process([*LAB, "campaign", "run", "photocatalysis", "--budget", str(BUDGET)], cwd=tmp_path) as cli:
            out = Output(cli)
            wait_for(lambda: "photocatalysis-" in out.text(), 60, what="the campaign's progress line")
            ident = next(w for w in out.text().split() if w.startswith("photocatalysis-"))
            planner = next(p for p in children_of(bringup.pid)
                           if "planner" in Path(f"/proc/{p}/cmdline").read_text(errors="replace"))
            os.kill(planner, signal.SIGKILL)
            wait_for(lambda: f"following {ident} again" in out.text(), 120,
                     what="the command following the campaign after the planner's restart")
            wait_for(lambda: "restarted /planner" in lab_out.text(), 30, what="bringup to restart the planner")
            cli.send_signal(signal.SIGINT)
            code = cli.wait(timeout=200)
        assert code == 130, f"{out.text()}\n--- lab:\n{lab_out.text(80)}"
        assert f"resume it with `lab campaign resume {ident}`" in out.text(), out.text()
        assert "Traceback" not in out.text(), out.text()

