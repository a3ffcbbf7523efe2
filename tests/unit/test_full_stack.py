"""Static checks of the full-stack inputs (Gazebo Harmonic, ros2_control, Nav2, MoveIt 2).

This machine has no Gazebo, Nav2 or MoveIt: what can be checked without them is checked
here (the expanded robot description, that every name one file refers to exists in the
other, the bridge, map and parameter files, the backends' refusal without their packages).
Running them needs a ROS 2 Jazzy installation (docs/ros2_users.md).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

from lab.core.errors import BackendUnavailable
from lab.core.kinematics import expand_xacro
from lab.core.world import ROBOT_FOOTPRINT
from lab.launch_full_stack import bridge_config, prefix_srdf, prefixed_controllers, prefixed_yaml
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
    referenced = {e.get("name") for e in srdf.iter() if e.tag in ("joint", "link")}
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
    params = yaml.safe_load(prefixed_yaml(SHARE / "config" / "nav2_params.yaml", "robot2"))["/**"]
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
