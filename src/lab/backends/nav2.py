"""Navigation through Nav2 (ROS 2 Jazzy), with nav2_simple_commander.BasicNavigator.

Needs `ros-jazzy-nav2-simple-commander` (and a running Nav2 stack: `sim:=gazebo` or real
hardware, started by lab.bringup.full_stack with config/nav2_params.yaml). Not
installable from PyPI: importing this module without it raises BackendUnavailable naming
the package, so the embedded backends stay the default where ROS is not installed.

BasicNavigator is itself an rclpy Node that spins itself inside isTaskComplete() and
friends. It is therefore never added to the navigator node's executor, and it is only ever
called from the one thread that runs the current goal (the navigator accepts one goal at a
time), so its spinning and the node's executor never touch the same entities.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from lab.backends.base import Cancelled, NavFeedback, NavigationBackend, NavOutcome
from lab.backends.stack_nodes import basic_navigator_arguments
from lab.core.errors import BackendUnavailable
from lab.core.robot.world import Pose2D, start_poses
from lab.ros.conversions import planar_pose, pose_msg

try:
    from geometry_msgs.msg import PoseStamped
    from nav2_simple_commander.robot_navigator import BasicNavigator, TaskResult
    from rclpy.parameter import Parameter
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise BackendUnavailable(
        "navigation backend 'nav2' needs Nav2's Python commander: apt install ros-jazzy-nav2-simple-commander "
        f"ros-jazzy-navigation2 (and source /opt/ros/jazzy/setup.bash) ({exc})") from exc


class Nav2Backend(NavigationBackend):
    def __init__(self, node: Any, robot: str, params: dict[str, Any]) -> None:
        super().__init__(node, robot, params)
        self.nav = BasicNavigator(**basic_navigator_arguments(robot))
        # BasicNavigator is a node of its own (nav2_simple_commander jazzy f4108e5,
        # robot_navigator.py:56-59) and takes no parameters: on the wall clock its goal and pose
        # stamps would be far from Gazebo's /clock, so it keeps this node's clock
        self.nav.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL,
                                           bool(node.get_parameter("use_sim_time").value))])
        self.nav_lock = threading.Lock()  # BasicNavigator is not thread-safe
        self.active_timeout = float(params.get("nav2_active_timeout", 60.0))
        robots = [r for r in params["params"].robots if r] or [robot]
        self.start = start_poses(params["world"], robots)[robot]
        self._ready = False

    def _ensure_active(self) -> None:
        if self._ready:
            return
        # waitUntilNav2Active blocks until the lifecycle nodes (and AMCL, localizer='amcl') are active
        # AMCL starts from the pose BasicNavigator publishes in waitUntilNav2Active: (0, 0, 0)
        # unless set; the robot starts where lab.core.robot.world.start_poses puts it (Gazebo's spawn)
        self.nav.setInitialPose(self._pose_stamped(self.start))
        self.nav.waitUntilNav2Active(localizer=str(self.params.get("localizer", "amcl")))
        self._ready = True

    def _pose_stamped(self, pose: Pose2D) -> PoseStamped:
        msg = PoseStamped()
        msg.header.frame_id = "map"
        msg.header.stamp = self.nav.get_clock().now().to_msg()
        msg.pose = pose_msg(pose)
        return msg

    def navigate(self, goal: Pose2D, feedback: NavFeedback, cancelled: Cancelled) -> NavOutcome:
        with self.nav_lock:
            self._ensure_active()
            started = time.monotonic()
            if not self.nav.goToPose(self._pose_stamped(goal)):
                return NavOutcome(False, "Nav2 rejected the goal (is the pose in free space of the map?)", goal, 0.0)
            last = Pose2D(math.nan, math.nan, math.nan)
            while not self.nav.isTaskComplete():
                if cancelled():
                    self.nav.cancelTask()
                    while not self.nav.isTaskComplete():
                        pass
                    return NavOutcome(False, "cancelled: Nav2 goal cancelled", last, 0.0)
                fb = self.nav.getFeedback()
                if fb is not None:
                    last = planar_pose(fb.current_pose.pose)
                    eta = fb.estimated_time_remaining.sec + fb.estimated_time_remaining.nanosec * 1e-9
                    feedback("driving", last, float(fb.distance_remaining), float(eta))
            result = self.nav.getResult()
            if result == TaskResult.SUCCEEDED:
                return NavOutcome(True, f"arrived (Nav2, {time.monotonic() - started:.0f} s)", goal, 0.0)
            detail = ""
            if hasattr(self.nav, "getTaskError"):  # Jazzy: error code and message of the failed task
                code, text = self.nav.getTaskError()
                detail = f": error {code} {text}"
            what = "cancelled" if result == TaskResult.CANCELED else "failed"
            return NavOutcome(False, f"Nav2 {what}{detail}", last, 0.0)

    def shutdown(self) -> None:
        self.nav.destroy_node()
