"""The two backend interfaces a robot's nodes drive, and how a backend is chosen by name.

navigation: `embedded` (grid planner + path follower on the embedded simulation) or `nav2`
(nav2_simple_commander); manipulation: `embedded` (inverse kinematics from the URDF +
joint trajectories) or `moveit` (moveit_py). A full-stack backend imports its dependency in
its own module, so choosing it where that is not installed fails at start-up with
BackendUnavailable naming what to install, and nothing else needs it.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from lab.core.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    import numpy as np
    from rclpy.node import Node

    from lab.core.robot.world import Pose2D

#: feedback(phase, current pose (map), distance remaining (m), estimated time remaining (simulated s))
NavFeedback = Callable[[str, "Pose2D", float, float], None]
Cancelled = Callable[[], bool]


@dataclass(frozen=True)
class Grip:
    """A gripper action within a path: close (True) or open (False), the arm at rest where it is."""

    closed: bool


#: a tool pose (4x4 in base_link), the name of an SRDF configuration, or a gripper action
Waypoint: TypeAlias = "np.ndarray | str | Grip"


@dataclass(frozen=True)
class NavOutcome:
    success: bool
    message: str
    final_pose: Pose2D
    travelled: float  # m


@dataclass(frozen=True)
class MotionOutcome:
    success: bool
    message: str
    duration: float = 0.0  # simulated s


class NavigationBackend(ABC):
    """Drives one robot's base to a pose in the map frame."""

    def __init__(self, node: Node, robot: str, params: dict[str, Any]) -> None:
        self.node = node
        self.robot = robot
        self.params = params

    @abstractmethod
    def navigate(self, goal: Pose2D, feedback: NavFeedback, cancelled: Cancelled) -> NavOutcome:
        """Block until the base is at goal, failed (message says why) or cancelled (base stopped)."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds."""


class ManipulationBackend(ABC):
    """Moves one robot's arm and gripper."""

    def __init__(self, node: Node, robot: str, params: dict[str, Any]) -> None:
        self.node = node
        self.robot = robot
        self.params = params

    @abstractmethod
    def move_named(self, name: str, cancelled: Cancelled) -> MotionOutcome:
        """Move the arm to a named configuration of the SRDF's group 'arm'."""

    @abstractmethod
    def move_tool(self, target: np.ndarray, cancelled: Cancelled) -> MotionOutcome:
        """Move tool0 to `target`, a 4x4 pose in the robot's base_link frame."""

    @abstractmethod
    def set_gripper(self, closed: bool) -> MotionOutcome:
        """Close or open the gripper."""

    def joint_positions(self) -> np.ndarray | None:
        """The arm's joints now (the chain's order), where the backend knows them."""
        return None

    def move_through(self, waypoints: list[Waypoint], cancelled: Cancelled) -> MotionOutcome:
        """Move through `waypoints` in turn (tool poses as in move_tool, names as in move_named,
        Grip as set_gripper), coming to rest at each. This default makes one move per waypoint;
        a backend that can send the whole path, gripper included, as one trajectory does so."""
        duration = 0.0
        outcome = MotionOutcome(True, "no waypoints")
        for waypoint in waypoints:
            if isinstance(waypoint, Grip):
                outcome = self.set_gripper(waypoint.closed)
            elif isinstance(waypoint, str):
                outcome = self.move_named(waypoint, cancelled)
            else:
                outcome = self.move_tool(waypoint, cancelled)
            duration += outcome.duration
            if not outcome.success:
                return MotionOutcome(False, outcome.message, duration)
        return MotionOutcome(True, outcome.message, duration)

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds."""


_BACKENDS: dict[str, dict[str, str]] = {
    "navigation": {"embedded": "lab.backends.navigation:EmbeddedNavigation",
                   "nav2": "lab.backends.nav2:Nav2Backend"},
    "manipulation": {"embedded": "lab.backends.manipulation:EmbeddedManipulation",
                     "moveit": "lab.backends.moveit:MoveItBackend"},
    "instrument": {"simulated": "lab.backends.instruments:SimulatedInstrument",
                   "sila": "lab.instruments.backend:SilaInstrument"},
}


def backend_class(capability: str, name: str) -> type:
    """The class implementing `capability` ('navigation' | 'manipulation') named `name`.

    Raises ConfigError for an unknown name and BackendUnavailable when its dependency is
    not installed (the backend module raises it with the package to install).
    """
    choices = _BACKENDS[capability]
    if name not in choices:
        raise ConfigError(f"{capability} backend '{name}' is unknown (choose one of: {', '.join(choices)})")
    module_name, _, class_name = choices[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"{capability} backend '{name}' cannot be loaded: {exc}") from exc
    return getattr(module, class_name)
