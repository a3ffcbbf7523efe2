"""MoveIt's parameters for one robot, built once for both of its users: `move_group` (started
by lab.bringup.full_stack) and `MoveItPy` (the `moveit` manipulation backend). Through
moveit_configs_utils' MoveItConfigsBuilder, using only the methods Jazzy's builder has
(moveit2 jazzy, moveit_configs_utils/moveit_configs_builder.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.core.robot.robot_files import prefix_srdf, prefixed_controllers, prefixed_joint_limits, write_temp


def moveit_parameters(share: Path, robot: str, description: str) -> dict[str, Any]:
    """The parameters of one robot's MoveIt (package lab holds the configuration; the URDF, SRDF,
    joint limits and controllers carry the robot's prefix, so the builder gets per-robot files)."""
    from moveit_configs_utils import MoveItConfigsBuilder

    moveit = share / "config" / "moveit"
    prefix = f"{robot}/"
    urdf = write_temp(description, f"{robot}.urdf")
    srdf = write_temp(prefix_srdf((share / "urdf" / "kmr_iiwa.srdf").read_text(encoding="utf-8"), prefix),
                      f"{robot}.srdf")
    limits = write_temp(yaml.safe_dump(prefixed_joint_limits(moveit / "joint_limits.yaml", prefix)),
                        f"{robot}_joint_limits.yaml")
    controllers = write_temp(yaml.safe_dump(prefixed_controllers(moveit / "moveit_controllers.yaml", prefix)),
                             f"{robot}_moveit_controllers.yaml")
    return dict(MoveItConfigsBuilder("kmr_iiwa", package_name="lab")
                .robot_description(file_path=urdf)
                .robot_description_semantic(file_path=srdf)
                .robot_description_kinematics(file_path=str(moveit / "kinematics.yaml"))
                .joint_limits(file_path=limits)
                .pilz_cartesian_limits(file_path=str(moveit / "pilz_cartesian_limits.yaml"))
                .trajectory_execution(file_path=controllers)
                .planning_pipelines(pipelines=["ompl"])
                .moveit_cpp(file_path=str(moveit / "moveit_py.yaml"))
                .to_moveit_configs()
                .to_dict())

