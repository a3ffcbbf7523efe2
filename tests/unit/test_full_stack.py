"""Static checks of the full-stack inputs (Gazebo Harmonic, ros2_control, Nav2, MoveIt 2).

This machine has no Gazebo, Nav2 or MoveIt: what can be checked without them is checked
here (the expanded robot description, that every name one file refers to exists in the
other, the bridge, map and parameter files, the backends' refusal without their packages).
Running them needs a ROS 2 Jazzy installation (docs/ros2_users.md).
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from lab.bringup.full_stack import bridge_config
from lab.bringup.upstream import builder_model
from lab.core.config.nodetable import expand
from lab.core.errors import BackendUnavailable
from lab.core.robot.kinematics import expand_xacro
from lab.core.robot.robot_files import prefix_srdf, prefixed_controllers, prefixed_joint_limits, prefixed_yaml
from lab.core.robot.world import ROBOT_FOOTPRINT
from lab.paths import share_dir

SHARE = share_dir()


@pytest.fixture(scope="module")
def urdf_robot2(tmp_path_factory):
    controllers = tmp_path_factory.mktemp("c") / "controllers.yaml"
    controllers.write_text(prefixed_yaml(SHARE / "config" / "ros2_controllers.yaml", "robot2"))
    text = expand_xacro(SHARE / "urdf" / "kmr_iiwa.urdf.xacro", prefix="robot2/", ros2_control="true",
                        gazebo="true", robot_name="robot2", controllers_file=str(controllers))
    return text, ET.fromstring(text)


def test_full_description_names_its_plugins_and_sensors(urdf_robot2):
    text, root = urdf_robot2
    plugins = {p.get("filename") for p in root.iter("plugin")}
    assert {"gz_ros2_control-system", "gz-sim-velocity-control-system", "gz-sim-odometry-publisher-system"} <= plugins
    sensors = {s.get("type") for s in root.iter("sensor")}
    assert sensors == {"gpu_lidar", "camera"}
    assert "/model/robot2/cmd_vel" in text


@pytest.mark.skipif(shutil.which("check_urdf") is None, reason="check_urdf (liburdfdom-tools) not installed")
def test_full_description_is_valid_urdf(urdf_robot2, tmp_path):
    path = tmp_path / "robot2.urdf"
    path.write_text(urdf_robot2[0])
    run = subprocess.run(["check_urdf", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ros2_control_and_controllers_name_real_joints(urdf_robot2):
    _, root = urdf_robot2
    joints = {j.get("name") for j in root.findall("joint")}
    controlled = {j.get("name") for j in root.iter("ros2_control") for j in j.findall("joint")}
    assert controlled and controlled <= joints
    controllers = yaml.safe_load(prefixed_yaml(SHARE / "config" / "ros2_controllers.yaml", "robot2"))
    arm = controllers["/**"]["arm_controller"]["ros__parameters"]["joints"]
    assert arm == [f"robot2/joint_a{i}" for i in range(1, 8)] and set(arm) <= controlled
    moveit = prefixed_controllers(SHARE / "config" / "moveit" / "moveit_controllers.yaml", "robot2/")
    for name in moveit["moveit_simple_controller_manager"]["controller_names"]:
        assert set(moveit["moveit_simple_controller_manager"][name]["joints"]) <= joints


def test_prefixed_srdf_refers_only_to_the_robots_links_and_joints(urdf_robot2):
    _, root = urdf_robot2
    names = {e.get("name") for e in root if e.tag in ("joint", "link")}
    srdf = ET.fromstring(prefix_srdf((SHARE / "urdf" / "kmr_iiwa.srdf").read_text(), "robot2/"))
    referenced = {e.get("name") for e in srdf.iter() if e.tag in ("joint", "link", "passive_joint")}
    for e in srdf.iter():
        referenced |= {e.get(a) for a in ("link1", "link2", "base_link", "tip_link") if e.get(a)}
    assert referenced and referenced <= names, referenced - names


def test_bridge_covers_every_robot():
    entries = bridge_config(SHARE, ["robot1", "robot2"])
    topics = [e["ros_topic_name"] for e in entries]
    assert topics.count("/clock") == 1
    for robot in ("robot1", "robot2"):
        assert {f"/{robot}/cmd_vel", f"/{robot}/odom", f"/{robot}/scan", f"/{robot}/wrist_camera/image"} <= set(topics)
    assert all(e["direction"] in ("GZ_TO_ROS", "ROS_TO_GZ") for e in entries)


def test_nav2_params_match_the_robot_and_are_per_robot():
    params = yaml.safe_load(prefixed_yaml(SHARE / "config" / "nav2_params.yaml", "robot2"))
    assert params["amcl"]["ros__parameters"]["base_frame_id"] == "robot2/base_footprint"
    assert params["controller_server"]["ros__parameters"]["FollowPath"]["motion_model"] == "Omni"
    footprint = yaml.safe_load(params["local_costmap"]["local_costmap"]["ros__parameters"]["footprint"])
    xs, ys = [p[0] for p in footprint], [p[1] for p in footprint]
    assert (max(xs) - min(xs), max(ys) - min(ys)) == pytest.approx(ROBOT_FOOTPRINT)


def test_map_is_generated_from_the_world():
    run = subprocess.run([sys.executable, str(SHARE / "scripts" / "make_map.py"), "--check"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    meta = yaml.safe_load((SHARE / "maps" / "lab.yaml").read_text())
    assert meta["image"] == "lab.pgm" and meta["resolution"] == 0.05


def test_rviz_config_shows_the_lab():
    doc = yaml.safe_load((SHARE / "rviz" / "lab.rviz").read_text())
    topics = {d.get("Topic", {}).get("Value") for d in doc["Visualization Manager"]["Displays"]}
    assert {"/lab_markers", "/robot1/plan", "/robot1/wrist_camera/image"} <= topics


@pytest.mark.parametrize("capability,name,module,package", [
    ("navigation", "nav2", "nav2_simple_commander", "ros-jazzy-nav2-simple-commander"),
    ("manipulation", "moveit", "moveit", "ros-jazzy-moveit-py"),
])
def test_full_stack_backends_say_what_to_install(capability, name, module, package):
    from lab.backends.base import backend_class

    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(BackendUnavailable, match=package):
        backend_class(capability, name)


#: Gazebo Harmonic (gz-sim 8) systems this lab may load: plugin library -> class name. Source: gz-sim's
#: src/systems/<name>/CMakeLists.txt (`gz_add_system(<name> ...)` builds library gz-sim-<name>-system)
#: and the system's header (class gz::sim::systems::<Class>); gz_ros2_control's CMakeLists.txt
#: (library gz_ros2_control-system) and src/gz_ros2_control_plugin.cpp (the class it registers).
GZ_HARMONIC_SYSTEMS = {
    "gz-sim-physics-system": "gz::sim::systems::Physics",
    "gz-sim-user-commands-system": "gz::sim::systems::UserCommands",
    "gz-sim-scene-broadcaster-system": "gz::sim::systems::SceneBroadcaster",
    "gz-sim-sensors-system": "gz::sim::systems::Sensors",
    "gz-sim-imu-system": "gz::sim::systems::Imu",
    "gz-sim-contact-system": "gz::sim::systems::Contact",
    "gz-sim-velocity-control-system": "gz::sim::systems::VelocityControl",
    "gz-sim-odometry-publisher-system": "gz::sim::systems::OdometryPublisher",
    "gz-sim-joint-state-publisher-system": "gz::sim::systems::JointStatePublisher",
    "gz-sim-diff-drive-system": "gz::sim::systems::DiffDrive",
    "gz-sim-mecanum-drive-system": "gz::sim::systems::MecanumDrive",
    "gz-sim-detachable-joint-system": "gz::sim::systems::DetachableJoint",
    "gz_ros2_control-system": "gz_ros2_control::GazeboSimROS2ControlPlugin",
}


def test_every_gazebo_plugin_names_a_system_gazebo_harmonic_ships(urdf_robot2):
    _, robot = urdf_robot2
    world = ET.parse(SHARE / "worlds" / "lab.sdf").getroot()
    plugins = [(p.get("filename"), p.get("name")) for root in (robot, world) for p in root.iter("plugin")
               if p.get("filename")]
    assert len(plugins) >= 7
    unknown = [(f, n) for f, n in plugins if GZ_HARMONIC_SYSTEMS.get(f) != n]
    assert not unknown, f"not Gazebo Harmonic systems (library, class): {unknown}"
    # the ros2_control hardware plugin (pluginlib, gz_ros2_control's gz_hardware_plugins.xml)
    assert {h.text for h in robot.iter("plugin") if not h.get("filename")} == {"gz_ros2_control/GazeboSimSystem"}


def test_bridge_topics_are_ones_gazebo_publishes_or_subscribes(urdf_robot2):
    text, robot = urdf_robot2
    gz_topics = {t.text for t in robot.iter() if t.tag in ("topic", "odom_topic", "tf_topic") and t.text}
    images = {t for t in gz_topics if t.endswith("/image")}
    # a camera sensor publishes its camera_info beside the image (gz-sensors: <topic dir>/camera_info)
    gz_topics |= {t.rsplit("/", 1)[0] + "/camera_info" for t in images}
    gz_topics.add("/clock")  # the world's clock (gz sim's /clock, published with the scene broadcaster)
    entries = [e for e in bridge_config(SHARE, ["robot1", "robot2"]) if "robot1" not in e["gz_topic_name"]]
    missing = [e["gz_topic_name"] for e in entries if e["gz_topic_name"] not in gz_topics]
    assert not missing, f"bridged, but nothing in Gazebo publishes or subscribes: {missing}"
    ros = {e["ros_topic_name"]: e for e in entries}
    assert ros["/robot2/tf"]["ros_type_name"] == "tf2_msgs/msg/TFMessage" and \
        ros["/robot2/tf"]["gz_type_name"] == "gz.msgs.Pose_V"
    # joint states come from joint_state_broadcaster, never from the bridge as well
    controllers = yaml.safe_load((SHARE / "config" / "ros2_controllers.yaml").read_text())
    assert "joint_state_broadcaster" in yaml.safe_dump(controllers)
    assert not any(e["ros_topic_name"].endswith("/joint_states") for e in entries)


#: the Nav2 Jazzy plugins this lab may name (pluginlib class names, Jazzy's '::' form). Source: the
#: plugin description XMLs of navigation2's jazzy branch (nav2_controller, nav2_mppi_controller,
#: nav2_costmap_2d, nav2_smac_planner, nav2_navfn_planner, nav2_amcl, nav2_behaviors,
#: opennav_docking) and nav2_bringup/params/nav2_params.yaml.
NAV2_JAZZY_PLUGINS = {
    "nav2_amcl::OmniMotionModel", "nav2_amcl::DifferentialMotionModel",
    "nav2_controller::SimpleProgressChecker", "nav2_controller::SimpleGoalChecker",
    "nav2_controller::StoppedGoalChecker", "nav2_mppi_controller::MPPIController",
    "dwb_core::DWBLocalPlanner", "nav2_regulated_pure_pursuit_controller::RegulatedPurePursuitController",
    "nav2_costmap_2d::StaticLayer", "nav2_costmap_2d::ObstacleLayer", "nav2_costmap_2d::InflationLayer",
    "nav2_costmap_2d::VoxelLayer", "nav2_smac_planner::SmacPlanner2D", "nav2_smac_planner::SmacPlannerHybrid",
    "nav2_navfn_planner::NavfnPlanner", "nav2_behaviors::Spin", "nav2_behaviors::BackUp",
    "nav2_behaviors::DriveOnHeading", "nav2_behaviors::Wait", "nav2_behaviors::AssistedTeleop",
    "opennav_docking::SimpleChargingDock",
}


def _plugins(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "plugin":
                yield f"{path}/plugin", value
            else:
                yield from _plugins(value, f"{path}/{key}")


def test_nav2_params_name_only_plugins_nav2_jazzy_ships():
    params = yaml.safe_load((SHARE / "config" / "nav2_params.yaml").read_text())
    found = list(_plugins(params))
    found.append(("amcl/robot_model_type", params["amcl"]["ros__parameters"]["robot_model_type"]))
    assert len(found) >= 10
    unknown = [(where, name) for where, name in found if name not in NAV2_JAZZY_PLUGINS]
    assert not unknown, unknown
    # every plugin list names entries that are configured with a plugin
    controller = params["controller_server"]["ros__parameters"]
    for key in ("controller_plugins", "goal_checker_plugins", "progress_checker_plugins"):
        assert all("plugin" in controller[name] for name in controller[key])
    behaviors = params["behavior_server"]["ros__parameters"]
    assert all("plugin" in behaviors[name] for name in behaviors["behavior_plugins"])


def test_nav2_jazzy_nodes_that_need_parameters_have_them():
    """Jazzy's navigation_launch.py starts collision_monitor and docking_server (every release from
    1.3.0; 1.3.9 also route_server), which refuse to configure without their parameters; the
    velocity smoother's defaults allow no lateral speed."""
    params = yaml.safe_load((SHARE / "config" / "nav2_params.yaml").read_text())
    monitor = params["collision_monitor"]["ros__parameters"]
    assert monitor["polygons"] and all(name in monitor for name in monitor["polygons"])
    assert all(name in monitor for name in monitor["observation_sources"])
    docking = params["docking_server"]["ros__parameters"]
    assert docking["dock_plugins"] and all("plugin" in docking[name] for name in docking["dock_plugins"])
    smoother = params["velocity_smoother"]["ros__parameters"]
    mppi = params["controller_server"]["ros__parameters"]["FollowPath"]
    assert smoother["max_velocity"] == [mppi["vx_max"], mppi["vy_max"], mppi["wz_max"]]


