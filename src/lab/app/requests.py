"""What an operator may ask of the lab, checked the same way wherever it is asked (the `lab`
command's arguments, the console's forms): a campaign's name, budget, batch size and seed.

The planner checks a goal again when it arrives (lab.core.campaign.space.campaign_path and the
campaign file's own rules); these checks answer the operator before anything is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.core.errors import InvalidGoal

#: RunCampaign's budget and batch_size are uint32 and its seed int32: one bound for all three
GOAL_LIMIT = 2**31
#: the least value of each of a campaign goal's numbers (batch 0: the campaign file's own)
LEAST = {"budget": 1, "batch": 0, "seed": 0}


def whole_number(value: Any, least: int, what: str = "value") -> int:
    """`value` (text or number) as a whole number in [least, 2^31); InvalidGoal saying why not."""
    if isinstance(value, bool):
        raise InvalidGoal(f"{what}: {value!r} is not a whole number")
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        number = None
    if number is None:
        raise InvalidGoal(f"{what}: '{value}' is not a whole number")
    if not least <= number < GOAL_LIMIT:
        raise InvalidGoal(f"{what}: {number} must be at least {least} (and below 2^31)")
    return number


def campaign_request(name: str, budget: Any, batch: Any, seed: Any, directory: Path | None = None) -> dict[str, Any]:
    """A campaign goal's fields, checked: the name names a campaign file of the planner's folder that
    parses, the numbers are what `lab campaign run` accepts, and the campaign can run them
    (lab.core.campaign.closed_loop.check_goal, the planner's own check; the carrier's capacity is
    left to the planner). InvalidGoal/ConfigError with the reason."""
    from lab.core.campaign.closed_loop import check_goal
    from lab.core.campaign.space import campaign_path, load_campaign

    numbers = {key: whole_number(value, LEAST[key], key) for key, value in
               (("budget", budget), ("batch", batch), ("seed", seed))}
    config = load_campaign(campaign_path(str(name), directory))
    check_goal(config, numbers["budget"], numbers["batch"], numbers["seed"])
    return {"name": str(name), "workflow": config.workflow, **numbers}
