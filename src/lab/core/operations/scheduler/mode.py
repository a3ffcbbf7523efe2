"""The lab's mode as the scheduler keeps it: running, paused, or emergency-stopped.

The robots and stations enforce the emergency stop themselves; the scheduler starts nothing
new while it is set (every order passes lab.core.operations.gate.StartGate), its orders end
(`stopped` is polled by every wait), and after a release the lab stays paused until resumed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lab.core.operations.gate import PAUSED, RUNNING, STOPPED, Interrupted, StartGate
from lab.core.operations.scheduler.batch import Cancellable
from lab.core.waits import wait_for

#: how a mover's or a station's result says the emergency stop ended it (lab.nodes.navigator,
#: lab.nodes.arm, lab.nodes.station)
STOPPED_BY_SAFETY = "stopped: "
#: wall s for this lab manager's own view of the safety state to show a stop such a result
#: reported: the safety node's latched state reaches both over DDS within milliseconds
SAFETY_CATCH_UP = 2.0

#: wall s `pause` waits for orders sent just before it to be answered (an order's acceptance is
#: one DDS round trip, ms; a goal is re-sent after 5 s; `lab pause` waits 10 s for the answer)
PAUSE_WAIT = 7.0


class Mode:
    def __init__(self) -> None:
        self.gate = StartGate()
        self._lock = threading.Lock()  # the emergency stop's transitions vs resume
        self.estop = ""  # why the lab is emergency-stopped, "" when it is not
        self.last_estop = ""  # why it was last emergency-stopped: a step's failure names it after the release
        self.stops = 0  # emergency stops seen: a step that failed while this changed was stopped

    def safety(self, stopped: bool, reason: str) -> None:
        """The emergency stop set (reason) or released."""
        with self._lock:
            if stopped:
                self.stops += 1
                self.last_estop = reason or "emergency stop"
            self.estop = self.last_estop if stopped else ""
            # a release leaves a stopped lab paused; an operator who resumed between the release
            # and this call has the last word
            if stopped or self.gate.mode == STOPPED:
                self.gate.set_mode(STOPPED if stopped else PAUSED)

    def pause(self) -> tuple[bool, str]:
        if self.stopped():
            return False, f"the lab is emergency-stopped ({self.estop or 'stop set'}): release it first"
        # returns once the orders being sent have been answered: after it nothing new starts
        settled = self.gate.set_mode(PAUSED, wait=PAUSE_WAIT)
        return True, "paused: running steps finish, nothing new starts" if settled else \
            (f"paused, but {self.gate.starting} goal(s) sent before the pause were still unanswered "
             f"after {PAUSE_WAIT:g} s: they may still start")

    def resume(self) -> tuple[bool, str]:
        with self._lock:
            if self.estop:
                return False, f"{self.estop}: resume does not release it; release first (lab estop --release)"
            previous = self.gate.mode
            self.gate.set_mode(RUNNING)
        return True, "resumed" if previous != RUNNING else "already running"

    def name(self, busy: bool) -> str:
        """'running', 'paused', 'estopped' or 'idle' (running, not `busy`)."""
        mode = {RUNNING: "running", PAUSED: "paused", STOPPED: "estopped"}[self.gate.mode]
        return "idle" if mode == "running" and not busy else mode

    def stopped(self) -> bool:
        return self.gate.mode == STOPPED or bool(self.estop)

    def heard_stop(self, message: str, since: int) -> bool:
        """Whether the emergency stop ended an action that ended with `message` and began when
        `stops` was `since`: the lab is stopped now, or was stopped while the action ran (its
        result can come after the release: the step was still stopped, not failed), or the result
        says so. A result that says the emergency stop ended it can arrive before this lab
        manager's own safety state (two topics, no order between them): a retry then would go to a
        stopped robot or station, be refused, and end the batch with that refusal instead of the
        stop. So for such a result the view is given up to SAFETY_CATCH_UP wall s to catch up.
        A station the lab manager's cancel (sent because of the stop) reached before the stop did
        says 'cancelled': the count of stops still tells."""
        if message.startswith(STOPPED_BY_SAFETY) and not self.stopped() and self.stops == since:
            wait_for(lambda: self.stopped() or self.stops != since, SAFETY_CATCH_UP)
        return self.stopped() or self.stops != since

    def why_stopped(self) -> str:
        return f"stopped: {self.last_estop or 'emergency stop'}"  # the stop's reason, set or released

    @contextmanager
    def starting(self, run: Cancellable) -> Iterator[Callable[[], None]]:
        """The start gate for one batch's step (StartGate.start): waits while the lab is paused or
        stopped; Interrupted('batch cancelled') when the batch is cancelled."""
        try:
            with self.gate.start(lambda: run.is_cancel_requested) as started:
                yield started
        except Interrupted:
            raise Interrupted("batch cancelled") from None

    def wait_to_start(self, run: Cancellable) -> None:
        """Block while paused or stopped; Interrupted when the batch is cancelled."""
        with self.starting(run):
            pass
