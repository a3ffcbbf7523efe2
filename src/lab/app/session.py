"""A lab session for the command and the benchmarks: bring the lab up, talk to it, tear it down.

    with lab_session(specs, log_path, "lab_demo") as (lab, cmd):
        code, result = run_campaign_with_progress(cmd, "photocatalysis", 64, 16, 1)

`lab_session` owns the order that matters: every node process started (lab.bringup.processes), rclpy
initialised, a LabCommander made; on the way out, on every path (an exception, Ctrl-C), the
commander destroyed, rclpy shut down and every node process stopped.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.core.config.nodetable import NodeSpec


@contextmanager
def lab_session(specs: Sequence[NodeSpec], log_path: Path,
                node_name: str = "lab_commander") -> Iterator[tuple[Any, Any]]:
    """(Bringup, LabCommander) of a lab brought up from `specs`, the nodes' output to `log_path`."""
    import rclpy

    from lab.app.commander import LabCommander
    from lab.bringup.processes import Bringup

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log:
        lab = Bringup(list(specs), out=log, colour=False)
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C: KeyboardInterrupt, ours to handle
        cmd = LabCommander(node_name)
        try:
            lab.start()
            lab.supervise_in_background()
            yield lab, cmd
        finally:
            cmd.destroy_node()
            rclpy.try_shutdown()
            lab.stop()


class Pace:
    """Wall time left. The planner estimates what the steps still to run take in simulated s
    (lab.core.campaign.eta); the lab's clock runs at hundreds of times wall speed, so a client
    turns that into wall time at the speed it has seen the clock run (a planner's figure once told
    a user '4.2 h' with half a minute to go). Until the clock has been seen to run for `span` wall
    s, or while the planner has no figure, it says 'estimating'."""

    def __init__(self, span: float = 3.0) -> None:
        self.span = span
        self._first: tuple[float, float] | None = None  # (wall s, the campaign's simulated s) first seen
        self._last = 0.0  # the campaign's simulated s last seen

    def left(self, sim_time: float, sim_left: float) -> str:
        import math
        import time

        from lab.app.progress import format_duration

        now = time.monotonic()
        if self._first is None or sim_time < self._last:  # (a planner restarted counts from 0 again)
            self._first = (now, sim_time)
        self._last = sim_time
        began, sim_began = self._first
        if now - began < self.span or sim_time <= sim_began or not math.isfinite(sim_left):
            return "left: estimating"
        speed = (sim_time - sim_began) / (now - began)
        return (f"left ~{format_duration(sim_left / speed)} wall "
                f"({format_duration(sim_left)} simulated at {speed:.0f}x)")


#: wall s `lab campaign run` waits for a planner that went away during the campaign to be back:
#: bringup restarts a node within 1-4 s (more after repeated deaths: up to 30 s), the planner
#: starts in a few s (up to 13 s measured on a loaded 2-core machine) and DDS discovers it
PLANNER_BACK_WAIT = 90.0


def _planner_back(cmd, client, wait: float) -> bool:
    import time

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if client.server_is_ready():
            return True
        cmd.spin_for(0.2)
    return False


