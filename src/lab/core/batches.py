"""Which batch a RunBatch goal asks for (no ROS): the lab manager answers a goal for a batch it
already has in flight with that batch's result instead of running the samples twice."""

from __future__ import annotations

from collections.abc import Sequence


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