#: MoveItConfigsBuilder with Jazzy's methods only (lab.bringup.upstream, with its source)
jazzy_builder_stand_in = builder_model


def test_builder_stand_in_refuses_what_jazzy_lacks():
    """The check is not vacuous: the call that stopped the launch (`cartesian_limits`) fails."""
    builder = jazzy_builder_stand_in({})("kmr_iiwa", package_name="lab")
    with pytest.raises(AttributeError, match="cartesian_limits"):
        builder.joint_limits(file_path="x").cartesian_limits(file_path="y")


def test_move_group_parameters_are_built_by_moveit_configs_utils(monkeypatch):
    """Where moveit_configs_utils is installed the real MoveItConfigsBuilder runs; where it is not
    (here), a stand-in records the calls: every file handed to the builder exists and parses, and
    the package it reads the pipeline from (lab) has config/ompl_planning.yaml."""
    from lab.backends.moveit_config import moveit_parameters

    calls: dict[str, object] = {}
    if importlib.util.find_spec("moveit_configs_utils") is None:
        import types

        monkeypatch.setitem(sys.modules, "moveit_configs_utils",
                            types.SimpleNamespace(MoveItConfigsBuilder=jazzy_builder_stand_in(calls)))
    else:
        pytest.importorskip("xacro")
    description = expand_xacro(SHARE / "urdf" / "kmr_iiwa.urdf.xacro", prefix="robot2/", ros2_control="true",
                               gazebo="false", robot_name="robot2")
    params = moveit_parameters(SHARE, "robot2", description)
    assert "robot_description" in params
    if calls:
        assert calls["package"] == "lab" and (SHARE / "config" / "ompl_planning.yaml").is_file()
        assert ET.parse(calls["robot_description"]).getroot().get("name")
        srdf = ET.parse(calls["robot_description_semantic"]).getroot()
        assert all(j.get("name", "").startswith("robot2/") for j in srdf.iter("joint"))
        for key in ("robot_description_kinematics", "joint_limits", "pilz_cartesian_limits", "trajectory_execution",
                    "moveit_cpp"):
            assert yaml.safe_load(open(calls[key])), key
        assert calls["planning_pipelines"] == {"pipelines": ["ompl"]}
        ompl = yaml.safe_load((SHARE / "config" / "ompl_planning.yaml").read_text())
        assert ompl["planning_plugins"] == ["ompl_interface/OMPLPlanner"] and "arm" in ompl


