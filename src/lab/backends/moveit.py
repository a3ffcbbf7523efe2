"""Manipulation through MoveIt 2 (Jazzy), with the moveit_py Python API.

Needs `ros-jazzy-moveit-py` and ros2_control's `arm_controller` (started by
lab.bringup.full_stack). Not installable from PyPI: importing this module without it raises
BackendUnavailable naming the package.

MoveItPy is not an rclpy node: it needs its whole configuration as parameters. It gets the
very parameters move_group gets (lab.backends.moveit_config.moveit_parameters: robot
description and semantic description with the robot's prefix, kinematics, joint and
Cartesian limits, the OMPL pipeline, controllers, and MoveItCpp's own block,
config/moveit/moveit_py.yaml), and runs in the robot's namespace, so it reads that robot's
joint_states. It creates its own node and executor thread; it shares nothing with the arm
node's executor. Named configurations come from urdf/kmr_iiwa.srdf; poses are planned for
tool0 in the robot's base_link, as the embedded backend does.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lab.backends.base import Cancelled, ManipulationBackend, MotionOutcome
from lab.backends.stack_nodes import moveit_py_arguments
from lab.core.errors import BackendUnavailable
from lab.paths import share_dir
from lab.ros.conversions import rotation_to_quaternion

try:
    from geometry_msgs.msg import PoseStamped
    from moveit.planning import MoveItPy
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise BackendUnavailable(
        "manipulation backend 'moveit' needs MoveIt 2's Python API: apt install ros-jazzy-moveit-py "
        f"ros-jazzy-moveit (and source /opt/ros/jazzy/setup.bash) ({exc})") from exc



class MoveItBackend(ManipulationBackend):
    def __init__(self, node: Any, robot: str, params: dict[str, Any]) -> None:
        super().__init__(node, robot, params)
        self.moveit = MoveItPy(**moveit_py_arguments(share_dir(), robot,
                                                     bool(node.get_parameter("use_sim_time").value)))
        self.arm = self.moveit.get_planning_component("arm")
        self.gripper = self.moveit.get_planning_component("gripper")
        self.prefix = f"{robot}/" if robot else ""

    def _plan_and_execute(self, component: Any, what: str, cancelled: Cancelled) -> MotionOutcome:
        if cancelled():
            return MotionOutcome(False, "cancelled before planning")
        started = time.monotonic()
        component.set_start_state_to_current_state()
        plan = component.plan()
        if not plan:
            return MotionOutcome(False, f"MoveIt found no plan for {what}")
        self.moveit.execute(plan.trajectory, controllers=[])
        return MotionOutcome(True, f"{what} done", time.monotonic() - started)

    def move_named(self, name: str, cancelled: Cancelled) -> MotionOutcome:
        self.arm.set_goal_state(configuration_name=name)
        return self._plan_and_execute(self.arm, f"move to '{name}'", cancelled)

    def move_tool(self, target: np.ndarray, cancelled: Cancelled) -> MotionOutcome:
        goal = PoseStamped()
        goal.header.frame_id = f"{self.prefix}base_link"
        goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = (float(v) for v in target[:3, 3])
        (goal.pose.orientation.x, goal.pose.orientation.y, goal.pose.orientation.z,
         goal.pose.orientation.w) = rotation_to_quaternion(target[:3, :3])
        self.arm.set_goal_state(pose_stamped_msg=goal, pose_link=f"{self.prefix}tool0")
        return self._plan_and_execute(self.arm, "tool pose", cancelled)

    def set_gripper(self, closed: bool) -> MotionOutcome:
        self.gripper.set_goal_state(configuration_name="closed" if closed else "open")
        return self._plan_and_execute(self.gripper, "close gripper" if closed else "open gripper", lambda: False)

    def shutdown(self) -> None:
        self.moveit.shutdown()
