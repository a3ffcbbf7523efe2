"""What a campaign optimises: an objective's name, direction and unit (the planner, the space,
the store's readers and the report share it; kept apart from the report so that the planner
does not import matplotlib)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    name: str
    maximize: bool = True
    unit: str = ""