# --- nav2_bringup's rewriting and rcl's names -------------------------------------------------

_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def rcl_node_key_error(name: str) -> str:
    """Why rcl's parameter-file parser refuses a node key (the keys above `ros__parameters` joined
    with '/'), '' when it accepts it. After rcl 9.2 (Jazzy) rcl_yaml_param_parser/src/parse.c
    `_validate_name`: '/**' and '/*' as a whole are fine; otherwise every namespace part must be a
    valid name or a wildcard ('//' is "repeated forward slash"), and the node name likewise."""
    if name in ("/**", "/*"):
        return ""
    namespace, _, node = name.rpartition("/")
    parts = namespace.lstrip("/").split("/") if namespace else []
    for part in parts:
        if part == "":
            return f"{name} contains repeated forward slash"
        if part not in ("*", "**") and not _NAME_TOKEN.fullmatch(part):
            return f"{name}: namespace part {part!r} is not a valid name"
    if node not in ("*", "**") and not _NAME_TOKEN.fullmatch(node):
        return f"{name}: node name {node!r} is not valid"
    return ""


def node_keys(doc: dict, path: tuple[str, ...] = ()) -> list[str]:
    """The node keys rcl forms from a parameter document (keys joined with '/' down to ros__parameters)."""
    keys = []
    for key, value in doc.items():
        if key == "ros__parameters":
            keys.append("/".join(path))
        elif isinstance(value, dict):
            keys += node_keys(value, path + (str(key),))
    return keys


