"""Embedded manipulation: inverse kinematics from the URDF and joint trajectories.

Targets are solved with lab.core.robot.kinematics on the robot's URDF chain (base_link -> tool0),
turned into a joint-limit-respecting trajectory and sent to the arm's trajectory controller
topic (`arm_controller/joint_trajectory`, what a ros2_control JointTrajectoryController
takes); a path through several waypoints (approach, grasp height, ...) is one trajectory
that comes to rest at each. The move is done when the simulated clock has passed its
duration and the joint states agree with the last point.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lab.backends.base import Cancelled, ManipulationBackend, MotionOutcome, Waypoint
from lab.core.robot.kinematics import Chain, Unreachable, waypoint_trajectory
from lab.ros.clock import CLOCK_SLACK, POLL, SimDeadline, sim_now, wait_for, wait_sim

#: wall s an arm order waits for the arm's first joint states (discovery of the simulation's or
#: the controller's publisher after a start)
JOINT_STATES_WAIT = 10.0

GRIPPER_TIME = 1.0  # simulated s to open or close the gripper (assumption)


class EmbeddedManipulation(ManipulationBackend):
    def __init__(self, node: Node, robot: str, params: dict[str, Any]) -> None:
        super().__init__(node, robot, params)
        self.chain: Chain = params["chain"]
        self.named: dict[str, dict[str, float]] = params["named_poses"]
        self.speed_scale = float(params.get("speed_scale", 0.5))
        self._lock = threading.Lock()
        self._joints: dict[str, float] = {}
        self.gripper_closed = False
        self.pub = node.create_publisher(JointTrajectory, "arm_controller/joint_trajectory", 10)
        node.create_subscription(JointState, "joint_states", self._joint_states, 10)

    def _joint_states(self, msg: JointState) -> None:
        with self._lock:
            for name, position in zip(msg.name, msg.position, strict=False):
                self._joints[name.rsplit("/", 1)[-1]] = position

    def joint_positions(self) -> np.ndarray | None:
        return self.current()

    def current(self) -> np.ndarray | None:
        with self._lock:
            if not all(j in self._joints for j in self.chain.joint_names):
                return None
            return np.array([self._joints[j] for j in self.chain.joint_names])

    def _arm_state(self) -> np.ndarray | None:
        """The arm's joint positions, waited for up to JOINT_STATES_WAIT wall s: a node just started
        (or restarted) has not matched the simulation's publisher yet, and an idle robot's joint
        states come at its idle rate (10 Hz), not at once."""
        wait_for(lambda: self.current() is not None, JOINT_STATES_WAIT)
        return self.current()

    def _execute(self, targets: list[np.ndarray], cancelled: Cancelled) -> MotionOutcome:
        """One trajectory through `targets` (joint positions), coming to rest at each."""
        if self._arm_state() is None:
            return MotionOutcome(False, f"no joint states from {self.robot}/joint_states "
                                        f"within {JOINT_STATES_WAIT:g} s")
        start_q = self.current()
        assert start_q is not None
        times, positions, _ = waypoint_trajectory(start_q, targets, self.chain.velocity, scale=self.speed_scale)
        target = targets[-1]
        msg = JointTrajectory()
        msg.joint_names = [f"{self.robot}/{j}" for j in self.chain.joint_names]
        for t, q in zip(times, positions, strict=True):
            sec = int(t)
            msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in q],
                                                   time_from_start=Duration(sec=sec, nanosec=int((t - sec) * 1e9))))
        began = sim_now(self.node)
        duration = float(times[-1]) if len(times) else 0.0
        deadline = SimDeadline(self.node, duration + 30.0)
        self.pub.publish(msg)
        while True:
            if cancelled():
                self.pub.publish(JointTrajectory(joint_names=msg.joint_names))  # empty: stop where it is
                return MotionOutcome(False, "cancelled: the arm was stopped", sim_now(self.node) - began)
            q = self.current()
            elapsed = sim_now(self.node) - began
            if q is not None and elapsed >= duration - CLOCK_SLACK and np.max(np.abs(q - target)) < 1e-3:
                return MotionOutcome(True, "done", elapsed)
            if deadline.passed():
                error = float(np.max(np.abs(q - target))) if q is not None else math.nan
                return MotionOutcome(False, f"the arm did not reach its target within {duration + 30.0:.0f} s "
                                            f"(after {elapsed:.2f} s of a {duration:.2f} s move, "
                                            f"{error:.4f} rad off)", elapsed)
            threading.Event().wait(POLL)

    def _joint_target(self, waypoint: Waypoint, seed: np.ndarray) -> np.ndarray:
        """A waypoint's joint positions (IK seeded from the previous waypoint's); ValueError if none."""
        if isinstance(waypoint, str):
            if waypoint not in self.named:
                raise ValueError(f"unknown arm configuration '{waypoint}' (known: {', '.join(self.named)})")
            values = self.named[waypoint]
            return np.array([values.get(j, 0.0) for j in self.chain.joint_names])
        try:
            return self.chain.ik(waypoint, seed)
        except Unreachable as exc:
            raise ValueError(f"unreachable: {exc}") from None

    def move_through(self, waypoints: list[Waypoint], cancelled: Cancelled) -> MotionOutcome:
        """Every waypoint solved first (nothing moves if one fails), then one trajectory through
        them all: one message to the trajectory controller, as a FollowJointTrajectory goal is."""
        seed = self._arm_state()
        if seed is None:
            return MotionOutcome(False, f"no joint states from {self.robot}/joint_states "
                                        f"within {JOINT_STATES_WAIT:g} s")
        targets = []
        try:
            for waypoint in waypoints:
                seed = self._joint_target(waypoint, seed)
                targets.append(seed)
        except ValueError as exc:
            return MotionOutcome(False, str(exc))
        if not targets:
            return MotionOutcome(True, "no waypoints")
        return self._execute(targets, cancelled)

    def move_named(self, name: str, cancelled: Cancelled) -> MotionOutcome:
        return self.move_through([name], cancelled)

    def move_tool(self, target: np.ndarray, cancelled: Cancelled) -> MotionOutcome:
        return self.move_through([target], cancelled)

    def set_gripper(self, closed: bool) -> MotionOutcome:
        wait_sim(self.node, GRIPPER_TIME)
        self.gripper_closed = closed
        return MotionOutcome(True, "closed" if closed else "open", GRIPPER_TIME)
