"""Where a controller starts new work, and the operator's pause that is exact.

Every action goal the lab manager sends (a drive, an arm transfer, a station's process) is
started through `StartGate.start`: it waits while the lab is paused or stopped, and counts
the start as in progress until the goal has been sent and answered. `pause()` sets the mode
and then waits for the starts in progress to be answered, so when it returns nothing new
starts: a start that had passed the gate before the pause is already sent (and runs to its
end, as a pause lets running steps finish), and every later one waits at the gate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

RUNNING, PAUSED, STOPPED = "running", "paused", "stopped"


class Interrupted(Exception):
    """The work waiting at the gate was cancelled."""


class StartGate:
    def __init__(self, poll: float = 0.02) -> None:
        self._cond = threading.Condition()
        self._mode = RUNNING
        self._starting = 0
        self._poll = poll

    @property
    def mode(self) -> str:
        with self._cond:
            return self._mode

    @property
    def starting(self) -> int:
        """Starts past the gate whose goal is not answered yet."""
        with self._cond:
            return self._starting

    def set_mode(self, mode: str, wait: float = 0.0) -> bool:
        """Set RUNNING, PAUSED or STOPPED. Leaving RUNNING, wait up to `wait` s for the starts in
        progress to be answered; True when none is left (then nothing more starts)."""
        if mode not in (RUNNING, PAUSED, STOPPED):
            raise ValueError(f"unknown mode '{mode}'")
        with self._cond:
            self._mode = mode
            self._cond.notify_all()
            if mode == RUNNING:
                return True
            return self._cond.wait_for(lambda: self._starting == 0, timeout=wait)

    @contextmanager
    def start(self, cancelled: Callable[[], bool]) -> Iterator[Callable[[], None]]:
        """Wait until the lab runs (Interrupted when `cancelled()` first), then hold the start as
        in progress for the block, or until the `started` callable it yields is called (when
        the goal was accepted: the rest of the block is the goal running, not starting)."""
        with self._cond:
            while True:
                if cancelled():
                    raise Interrupted("cancelled while waiting for the lab to run")
                if self._mode == RUNNING:
                    break
                self._cond.wait(self._poll)
            self._starting += 1
        done = threading.Event()

        def started() -> None:
            with self._cond:
                if not done.is_set():
                    done.set()
                    self._starting -= 1
                    self._cond.notify_all()

        try:
            yield started
        finally:
            started()