def nav2_bringup_rewrite(text: str, namespace: str) -> dict:
    """What nav2_bringup's launch files hand to the nodes: RewrittenYaml(root_key=namespace)
    (navigation2 jazzy, nav2_bringup/launch/navigation_launch.py and localization_launch.py;
    nav2_common/launch/rewritten_yaml.py puts the document under the root key)."""
    return {namespace: yaml.safe_load(text)}


def test_rcl_name_rule_refuses_what_rcl_refuses():
    assert rcl_node_key_error("robot1//**/amcl").endswith("repeated forward slash")
    assert rcl_node_key_error("robot1/amcl") == "" and rcl_node_key_error("/**/controller_manager") == ""
    assert rcl_node_key_error("robot1/local_costmap/local_costmap") == ""
    wrapped = "/**:\n  amcl:\n    ros__parameters: {a: 1}\n"  # the shape this lab's file once had
    assert [rcl_node_key_error(k) for k in node_keys(nav2_bringup_rewrite(wrapped, "robot1"))] == [
        "robot1//**/amcl contains repeated forward slash"]


def test_nav2_params_survive_nav2_bringups_namespacing():
    for robot in ("robot1", "robot2"):
        doc = nav2_bringup_rewrite(prefixed_yaml(SHARE / "config" / "nav2_params.yaml", robot), robot)
        keys = node_keys(doc)
        assert f"{robot}/amcl" in keys and f"{robot}/local_costmap/local_costmap" in keys
        errors = [e for e in map(rcl_node_key_error, keys) if e]
        assert not errors, errors


# --- names and interfaces that must exist ------------------------------------------------------

