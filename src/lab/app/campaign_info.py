"""`lab campaign list | status | report`: what the campaign store records, for the operator (no ROS needed)."""

from __future__ import annotations

import sys
from pathlib import Path

from lab.analysis.report import ExperimentRow, Interval, write_report
from lab.app.progress import format_duration
from lab.core.campaign.closed_loop import CampaignRunner
from lab.core.campaign.store import CampaignInfo, CampaignStore
from lab.core.errors import ConfigError, LabError


def _open(db: Path) -> CampaignStore:
    if not db.is_file():
        raise LabError(f"no campaign database at {db}")
    return CampaignStore(db)


def list_campaigns(db: Path) -> int:
    try:
        store = _open(db)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    with store:
        campaigns = store.list_campaigns()
        if not campaigns:
            print(f"no campaigns in {db}")
        for info in campaigns:
            counts = store.count_states(info.id)
            # measured and failed apart: "32/32 done" once hid a campaign in which nothing was measured
            print(f"{info.id}  {info.workflow:15s} {counts.get('done', 0):4d} measured {counts.get('failed', 0):4d} "
                  f"failed of {info.budget:<4d} {info.status}{running_how(info)}")
    return 0


#: wall s after which a 'running' campaign whose planner has not said it runs it is shown as
#: left behind: the planner says so every 5 s (lab.nodes.planner.TOUCH_PERIOD)
SILENT_AFTER = 30.0


def running_how(info: CampaignInfo, now: float | None = None) -> str:
    """For a running campaign: who started it, and whether anyone follows it (a client that went
    away leaves it running on to its budget) or a planner still runs it at all."""
    import time

    if info.status != "running":
        return ""
    by = f", started by {info.started_by}" if info.started_by else ""
    since = (time.time() if now is None else now) - (info.active or info.created)
    if since > SILENT_AFTER:
        return (f"{by}; no planner has run it for {format_duration(since)}: `lab campaign resume {info.id}` "
                f"continues it, `lab campaign cancel {info.id}` ends it")
    if info.following == 0:
        return f"{by}; no client follows it (it runs on to its budget: `lab campaign cancel {info.id}` stops it)"
    return by


def cancel_left_running(db: Path, campaign_id: str, who: str) -> tuple[bool, str]:
    """`lab campaign cancel` when no planner answers: a campaign the record still calls running
    but no planner has run for SILENT_AFTER s is marked cancelled in the store (resumable), so that
    the next planner started does not take it up by itself (take_up_within); recorded in the audit
    trail like a cancel the planner carries out."""
    try:
        store = _open(db)
    except LabError as exc:
        return False, str(exc)
    with store:
        why = store.cancel_left(campaign_id, SILENT_AFTER)
        store.record_command(who, "lab campaign cancel (no planner up: the record)", "cancel_campaign",
                             {"campaign_id": campaign_id}, why or "cancelled in the record", not why)
    if why:
        return False, why
    return True, (f"no planner is up; campaign {campaign_id} marked cancelled in {db} "
                  f"(`lab campaign resume {campaign_id}` continues it)")


def campaign_status(db: Path, campaign_id: str) -> int:
    try:
        with _open(db) as store:
            runner = runner_of(store, campaign_id)
            p = runner.progress()
            info = store.campaign_info(campaign_id)
            # experiments of a campaign that is not running are not running: they run again on resume
            pending = ("" if not p.running else f", {p.running} running" if info.status == "running"
                       else f", {p.running} to run again on `lab campaign resume {campaign_id}`")
            again = f", {p.made_again} made again" if p.made_again else ""
            if p.awaiting:
                again += f", {p.awaiting} awaiting approval (`lab campaign approve {campaign_id}`)"
            print(f"{campaign_id}: {info.status}{running_how(info)}; {p.done} measured, {p.failed} failed"
                  f"{again}{pending}, of {p.budget}; {p.best_summary}")
            # every experiment made more than once: its earlier attempts and why each failed
            for r in runner.records():
                if r.earlier:
                    tries = "; ".join(r.earlier_attempts())
                    print(f"  experiment {r.index} ({r.state}, attempt {r.attempts}, {r.sample_id}): earlier {tries}")
            for point, values in runner.best()[:5]:
                amounts = ", ".join(f"{k} {v:g}" for k, v in point.items() if v)
                print("  " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()) + f" <- {amounts}")
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


