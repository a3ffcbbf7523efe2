"""When the embedded simulation sends what it knows: /clock and each robot's state topics.

Every node with use_sim_time wakes for each /clock message, and every subscriber of odometry
for each odometry message: with rclpy a wake-up is about a millisecond of building wait sets
whatever the callback does. Sent every tick (100 Hz), /clock and the robot's state took ten idle
stations and the lab manager most of a core at real time (issue 37, BENCHMARKS.md "The lab's
load at 1x"). So a message goes out when a reader may act on it, and otherwise at a modest rate.
No ROS here: lab.nodes.sim sends what these rules say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: the robot state topics that carry motion (tf follows them)
MOTION = ("base", "joints")


def clock_due(time: float, sent: float, wall: float, sent_at: float, *, before: float, moving_before: bool,
              moving: bool, landed: bool, lockstep: bool, rate: float) -> bool:
    """Whether /clock goes out this tick: `time` the lab's clock after the tick (`before` ahead of
    it), `sent` the time last sent at wall s `sent_at`. A free-running clock goes out every tick;
    a lockstep one at once when a reader may act on the exact time (the tick lands on a time some
    node waits for, brings a robot to rest, or the clock did not advance: it holds), else at
    `rate` wall Hz; a held clock is repeated once a wall second (late joiners)."""
    if time != sent and (not lockstep or landed or (moving_before and not moving) or time == before
                         or wall - sent_at >= 1.0 / rate):
        return True
    return wall - sent_at >= 1.0


@dataclass
class StateGate:
    """Which of a robot's state topics are due: each when its state changed since it last went
    out, or after `idle_due` wall s (the clock's advance is not a change). tf carries the base
    (with odometry) and the links (with the joint states), at the tf rate while they move."""

    idle_due: float
    sent: dict[str, dict[str, tuple[Any, float]]] = field(default_factory=dict)  # robot -> topic -> (state, wall)

    def due(self, robot: str, states: dict[str, Any], wall: float, with_tf: bool) -> tuple[set[str], set[str]]:
        """(the topics to send now, of MOTION those whose state changed); a topic in the first
        set counts as sent. tf's parts: 'tf_base', 'tf_links'."""
        sent = self.sent.setdefault(robot, {})
        moved = {key for key in MOTION if key not in sent or sent[key][0] != states[key]}
        due = {key for key, state in states.items()
               if key not in sent or sent[key][0] != state or wall - sent[key][1] >= self.idle_due}
        for key in due:
            sent[key] = (states[key], wall)
        # while it moves, tf at its own rate (RViz draws at 30 Hz); its idle repeats with the topic's
        due |= {f"tf_{part}" for key, part in zip(MOTION, ("base", "links"), strict=True)
                if key in due and (with_tf or key not in moved)}
        return due, moved

    def again(self, robot: str, key: str) -> None:
        """`key` goes out at the next `due` even if unchanged (not counted as a move): a node asked
        for the robot's state as it is now."""
        sent = self.sent.get(robot, {})
        if key in sent:
            sent[key] = (sent[key][0], -math.inf)