def test_every_joint_moveit_and_ros2_control_name_exists(urdf_robot2):
    _, root = urdf_robot2
    joints = {j.get("name") for j in root.findall("joint")}
    limits = prefixed_joint_limits(SHARE / "config" / "moveit" / "joint_limits.yaml", "robot2/")
    assert set(limits["joint_limits"]) and set(limits["joint_limits"]) <= joints, set(limits["joint_limits"]) - joints
    srdf = ET.fromstring(prefix_srdf((SHARE / "urdf" / "kmr_iiwa.srdf").read_text(), "robot2/"))
    named = {e.get("name") for e in srdf.iter() if e.tag in ("joint", "passive_joint")}
    assert named <= joints, named - joints
    controllers = yaml.safe_load(prefixed_yaml(SHARE / "config" / "ros2_controllers.yaml", "robot2"))["/**"]
    gripper = controllers["gripper_controller"]["ros__parameters"]["joint"]
    assert gripper in joints


def test_unprefixed_joint_limits_would_be_caught(urdf_robot2):
    """The joint-limit check is not vacuous: the file as MoveIt once got it names no URDF joint."""
    _, root = urdf_robot2
    joints = {j.get("name") for j in root.findall("joint")}
    raw = yaml.safe_load((SHARE / "config" / "moveit" / "joint_limits.yaml").read_text())["joint_limits"]
    assert not set(raw) & joints


#: command and state interfaces each controller type claims. Sources (ros2_controllers, branch
#: jazzy): gripper_controllers/include/gripper_controllers/gripper_action_controller_impl.hpp
#: (command: <joint>/<HardwareInterface>, position for position_controllers/; state: position
#: and velocity); joint_trajectory_controller: its `command_interfaces` and `state_interfaces`
#: parameters; joint_state_broadcaster: whatever state interfaces exist (claims none by name).
CONTROLLER_INTERFACES = {
    "position_controllers/GripperActionController": lambda p: ({p["joint"]: {"position"}},
                                                               {p["joint"]: {"position", "velocity"}}),
    "joint_trajectory_controller/JointTrajectoryController": lambda p: (
        {j: set(p["command_interfaces"]) for j in p["joints"]}, {j: set(p["state_interfaces"]) for j in p["joints"]}),
    "joint_state_broadcaster/JointStateBroadcaster": lambda p: ({}, {}),
}


def _hardware_interfaces(root) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    commands: dict[str, set[str]] = {}
    states: dict[str, set[str]] = {}
    for joint in (j for block in root.iter("ros2_control") for j in block.findall("joint")):
        commands[joint.get("name")] = {c.get("name") for c in joint.findall("command_interface")}
        states[joint.get("name")] = {c.get("name") for c in joint.findall("state_interface")}
    return commands, states


def _missing_interfaces(root, controllers: dict) -> list[str]:
    commands, states = _hardware_interfaces(root)
    manager = controllers["controller_manager"]["ros__parameters"]
    missing = []
    for name, entry in manager.items():
        if not isinstance(entry, dict) or "type" not in entry:
            continue
        claims = CONTROLLER_INTERFACES[entry["type"]](controllers.get(name, {}).get("ros__parameters", {}))
        for kind, wanted, have in (("command", claims[0], commands), ("state", claims[1], states)):
            for joint, interfaces in wanted.items():
                lacking = interfaces - have.get(joint, set())
                if lacking:
                    missing.append(f"{name}: {joint} has no {kind} interface(s) {sorted(lacking)}")
    return missing


def test_every_controller_finds_the_interfaces_it_claims(urdf_robot2):
    _, root = urdf_robot2
    controllers = yaml.safe_load(prefixed_yaml(SHARE / "config" / "ros2_controllers.yaml", "robot2"))["/**"]
    assert not _missing_interfaces(root, controllers)


def test_a_gripper_without_a_velocity_state_would_be_caught(urdf_robot2):
    _, root = urdf_robot2
    stripped = ET.fromstring(ET.tostring(root))
    for joint in (j for block in stripped.iter("ros2_control") for j in block.findall("joint")):
        for state in [s for s in joint.findall("state_interface") if "gripper" in joint.get("name", "")]:
            if state.get("name") == "velocity":
                joint.remove(state)
    controllers = yaml.safe_load(prefixed_yaml(SHARE / "config" / "ros2_controllers.yaml", "robot2"))["/**"]
    assert _missing_interfaces(stripped, controllers) == [
        "gripper_controller: robot2/gripper_finger_left_joint has no state interface(s) ['velocity']"]


# --- topics: every one a display or a costmap layer reads has a publisher ------------------------

def _resolve(topic: str, namespace: str) -> str:
    return topic if topic.startswith("/") else f"{namespace.rstrip('/')}/{topic}"


def full_stack_publishers(robots: list[str]) -> set[str]:
    """Topics something publishes on the full stack (sim:=gazebo): the bridge's GZ_TO_ROS entries,
    robot_state_publisher's robot_description and nav2_bringup's map_server (`map`) and
    planner_server (`plan`), each in the robot's namespace."""
    topics = {e["ros_topic_name"] for e in bridge_config(SHARE, robots) if e["direction"] == "GZ_TO_ROS"}
    for robot in robots:
        topics |= {f"/{robot}/robot_description", f"/{robot}/map", f"/{robot}/plan"}
    return topics


