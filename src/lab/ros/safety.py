"""The lab's emergency stop as each node sees it: the latched /safety/state (lab_interfaces/
SafetyState) that the `safety` node publishes. Whatever moves something or runs a process holds
a `SafetyMonitor` and enforces the stop itself: it refuses new goals with `refusal()` and stops
running ones when `stopped` turns true, whoever sent them."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rclpy.node import Node

from lab.ros.qos import LATCHED

TOPIC = "/safety/state"


class SafetyMonitor:
    """The latest safety state (the latched one at start-up); `on_change(stopped, text)` is called
    from the executor on every change."""

    def __init__(self, node: Node, on_change: Callable[[bool, str], None] | None = None,
                 callback_group=None) -> None:
        from lab_interfaces.msg import SafetyState

        self._lock = threading.Lock()
        self._stopped = False
        self._text = ""
        self._on_change = on_change
        node.create_subscription(SafetyState, TOPIC, self._state, LATCHED, callback_group=callback_group)

    def _state(self, msg) -> None:
        text = f"emergency stop by {msg.by or 'someone'}" + (f": {msg.reason}" if msg.reason else "")
        with self._lock:
            changed = msg.stopped != self._stopped
            self._stopped, self._text = bool(msg.stopped), text if msg.stopped else ""
        if changed and self._on_change is not None:
            self._on_change(bool(msg.stopped), text)

    @property
    def stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def refusal(self) -> str:
        """'' when goals may run; else why not (who stopped the lab and why)."""
        with self._lock:
            return f"refused: {self._text} (release: lab estop --release)" if self._stopped else ""

    def reason(self) -> str:
        with self._lock:
            return self._text