def runner_of(store: CampaignStore, campaign_id: str) -> CampaignRunner:
    from lab.core.campaign.space import parse_campaign

    info = store.campaign_info(campaign_id)
    config = parse_campaign(info.config, f"campaign {campaign_id}")
    return CampaignRunner(store, campaign_id, config, info.budget, info.batch_size, info.seed)


def _recording_of(db: Path, start: float, end: float) -> Path | None:
    """The newest recording beside the database whose time span overlaps the campaign's."""
    from mcap.exceptions import McapError

    from lab.analysis.tf_history import covers

    for path in sorted(db.parent.glob("lab_*.mcap"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            if covers(path, start, end):
                return path
        except (OSError, McapError):  # a truncated or foreign file: not this campaign's
            continue
    return None


def _lab_map(db: Path, recording: Path | None, start: float, end: float, folder: Path) -> tuple[list, str]:
    """The top-down picture (images, and a fact saying where it came from or why there is none)."""
    from lab.analysis.tf_history import draw_lab_map
    from lab.core.robot.world import LabWorld
    from lab.paths import config_path, share_dir

    if recording is not None and not recording.is_file():
        raise ConfigError(f"--recording {recording}: no such file")
    recording = recording or _recording_of(db, start, end)
    if recording is None:
        return [], f"no recording beside {db} covers the campaign (record:=true records one)"
    world = LabWorld.load(share_dir() / "worlds" / "lab.sdf", config_path("stations.yaml"))
    draw_lab_map(recording, world, start, end, folder / "lab_map.png")
    return [("lab_map.png", "The lab from above: stations, the robots' paths, where each rack spent its time")], \
        str(recording)


def campaign_report(db: Path, campaign_id: str, out: Path | None = None, recording: Path | None = None) -> int:
    """Write the campaign's plots and index.html (default: <db folder>/reports/<id>/); with a
    recording of the lab (given, or found beside the database), a top-down picture of it."""
    try:
        with _open(db) as store:
            runner = runner_of(store, campaign_id)
            records = [r for r in runner.records() if r.state in ("done", "failed")]
            rows = [ExperimentRow(index=i, valid=r.state == "done", values=r.values, formulation=r.point,
                                  is_control=r.is_control, failure_reason=r.failure_reason, curves=r.curves,
                                  earlier=tuple(r.earlier_attempts()))
                    for i, r in enumerate(records)]
            intervals = [Interval(res, start, end, what) for res, start, end, what in store.intervals(campaign_id)]
            folder = out or db.parent / "reports" / campaign_id.replace("/", "_")
            extra: list = []
            if intervals:
                extra, facts_recording = _lab_map(db, recording, min(iv.start for iv in intervals),
                                                  max(iv.end for iv in intervals), folder)
                origin = min(iv.start for iv in intervals)
                intervals = [Interval(iv.resource, iv.start - origin, iv.end - origin, iv.what) for iv in intervals]
            p = runner.progress()
            facts = {"campaign": campaign_id, "workflow": runner.config.workflow,
                     "budget": str(runner.budget), "batch size": str(runner.batch_size), "result": p.best_summary}
            if intervals:
                facts["simulated time"] = f"{max(iv.end for iv in intervals) / 3600.0:.1f} h"
                facts["recording"] = facts_recording
            page = write_report(folder, f"Campaign {campaign_id}", runner.config.workflow,
                                runner.config.objectives, rows, intervals, facts=facts, extra=extra)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    print(f"lab: report {page}")
    return 0


def install_campaign_file(path: Path, folder: Path) -> str:
    """`lab campaign run --file PATH`: the operator's own campaign file, checked as the planner
    checks it and put in the planner's campaigns folder, so that the goal names it (a goal never
    carries a path: issue 33). Returns the campaign's name; LabError with the reason (nothing
    written) for a file that does not parse, a name that is not a name, a folder that cannot be
    written, or another file of that name already there."""
    import re
    import shutil

    from lab.core.campaign.space import load_campaign

    if not path.is_file():
        raise LabError(f"--file {path}: no such file")
    load_campaign(path)  # ConfigError (a LabError) with the reason
    name = path.stem
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise LabError(f"--file {path}: its name, {name!r}, is no campaign name (letters, digits, _ . -)")
    target = folder / f"{name}.yaml"
    if target.exists():
        if target.read_bytes() == path.read_bytes():
            return name
        raise LabError(f"--file {path}: the campaigns folder {folder} has another {target.name}; rename your file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    except OSError as exc:
        raise LabError(f"--file {path}: cannot put it in the planner's campaigns folder {folder} ({exc}); "
                       "set the planner's campaigns_dir to a folder you may write") from None
    return name