def run_campaign_with_progress(cmd, campaign: str, budget: int, batch: int, seed: int, resume: bool = False,
                               campaign_id: str = "") -> tuple[int, object]:
    """Send a run_campaign goal, show progress until it ends; Ctrl-C cancels it cleanly."""
    from lab.app.commander import TaskResult
    from lab.app.progress import ProgressLine, bar, format_duration

    task = cmd.run_campaign(campaign, budget=budget, batch_size=batch, seed=seed, resume=resume,
                            campaign_id=campaign_id)
    from lab.ros.actions import ServerInstance
    from lab_interfaces.action import RunCampaign

    client = cmd._client(RunCampaign, "/planner/run_campaign")
    planner = ServerInstance(client)
    line = ProgressLine()
    pace = Pace()
    known = campaign_id  # the campaign's id once a feedback has said it (a goal sent again starts without)
    resending = False

    def ident() -> str:
        nonlocal known
        fb = cmd.get_feedback(task)
        known = fb.campaign_id if fb is not None and fb.campaign_id else known
        return known

    try:
        while not cmd.is_task_complete(task, wait=0.2):
            if task.goal_handle is not None and planner.gone():
                line.close()
                following = ident()
                # the planner's process died: restarted, it takes the campaign up by itself, and a
                # resume goal follows it (or resumes it, where the planner does not take it up)
                if following and _planner_back(cmd, client, PLANNER_BACK_WAIT):
                    resending = True  # (a Ctrl-C meanwhile cancels the campaign by its id)
                    task = cmd.run_campaign(campaign, budget=budget, batch_size=batch, seed=seed, resume=True,
                                            campaign_id=following)
                    resending = False
                    planner = ServerInstance(client)
                    print(f"lab: the planner was restarted during the campaign; following {following} again",
                          file=sys.stderr)
                    continue
                print("lab: the planner went away during the campaign and did not come back within "
                      f"{PLANNER_BACK_WAIT:g} s; nothing measured is lost: `lab campaign resume "
                      f"{following or 'ID (lab campaign list)'}` continues it", file=sys.stderr)
                return 1, None
            fb = cmd.get_feedback(task)
            if fb is None:
                continue
            best = fb.best_summary or (f"best {fb.best_value:.3g}" if not math.isnan(fb.best_value) else "best -")
            line.update(f"{fb.campaign_id} {bar(fb.experiments_done, fb.budget)} running {fb.experiments_running} "
                        f"failed {fb.experiments_failed}"
                        + (f" made again {fb.experiments_made_again}" if fb.experiments_made_again else "")
                        + f" | {best} | sim {format_duration(fb.sim_time)} "
                        f"| {pace.left(fb.sim_time, fb.estimated_time_left)}")
    except KeyboardInterrupt:
        line.close()
        name = ident() or "ID (lab campaign list)"
        print("lab: cancelling the campaign (batches in flight are cancelled; Ctrl-C again leaves them) ...")
        if resending:  # the goal that follows the campaign may or may not have reached the planner
            ok, message = cmd.cancel_campaign(known)
            print(f"lab: {message}" if ok else f"lab: cancel: {message}")
        else:
            outcome = cmd.cancel(task, timeout=120.0)
            print(f"lab: campaign {outcome.name.lower()}; resume it with `lab campaign resume {name}`")
        return 130, task.result
    line.close()
    outcome = cmd.get_result(task)
    result = task.result
    if outcome is TaskResult.SUCCEEDED:
        print(f"lab: campaign {result.campaign_id} done: {result.experiments_done} experiments measured "
              f"({result.experiments_failed} failed"
              + (f", {result.experiments_made_again} made again after equipment failures or "
                 "emergency stops" if result.experiments_made_again else "")
              + f"); record {result.database}"
              + (f"; recording {result.recording}" if result.recording else ""))
        for formulation, measurement in zip(result.best, result.best_measurements, strict=False):
            units = list(formulation.units) + [""] * len(formulation.components)
            amounts = ", ".join(f"{c} {a:g} {u}".rstrip() for c, a, u in
                                zip(formulation.components, formulation.amounts, units, strict=False) if a)
            value_units = list(measurement.units) + [""] * len(measurement.objectives)
            values = ", ".join(f"{o} {v:.4g} {u}".rstrip() for o, v, u in
                               zip(measurement.objectives, measurement.values, value_units, strict=False))
            print(f"  best: {values} <- {amounts}")
        return 0, result
    message = getattr(result, "message", "") if result is not None else "goal rejected"
    # the planner aborts a goal whose campaign the operator cancelled (the client did not cancel it)
    how = "cancelled" if message.startswith("cancelled") else outcome.name.lower()
    print(f"lab: campaign {how}: {message}", file=sys.stderr)
    return 1, result
