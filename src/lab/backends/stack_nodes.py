"""The nodes the full-stack backends create in the lab's own processes (MoveItPy in the arm
node's, BasicNavigator in the navigator's), with their arguments: one place for the backends that
make them and for lab.bringup.audit, which checks them without MoveIt or Nav2 installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.backends.moveit_config import moveit_parameters
from lab.core.robot.robot_files import TF_REMAPPINGS, robot_description, write_temp

#: the MoveItPy node's name (in the robot's namespace)
MOVEIT_PY_NODE = "moveit_py"


def moveit_py_arguments(share: Path, robot: str, use_sim_time: bool) -> dict[str, Any]:
    """MoveItPy's arguments for one robot (the moveit backend's; lab.bringup.audit checks them).

    The parameters go in a file keyed by the node's full name: given as config_dict, moveit_py
    keys them by the bare node name (moveit2 jazzy 4d84106, moveit_py/moveit/utils.py:44-48) while
    the node is made in the namespace (moveit_cpp.cpp:124), and rclcpp matches no key to
    /robotN/moveit_py. Its tf on /robotN/tf as for move_group; move_group in the same namespace
    already offers get_planning_scene (moveit_cpp.cpp:144)."""
    config = moveit_parameters(share, robot, robot_description(share, robot))
    config["use_sim_time"] = use_sim_time
    full = f"/{robot}/{MOVEIT_PY_NODE}" if robot else f"/{MOVEIT_PY_NODE}"
    params = write_temp(yaml.safe_dump({full: {"ros__parameters": config}}), f"{robot or 'robot'}_moveit_py.yaml")
    return {"node_name": MOVEIT_PY_NODE, "name_space": robot, "launch_params_filepaths": [params],
            "provide_planning_service": False, "remappings": dict(TF_REMAPPINGS)}


def basic_navigator_arguments(robot: str) -> dict[str, str]:
    """BasicNavigator's node, in the robot's namespace (lab.bringup.audit checks it)."""
    return {"node_name": f"{robot}_basic_navigator", "namespace": f"/{robot}" if robot else ""}
