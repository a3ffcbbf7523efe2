"""Embedded manipulation: inverse kinematics from the URDF and joint trajectories.

Targets are solved with lab.core.robot.kinematics on the robot's URDF chain (base_link -> tool0),
turned into a joint-limit-respecting trajectory and sent to the arm's trajectory controller
topic (`arm_controller/joint_trajectory`, what a ros2_control JointTrajectoryController
takes); a path through several waypoints (approach, grasp height, ...) is one trajectory
that comes to rest at each. The move is done when the simulated clock has passed its
duration and the joint states agree with the last point.

The gripper acts within the trajectory, at rest before the first motion or after the last
(GRIPPER_TIME each): on the embedded simulation, whose arm controller takes the finger joint
as well (a JointTrajectoryController configured with it), the finger moves in the same
message; elsewhere (Gazebo's controllers take the arm's joints only, and this backend does not
drive their gripper controller) the arm rests for the gripper's time. Each gripper action was a
clock wait of its own before: a round trip to the simulation, ~45 wall ms on this 2-core
machine, three per transfer (31 % of the arm's action time in `lab bench transport`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lab.backends.base import Cancelled, Grip, ManipulationBackend, MotionOutcome, Waypoint
from lab.core.robot.kinematics import Chain, Unreachable, waypoint_trajectory
from lab.ros.clock import CLOCK_SLACK, POLL, SimDeadline, sim_now, wait_for

#: wall s an arm order waits for the arm's first joint states (discovery of the simulation's or
#: the controller's publisher after a start)
JOINT_STATES_WAIT = 10.0
#: wall s an arm order waits for the trajectory controller's subscription to match (discovery, as above)
CONTROLLER_WAIT = 10.0

GRIPPER_TIME = 1.0  # simulated s to open or close the gripper (assumption)


class EmbeddedManipulation(ManipulationBackend):
    def __init__(self, node: Node, robot: str, params: dict[str, Any]) -> None:
        super().__init__(node, robot, params)
        self.chain: Chain = params["chain"]
        self.named: dict[str, dict[str, float]] = params["named_poses"]
        self.speed_scale = float(params.get("speed_scale", 0.5))
        # the SRDF's gripper states: open / closed -> {finger joint: position}; the finger joint is
        # the one they set (the other finger mimics it)
        gripper: dict[str, dict[str, float]] = params.get("gripper_poses", {})
        fingers = sorted(set(gripper.get("open", {})) & set(gripper.get("closed", {})))
        self.finger = fingers[0] if fingers else ""
        self.finger_at = {closed: gripper["closed" if closed else "open"][self.finger]
                          for closed in (False, True)} if self.finger else {}
        #: whether the arm's controller takes the finger joint in its trajectories (the embedded simulation)
        self.finger_in_trajectory: Callable[[], bool] = params.get("finger_in_trajectory", lambda: False)
        self._lock = threading.Lock()
        self._joints: dict[str, float] = {}
        self.pub = node.create_publisher(JointTrajectory, "arm_controller/joint_trajectory", 10)
        node.create_subscription(JointState, "joint_states", self._joint_states, 10)

    def _joint_states(self, msg: JointState) -> None:
        with self._lock:
            for name, position in zip(msg.name, msg.position, strict=False):
                self._joints[name.rsplit("/", 1)[-1]] = position

    def joint_positions(self) -> np.ndarray | None:
        return self.current()

    def current(self) -> np.ndarray | None:
        return self._positions(self.chain.joint_names)

    def _arm_state(self) -> np.ndarray | None:
        """The arm's joint positions, waited for up to JOINT_STATES_WAIT wall s: a node just started
        (or restarted) has not matched the simulation's publisher yet, and an idle robot's joint
        states come at its idle rate (10 Hz), not at once."""
        wait_for(lambda: self.current() is not None, JOINT_STATES_WAIT)
        return self.current()

    def finger_position(self) -> float | None:
        with self._lock:
            return self._joints.get(self.finger) if self.finger else None

    def _points(self, start_q: np.ndarray,
                targets: list[np.ndarray | Grip]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(joint names, times, positions) of one trajectory through `targets` (joint positions,
        coming to rest at each, and gripper actions at rest), with the finger's column when the
        controller takes it. A gripper action the finger has already done takes no time then."""
        finger = self.finger_position() if self.finger_in_trajectory() else None
        times, rows, fingers = [0.0], [np.asarray(start_q, dtype=float)], [finger]
        run: list[np.ndarray] = []

        def flush() -> None:
            if run:
                t, q, _ = waypoint_trajectory(rows[-1], run, self.chain.velocity, scale=self.speed_scale)
                moving = t > 0.0  # a waypoint where the arm already is adds no point
                times.extend(t[moving] + times[-1])
                rows.extend(q[moving])
                fingers.extend([fingers[-1]] * int(np.count_nonzero(moving)))
                run.clear()

        for target in targets:
            if not isinstance(target, Grip):
                run.append(target)
                continue
            flush()
            value = self.finger_at[target.closed] if finger is not None else None
            if value is not None and abs(value - fingers[-1]) < 1e-9:
                continue
            times.append(times[-1] + GRIPPER_TIME)
            rows.append(rows[-1])
            fingers.append(value)
        flush()
        positions = np.array(rows)
        names = list(self.chain.joint_names)
        if finger is not None:
            names.append(self.finger)
            positions = np.column_stack([positions, np.array(fingers, dtype=float)])
        return names, np.array(times), positions

    def _execute(self, targets: list[np.ndarray | Grip], cancelled: Cancelled) -> MotionOutcome:
        """One trajectory through `targets` (joint positions, coming to rest at each, and gripper
        actions at rest)."""
        if self._arm_state() is None:
            return MotionOutcome(False, f"no joint states from {self.robot}/joint_states "
                                        f"within {JOINT_STATES_WAIT:g} s")
        start_q = self.current()
        assert start_q is not None
        names, times, positions = self._points(start_q, targets)
        if len(times) == 1:
            return MotionOutcome(True, "no motion")
        target = positions[-1]
        msg = JointTrajectory()
        msg.joint_names = [f"{self.robot}/{j}" for j in names]
        # from the first point after the start, as a trajectory controller takes it (it starts from
        # where the joints are)
        for t, q in zip(times[1:], positions[1:], strict=True):
            sec = int(t)
            msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in q],
                                                   time_from_start=Duration(sec=sec, nanosec=int((t - sec) * 1e9))))
        # the controller's subscription matched first: a trajectory published before it was lost, and
        # the arm, holding the clock, then waited for a motion that never came (the first move of a
        # lab just started, 2026-12-04: "after 0.00 s of a 7.51 s move, 3.1308 rad off")
        if not wait_for(lambda: self.pub.get_subscription_count() > 0, CONTROLLER_WAIT):
            return MotionOutcome(False, f"no trajectory controller on {self.pub.topic_name} within "
                                        f"{CONTROLLER_WAIT:g} s")
        began = sim_now(self.node)
        duration = float(times[-1])
        deadline = SimDeadline(self.node, duration + 30.0)
        self.pub.publish(msg)
        while True:
            if cancelled():
                self.pub.publish(JointTrajectory(joint_names=msg.joint_names))  # empty: stop where it is
                return MotionOutcome(False, "cancelled: the arm was stopped", sim_now(self.node) - began)
            q = self._positions(names)
            elapsed = sim_now(self.node) - began
            if q is not None and elapsed >= duration - CLOCK_SLACK and np.max(np.abs(q - target)) < 1e-3:
                return MotionOutcome(True, "done", elapsed)
            if deadline.passed():
                error = float(np.max(np.abs(q - target))) if q is not None else math.nan
                return MotionOutcome(False, f"the arm did not reach its target within {duration + 30.0:.0f} s "
                                            f"(after {elapsed:.2f} s of a {duration:.2f} s move, "
                                            f"{error:.4f} rad off)", elapsed)
            threading.Event().wait(POLL)

    def _positions(self, names: list[str]) -> np.ndarray | None:
        with self._lock:
            if not all(j in self._joints for j in names):
                return None
            return np.array([self._joints[j] for j in names])

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
        them all, the gripper's actions in it: one message to the trajectory controller, as a
        FollowJointTrajectory goal is."""
        seed = self._arm_state()
        if seed is None:
            return MotionOutcome(False, f"no joint states from {self.robot}/joint_states "
                                        f"within {JOINT_STATES_WAIT:g} s")
        targets: list[np.ndarray | Grip] = []
        try:
            for waypoint in waypoints:
                if isinstance(waypoint, Grip):
                    targets.append(waypoint)
                    continue
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
        """The gripper alone: a trajectory that holds the arm where it is."""
        return self.move_through([Grip(closed)], lambda: False)
