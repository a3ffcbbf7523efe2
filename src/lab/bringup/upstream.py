"""What the upstream packages of the full stack do, as far as the graph `lab.bringup.audit` checks
depends on it: which nodes an included launch file creates and in which namespace, how their
parameter files are keyed, what each node publishes and subscribes with which QoS, and what the
MoveItPy and MoveItConfigsBuilder calls of the lab's backends turn into.

Every fact carries the upstream file, line and commit it was read from (`Source`). They were read
from the Jazzy sources, not run: navigation2 jazzy f4108e5, moveit2 jazzy 4d84106, geometry2
646342c, robot_state_publisher 3.3.3 e0f77e6 (a Jazzy release; the mirror has no jazzy branch),
ros_gz jazzy 739cb42. A fact that is wrong here makes the audit wrong: change it only with the
line it was read from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAV2 = "navigation2 f4108e5"
LAUNCH = f"{NAV2} nav2_bringup/launch"
MOVEIT = "moveit2 4d84106"
GEOMETRY2 = "geometry2 646342c"
RSP = "robot_state_publisher 3.3.3 e0f77e6"
ROS_GZ = "ros_gz 739cb42"
ROS2_CONTROL = "ros2_control 9ffbf97"
CONTROLLERS = "ros2_controllers ed360c9"
GZ_ROS2_CONTROL = "gz_ros2_control fa9ced4"


@dataclass(frozen=True)
class QoS:
    reliable: bool = True
    transient_local: bool = False

    def __str__(self) -> str:
        durability = "transient local" if self.transient_local else "volatile"
        return f"{'reliable' if self.reliable else 'best effort'}, {durability}"

    def serves(self, sub: QoS) -> bool:
        """Whether a publisher with this QoS is matched by a subscription with `sub` (DDS request/offer:
        a reliable reader needs a reliable writer, a transient-local reader a transient-local writer)."""
        return (self.reliable or not sub.reliable) and (self.transient_local or not sub.transient_local)


DEFAULT = QoS()                            # rclcpp::QoS(depth), SystemDefaultsQoS as Fast DDS gives it
SENSOR = QoS(reliable=False)               # rclcpp::SensorDataQoS / rmw_qos_profile_sensor_data
LATCHED = QoS(transient_local=True)        # KeepLast(1).transient_local().reliable()


@dataclass(frozen=True)
class Topic:
    """An endpoint as the node's code names it (relative: resolved in its namespace, then remapped).
    `param`: the parameter the name is read from (the name here is its default)."""

    name: str
    type: str
    qos: QoS
    source: str
    param: str = ""
    #: a subscription that may have no publisher (an operator's tool publishes it, when used)
    optional: bool = False


@dataclass(frozen=True)
class UpstreamNode:
    name: str
    package: str
    pubs: tuple[Topic, ...] = ()
    subs: tuple[Topic, ...] = ()
    #: parameters the node cannot run without (name -> why), checked against what rcl gives it
    needs: tuple[tuple[str, str], ...] = ()
    #: it reads its parameters from the launch file's parameter file (nothing matched: defaults)
    uses_params_file: bool = True
    #: transforms it publishes: (parent parameter, default, child parameter, default)
    tf: tuple[tuple[str, str, str, str], ...] = ()
    source: str = ""


@dataclass(frozen=True)
class UpstreamLaunch:
    package: str
    file: str
    pushes_namespace: bool
    #: the launch argument RewrittenYaml puts the parameter file under (root_key)
    root_key_argument: str
    remappings: tuple[tuple[str, str], ...]
    nodes: tuple[UpstreamNode, ...]
    #: per node name, remappings of its own besides `remappings`
    node_remappings: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    source: str = ""


TWIST = "geometry_msgs/msg/Twist"  # enable_stamped_cmd_vel defaults to false in Jazzy:
# nav2_util/include/nav2_util/twist_publisher.hpp:62-65 (NAV2)
ODOM = Topic("odom", "nav_msgs/msg/Odometry", DEFAULT, f"{NAV2} nav2_util/src/odometry_utils.cpp:33-35", "odom_topic")
SCAN_SENSOR = Topic("scan", "sensor_msgs/msg/LaserScan", SENSOR,
                    f"{NAV2} nav2_costmap_2d/plugins/obstacle_layer.cpp:228 (observation sources, sensor data QoS)",
                    "*.scan.topic")
#: '{parent}': the costmap's map is the server's, parent_namespace + '/map' (costmap_2d_ros.cpp:104)
MAP_SUB = Topic("{parent}/map", "nav_msgs/msg/OccupancyGrid", LATCHED,
                f"{NAV2} nav2_costmap_2d/plugins/static_layer.cpp:96-98 (map_subscribe_transient_local true), "
                "nav2_costmap_2d/src/costmap_2d_ros.cpp:104")
COSTMAP = "nav_msgs/msg/OccupancyGrid"


def _costmap(name: str) -> UpstreamNode:
    """A costmap: a node of its own, `<name>/<name>` in the server's namespace, made by the server
    (nav2_costmap_2d/src/costmap_2d_ros.cpp:78-95: node `name` in parent_namespace/local_namespace)."""
    return UpstreamNode(f"{name}/{name}", "nav2_costmap_2d", subs=(MAP_SUB, SCAN_SENSOR), pubs=(
        Topic("costmap", COSTMAP, LATCHED, f"{NAV2} nav2_costmap_2d/src/costmap_2d_publisher.cpp:70-75"),),
        needs=(("robot_base_frame", "the robot's own base frame (namespaced robots share no frame)"),),
        source=f"{NAV2} nav2_costmap_2d/src/costmap_2d_ros.cpp:78-95")


NAV2_LOCALIZATION = UpstreamLaunch(
    "nav2_bringup", "localization_launch.py", pushes_namespace=False, root_key_argument="namespace",
    remappings=(("/tf", "tf"), ("/tf_static", "tf_static")),
    source=f"{LAUNCH}/localization_launch.py:55 (remappings), 58-62 (RewrittenYaml root_key), "
           "119-170 (Nodes with no namespace; only bringup_launch.py:145 pushes one)",
    nodes=(
        UpstreamNode("map_server", "nav2_map_server", pubs=(
            Topic("map", "nav_msgs/msg/OccupancyGrid", LATCHED,
                  f"{NAV2} nav2_map_server/src/map_server/map_server.cpp:116-118", "topic_name"),),
            source=f"{LAUNCH}/localization_launch.py:137-150"),
        UpstreamNode("amcl", "nav2_amcl", subs=(
            Topic("scan", "sensor_msgs/msg/LaserScan", SENSOR, f"{NAV2} nav2_amcl/src/amcl_node.cpp:1535-1537",
                  "scan_topic"),
            Topic("map", "nav_msgs/msg/OccupancyGrid", LATCHED, f"{NAV2} nav2_amcl/src/amcl_node.cpp:1569-1571",
                  "map_topic"),
            Topic("initialpose", "geometry_msgs/msg/PoseWithCovarianceStamped", DEFAULT,
                  f"{NAV2} nav2_amcl/src/amcl_node.cpp:1565-1567", optional=True)),
            pubs=(Topic("amcl_pose", "geometry_msgs/msg/PoseWithCovarianceStamped", LATCHED,
                        f"{NAV2} nav2_amcl/src/amcl_node.cpp:1561-1563"),
                  Topic("particle_cloud", "nav2_msgs/msg/ParticleCloud", SENSOR,
                        f"{NAV2} nav2_amcl/src/amcl_node.cpp:1557-1559")),
            needs=(("base_frame_id", "the robot's own base frame"), ("odom_frame_id", "the robot's own odom frame"),
                   ("set_initial_pose", "without a pose AMCL publishes no map -> odom, the global costmap's "
                    "activation times out (initial_transform_timeout) and the lifecycle manager aborts bring-up "
                    f"({NAV2} nav2_amcl/src/amcl_node.cpp:131-148)"),
                   ("initial_pose", "where the robot starts")),
            tf=(("global_frame_id", "map", "odom_frame_id", "odom"),),
            source=f"{LAUNCH}/localization_launch.py:151-160"),
        UpstreamNode("lifecycle_manager_localization", "nav2_lifecycle_manager", uses_params_file=False,
                     source=f"{LAUNCH}/localization_launch.py:161-168 (node_names inline)"),
    ))

NAV2_NAVIGATION = UpstreamLaunch(
    "nav2_bringup", "navigation_launch.py", pushes_namespace=False, root_key_argument="namespace",
    remappings=(("/tf", "tf"), ("/tf_static", "tf_static")),
    node_remappings={"controller_server": (("cmd_vel", "cmd_vel_nav"),),
                     "behavior_server": (("cmd_vel", "cmd_vel_nav"),),
                     "velocity_smoother": (("cmd_vel", "cmd_vel_nav"),)},
    source=f"{LAUNCH}/navigation_launch.py:61 (remappings), 66-74 (RewrittenYaml root_key), "
           "118-251 (Nodes with no namespace)",
    nodes=(
        UpstreamNode("controller_server", "nav2_controller", subs=(ODOM,), pubs=(
            Topic("cmd_vel", TWIST, DEFAULT, f"{NAV2} nav2_controller/src/controller_server.cpp:227"),),
            source=f"{LAUNCH}/navigation_launch.py:129-138"),
        _costmap("local_costmap"),
        UpstreamNode("smoother_server", "nav2_smoother", source=f"{LAUNCH}/navigation_launch.py:139-149"),
        UpstreamNode("planner_server", "nav2_planner", pubs=(
            Topic("plan", "nav_msgs/msg/Path", DEFAULT, f"{NAV2} nav2_planner/src/planner_server.cpp:150"),),
            source=f"{LAUNCH}/navigation_launch.py:150-160"),
        _costmap("global_costmap"),
        UpstreamNode("route_server", "nav2_route", source=f"{LAUNCH}/navigation_launch.py:161-171"),
        UpstreamNode("behavior_server", "nav2_behaviors", pubs=(
            Topic("cmd_vel", TWIST, DEFAULT, f"{NAV2} nav2_behaviors (TwistPublisher 'cmd_vel')"),),
            source=f"{LAUNCH}/navigation_launch.py:172-182"),
        UpstreamNode("bt_navigator", "nav2_bt_navigator", needs=(
            ("robot_base_frame", "its default, base_link, is no frame of a prefixed robot "
             f"({NAV2} nav2_bt_navigator/src/bt_navigator.cpp:49)"),),
            source=f"{LAUNCH}/navigation_launch.py:183-193"),
        UpstreamNode("waypoint_follower", "nav2_waypoint_follower",
                     source=f"{LAUNCH}/navigation_launch.py:194-204"),
        UpstreamNode("velocity_smoother", "nav2_velocity_smoother", subs=(
            Topic("cmd_vel", TWIST, DEFAULT, f"{NAV2} nav2_velocity_smoother/src/velocity_smoother.cpp:156-158"),),
            pubs=(Topic("cmd_vel_smoothed", TWIST, DEFAULT,
                        f"{NAV2} nav2_velocity_smoother/src/velocity_smoother.cpp:155"),),
            source=f"{LAUNCH}/navigation_launch.py:205-216"),
        UpstreamNode("collision_monitor", "nav2_collision_monitor", subs=(
            Topic("cmd_vel_smoothed", TWIST, DEFAULT,
                  f"{NAV2} nav2_collision_monitor/src/collision_monitor_node.cpp:248-250", "cmd_vel_in_topic"),
            Topic("scan", "sensor_msgs/msg/LaserScan", SENSOR, f"{NAV2} nav2_collision_monitor/src/scan.cpp:63-66",
                  "scan.topic")),
            pubs=(Topic("cmd_vel", TWIST, DEFAULT, f"{NAV2} nav2_collision_monitor/src/collision_monitor_node.cpp:77, "
                        "251-253", "cmd_vel_out_topic"),),
            needs=(("polygons", "collision_monitor fails to configure without it and the lifecycle manager aborts"),
                   ("observation_sources", "as polygons")),
            source=f"{LAUNCH}/navigation_launch.py:217-227"),
        UpstreamNode("docking_server", "opennav_docking", source=f"{LAUNCH}/navigation_launch.py:228-238"),
        UpstreamNode("lifecycle_manager_navigation", "nav2_lifecycle_manager", uses_params_file=False,
                     source=f"{LAUNCH}/navigation_launch.py:239-247 (node_names inline)"),
    ))

NAV2_LAUNCH_FILES = {u.file: u for u in (NAV2_LOCALIZATION, NAV2_NAVIGATION)}

#: a costmap's TransformListener is made without a node (costmap_2d_ros.cpp:175), so it makes its
#: own, `_` renamed by argument and in the namespace the process's arguments give
#: (GEOMETRY2 tf2_ros/src/transform_listener.cpp:43-58): the server's, not the costmap's
COSTMAP_TF_IN_SERVER_NAMESPACE = (f"{NAV2} nav2_costmap_2d/src/costmap_2d_ros.cpp:175, "
                                  f"{GEOMETRY2} tf2_ros/src/transform_listener.cpp:43-58")

#: tf2_ros's listener: /tf and /tf_static, absolute (a node in a namespace hears its robot's tf
#: only when remapped); the static one transient local
TF_LISTENER = (Topic("/tf", "tf2_msgs/msg/TFMessage", DEFAULT, f"{GEOMETRY2} tf2_ros/include/tf2_ros/qos.hpp:39-50, "
                     "tf2_ros/src/transform_listener.cpp:65"),
               Topic("/tf_static", "tf2_msgs/msg/TFMessage", LATCHED,
                     f"{GEOMETRY2} tf2_ros/include/tf2_ros/qos.hpp:53-64"))

ROBOT_STATE_PUBLISHER = UpstreamNode(
    "robot_state_publisher", "robot_state_publisher", uses_params_file=False,
    pubs=(Topic("robot_description", "std_msgs/msg/String", LATCHED, f"{RSP} src/robot_state_publisher.cpp:132-135"),
          Topic("/tf", "tf2_msgs/msg/TFMessage", DEFAULT,
                f"{RSP} src/robot_state_publisher.cpp:129 (TransformBroadcaster)"),
          Topic("/tf_static", "tf2_msgs/msg/TFMessage", LATCHED,
                f"{RSP} src/robot_state_publisher.cpp:130 (StaticTransformBroadcaster)")),
    subs=(Topic("joint_states", "sensor_msgs/msg/JointState", SENSOR, f"{RSP} src/robot_state_publisher.cpp:144-146"),),
    needs=(("robot_description", "the URDF it publishes the links' tf from"),))

#: ros2_control's controller manager: ros2_control_node makes it as `controller_manager`
#: (controller_manager/src/ros2_control_node.cpp:43, 58-59); Gazebo's plugin makes it in the
#: plugin's <ros><namespace> with its <parameters> file (GZ_ROS2_CONTROL
#: gz_ros2_control/src/gz_ros2_control_plugin.cpp:281-304, 327-331)
CONTROLLER_MANAGER = UpstreamNode(
    "controller_manager", "controller_manager",
    subs=(Topic("robot_description", "std_msgs/msg/String", LATCHED,
                f"{ROS2_CONTROL} controller_manager/src/controller_manager.cpp:755-756"),),
    needs=(("update_rate", "the controllers' rate, and the sign that the controllers file reached it"),),
    source=f"{ROS2_CONTROL} controller_manager/src/ros2_control_node.cpp:43, 58-59")
#: a spawned joint_state_broadcaster: a node in the manager's namespace publishing joint_states
JOINT_STATE_BROADCASTER = UpstreamNode(
    "joint_state_broadcaster", "joint_state_broadcaster", uses_params_file=False,
    pubs=(Topic("joint_states", "sensor_msgs/msg/JointState", DEFAULT,
                f"{CONTROLLERS} joint_state_broadcaster/src/joint_state_broadcaster.cpp:139-142"),),
    source=f"{CONTROLLERS} joint_state_broadcaster/src/joint_state_broadcaster.cpp:139-142")

#: sim:=none: what the robot's own driver is asked to publish (docs/ros2_users.md, "Real robots"):
#: not upstream's, the lab's assumption about the user's hardware, shown as such in the audit
DRIVER = UpstreamNode(
    "(the robot's driver)", "", uses_params_file=False,
    pubs=(Topic("scan", "sensor_msgs/msg/LaserScan", SENSOR, "docs/ros2_users.md (assumed of the driver)"),
          Topic("odom", "nav_msgs/msg/Odometry", DEFAULT, "docs/ros2_users.md (assumed of the driver)"),
          Topic("wrist_camera/image", "sensor_msgs/msg/Image", DEFAULT, "docs/ros2_users.md (assumed of the driver)")),
    tf=(("odom_frame", "{robot}/odom", "base_frame", "{robot}/base_footprint"),))

#: ros_gz_bridge's parameter_bridge: every ROS endpoint KeepLast(queue size), reliable, volatile
BRIDGE_QOS = (DEFAULT, f"{ROS_GZ} ros_gz_bridge/src/factory.hpp:78-79, 111-112")
#: ros_gz_sim's `create` makes a node named ros_gz_sim
CREATE_NODE = ("ros_gz_sim", f"{ROS_GZ} ros_gz_sim/src/create.cpp:96")

#: nav2_simple_commander's BasicNavigator (the nav2 navigation backend's): a node of its own
BASIC_NAVIGATOR = UpstreamNode(
    "basic_navigator", "nav2_simple_commander", uses_params_file=False,
    subs=(Topic("amcl_pose", "geometry_msgs/msg/PoseWithCovarianceStamped", LATCHED,
                f"{NAV2} nav2_simple_commander/nav2_simple_commander/robot_navigator.py:67-72, 103-108"),),
    pubs=(Topic("initialpose", "geometry_msgs/msg/PoseWithCovarianceStamped", DEFAULT,
                f"{NAV2} nav2_simple_commander/nav2_simple_commander/robot_navigator.py:109-111"),),
    source=f"{NAV2} nav2_simple_commander/nav2_simple_commander/robot_navigator.py:58-59")

# --- MoveIt -----------------------------------------------------------------------------------

MOVEIT_PY = f"{MOVEIT} moveit_py/src/moveit/moveit_ros/moveit_cpp/moveit_cpp.cpp"
#: what MoveItPy(...) does with its arguments
MOVEIT_PY_FACTS = {
    "defaults": f"{MOVEIT_PY}:151-154 (node_name 'moveit_py', name_space '', provide_planning_service true)",
    "config_dict": f"{MOVEIT} moveit_py/moveit/utils.py:44-48 (written keyed by the bare node name)",
    "node": f"{MOVEIT_PY}:124 (rclcpp::Node::make_shared(node_name, name_space, options))",
    "service": f"{MOVEIT_PY}:144 (provide_planning_service: get_planning_scene)",
}
MOVEIT_PY_NEEDS = (("robot_description", "the URDF"),
                   ("robot_description_semantic", "without it: 'Unable to configure planning scene monitor'"))
JOINT_STATES = Topic("joint_states", "sensor_msgs/msg/JointState", DEFAULT,
                     f"{MOVEIT} moveit_ros/planning/planning_scene_monitor (CurrentStateMonitor, relative)")
GET_PLANNING_SCENE = "get_planning_scene"


def moveit_py_node(node_name: str = "moveit_py", name_space: str = "", launch_params_filepaths: list[str] | None = None,
                   config_dict: dict | None = None, provide_planning_service: bool = True,
                   remappings: dict[str, str] | None = None) -> dict:
    """What MoveItPy(...) creates: its node's full name, the parameter files (config_dict written
    keyed by the bare node name, as moveit_py does), the services it offers and its remappings."""
    import yaml

    from lab.core.robot.robot_files import write_temp

    files = list(launch_params_filepaths or [])
    if config_dict is not None:
        files.append(write_temp(yaml.safe_dump({node_name: {"ros__parameters": config_dict}}),
                                "moveit_py_config_dict.yaml"))
    full = f"/{name_space.strip('/')}/{node_name}" if name_space.strip("/") else f"/{node_name}"
    return {"name": full, "param_files": files, "services": [GET_PLANNING_SCENE] if provide_planning_service else [],
            "remappings": dict(remappings or {}), "source": MOVEIT_PY_FACTS["node"]}


#: MoveItConfigsBuilder's methods in Jazzy (moveit_configs_utils/moveit_configs_builder.py at
#: MOVEIT, the class's `def` lines; there is no `cartesian_limits`: `pilz_cartesian_limits`)
JAZZY_BUILDER_METHODS = ("robot_description", "robot_description_semantic", "robot_description_kinematics",
                         "joint_limits", "moveit_cpp", "trajectory_execution", "planning_scene_monitor",
                         "sensors_3d", "planning_pipelines", "pilz_cartesian_limits", "to_moveit_configs", "to_dict")


def builder_model(calls: dict):
    """A MoveItConfigsBuilder with Jazzy's methods and no others (AttributeError, as the real one
    raises), recording each call's file or arguments; to_dict gives robot_description and
    robot_description_semantic as the files' text (moveit_configs_builder.py:254-280, 535-556)."""

    class Builder:
        def __init__(self, robot_name, robot_description="robot_description", package_name=None):
            calls["package"] = package_name

        def __getattr__(self, name):
            if name not in JAZZY_BUILDER_METHODS:
                raise AttributeError(f"'MoveItConfigsBuilder' object has no attribute '{name}'")

            def record(*args, **kwargs):
                calls[name] = kwargs.get("file_path", kwargs or args)
                return self
            return record

        def to_dict(self):
            out: dict = {"calls": dict(calls)}
            for key in ("robot_description", "robot_description_semantic"):
                if isinstance(calls.get(key), str):
                    with open(calls[key], encoding="utf-8") as f:
                        out[key] = f.read()
            return out

    return Builder


# --- rcl's parameter-file keys ------------------------------------------------------------------

def key_matches(key: str, full_name: str) -> bool:
    """Whether a parameter file's node key gives its parameters to the node `full_name` (rcl
    rcl_yaml_param_parser and rclcpp parameter_map: the key is the node's full name, a leading '/'
    optional; '*' stands for one name token, '**' for any number of them)."""
    import re

    key = "/" + key.lstrip("/")
    pattern = "".join("(/[^/]+)*" if part == "**" else "/[^/]+" if part == "*" else "/" + re.escape(part)
                      for part in key.strip("/").split("/"))
    return re.fullmatch(pattern, full_name) is not None


def rewritten_yaml(doc: dict, root_key: str) -> dict:
    """nav2_common's RewrittenYaml(root_key=...): the document under the root key (none when empty)
    (navigation2 f4108e5 nav2_common/nav2_common/launch/rewritten_yaml.py)."""
    return {root_key: doc} if root_key else doc
