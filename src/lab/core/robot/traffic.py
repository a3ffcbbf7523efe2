"""Traffic between the robots of one lab: which robot may drive where, decided in one place.

A robot about to drive reserves the floor its planned path sweeps; the reservation is granted
when every point of the path keeps `clearance` from every point of every other robot's
reserved path, and otherwise names the robot in the way. The robot hands its reservation back
when it stops (arrived, failed or cancelled). Paths are compared as discs of the footprint's
circumscribed diameter around points sampled every `step` along them: conservative (two
robots whose paths run side by side closer than that take turns), and with one decision maker
there is no race between two robots that ask at once.

Where each robot stands still is kept here too, as its navigator said when it last stopped: a
navigator plans around the others where they stand (lab.backends.navigation), and must plan
with this rather than with their odometry, which a fast simulation can leave a whole drive
behind (a robot that has just stopped is still seen where it was a wall tick ago). A robot
that reserves a path no longer stands anywhere until it stops again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lab.core.robot.world import ROBOT_FOOTPRINT, Pose2D

# m: two circumscribed discs apart plus, on each side, what puts a robot off its planned path:
# the follower's corner cutting (up to 0.1 m with its 0.4 m look-ahead), localisation drift
# (the simulation's 0.06 m and 3 deg: 0.09 m at a corner) and the sampling (0.05 m)
CLEARANCE = math.hypot(*ROBOT_FOOTPRINT) + 2 * (0.1 + 0.09 + 0.05)


def sample_path(path: Sequence[Pose2D], step: float = 0.1) -> np.ndarray:
    """Points (n x 2) along the polyline, at most `step` apart, both ends included."""
    if not path:
        return np.zeros((0, 2))
    points = [(path[0].x, path[0].y)]
    for a, b in zip(path, path[1:], strict=False):
        n = max(1, int(math.ceil(math.hypot(b.x - a.x, b.y - a.y) / step)))
        points += [(a.x + (b.x - a.x) * k / n, a.y + (b.y - a.y) * k / n) for k in range(1, n + 1)]
    return np.array(points, dtype=float)


def closest(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest distance between a point of a and a point of b (inf if either is empty)."""
    if not len(a) or not len(b):
        return math.inf
    d = a[:, None, :] - b[None, :, :]
    return float(np.sqrt((d * d).sum(axis=2).min()))


class TrafficTable:
    """Reserved paths by robot. Not thread-safe: one owner (the traffic node) calls it."""

    def __init__(self, clearance: float = CLEARANCE, step: float = 0.1) -> None:
        self.clearance, self.step = clearance, step
        self._held: dict[str, np.ndarray] = {}
        self._standing: dict[str, Pose2D] = {}

    def reserve(self, robot: str, path: Sequence[Pose2D]) -> str:
        """Grant `robot` the floor along `path` ('' ) or name the robot whose reservation is in
        the way (then nothing changes; a robot's earlier reservation is replaced when granted)."""
        points = sample_path(path, self.step)
        for other, held in sorted(self._held.items()):
            if other != robot and closest(points, held) < self.clearance:
                return other
        self._held[robot] = points
        self._standing.pop(robot, None)
        return ""

    def release(self, robot: str, standing: Pose2D | None = None) -> bool:
        """Hand back `robot`'s reservation; `standing`: where it now stands still."""
        if standing is not None:
            self._standing[robot] = standing
        return self._held.pop(robot, None) is not None

    def holders(self) -> list[str]:
        return sorted(self._held)

    def standing(self, but: str = "") -> dict[str, Pose2D]:
        """Where the robots (but `but`) stand still, as they last said."""
        return {r: p for r, p in sorted(self._standing.items()) if r != but}
