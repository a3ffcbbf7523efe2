"""A batch in flight and its samples, as the campaign database records them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from lab.core.campaign.formulation import CHEMISTRY, EQUIPMENT, MeasurementData
from lab.core.operations.scheduler.orders import Amounts, Progress, Result


class Cancellable(Protocol):
    """What every wait of a batch's work polls: whether the batch was cancelled."""

    @property
    def is_cancel_requested(self) -> bool: ...


class Watcher(Cancellable, Protocol):
    """A goal waiting for a batch (the node's goal handle)."""

    def publish_feedback(self, progress: Progress) -> None: ...


class NeverCancelled:
    """The view of a batch for the trip home: a cancelled batch still brings its carrier back."""

    is_cancel_requested = False


@dataclass
class Sample:
    sample_id: str
    specimen_kind: str
    requested: Amounts
    dispensed: Amounts = field(default_factory=dict)
    measurement: MeasurementData | None = None
    failure: str = ""
    chemistry: bool = False  # the failure is the measurement's verdict, not the equipment's

    @property
    def failure_kind(self) -> str:
        return "" if not self.failure else CHEMISTRY if self.chemistry else EQUIPMENT

    def amounts(self) -> Amounts:
        """What the next station gets: as dispensed so far, as requested otherwise."""
        return {**self.requested, **self.dispensed}

    def order(self) -> tuple[str, str, Amounts]:
        return self.sample_id, self.specimen_kind, self.amounts()

    @property
    def finished(self) -> bool:
        return self.measurement is not None or bool(self.failure)

    def state(self) -> dict[str, Any]:
        return {"id": self.sample_id, "kind": self.specimen_kind,
                "requested": [[c, a, u] for c, (a, u) in self.requested.items()],
                "dispensed": {c: list(v) for c, v in self.dispensed.items()},
                "measurement": self.measurement.to_state() if self.measurement is not None else None,
                "failure": self.failure, "chemistry": self.chemistry}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Sample:
        measurement = state.get("measurement")
        return cls(str(state["id"]), str(state["kind"]), {str(c): (float(a), str(u)) for c, a, u in state["requested"]},
                   {str(c): (float(a), str(u)) for c, (a, u) in state["dispensed"].items()},
                   MeasurementData.from_state(measurement) if measurement else None, str(state["failure"]),
                   bool(state.get("chemistry", False)))


class Run:
    """One batch in flight: what its record in the campaign database keeps (`state`), and the
    view of the goals that wait for it (cancel requested, feedback): the one that started it,
    or the one re-sent after a restart."""

    def __init__(self, key: str, batch_id: str, workflow: str, samples: list[Sample]) -> None:
        self.key, self.batch_id, self.workflow, self.samples = key, batch_id, workflow, samples
        self.carrier = self.home = self.location = self.held = ""
        self.step = 0                                   # index of the workflow step under way
        self.station_goal: tuple[str, str] | None = None  # (station, goal id hex) while it runs the step
        self.station_goal_accepted = False              # ... and whether the station had accepted it
        self.result: Result | None = None               # once finished
        self.done = threading.Event()
        self.watchers: list[Watcher] = []

    @property
    def is_cancel_requested(self) -> bool:
        return any(w.is_cancel_requested for w in list(self.watchers))

    def alive(self) -> list[Sample]:
        """The samples that have not failed."""
        return [s for s in self.samples if not s.failure]

    def publish_feedback(self, progress: Progress) -> None:
        for watcher in list(self.watchers):
            try:
                watcher.publish_feedback(progress)
            except Exception:  # a goal that has ended takes no feedback; the others still get it
                continue

    def state(self) -> dict[str, Any]:
        result = self.result
        return {"batch_id": self.batch_id, "workflow": self.workflow,
                "samples": [s.state() for s in self.samples],
                "carrier": self.carrier, "home": self.home, "location": self.location, "held": self.held,
                "step": self.step, "station_goal": list(self.station_goal) if self.station_goal else None,
                "station_goal_accepted": self.station_goal_accepted,
                "result": [result.success, result.message, result.duration] if result is not None else None}

    @classmethod
    def from_state(cls, key: str, state: dict[str, Any]) -> Run:
        run = cls(key, str(state["batch_id"]), str(state["workflow"]),
                  [Sample.from_state(s) for s in state["samples"]])
        run.carrier, run.home = str(state["carrier"]), str(state["home"])
        run.location, run.held, run.step = str(state["location"]), str(state["held"]), int(state["step"])
        goal = state.get("station_goal")
        run.station_goal = (str(goal[0]), str(goal[1])) if goal else None
        run.station_goal_accepted = bool(state.get("station_goal_accepted", False))
        result = state.get("result")
        run.result = Result(bool(result[0]), str(result[1]), float(result[2])) if result else None
        return run
