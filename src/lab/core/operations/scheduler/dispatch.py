"""Sending one order: through the start gate, with a limit that follows from what the order
should take, and the steps under way kept for the lab's status."""

from __future__ import annotations

import threading
from collections.abc import Callable

from lab.core.config.params import LabManagerParams
from lab.core.operations.scheduler.batch import Cancellable
from lab.core.operations.scheduler.mode import Mode
from lab.core.operations.scheduler.orders import Call, Lab, Order, Outcome
from lab.core.operations.scheduler.view import WorldView
from lab.core.robot.world import Pose2D
from lab.core.stations.station import KindSpec, expected_seconds


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
            accepted_at: list[float] = []  # simulated time the order was accepted (the process starts)
            with self.mode.starting(run) as started:
                def on_accepted() -> None:
                    started()
                    accepted_at.append(self.lab.now())
                    if accepted is not None:
                        accepted()

                def overdue() -> str:
                    if not accepted_at or sim_limit <= 0:
                        return ""
                    now = self.lab.now()
                    if accepted_at[0] <= 0.0:
                        # no clock yet when the order was accepted (a lab manager just started reads
                        # 0, and counting from there would find any process late): from the first
                        accepted_at[0] = now
                        return ""
                    return f"{sim_limit:.0f} simulated s" if now - accepted_at[0] > sim_limit else ""

                with self._lock:
                    self._active[holder] = what
                return self.lab.send(order, Call(limit, f"{what} (what it should take, with margin)",
                                                 lambda: cancel() or self.mode.stopped(), on_accepted, overdue,
                                                 feedback))
        finally:
            with self._lock:
                self._active.pop(holder, None)
