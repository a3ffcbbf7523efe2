"""Bring up the lab: `ros2 launch lab bringup.launch.py [sim:=embedded|gazebo|none] [robots:=N] ...`.

Which nodes run, in which namespaces and with which parameters comes from the node table
(config/nodes.yaml) through lab.core.config.nodetable.expand(), the same function `lab bringup`
uses where the launch system is not installed. `sim:=gazebo` adds Gazebo Harmonic, the
ros_gz bridge, robot_state_publisher and the spawner (lab.bringup.full_stack), which only exist on
a full ROS 2 installation. `deployment:=NAME host:=HOST` starts only HOST's share of the lab
(config/deployments/NAME.yaml), the node table's nodes and these parts alike.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from lab.bringup.processes import RESTARTS
from lab.core.config.nodetable import ARGUMENTS, expand, placement
from launch import LaunchDescription


def _nodes(context, *args, **kwargs):
    share = Path(get_package_share_directory("lab"))
    given = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    actions = []
    for spec in expand(share / "config", given):
        actions.append(Node(
            package=spec.package,
            executable=spec.executable,
            name=spec.name,
            namespace=spec.namespace or None,
            parameters=[str(p) for p in spec.param_files] + ([dict(spec.parameters)] if spec.parameters else []),
            arguments=list(spec.arguments),
            remappings=list(spec.remappings),
            output="screen",
            emulate_tty=True,
            # supervision as `lab bringup` does it (lab.bringup.processes.RESTARTS): a node that dies is
            # started again, up to 3 times (launch's ExecuteProcess; respawn_max_retries since Jazzy)
            respawn=True,
            respawn_delay=2.0,
            respawn_max_retries=RESTARTS,
            # the deployment's DDS scope (single: shared memory and loopback only; nodetable.dds_environment)
            additional_env=dict(spec.env),
        ))
    if given["sim"] in ("gazebo", "none"):
        import os

        from launch.actions import SetEnvironmentVariable

        from lab.bringup.full_stack import full_stack_actions
        from lab.core.config.nodetable import dds_environment

        # Gazebo's bridge, Nav2 and MoveIt in the deployment's DDS scope as the lab's nodes are
        scope = [SetEnvironmentVariable(k, v) for k, v in dds_environment(share / "config", given, os.environ).items()]
        actions = scope + full_stack_actions(share, given, placement(share / "config", given)) + actions
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({"choices": list(a.choices)} if a.choices else {}))
                for a in ARGUMENTS.values()]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)])
