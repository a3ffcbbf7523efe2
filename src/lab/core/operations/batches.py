"""Which batch a RunBatch goal asks for (no ROS): the lab manager answers a goal for a batch it
already has in flight with that batch's result instead of running the samples twice."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def same_batch(have_id: str, have_samples: Sequence[str], asked_id: str, asked_samples: Sequence[str]) -> bool:
    """Whether a goal (asked_id, asked_samples) asks for the batch in flight (have_id,
    have_samples): the same non-empty batch id, or, within one campaign (batch ids
    '<campaign>/<batch>'), the same sample ids (a resumed campaign re-sends its unfinished
    experiments under a new batch id). Sample ids are only unique within a campaign, so
    batches outside one match by id alone."""
    if asked_id and asked_id == have_id:
        return True
    campaign, sep, _ = asked_id.rpartition("/")
    have_campaign, have_sep, _ = have_id.rpartition("/")
    if not (sep and have_sep and campaign and campaign == have_campaign):
        return False
    return bool(asked_samples) and sorted(asked_samples) == sorted(have_samples)


# ------------------------------------------------------------------ where a step runs, and what a recorded goal became
HELD, ACQUIRE, AGAIN = "held", "acquire", "again"


def station_choice(candidates: Sequence[str], tried: Collection[str], current: str | None, held: str,
                   in_held_slot: bool) -> tuple[str, tuple[str, ...]]:
    """Where a workflow step runs on this attempt: (how, stations).

    - (HELD, (held,)): the first attempt of a batch whose carrier already sits in a station of
      the step's kind that it holds (a batch taken on again after a restart): no new reservation;
    - (ACQUIRE, stations): reserve one of these: every station of the kind on a first attempt,
      on a retry the ones not tried yet (a reroute);
    - (AGAIN, (current,)): a retry with no other station of the kind left: the same one again.
    `candidates`: the stations of the step's kind; `tried`: those that failed the step already."""
    others = tuple(c for c in candidates if c not in tried and c != current)
    if current is None and held in candidates and in_held_slot:
        return HELD, (held,)
    if current is None or others:
        return ACQUIRE, others or tuple(candidates)
    return AGAIN, (current,)


RERUN, SPOILED, NO_RECORD, ANSWERED = "rerun", "spoiled", "no record", "answered"


def recorded_goal_outcome(accepted: bool, unknown: bool, interrupted: str, untouched: bool = False) -> str:
    """What became of a station goal a lab manager recorded before it died, as its successor
    learns it: the station's answer to the goal's id is `unknown` (STATUS_UNKNOWN, no reason),
    `accepted` is whether the station had accepted it (recorded), and `interrupted` is what a
    restarted station reports it interrupted for that goal ("" when nothing).

    RERUN: the station never had the goal (the lab manager died before sending it), or says its
    restart interrupted it before it acted on the samples (`untouched`): the step runs again,
    the samples untouched. SPOILED: the station was restarted mid-process and says
    so: the samples fail with its report. NO_RECORD: accepted, and the station no longer knows
    it (restarted without a report, or the result expired): what the samples went through is
    unknown, they fail. ANSWERED: the station answered (a result, or a failure to merge)."""
    if unknown and not accepted:
        return RERUN
    if interrupted:
        return RERUN if untouched else SPOILED
    if unknown:
        return NO_RECORD
    return ANSWERED
