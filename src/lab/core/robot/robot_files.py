"""The robot's files for one robot of the full stack: everything written for `robot1` or
without a prefix (the URDF's xacro, the SRDF, ros2_control, Nav2 and MoveIt YAML), made for
`robotN`, whose names all carry the prefix 'robotN/'. Pure text and YAML work: lab.bringup.full_stack
and the MoveIt backend both use it, so move_group and MoveItPy get the same files."""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from lab.core import yamlfile
from lab.core.robot.world import Pose2D


def prefixed_yaml(path: Path, robot: str) -> str:
    """The file with 'robot1' replaced by `robot` (the templates are written for robot1)."""
    return path.read_text(encoding="utf-8").replace("robot1", robot)


#: each robot's tf on /<robot>/tf: the full stack's nodes of a robot (robot_state_publisher,
#: move_group, MoveItPy) remap /tf to the relative name, as nav2_bringup's namespaced nodes do
TF_REMAPPINGS = [("/tf", "tf"), ("/tf_static", "tf_static")]


def nav2_params(path: Path, robot: str, start: Pose2D) -> str:
    """config/nav2_params.yaml for `robot`, AMCL told where the robot starts: without a pose AMCL
    publishes no map -> odom, the global costmap's activation times out and the lifecycle
    manager aborts bring-up (navigation2 jazzy f4108e5, nav2_amcl/src/amcl_node.cpp:131-148:
    set_initial_pose and initial_pose.x/y/z/yaw)."""
    doc = yamlfile.safe_load(prefixed_yaml(path, robot))
    amcl = doc["amcl"]["ros__parameters"]
    amcl["set_initial_pose"] = True
    amcl["initial_pose"] = {"x": float(start.x), "y": float(start.y), "z": 0.0, "yaw": float(start.yaw)}
    return str(yaml.safe_dump(doc, sort_keys=False))


def write_temp(text: str, name: str) -> str:
    """`text` in a file of the lab's temporary folder (launch hands files, not text, to nodes)."""
    folder = Path(tempfile.gettempdir()) / "lab_full_stack"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


GAZEBO_HARDWARE = "gz_ros2_control/GazeboSimSystem"


def robot_description(share: Path, robot: str, gazebo: bool = True, hardware: str = GAZEBO_HARDWARE) -> str:
    """The robot's URDF with ros2_control (and Gazebo's plugins), names prefixed 'robot/';
    `hardware` the arm's ros2_control plugin (Gazebo's, or without Gazebo a driver's)."""
    import xacro

    doc = xacro.process_file(str(share / "urdf" / "kmr_iiwa.urdf.xacro"), mappings={
        "prefix": f"{robot}/", "ros2_control": "true", "gazebo": "true" if gazebo else "false",
        "hardware_plugin": hardware,
        "robot_name": robot,
        "controllers_file": controllers_file(share, robot)})
    return str(doc.toxml())


def controllers_file(share: Path, robot: str) -> str:
    """config/ros2_controllers.yaml for `robot`'s controller manager (a temporary file)."""
    return write_temp(prefixed_yaml(share / "config" / "ros2_controllers.yaml", robot), f"{robot}_controllers.yaml")


#: SRDF elements whose `name` is a URDF joint or link, and attributes that name a link
_NAMED = ("joint", "link", "passive_joint")
_LINK_ATTRIBUTES = ("link1", "link2", "base_link", "tip_link", "parent_link", "child_link")


def prefix_srdf(text: str, prefix: str) -> str:
    """The SRDF (written without a prefix) for a robot whose URDF names carry `prefix`."""
    root = ET.fromstring(text)
    for element in root.iter():
        if element.tag in _NAMED and "name" in element.attrib:
            element.set("name", prefix + element.attrib["name"])
        for attribute in _LINK_ATTRIBUTES:
            if attribute in element.attrib:
                element.set(attribute, prefix + element.attrib[attribute])
    return ET.tostring(root, encoding="unicode")


def prefixed_controllers(path: Path, prefix: str) -> dict[str, Any]:
    """config/moveit/moveit_controllers.yaml with the joints' names prefixed."""
    doc = yamlfile.safe_load(path.read_text(encoding="utf-8"))
    for name in doc["moveit_simple_controller_manager"]["controller_names"]:
        entry = doc["moveit_simple_controller_manager"][name]
        entry["joints"] = [prefix + j for j in entry["joints"]]
    return dict(doc)


def prefixed_joint_limits(path: Path, prefix: str) -> dict[str, Any]:
    """config/moveit/joint_limits.yaml with the joints' names prefixed (MoveIt looks the limits
    up by the URDF's joint names)."""
    doc = yamlfile.safe_load(path.read_text(encoding="utf-8"))
    doc["joint_limits"] = {prefix + joint: limits for joint, limits in doc["joint_limits"].items()}
    return dict(doc)
