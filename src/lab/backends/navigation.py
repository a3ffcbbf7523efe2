"""Embedded navigation: a grid planner on the world file and the simulation's base controller.

The path (lab.core.gridnav.plan_path on worlds/lab.sdf + config/stations.yaml, checked for the
robot's real footprint) goes to the base controller as nav_msgs/Path on `follow_path`; this
backend watches odometry for progress and `bumper` for what stopped the base, and stops
the base (an empty path) when the goal is cancelled.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.node import Node
from std_msgs.msg import String

from lab.backends.base import Cancelled, NavFeedback, NavigationBackend, NavOutcome
from lab.core.gridnav import NoPath, plan_path
from lab.core.world import LabWorld, Pose2D
from lab.nodes.common import LATCHED, POLL, SimDeadline, quaternion_to_yaw, sim_now, wait_for, yaw_to_quaternion


def path_length(path: list[Pose2D]) -> float:
    return sum(math.hypot(b.x - a.x, b.y - a.y) for a, b in zip(path, path[1:], strict=False))


class EmbeddedNavigation(NavigationBackend):
    def __init__(self, node: Node, robot: str, params: dict[str, Any]) -> None:
        super().__init__(node, robot, params)
        self.world: LabWorld = params["world"]
        self.max_speed = float(params.get("max_speed", 0.7))
        self.tolerance = float(params.get("goal_tolerance", 0.02))
        self._lock = threading.Lock()
        self._pose: Pose2D | None = None
        self._moving = False
        self._bumper = ""
        self._bumper_count = 0
        self.path_pub = node.create_publisher(PathMsg, "follow_path", 10)
        self.plan_pub = node.create_publisher(PathMsg, "plan", LATCHED)
        node.create_subscription(Odometry, "odom", self._odom, 10)
        node.create_subscription(String, "bumper", self._bumped, 10)

    def _odom(self, msg: Odometry) -> None:
        q = msg.pose.pose.orientation
        with self._lock:
            self._pose = Pose2D(msg.pose.pose.position.x, msg.pose.pose.position.y,
                                quaternion_to_yaw(q.x, q.y, q.z, q.w))
            t = msg.twist.twist
            self._moving = abs(t.linear.x) + abs(t.linear.y) + abs(t.angular.z) > 1e-6

    def _bumped(self, msg: String) -> None:
        with self._lock:
            self._bumper = msg.data
            self._bumper_count += 1

    @property
    def pose(self) -> Pose2D | None:
        with self._lock:
            return self._pose

    def _path_msg(self, path: list[Pose2D]) -> PathMsg:
        msg = PathMsg()
        msg.header.frame_id = "map"
        msg.header.stamp = self.node.get_clock().now().to_msg()
        for p in path:
            ps = PoseStamped()
            ps.header = msg.header
            ps.pose.position.x, ps.pose.position.y = p.x, p.y
            (ps.pose.orientation.x, ps.pose.orientation.y, ps.pose.orientation.z,
             ps.pose.orientation.w) = yaw_to_quaternion(p.yaw)
            msg.poses.append(ps)
        return msg

    def stop(self) -> None:
        self.path_pub.publish(self._path_msg([]))

    def navigate(self, goal: Pose2D, feedback: NavFeedback, cancelled: Cancelled) -> NavOutcome:
        if not wait_for(lambda: self.pose is not None, 10.0):
            here = Pose2D(0.0, 0.0, 0.0)
            return NavOutcome(False, f"no odometry from {self.robot}/odom: is the simulation running?", here, 0.0)
        start = self.pose
        assert start is not None
        try:
            path = plan_path(self.world, start, goal)
        except NoPath as exc:
            return NavOutcome(False, f"no path: {exc}", start, 0.0)
        total = path_length(path)
        self.plan_pub.publish(self._path_msg(path))
        with self._lock:
            bumps = self._bumper_count
        started = sim_now(self.node)
        deadline = SimDeadline(self.node, 3.0 * (total / self.max_speed) + 60.0)
        self.path_pub.publish(self._path_msg(path))
        last_feedback = 0.0
        travelled_from = start
        travelled = 0.0
        settled_since: float | None = None
        while True:
            pose = self.pose
            assert pose is not None
            travelled += math.hypot(pose.x - travelled_from.x, pose.y - travelled_from.y)
            travelled_from = pose
            if cancelled():
                self.stop()
                return NavOutcome(False, "cancelled: the base was stopped", pose, travelled)
            with self._lock:
                bumper, count, moving = self._bumper, self._bumper_count, self._moving
            if count != bumps:
                return NavOutcome(False, f"blocked: the base stopped against {bumper}", pose, travelled)
            error = math.hypot(goal.x - pose.x, goal.y - pose.y)
            yaw_error = abs(math.atan2(math.sin(goal.yaw - pose.yaw), math.cos(goal.yaw - pose.yaw)))
            if error <= self.tolerance and yaw_error <= 0.02 and not moving:
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since > 0.05:
                    self.stop()  # the follower must not keep correcting after the goal (as Nav2's controller stops)
                    return NavOutcome(True, "arrived", pose, travelled)
            else:
                settled_since = None
            if deadline.passed():
                self.stop()
                elapsed = sim_now(self.node) - started
                return NavOutcome(False, f"timed out after {elapsed:.0f} s with {error:.2f} m to go", pose, travelled)
            if time.monotonic() - last_feedback > 0.2:
                last_feedback = time.monotonic()
                remaining = max(error, total - travelled)
                feedback("driving", pose, remaining, remaining / self.max_speed)
            time.sleep(POLL)
