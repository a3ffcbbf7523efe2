"""The lab's emergency stop as each node sees it: the latched /safety/state (lab_interfaces/
SafetyState) that the `safety` node publishes. Whatever moves something or runs a process holds
a `SafetyMonitor` and enforces the stop itself: it refuses new goals with `refusal()` and stops
running ones when `stopped` turns true, whoever sent them."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rclpy.node import Node

from lab.core.operations.safety import NO_CONTACT
from lab.ros.qos import LATCHED

TOPIC = "/safety/state"
#: the safety node's presence (lab.ros.presence): a mover that loses it stops (`contact_timeout`)
PRESENCE_TOPIC = "/safety/presence"
#: wall s `refusal()` waits for the first safety state: DDS discovery of the safety node by a
#: node just started (the state is latched: it comes as soon as the two have matched), which
#: takes seconds on a host starting a dozen nodes
FIRST_STATE_WAIT = 5.0


class SafetyMonitor:
    """The latest safety state (the latched one at start-up); `on_change(stopped, text)` is called
    from the executor on every change.

    `contact_timeout` > 0 (the movers: navigator, arm): the node also watches the safety node's
    presence (DDS liveliness, lab.ros.presence) and counts as stopped while it has lost it: a
    robot whose host is cut off from the safety node could not hear a stop, so it does not move
    until it hears the safety node again (then the latched state holds, stopped or not). The
    state itself is on its own topic, so a lease set wrong can cost the contact check (DDS then
    reports incompatible QoS) but never the stop messages.

    `until_heard` (the movers by default, and the stations): the node counts as stopped until
    it has heard the state once. A node just started may not have discovered the safety node
    yet, and the lab may be stopped (the state outlives the safety node's restarts): counted as
    released, it would take a goal sent just after the stop. `refusal()` waits up to
    `FIRST_STATE_WAIT` for the first state before it answers."""

    def __init__(self, node: Node, on_change: Callable[[bool, str], None] | None = None,
                 callback_group=None, contact_timeout: float = 0.0, until_heard: bool | None = None) -> None:
        from lab_interfaces.msg import SafetyState

        self._lock = threading.Lock()
        self._stopped = False
        self._text = ""
        self._contact = True
        self._heard = threading.Event()
        self._until_heard = contact_timeout > 0 if until_heard is None else until_heard
        self._on_change = on_change
        node.create_subscription(SafetyState, TOPIC, self._state, LATCHED, callback_group=callback_group)
        if contact_timeout > 0:
            from lab.ros.presence import PresenceWatch

            self._watch = PresenceWatch(node, {"safety": PRESENCE_TOPIC}, contact_timeout,
                                        lambda _member, present: self._presence(present),
                                        callback_group=callback_group)

    @property
    def contact_heard(self) -> bool:
        """Whether the safety node's presence has been heard (always, without the contact check):
        only then can losing it be noticed."""
        watch = getattr(self, "_watch", None)
        return watch is None or watch.heard("safety")

    def _state(self, msg) -> None:
        text = f"emergency stop by {msg.by or 'someone'}" + (f": {msg.reason}" if msg.reason else "")
        with self._lock:
            before = self._stopped_locked()
            self._stopped, self._text = bool(msg.stopped), text if msg.stopped else ""
            self._heard.set()
            now, why = self._stopped_locked(), self._reason_locked()
        if now != before and self._on_change is not None:
            self._on_change(now, why)

    def _presence(self, present: bool) -> None:
        with self._lock:
            before = self._stopped_locked()
            self._contact = present
            now, why = self._stopped_locked(), self._reason_locked()
        if now != before and self._on_change is not None:
            self._on_change(now, why)

    def _stopped_locked(self) -> bool:
        return self._stopped or not self._contact or (self._until_heard and not self._heard.is_set())

    def _reason_locked(self) -> str:
        if self._stopped:
            return self._text
        if not self._contact:
            return (f"{NO_CONTACT} (its host or this one cut off from the network, or it died): nothing "
                    "moves until it is heard again")
        if self._until_heard and not self._heard.is_set():
            return (f"{NO_CONTACT} yet (its state not heard since this node started, within "
                    f"{FIRST_STATE_WAIT:g} s): nothing moves or runs until it is heard")
        return ""

    @property
    def stopped(self) -> bool:
        with self._lock:
            return self._stopped_locked()

    def refusal(self) -> str:
        """'' when goals may run; else why not (who stopped the lab and why). Waits up to
        `FIRST_STATE_WAIT` for the first state (`until_heard`): call it from a goal's execution,
        not from a goal callback."""
        if self._until_heard:
            self._heard.wait(FIRST_STATE_WAIT)
        with self._lock:
            if self._stopped:
                return f"refused: {self._text} (release: lab estop --release)"
            why = self._reason_locked()
            return f"refused: {why}" if why else ""

    def reason(self) -> str:
        with self._lock:
            return self._reason_locked()
