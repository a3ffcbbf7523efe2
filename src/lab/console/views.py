"""What the console shows of the campaign store: the campaigns, one campaign's experiments and
best-so-far curve (against the real robot's where there is one), and its report."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab.core.errors import LabError


def campaign_list(db: Path) -> list[dict[str, Any]]:
    from lab.app.campaign_info import running_how
    from lab.core.campaign.store import CampaignStore

    if not db.is_file():
        return []
    out = []
    with CampaignStore.open(db) as store:
        for info in reversed(store.list_campaigns()):
            counts = store.count_states(info.id)
            out.append({"id": info.id, "name": info.name, "workflow": info.workflow, "budget": info.budget,
                        "batch_size": info.batch_size, "seed": info.seed, "status": info.status,
                        "created": info.created, "started_by": info.started_by,
                        "measured": counts.get("done", 0), "failed": counts.get("failed", 0),
                        "running": counts.get("running", 0),
                        "note": running_how(replace(info, started_by=""), time.time()).lstrip(", ;")})
    return out


def campaign_detail(db: Path, campaign_id: str) -> dict[str, Any]:
    """The campaign's facts, its experiments in the order proposed, and for a single objective the
    best value after each finished experiment (and the real robot's, for photocatalysis)."""
    from lab.analysis.report import BURGER2020_BEST_SO_FAR
    from lab.app.campaign_info import runner_of
    from lab.core.campaign.store import CampaignStore

    if not db.is_file():
        raise LabError(f"no campaign database at {db}")
    with CampaignStore.open(db) as store:
        info = store.campaign_info(campaign_id)
        runner = runner_of(store, campaign_id)
        progress = runner.progress()
        records = runner.records()
    objectives = [{"name": o.name, "unit": o.unit, "maximize": o.maximize} for o in runner.config.objectives]
    rows = [{"index": r.index, "batch": r.batch_id, "sample": r.sample_id, "state": r.state, "control": r.is_control,
             "point": r.point, "values": {k: _num(v) for k, v in r.values.items()}, "attempts": r.attempts,
             "failure": r.failure_reason, "chosen_by": r.chosen_by} for r in records]
    best: list[float | None] = []
    if len(objectives) == 1:
        name, sign = str(objectives[0]["name"]), 1.0 if objectives[0]["maximize"] else -1.0
        top = -math.inf
        for r in (r for r in records if r.state in ("done", "failed")):
            value = r.values.get(name) if r.state == "done" else None
            if value is not None and math.isfinite(value):
                top = max(top, sign * value)
            best.append(None if top == -math.inf else sign * top)
    reference = ([{"n": n, "best": v} for n, v in BURGER2020_BEST_SO_FAR]
                 if runner.config.workflow == "photocatalysis" else [])
    space = runner.config.space
    waiting = [{"index": r.index, "batch": r.batch_id, "control": r.is_control, "point": r.point}
               for r in records if r.state == "proposed"]
    return {"awaiting": waiting, "approval": runner.config.approval,
            "dimensions": [{"name": d.name, "low": d.low, "high": d.high, "unit": d.unit} for d in space.dimensions],
            "constraints": [c.describe() for c in space.constraints],
            "id": info.id, "name": info.name, "workflow": info.workflow, "status": info.status,
            "budget": info.budget, "batch_size": info.batch_size, "seed": info.seed, "started_by": info.started_by,
            "created": info.created, "measured": progress.done, "failed": progress.failed,
            "running": progress.running, "summary": progress.best_summary, "objectives": objectives,
            "experiments": rows, "best_so_far": best, "reference": reference,
            "reference_label": "real robot, Burger et al. 2020 (best so far)" if reference else ""}


def report_file(db: Path, reports: Path, campaign_id: str, name: str) -> Path:
    """A file of the campaign's report (index.html and its plots), written on first asking and
    again when the campaign has moved on since."""
    import re

    from lab.app.campaign_info import campaign_report
    from lab.core.campaign.store import CampaignStore

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", campaign_id) or not re.fullmatch(r"[A-Za-z0-9_-]+\.(html|png|svg)", name):
        raise LabError("no such report file")
    with CampaignStore.open(db) as store:
        store.campaign_info(campaign_id)  # LabError for an unknown campaign
        finished = store.count_finished(campaign_id)
    folder = reports / campaign_id
    stamp = folder / ".finished"
    fresh = (folder / "index.html").is_file() and stamp.is_file() and stamp.read_text() == str(finished)
    if not fresh:
        if campaign_report(db, campaign_id, out=folder) != 0:
            raise LabError(f"the report of {campaign_id} could not be written (the console's log says why)")
        stamp.write_text(str(finished))
    path = folder / name
    if not path.is_file():
        raise LabError(f"no {name} in the report of {campaign_id}")
    return path


def _num(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None
