"""Batches a chemist approves (issue 34, item 5). A campaign whose file says `approval: true`
proposes each batch as usual, stores it as 'proposed' and runs it only once a supervisor has
approved it (the console, or `lab campaign approve ID`), who may drop experiments or change their
points. A change is checked against the campaign's space (bounds, sum constraints) and refused
with the reason, nothing written; an approved point is recorded as chosen by whoever changed it,
and the planner learns from what was measured, whoever chose it. A dropped experiment uses none
of the budget: the planner proposes another in a later batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.core.campaign.space import parse_campaign
from lab.core.campaign.store import CampaignStore, ExperimentRecord
from lab.core.errors import InvalidGoal


def awaiting(store: CampaignStore, campaign_id: str) -> list[ExperimentRecord]:
    """The experiments of the campaign's batch awaiting approval (none: [])."""
    proposed = [r for r in store.experiments(campaign_id) if r.state == "proposed"]
    return [r for r in proposed if r.batch_id == proposed[0].batch_id] if proposed else []


def approve(store: CampaignStore, campaign_id: str, by: str, drop: Sequence[int] = (),
            edits: Mapping[int, Mapping[str, Any]] | None = None, batch_id: str = "") -> str:
    """Approve the batch awaiting approval (`batch_id`, when given, must be it): `drop` its
    experiments with these indices, set these dimensions of these experiments (`edits`: index ->
    {dimension: value}). InvalidGoal with the reason, nothing changed, for anything that cannot be."""
    info = store.campaign_info(campaign_id)
    config = parse_campaign(info.config, f"campaign {campaign_id}")
    batch = awaiting(store, campaign_id)
    if not batch:
        raise InvalidGoal(f"campaign {campaign_id} has no batch awaiting approval")
    if batch_id and batch_id != batch[0].batch_id:
        raise InvalidGoal(f"batch {batch_id} is not the one awaiting approval ({batch[0].batch_id})")
    by_index = {r.index: r for r in batch}
    edits = dict(edits or {})
    strangers = sorted((set(drop) | set(edits)) - set(by_index))
    if strangers:
        raise InvalidGoal(f"experiment(s) {', '.join(map(str, strangers))} are not in batch {batch[0].batch_id} "
                          f"(its experiments: {', '.join(map(str, sorted(by_index)))})")
    points: dict[int, dict[str, float]] = {}
    for index, change in edits.items():
        if index in drop:
            raise InvalidGoal(f"experiment {index} is both dropped and changed")
        if by_index[index].is_control:
            raise InvalidGoal(f"experiment {index} is a control: its point is the campaign file's")
        try:
            merged = {**by_index[index].point, **{str(k): float(v) for k, v in change.items()}}
        except (TypeError, ValueError):
            raise InvalidGoal(f"experiment {index}: {dict(change)} are not numbers") from None
        try:
            points[index] = config.space.validate(merged)
        except InvalidGoal as exc:
            raise InvalidGoal(f"experiment {index}: {exc}") from None
    if store.approve_batch(campaign_id, batch[0].batch_id, by, points, list(drop)) == 0:
        raise InvalidGoal(f"batch {batch[0].batch_id} was decided meanwhile")
    kept = len(batch) - len(set(drop))
    return (f"batch {batch[0].batch_id} approved by {by}: {kept} experiment(s) to run"
            + (f", {len(set(drop))} dropped" if drop else "") + (f", {len(points)} changed" if points else ""))
