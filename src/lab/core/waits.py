"""Waiting (wall s) for a condition another thread makes true: the one polling loop of the lab."""

from __future__ import annotations

import time
from collections.abc import Callable

#: how long a waiting loop sleeps (wall s) between looks; the simulation's clock moves hundreds of
#: simulated seconds per wall second, so this is the resolution of waits on it
POLL = 0.004


def wait_for(predicate: Callable[[], bool], timeout: float, poll: float = POLL) -> bool:
    """Wait (wall s) until predicate() holds; False on timeout."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(poll)
    return True