def test_costmap_layers_read_topics_that_exist():
    published = full_stack_publishers(["robot2"])
    params = yaml.safe_load(prefixed_yaml(SHARE / "config" / "nav2_params.yaml", "robot2"))
    for costmap in ("local_costmap", "global_costmap"):
        # Costmap2DROS runs as node <ns>/<costmap>/<costmap>: relative topics resolve under /<ns>/<costmap>
        layers = params[costmap][costmap]["ros__parameters"]
        for layer in layers["plugins"]:
            for source in str(layers[layer].get("observation_sources", "")).split():
                topic = _resolve(layers[layer][source].get("topic", source), f"/robot2/{costmap}")
                assert topic in published, f"{costmap}.{layer}.{source}: {topic} has no publisher"


#: RViz displays whose topic only the embedded simulation publishes (the full stack brings them to the
#: full stack): the lab's markers
EMBEDDED_ONLY = {"/lab_markers"}


def test_rviz_displays_read_topics_that_exist_on_the_full_stack():
    doc = yaml.safe_load((SHARE / "rviz" / "lab.rviz").read_text())
    displays = doc["Visualization Manager"]["Displays"]
    topics = {d.get("Topic", {}).get("Value") or d.get("Description Topic", {}).get("Value") for d in displays}
    topics.discard(None)
    # the lab's own nodes run on every stack: the lab manager's station states, the planner's progress
    on_every_stack = {"/lab_status_markers", "/campaign_markers"}
    missing = topics - full_stack_publishers(["robot1"]) - EMBEDDED_ONLY - on_every_stack
    assert not missing, missing
    (rviz,) = [s for s in expand(SHARE / "config", {"rviz": "true", "sim": "gazebo"}) if s.executable == "rviz2"]
    assert dict(rviz.remappings) == {"/tf": "/robot1/tf", "/tf_static": "/robot1/tf_static"}
    assert rviz.parameters["use_sim_time"] is True
    assert any(e["ros_topic_name"] == "/robot1/tf" for e in bridge_config(SHARE, ["robot1"]))


# --- MoveItPy and Nav2's initial pose, with stand-ins for what is not installed here -----------

def test_moveit_py_gets_the_parameters_move_group_gets(monkeypatch, tmp_path):
    import types

    from lab.backends.moveit_config import moveit_parameters
    from lab.core.robot.robot_files import robot_description

    if importlib.util.find_spec("moveit") is not None:
        pytest.skip("moveit_py is installed here: the stand-in would hide the real one")
    made: dict = {}

    class MoveItPy:
        def __init__(self, node_name="moveit_py", name_space="", launch_params_filepaths=None, config_dict=None,
                     provide_planning_service=True, remappings=None):
            # moveit2 jazzy 4d84106, moveit_py/src/moveit/moveit_ros/moveit_cpp/moveit_cpp.cpp:65-124: a
            # config_dict wins and is written keyed by the bare node name (moveit_py/moveit/utils.py:44-48),
            # else the files are passed; the node is made as name_space/node_name, and rclcpp gives it
            # the parameters of the keys equal to its full name ('/' prepended to a relative key) or /**
            files = launch_params_filepaths or []
            if config_dict is not None:
                files = [str(tmp_path / "config_dict.yaml")]
                Path(files[0]).write_text(yaml.safe_dump({node_name: {"ros__parameters": config_dict}}))
            full = f"/{name_space}/{node_name}" if name_space else f"/{node_name}"
            params: dict = {}
            for path in files:
                for key, value in yaml.safe_load(Path(path).read_text()).items():
                    if ("/" + key.lstrip("/")) in (full, "/**"):
                        params.update(value["ros__parameters"])
            made.update(name_space=name_space, params=params, remappings=remappings or {},
                        service=provide_planning_service)

        def get_planning_component(self, name):
            return name

    monkeypatch.setitem(sys.modules, "moveit", types.ModuleType("moveit"))
    monkeypatch.setitem(sys.modules, "moveit.planning", types.SimpleNamespace(MoveItPy=MoveItPy))
    monkeypatch.setitem(sys.modules, "moveit_configs_utils",
                        types.SimpleNamespace(MoveItConfigsBuilder=jazzy_builder_stand_in({})))
    monkeypatch.delitem(sys.modules, "lab.backends.moveit", raising=False)
    from lab.backends.moveit import MoveItBackend

    class FakeNode:
        def get_parameter(self, name):
            return types.SimpleNamespace(value=True)

    MoveItBackend(FakeNode(), "robot2", {})
    expected = moveit_parameters(SHARE, "robot2", robot_description(SHARE, "robot2"))
    # ('calls' is the builder stand-in's record, shared and grown by every build: compared by its keys)
    got, want = dict(made["params"]), dict(expected, use_sim_time=True)
    assert made["name_space"] == "robot2" and set(got.pop("calls")) <= set(want.pop("calls")) and got == want
    assert made["remappings"] == {"/tf": "tf", "/tf_static": "tf_static"}  # /robot2/tf, where its tf is
    assert made["service"] is False  # move_group in /robot2 offers get_planning_scene already
    assert "moveit_cpp" in expected["calls"] and "pilz_cartesian_limits" in expected["calls"]


