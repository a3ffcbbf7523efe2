"""The full-stack part of `ros2 launch lab bringup.launch.py sim:=gazebo|none`.

Only meaningful on a ROS 2 Jazzy installation with Gazebo Harmonic (ros_gz), Nav2 and
MoveIt 2: every launch import happens inside the functions, so importing this module (and
the static tests of its inputs) works anywhere. Per robot: robot_state_publisher with the
xacro-expanded description (prefix '<robot>/', ros2_control and Gazebo plugins), the
spawner into Gazebo, the controller spawners, Nav2 (nav2_bringup's navigation with
config/nav2_params.yaml, frames prefixed for that robot) and, for arm:=moveit, the
move_group node with the SRDF and config/moveit/. Once: Gazebo with worlds/lab.sdf, the
ros_gz bridge (config/gz_bridge.yaml, repeated per robot) and the map server with maps/lab.yaml.

What is written here follows the packages' documented interfaces (ros_gz_sim's gz_sim.launch.py
and `create`, ros_gz_bridge's parameter_bridge `config_file`, controller_manager's `spawner`,
nav2_bringup's navigation_launch.py and localization_launch.py, moveit_ros_move_group); it
has not been run on a full installation from this repository's CI (which has no ROS).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from lab.backends.moveit_config import moveit_parameters
from lab.core import yamlfile
from lab.core.robot.robot_files import (
    GAZEBO_HARDWARE,
    TF_REMAPPINGS,
    controllers_file,
    nav2_params,
    robot_description,
    write_temp,
)
from lab.core.robot.world import LabWorld, start_poses

PACKAGES = {
    "gazebo": ["ros-jazzy-ros-gz", "ros-jazzy-gz-ros2-control", "ros-jazzy-ros2-controllers"],
    "nav2": ["ros-jazzy-navigation2", "ros-jazzy-nav2-bringup", "ros-jazzy-nav2-simple-commander"],
    "moveit": ["ros-jazzy-moveit", "ros-jazzy-moveit-py"],
    "common": ["ros-jazzy-robot-state-publisher", "ros-jazzy-xacro", "ros-jazzy-rviz2"],
}


def robot_names(given: dict[str, str]) -> list[str]:
    return [f"robot{i}" for i in range(1, int(given.get("robots", "1")) + 1)]


def bridge_config(share: Path, robots: list[str]) -> list[dict[str, Any]]:
    """config/gz_bridge.yaml expanded for every robot (/clock once)."""
    template = yamlfile.safe_load((share / "config" / "gz_bridge.yaml").read_text(encoding="utf-8"))
    entries = [e for e in template if e["ros_topic_name"] == "/clock"]
    for robot in robots:
        for e in template:
            if e["ros_topic_name"] != "/clock":
                entries.append({k: (v.replace("robot1", robot) if isinstance(v, str) else v) for k, v in e.items()})
    return entries


def full_stack_actions(share: Path, given: dict[str, str], runs: Callable[[str], bool] = lambda _name: True,
                       ) -> list[Any]:
    """Launch actions for sim:=gazebo (Gazebo + bridge + spawners) or sim:=none (real robots:
    drivers are the user's; Nav2 and MoveIt still run). `runs(part)` says whether this host
    starts a part (lab.core.config.nodetable.placement): /gazebo, /gz_bridge and per robot
    /<robot>/robot_state_publisher, /<robot>/spawn (into Gazebo), /<robot>/controller_spawner,
    /<robot>/nav2, /<robot>/move_group."""
    from launch.actions import GroupAction, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import Node, PushROSNamespace
    from launch_ros.substitutions import FindPackageShare

    robots = robot_names(given)
    gazebo = given.get("sim") == "gazebo"
    use_sim_time = "true" if gazebo else "false"
    actions: list[Any] = []
    if gazebo and runs("/gazebo"):
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource([FindPackageShare("ros_gz_sim"), "/launch/gz_sim.launch.py"]),
            launch_arguments={"gz_args": f"-r {share / 'worlds' / 'lab.sdf'}"}.items()))
    if gazebo and runs("/gz_bridge"):
        bridge = write_temp(yaml.safe_dump(bridge_config(share, robots)), "gz_bridge.yaml")
        actions.append(Node(package="ros_gz_bridge", executable="parameter_bridge", name="gz_bridge",
                            parameters=[{"config_file": bridge, "use_sim_time": True}], output="screen"))
    # spawned where the embedded simulation starts them and where the Nav2 backend tells AMCL
    # they are (lab.core.robot.world.start_poses)
    starts = start_poses(LabWorld.load(share / "worlds" / "lab.sdf", share / "config" / "stations.yaml"), robots)
    for robot in robots:
        description = robot_description(share, robot, gazebo=gazebo, hardware=GAZEBO_HARDWARE if gazebo else
                                        given.get("hardware", "mock_components/GenericSystem"))
        if runs(f"/{robot}/robot_state_publisher"):
            actions.append(Node(package="robot_state_publisher", executable="robot_state_publisher",
                                namespace=robot, parameters=[{"robot_description": description,
                                                              "use_sim_time": gazebo}], output="screen",
                                remappings=TF_REMAPPINGS))
        if gazebo and runs(f"/{robot}/spawn"):
            actions.append(Node(package="ros_gz_sim", executable="create", output="screen", arguments=[
                "-name", robot, "-topic", f"/{robot}/robot_description",
                "-x", str(starts[robot].x), "-y", str(starts[robot].y), "-Y", str(starts[robot].yaw)]))
        if not gazebo and runs(f"/{robot}/controller_manager"):
            # real hardware: ros2_control's own node runs the robot's driver (in Gazebo its plugin
            # does); it reads the description robot_state_publisher latches on /<robot>/robot_description
            # (ros2_control 9ffbf97, controller_manager/src/controller_manager.cpp:755-756)
            actions.append(Node(package="controller_manager", executable="ros2_control_node", namespace=robot,
                                parameters=[controllers_file(share, robot)], output="screen"))
        for controller in ("joint_state_broadcaster", "arm_controller", "gripper_controller"):
            if runs(f"/{robot}/controller_spawner"):
                actions.append(Node(package="controller_manager", executable="spawner", namespace=robot,
                                    arguments=[controller, "--controller-manager", f"/{robot}/controller_manager"]))
        if given.get("navigation") in ("nav2", "auto") and runs(f"/{robot}/nav2"):
            params = write_temp(nav2_params(share / "config" / "nav2_params.yaml", robot, starts[robot]),
                                f"{robot}_nav2.yaml")
            # the namespace pushed here: on Jazzy, navigation_launch.py and localization_launch.py
            # create their nodes without one and only bringup_launch.py pushes it (navigation2
            # f4108e5, nav2_bringup/launch/bringup_launch.py:143-145); their `namespace` argument
            # only keys the parameter file (RewrittenYaml root_key, navigation_launch.py:70)
            actions.append(GroupAction([PushROSNamespace(robot), *(IncludeLaunchDescription(
                PythonLaunchDescriptionSource([FindPackageShare("nav2_bringup"), f"/launch/{launch_file}"]),
                launch_arguments={"namespace": robot, "params_file": params, "use_sim_time": use_sim_time,
                                  "map": str(share / "maps" / "lab.yaml"), "autostart": "true"}.items())
                for launch_file in ("localization_launch.py", "navigation_launch.py"))]))
        if given.get("arm") in ("moveit", "auto") and runs(f"/{robot}/move_group"):
            actions.append(Node(package="moveit_ros_move_group", executable="move_group", namespace=robot,
                                output="screen", parameters=[moveit_parameters(share, robot, description),
                                                             {"use_sim_time": gazebo}],
                                remappings=TF_REMAPPINGS))
    return actions
