"""Traffic between the robots of one lab: which robot may drive where, decided in one place.

A robot about to drive reserves the floor its planned path sweeps; the reservation is granted
when every point of the path keeps `clearance` from every point of every other robot's
reserved path, and otherwise names the robot in the way. The robot hands its reservation back
when it stops (arrived, failed or cancelled). Paths are compared as discs of the footprint's
circumscribed diameter around points sampled every `step` along them: conservative (two
robots whose paths run side by side closer than that take turns), and with one decision maker
there is no race between two robots that ask at once.

Robots standing still are not in this table: a navigator plans around the other robots where
they stand (lab.backends.navigation), so a granted path never runs through a parked robot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lab.core.world import ROBOT_FOOTPRINT, Pose2D

CLEARANCE = math.hypot(*ROBOT_FOOTPRINT) + 0.1  # m: two circumscribed discs apart, and 5 cm each side


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

    def reserve(self, robot: str, path: Sequence[Pose2D]) -> str:
        """Grant `robot` the floor along `path` ('' ) or name the robot whose reservation is in
        the way (then nothing changes; a robot's earlier reservation is replaced when granted)."""
        points = sample_path(path, self.step)
        for other, held in sorted(self._held.items()):
            if other != robot and closest(points, held) < self.clearance:
                return other
        self._held[robot] = points
        return ""

    def release(self, robot: str) -> bool:
        return self._held.pop(robot, None) is not None

    def holders(self) -> list[str]:
        return sorted(self._held)