def test_nav2_backend_sets_the_initial_pose_where_the_robot_starts(monkeypatch):
    import types

    from lab.core.config.params import NavigatorParams
    from lab.core.robot.world import LabWorld, start_poses

    if importlib.util.find_spec("nav2_simple_commander") is not None:
        pytest.skip("nav2_simple_commander is installed here: the stand-in would hide the real one")
    calls: list = []

    class BasicNavigator:  # nav2_simple_commander jazzy robot_navigator.py: the methods used (a Node)
        def __init__(self, node_name="basic_navigator", namespace=""):
            pass

        def set_parameters(self, parameters):
            calls.append(("set_parameters", {p.name: p.value for p in parameters}))

        def setInitialPose(self, pose):
            calls.append(("setInitialPose", pose))

        def waitUntilNav2Active(self, navigator="bt_navigator", localizer="amcl"):
            calls.append(("waitUntilNav2Active", localizer))

        def get_clock(self):
            return types.SimpleNamespace(now=lambda: types.SimpleNamespace(to_msg=lambda: None))

    commander = types.ModuleType("nav2_simple_commander.robot_navigator")
    commander.BasicNavigator, commander.TaskResult = BasicNavigator, object
    monkeypatch.setitem(sys.modules, "nav2_simple_commander", types.ModuleType("nav2_simple_commander"))
    monkeypatch.setitem(sys.modules, "nav2_simple_commander.robot_navigator", commander)
    monkeypatch.delitem(sys.modules, "lab.backends.nav2", raising=False)
    from lab.backends.nav2 import Nav2Backend

    world = LabWorld.load(SHARE / "worlds" / "lab.sdf", SHARE / "config" / "stations.yaml")
    params = NavigatorParams(robot_name="robot2", robots=["robot1", "robot2"])
    node = types.SimpleNamespace(get_parameter=lambda name: types.SimpleNamespace(value=name == "use_sim_time"))
    backend = Nav2Backend(node, "robot2", {"world": world, "params": params})
    assert calls.pop(0) == ("set_parameters", {"use_sim_time": True})  # the lab node's clock, not the wall
    backend._ensure_active()
    assert [c[0] for c in calls] == ["setInitialPose", "waitUntilNav2Active"]
    pose = calls[0][1]
    start = start_poses(world, ["robot1", "robot2"])["robot2"]
    assert pose.header.frame_id == "map"
    assert (pose.pose.position.x, pose.pose.position.y) == pytest.approx((start.x, start.y))
    assert (start.x, start.y) != (0.0, 0.0)


# --- Nav2 per robot, as nav2_bringup's Jazzy launch files place it -----------------------------
# (the graph, namespaces and parameter matching: lab.bringup.audit with lab.bringup.upstream's
# facts; tests/unit/test_audit.py puts the includes back without their namespace)

def test_each_robots_nav2_runs_in_its_namespace_with_its_parameters(tmp_path, monkeypatch):
    from lab.bringup.audit import build
    from lab.bringup.upstream import NAV2_LAUNCH_FILES
    from lab.core.robot.world import LabWorld, start_poses

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nodes = {n.name: n for n in build(SHARE, {"sim": "gazebo", "robots": "2", "navigation": "nav2",
                                                "arm": "embedded"})}
    starts = start_poses(LabWorld.load(SHARE / "worlds" / "lab.sdf", SHARE / "config" / "stations.yaml"),
                         ["robot1", "robot2"])
    nav2 = [spec.name for launch in NAV2_LAUNCH_FILES.values() for spec in launch.nodes]
    for robot in ("robot1", "robot2"):
        assert {f"/{robot}/{n}" for n in nav2} <= set(nodes), sorted(nodes)
        amcl = nodes[f"/{robot}/amcl"].params
        assert amcl["base_frame_id"] == f"{robot}/base_footprint"  # its own file, matched by rcl
        assert amcl["set_initial_pose"] is True
        start = starts[robot]
        assert (amcl["initial_pose"]["x"], amcl["initial_pose"]["y"], amcl["initial_pose"]["yaw"]) == \
            pytest.approx((start.x, start.y, start.yaw))
        assert nodes[f"/{robot}/collision_monitor"].params, "without its parameters it fails to configure"
    assert not any(name.count("/") == 1 and name[1:] in nav2 for name in nodes)  # nothing in the root namespace


