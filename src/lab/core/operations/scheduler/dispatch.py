"""Sending one order: through the start gate, with a limit that follows from what the order
should take, and the steps under way kept for the lab's status."""

from __future__ import annotations

import threading
from collections.abc import Callable

from lab.core.config.params import LabManagerParams
from lab.core.operations.scheduler.batch import Cancellable
from lab.core.operations.scheduler.mode import Mode
from lab.core.operations.scheduler.orders import Call, Lab, Order, Outcome, Process
from lab.core.operations.scheduler.view import WorldView
from lab.core.robot.world import Pose2D
from lab.core.stations.station import KindSpec, expected_seconds


class SimClockLimit:
    """A limit in simulated s counted from `start()` (the order accepted): `overdue()` is "" within
    it, else what was passed; never overdue when `seconds` <= 0 or before the start."""

    def __init__(self, now: Callable[[], float], seconds: float) -> None:
        self.now, self.seconds = now, seconds
        self._since: float | None = None

    def start(self) -> None:
        self._since = self.now()

    def overdue(self) -> str:
        if self._since is None or self.seconds <= 0:
            return ""
        now = self.now()
        if self._since <= 0.0:
            # no clock yet when the order was accepted (a lab manager just started reads 0, and
            # counting from there would find any process late): counted from the first reading
            self._since = now
            return ""
        return f"{self.seconds:.0f} simulated s" if now - self._since > self.seconds else ""


class Dispatcher:
    def __init__(self, params: LabManagerParams, lab: Lab, mode: Mode, view: WorldView,
                 kinds: dict[str, KindSpec], kind_of: dict[str, str], lab_diagonal: float) -> None:
        self.params, self.lab, self.mode, self.view = params, lab, mode, view
        self.kinds, self.kind_of, self.lab_diagonal = kinds, kind_of, lab_diagonal
        self._lock = threading.Lock()
        self._active: dict[str, str] = {}  # holder ('<batch key>/<robot or station>') -> what it does

    def active_steps(self, prefix: str = "") -> list[str]:
        with self._lock:
            return [v for k, v in self._active.items() if k.startswith(prefix)]

    # ------------------------------------------------------------------ limits
    def limit(self, expected: float) -> float:
        """An order's limit (simulated s) from what it should take."""
        return self.params.margin_factor * expected + self.params.margin_seconds

    def drive_limit(self, robot: str, to: Pose2D) -> float:
        here = self.view.pose(robot)
        length = here.distance_to(to) if here is not None else self.lab_diagonal
        return self.limit(length / self.params.nominal_speed) + self.params.traffic_wait

    def station_limit(self, station: str, process: str, samples: int) -> float:
        spec = self.kinds.get(self.kind_of[station])
        return self.limit(expected_seconds(spec, process, samples) if spec else 0.0)

    # ------------------------------------------------------------------ sending
    def call(self, order: Order, what: str, holder: str, run: Cancellable, limit: float, sim_limit: float = 0.0,
             cancel: Callable[[], bool] = lambda: False, accepted: Callable[[], None] | None = None,
             feedback: Callable[[str, float], None] | None = None) -> Outcome:
        """Send an order through the start gate (it waits while the lab is paused; Interrupted when
        the batch is cancelled meanwhile) and wait for its outcome, up to `limit` s, derived from
        simulated durations and counted in wall s: an upper bound whenever the simulation runs at
        1x or faster (not in simulated time: the embedded simulation's one clock runs on for every
        node waiting on it, so a robot's hand-offs cost simulated time while stations work). A
        station's process runs on the simulated clock (and holds it while computing): its order
        also ends past `sim_limit` simulated s (> 0), which comes first when the simulation runs
        faster than real time (a hung instrument is found in minutes, not hours, at 400x), while
        the wall limit still ends it when the clock stops. Past either the order is cancelled and
        the outcome says what was waited for."""
        try:
            clock = SimClockLimit(self.lab.now, sim_limit)
            with self.mode.starting(run) as started:
                def on_accepted() -> None:
                    started()
                    clock.start()
                    if accepted is not None:
                        accepted()

                with self._lock:
                    self._active[holder] = what
                return self.lab.send(order, Call(limit, f"{what} (what it should take, with margin)",
                                                 lambda: cancel() or self.mode.stopped(), on_accepted, clock.overdue,
                                                 feedback))
        finally:
            with self._lock:
                self._active.pop(holder, None)

    def follow(self, order: Process, limit: float, cancel: Callable[[], bool], waiting_for: str) -> Outcome:
        """The outcome of a process order sent before a restart, waited for as `call` waits for a
        process: up to `limit` wall s and `limit` simulated s, the latter counted from now (the
        process started earlier, so this is later than the first send's limit, never earlier). A
        station hung on a goal it accepted before the restart is found as it would have been."""
        clock = SimClockLimit(self.lab.now, limit)
        clock.start()
        return self.lab.follow(order, Call(limit, waiting_for, lambda: cancel() or self.mode.stopped(),
                                           lambda: None, clock.overdue))
