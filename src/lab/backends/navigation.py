"""Embedded navigation: a grid planner on the world file and the simulation's base controller.

The path (lab.core.robot.gridnav.plan_path on worlds/lab.sdf + config/stations.yaml, checked for the
robot's real footprint) goes to the base controller as nav_msgs/Path on `follow_path`; this
backend watches odometry for progress and `bumper` for what stopped the base, and stops
the base (an empty path) when the goal is cancelled.

With other robots on the floor (`others`), the path is planned around their footprints where
their odometry puts them (what a costmap's obstacle layer would see), and the robot drives
only once the `traffic` node has reserved that path for it (lab.core.robot.traffic: no two reserved
paths come within a footprint of each other); it hands the reservation back when it stops.
While the way is blocked (another robot on the goal, or its reserved path in the way) the
robot waits where it is, replanning every simulated second, up to `traffic_timeout`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from geometry_msgs.msg import Pose2D as Pose2DMsg
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String

from lab.backends.base import Cancelled, NavFeedback, NavigationBackend, NavOutcome
from lab.core.config.params import NavigatorParams
from lab.core.robot.gridnav import NoPath, path_length, plan_path
from lab.core.robot.world import ROBOT_FOOTPRINT, LabWorld, Pose2D, rectangles_overlap, wrap
from lab.ros.clock import POLL, SimDeadline, sim_now, wait_for, wait_sim
from lab.ros.conversions import planar_pose, pose_msg
from lab.ros.qos import LATCHED
from lab_interfaces.srv import Traffic

#: wall s a drive waits for the base controller's subscription to match (discovery after a start)
CONTROLLER_WAIT = 10.0


class _Blocked(Exception):
    """Waiting for the way to clear ended without a path (cancelled or timed out)."""


class EmbeddedNavigation(NavigationBackend):
    def __init__(self, node: Node, robot: str, params: dict[str, Any]) -> None:
        super().__init__(node, robot, params)
        self.world: LabWorld = params["world"]
        settings: NavigatorParams = params["params"]
        self.max_speed = settings.max_speed
        self.tolerance = settings.goal_tolerance
        self._lock = threading.Lock()
        self._pose: Pose2D | None = None
        self._moving = False
        self._odom_count = 0
        self._told_ever: set[str] = set()
        self._bumper = ""
        self._bumper_count = 0
        self.path_pub = node.create_publisher(PathMsg, "follow_path", 10)
        self.plan_pub = node.create_publisher(PathMsg, "plan", LATCHED)
        node.create_subscription(Odometry, "odom", self._odom, 10)
        node.create_subscription(String, "bumper", self._bumped, 10)
        self.others: dict[str, Pose2D | None] = {r: None for r in params.get("others", [])}
        self.margin = settings.robot_margin
        self.traffic_timeout = settings.traffic_timeout
        self.traffic = None
        if self.others:
            group = ReentrantCallbackGroup()
            for other in self.others:
                node.create_subscription(Odometry, f"/{other}/odom", lambda m, r=other: self._other_odom(r, m), 10,
                                         callback_group=group)
            self.traffic = node.create_client(Traffic, "/traffic/request", callback_group=group)

    def _other_odom(self, robot: str, msg: Odometry) -> None:
        pose = planar_pose(msg.pose.pose)  # map frame: the simulation's odometry is the localised estimate
        with self._lock:
            self.others[robot] = pose

    def _odom(self, msg: Odometry) -> None:
        pose = planar_pose(msg.pose.pose)  # map frame: the simulation's odometry is the localised estimate
        with self._lock:
            self._pose = pose
            t = msg.twist.twist
            self._moving = abs(t.linear.x) + abs(t.linear.y) + abs(t.angular.z) > 1e-6
            self._odom_count += 1

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
            ps.pose = pose_msg(p)
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
            path = self._clear_path(start, goal, feedback, cancelled)
        except NoPath as exc:
            return NavOutcome(False, f"no path: {exc}", start, 0.0)
        except _Blocked as exc:
            self._hand_back(start)
            return NavOutcome(False, str(exc), start, 0.0)
        try:
            return self._follow(path, goal, feedback, cancelled)
        finally:
            self._hand_back(None)

    def _hand_back(self, here: Pose2D | None) -> None:
        """Release this robot's reservation, telling the traffic node where it stands (`here`,
        or where odometry puts it once the next two messages, sent after the base stopped, came)."""
        if not self.others:
            return
        try:
            if here is None:
                with self._lock:
                    seen = self._odom_count
                wait_for(lambda: self._odom_count >= seen + 2, 1.0)
                here = self.pose
            if here is not None:
                self._ask(Traffic.Request.RELEASE, [here])
        except _Blocked as exc:
            self.node.get_logger().warning(f"{self.robot}: could not hand back the reserved path: {exc}")

    # ------------------------------------------------------------------ traffic
    def _ask(self, operation: int, path: list[Pose2D]) -> tuple[str, dict[str, Pose2D]]:
        """One request to the traffic node (lab_interfaces/Traffic: ASK, RESERVE a path, RELEASE
        saying where this robot stands). Returns who is in the way ('' when granted) and where
        the other robots stand, as they last said."""
        assert self.traffic is not None
        if not self.traffic.wait_for_service(timeout_sec=10.0):
            raise _Blocked("no traffic node (/traffic/request) to share the floor with "
                           f"{', '.join(self.others)}")
        request = Traffic.Request(operation=operation, robot=self.robot,
                                  path=[Pose2DMsg(x=p.x, y=p.y, theta=p.yaw) for p in path])
        future = self.traffic.call_async(request)
        if not wait_for(future.done, 10.0) or future.result() is None:
            raise _Blocked("the traffic node did not answer")
        answer = future.result()
        standing = {r: Pose2D(p.x, p.y, p.theta) for r, p in zip(answer.standing_robots, answer.standing_poses,
                                                                  strict=False)}
        return ("" if answer.granted else (answer.blocked_by or answer.message)), standing

    def _standing(self, told: dict[str, Pose2D]) -> dict[str, Pose2D]:
        """The other robots where they stand: as they told the traffic node; for a robot that
        never has (it has not driven yet, so its odometry is current), its odometry. A robot
        told once and absent now is driving on its reserved path, which the traffic node
        keeps this robot's path clear of."""
        self._told_ever |= set(told)
        with self._lock:
            heard = {r: p for r, p in self.others.items() if p is not None and r not in self._told_ever}
        return {**heard, **told}

    def _clear_path(self, start: Pose2D, goal: Pose2D, feedback: NavFeedback, cancelled: Cancelled) -> list[Pose2D]:
        """A path around the other robots that the traffic node has reserved for this robot;
        waits (simulated s) while other robots are in the way. NoPath if the lab itself has none."""
        path = plan_path(self.world, start, goal)
        if not self.others:
            return path
        until = sim_now(self.node) + self.traffic_timeout
        _, told = self._ask(Traffic.Request.ASK, [])
        unknown = [r for r in self.others if r not in told and r not in self._told_ever]
        if not wait_for(lambda: all(self.others[r] is not None for r in unknown), 10.0):
            raise _Blocked("cannot plan around " + ", ".join(r for r in unknown if self.others[r] is None) +
                           ": no odometry from it, and it has not told the traffic node where it stands")
        holding = False
        while True:
            standing = self._standing(told)
            boxes = [self.world.robot_box(r, p, self.margin) for r, p in standing.items()]
            # a robot already touching this one's footprint cannot be planned around (the base
            # would stop against it): leave it to the bumper rather than refuse every path
            boxes = [b for b in boxes if not rectangles_overlap(start, ROBOT_FOOTPRINT, b.pose, b.size[:2])]
            world = self.world.with_obstacles(boxes)
            try:
                path = plan_path(world, start, goal)
                blocker, told = self._ask(Traffic.Request.RESERVE, path)
                holding = holding or not blocker
                if not blocker and self._standing(told) == standing:
                    return path
                if not blocker:
                    continue  # someone stopped somewhere new since: plan again (the reservation is replaced)
                why = f"waiting: {blocker}'s path is in the way"
            except NoPath as exc:
                why = f"waiting: other robots are in the way ({exc})"
            if holding:  # a path granted before a replan that found none: not kept while waiting
                self._ask(Traffic.Request.RELEASE, [start])
                holding = False
            if sim_now(self.node) >= until:
                raise _Blocked(f"blocked for {self.traffic_timeout:.0f} s: {why.removeprefix('waiting: ')}")
            feedback(why, start, path_length(path), path_length(path) / self.max_speed)
            if not wait_sim(self.node, 1.0, cancelled):
                raise _Blocked("cancelled while waiting for the way to clear")
            _, told = self._ask(Traffic.Request.ASK, [])

    def _follow(self, path: list[Pose2D], goal: Pose2D, feedback: NavFeedback, cancelled: Cancelled) -> NavOutcome:
        start = path[0]
        total = path_length(path)
        # the base controller's subscription matched first: a path published before it is lost, and the
        # base would never move (the arm's trajectories had that race in a lab just started)
        if not wait_for(lambda: self.path_pub.get_subscription_count() > 0, CONTROLLER_WAIT):
            return NavOutcome(False, f"no base controller on {self.path_pub.topic_name} within {CONTROLLER_WAIT:g} s",
                              start, 0.0)
        self.plan_pub.publish(self._path_msg(path))
        with self._lock:
            bumps = self._bumper_count
        started = sim_now(self.node)
        deadline = SimDeadline(self.node, 3.0 * (total / self.max_speed) + 60.0)
        self.path_pub.publish(self._path_msg(path))
        last_feedback = 0.0
        travelled_from = start
        travelled = 0.0
        while True:
            pose = self.pose
            assert pose is not None
            travelled += pose.distance_to(travelled_from)
            travelled_from = pose
            if cancelled():
                self.stop()
                return NavOutcome(False, "cancelled: the base was stopped", pose, travelled)
            with self._lock:
                bumper, count, moving = self._bumper, self._bumper_count, self._moving
            if count != bumps:
                return NavOutcome(False, f"blocked: the base stopped against {bumper}", pose, travelled)
            error = pose.distance_to(goal)
            yaw_error = abs(wrap(goal.yaw - pose.yaw))
            # at rest within the tolerance: the simulation's follower has ended (it commands motion
            # until its own, finer, tolerance); a 50-ms wall settle here cost a fifth of a drive's wall
            # time at 1000x and no simulated time (the clock holds once the base is at rest)
            if error <= self.tolerance and yaw_error <= 0.02 and not moving:
                self.stop()  # the follower must not keep correcting after the goal (as Nav2's controller stops)
                return NavOutcome(True, "arrived", pose, travelled)
            if deadline.passed():
                self.stop()
                elapsed = sim_now(self.node) - started
                return NavOutcome(False, f"timed out after {elapsed:.0f} s with {error:.2f} m to go", pose, travelled)
            if time.monotonic() - last_feedback > 0.2:
                last_feedback = time.monotonic()
                remaining = max(error, total - travelled)
                feedback("driving", pose, remaining, remaining / self.max_speed)
            time.sleep(POLL)