def test_the_arms_hardware_plugin_is_gazebos_only_under_gazebo(monkeypatch, tmp_path):
    """sim:=gazebo: gz_ros2_control's system; sim:=none: the `hardware` argument (a driver, or
    mock_components/GenericSystem by default), and no Gazebo plugin in the description."""
    from lab.bringup.audit import recorded_launch
    from lab.bringup.full_stack import full_stack_actions

    monkeypatch.setenv("TMPDIR", str(tmp_path))

    def plugins(given: dict) -> set[str]:
        with recorded_launch():
            actions = full_stack_actions(SHARE, dict(given, robots="1", navigation="embedded", arm="embedded"))
        rsp = next(a for a in actions if a.kwargs.get("package") == "robot_state_publisher")
        root = ET.fromstring(rsp.kwargs["parameters"][0]["robot_description"])
        return {p.text for p in root.iter("plugin")} | {p.get("filename") for p in root.iter("plugin")} - {None}

    assert "gz_ros2_control/GazeboSimSystem" in plugins({"sim": "gazebo"})
    real = plugins({"sim": "none"})
    assert "mock_components/GenericSystem" in real and not any("gz" in p for p in real), real
    assert "kuka_driver/KukaSystem" in plugins({"sim": "none", "hardware": "kuka_driver/KukaSystem"})


def mimic_joints_outside_ros2_control(root) -> list[str]:
    """Mimic joints ros2_control would not simulate: a URDF joint with <mimic> of a joint in a
    <ros2_control> block is a mimic joint there only if it is in the block too, with no command
    interface (ros2_control 9ffbf97, hardware_interface/src/component_parser.cpp:1034-1078)."""
    problems = []
    for block in root.iter("ros2_control"):
        listed = {j.get("name"): j for j in block.iter("joint")}
        for joint in root.findall("joint"):
            mimic = joint.find("mimic")
            if mimic is None or mimic.get("joint") not in listed:
                continue
            mine = listed.get(joint.get("name"))
            if mine is None:
                problems.append(f"{joint.get('name')} mimics {mimic.get('joint')} and is not in {block.get('name')}")
            elif mine.find("command_interface") is not None:
                problems.append(f"{joint.get('name')} is a mimic joint with a command interface")
    return problems


def test_mimic_joints_are_in_the_ros2_control_block(urdf_robot2):
    _, root = urdf_robot2
    assert mimic_joints_outside_ros2_control(root) == []
    # not vacuous: the block as it was (the right finger left out; on a copy: the fixture is shared)
    root = copy.deepcopy(root)
    for block in root.iter("ros2_control"):
        for joint in list(block):
            if joint.get("name", "").endswith("gripper_finger_right_joint"):
                block.remove(joint)
    assert mimic_joints_outside_ros2_control(root) == [
        "robot2/gripper_finger_right_joint mimics robot2/gripper_finger_left_joint and is not in robot2/arm_system"]


def lidar_rays_into_the_base(root) -> list[float]:
    """Angles (rad, in the scanner's frame) of the base lidar's rays that start inside the base's
    box or run into it within the scanner's range: a gpu_lidar sees the visuals of the link it is
    attached to, and Gazebo merges the scanner's fixed link into base_link (gz-sensors#436)."""
    import math

    joint = next(j for j in root.findall("joint") if j.get("name", "").endswith("base_laser_joint"))
    origin = joint.find("origin")
    x0, y0, _ = (float(v) for v in origin.get("xyz").split())
    yaw = float((origin.get("rpy") or "0 0 0").split()[2])
    base = next(link for link in root.findall("link") if link.get("name", "").endswith("base_link"))
    sx, sy, _ = (float(v) for v in base.find("visual/geometry/box").get("size").split())
    sensor = next(s for s in root.iter("sensor") if s.get("type") == "gpu_lidar")
    scan = sensor.find("lidar/scan/horizontal")
    lo, hi = float(scan.findtext("min_angle")), float(scan.findtext("max_angle"))
    samples = int(scan.findtext("samples"))
    reach = float(sensor.findtext("lidar/range/max"))
    bad = []
    for i in range(samples):
        a = lo + (hi - lo) * i / (samples - 1)
        dx, dy = math.cos(yaw + a), math.sin(yaw + a)
        # slab test of the ray (x0, y0) + t (dx, dy), 0 <= t <= reach, against |x| <= sx/2, |y| <= sy/2
        t0, t1 = 0.0, reach
        for p, d, half in ((x0, dx, sx / 2), (y0, dy, sy / 2)):
            if abs(d) < 1e-12:
                if abs(p) > half:
                    t0, t1 = 1.0, 0.0
            else:
                near, far = sorted(((-half - p) / d, (half - p) / d))
                t0, t1 = max(t0, near), min(t1, far)
        if t0 <= t1:
            bad.append(a)
    return bad


def test_the_base_lidar_sees_none_of_the_base(urdf_robot2):
    _, root = urdf_robot2
    assert lidar_rays_into_the_base(root) == []
    # not vacuous: the scanner where it was (x 0.5, inside the box) sees the box on every ray
    root = copy.deepcopy(root)
    joint = next(j for j in root.findall("joint") if j.get("name", "").endswith("base_laser_joint"))
    joint.find("origin").set("xyz", "0.5 0 0.25")
    joint.find("origin").set("rpy", "0 0 0")
    assert len(lidar_rays_into_the_base(root)) == 540
