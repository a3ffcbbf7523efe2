"""Reservations of robots and stations, shared by concurrent batches (no ROS).

A batch reserves what it needs through `pool.reserved(...)`, a context manager that releases
on every path (AlabOS does the same for its devices), or with acquire/release where a
reservation outlives one block (a station holds a rack until a robot takes it out).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


class Unavailable(TimeoutError):
    """Nothing suitable became free in time, or the wait was cancelled."""


class ResourcePool:
    def __init__(self, names: Sequence[str]) -> None:
        self._names = list(names)
        self._holder: dict[str, str] = {}
        self._cond = threading.Condition()
        self._wanted: dict[str, int] = {}  # resource -> reservations waiting that would take it

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def add(self, names: Sequence[str]) -> None:
        """More resources (a carrier the world state shows for the first time); reservations stay."""
        with self._cond:
            self._names += [n for n in names if n not in self._names]
            self._cond.notify_all()

    def holder(self, name: str) -> str:
        with self._cond:
            return self._holder.get(name, "")

    def held(self) -> dict[str, str]:
        with self._cond:
            return dict(self._holder)

    def acquire(self, candidates: Sequence[str], holder: str, usable: Callable[[str], bool] = lambda _: True,
                cancelled: Callable[[], bool] = lambda: False, timeout: float = 3600.0,
                prefer: Callable[[str], float] | None = None, waiting: Callable[[str], None] | None = None,
                report_every: float = 60.0) -> str:
        """Reserve one free, usable candidate for `holder`; waits (wall s) up to timeout. While it
        waits, `waiting(text)` is told every `report_every` s what it waits for and why."""
        unknown = [c for c in candidates if c not in self._names]
        if unknown:
            raise KeyError(f"unknown resources {unknown}")
        if not candidates:
            raise Unavailable("no candidates")
        deadline = time.monotonic() + timeout
        report = time.monotonic() + report_every
        with self._cond:
            for c in candidates:
                self._wanted[c] = self._wanted.get(c, 0) + 1
            try:
                return self._acquire(candidates, holder, usable, cancelled, deadline, prefer, waiting, report,
                                     report_every)
            finally:
                for c in candidates:
                    self._wanted[c] -= 1

    def wanted(self, name: str) -> bool:
        """Whether a reservation is waiting that could take `name` (a robot topping up its battery
        leaves the charger for it)."""
        with self._cond:
            return self._wanted.get(name, 0) > 0

    def _acquire(self, candidates: Sequence[str], holder: str, usable: Callable[[str], bool],
                 cancelled: Callable[[], bool], deadline: float, prefer: Callable[[str], float] | None,
                 waiting: Callable[[str], None] | None, report: float, report_every: float) -> str:
        """acquire's wait, under the condition's lock."""
        while True:
            free = [c for c in candidates if c not in self._holder and usable(c)]
            if free:
                choice = min(free, key=prefer) if prefer else free[0]
                self._holder[choice] = holder
                return choice
            if cancelled():
                raise Unavailable("cancelled while waiting for " + " or ".join(candidates))
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable("none of " + ", ".join(candidates) + " became free")
            if waiting is not None and time.monotonic() >= report:
                report = time.monotonic() + report_every
                waiting("waits for " + " or ".join(candidates) + ": " + ", ".join(
                    f"{c} held by {self._holder[c]}" if c in self._holder else f"{c} not usable now"
                    for c in candidates))
            self._cond.wait(min(left, 0.05))

    def release(self, name: str, holder: str) -> None:
        with self._cond:
            if self._holder.get(name) == holder:
                del self._holder[name]
            self._cond.notify_all()

    @contextmanager
    def reserved(self, candidates: Sequence[str], holder: str, **options: Any) -> Iterator[str]:
        name = self.acquire(candidates, holder, **options)
        try:
            yield name
        finally:
            self.release(name, holder)
