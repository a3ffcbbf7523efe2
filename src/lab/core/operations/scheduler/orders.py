"""What the scheduler orders (drive, park, transfer, run a process), what it hears back, and the
`Lab` that carries the orders out: the lab manager node's ROS wiring, or a fake in the unit tests."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from lab.core.campaign.formulation import MeasurementData
from lab.core.errors import InvalidGoal
from lab.core.robot.world import Pose2D

Amounts = dict[str, tuple[float, str]]  # component -> (amount, unit)


@dataclass(frozen=True)
class Drive:
    robot: str
    station: str
    skip_refinement: bool = False  # no marker refinement at the dock (the charger)


@dataclass(frozen=True)
class Park:
    robot: str
    pose: Pose2D


@dataclass(frozen=True)
class Transfer:
    robot: str
    carrier: str
    source: str  # '<station or robot>/<slot>'
    target: str


@dataclass(frozen=True)
class Process:
    station: str
    carrier: str
    process: str                              # '' = the station's default
    samples: tuple[tuple[str, str, Amounts], ...]  # (sample id, specimen kind, amounts) each
    goal_id: bytes                            # chosen here, recorded before the order is sent


Order = Drive | Park | Transfer | Process


@dataclass
class SampleReport:
    """What a station says of one sample."""

    sample_id: str
    valid: bool
    failure_reason: str = ""
    dispensed: Amounts = field(default_factory=dict)
    measurement: MeasurementData | None = None  # None when the station measured nothing


@dataclass
class Outcome:
    """How an order ended."""

    succeeded: bool
    message: str = ""
    lost: bool = False      # the server went away with it (died, restarted): no result came
    unknown: bool = False   # followed after a restart: the server has no record of it
    reports: list[SampleReport] = field(default_factory=list)


@dataclass
class Call:
    """How an order is waited for: `limit` wall s (see Dispatcher.call), `cancel()` polled,
    `accepted()` called once the server has it, `overdue()` a second limit ("" within it, else
    what was passed), `feedback(step, fraction)` a station's progress."""

    limit: float
    waiting_for: str
    cancel: Callable[[], bool]
    accepted: Callable[[], None]
    overdue: Callable[[], str] = lambda: ""
    feedback: Callable[[str, float], None] | None = None


class Lab(Protocol):
    """What the scheduler drives: the node's ROS wiring, or a fake."""

    def now(self) -> float:
        """Simulated s (the node's clock)."""

    def sleep(self, seconds: float, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Let `seconds` simulated s pass, or less when `cancelled()` becomes true first."""

    def send(self, order: Order, call: Call) -> Outcome:
        """Carry out the order; its outcome, never an exception for a failure of the order."""

    def follow(self, order: Process, call: Call) -> Outcome:
        """The outcome of a process order sent before a restart (by its goal id), waited for as
        `call` says (its `accepted` is not called: the order was accepted before)."""

    def hold(self, robot: str) -> AbstractContextManager[Any]:
        """For the block, simulated time does not pass while this node hands `robot` from one
        action to the next (a lockstep clock: lab.core.robot.lockstep)."""


class Log(Protocol):
    def info(self, text: str) -> Any: ...

    def warning(self, text: str, **kwargs: Any) -> Any: ...

    def error(self, text: str, **kwargs: Any) -> Any: ...


@dataclass
class Progress:
    batch_id: str
    phase: str
    samples_done: int
    samples_total: int
    active_steps: list[str]
    elapsed: float  # simulated s


@dataclass
class Result:
    success: bool
    message: str
    duration: float  # simulated s


class RobotOffline(InvalidGoal):
    """A robot the network lost did not come back within `offline_wait`."""

    def __init__(self, robot: str, text: str) -> None:
        super().__init__(text)
        self.robot = robot
