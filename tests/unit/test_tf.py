"""The embedded simulation's tf: the URDF tree it publishes, and the wire type it uses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# Jazzy's tf2_msgs/msg/TFMessage type hash, as a real installation reports it
# (`ros2 topic info /tf --verbose`: "Topic type hash: RIHS01_e369d0f0..."; also rosbag2 Jazzy's
# metadata.yaml `type_description_hash` for /tf)
JAZZY_TFMESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def _compose(links, root: str, tip: str) -> np.ndarray:
    by_child = {link.child: link for link in links}
    pose, frame = np.eye(4), tip
    while frame != root:
        link = by_child[frame]  # a KeyError: tip not below root in what was published
        pose, frame = link.pose @ pose, link.parent
    return pose


def test_the_tree_places_every_link_as_the_chain_does(repo_root: Path) -> None:
    from lab.core.robot.kinematics import Chain, Tree, expand_xacro

    urdf = expand_xacro(repo_root / "urdf" / "kmr_iiwa.urdf.xacro", prefix="robot1/")
    tree = Tree(urdf)
    chain = Chain.from_urdf(urdf, "robot1/base_link", "robot1/tool0")
    rng = np.random.default_rng(3)
    for _ in range(5):
        q = rng.uniform(chain.lower, chain.upper)
        positions = dict(zip(chain.joint_names, q, strict=True))
        links = tree.fixed() + tree.moving(positions)
        assert _compose(links, "robot1/base_link", "robot1/tool0") == pytest.approx(chain.fk(q), abs=1e-12)
    # every link of the URDF is reached from the root once the joint states are known
    import xml.etree.ElementTree as ET

    names = {link.get("name") for link in ET.fromstring(urdf).findall("link")}
    positions = dict.fromkeys(chain.joint_names, 0.1) | {"robot1/gripper_finger_left_joint": 0.02}
    children = {link.child for link in tree.fixed() + tree.moving(positions)}
    assert children == names - {"robot1/base_footprint"}


def test_a_mimic_joint_follows_its_leader_and_an_unknown_joint_is_left_out(repo_root: Path) -> None:
    from lab.core.robot.kinematics import Tree, expand_xacro

    tree = Tree(expand_xacro(repo_root / "urdf" / "kmr_iiwa.urdf.xacro", prefix="r/"))
    moved = {link.child: link.pose for link in tree.moving({"r/gripper_finger_left_joint": 0.02})}
    assert set(moved) == {"r/gripper_finger_left", "r/gripper_finger_right"}
    rest = {link.child: link.pose for link in tree.moving({"r/gripper_finger_left_joint": 0.0})}
    for finger in moved:  # each finger moved 0.02 m along its axis from where it rests
        assert np.linalg.norm(moved[finger][:3, 3] - rest[finger][:3, 3]) == pytest.approx(0.02)


def test_tf2_msgs_is_the_wire_type_real_ros2_tools_expect() -> None:
    pytest.importorskip("rclpy")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = Path(get_package_share_directory("tf2_msgs"))
    except PackageNotFoundError as exc:
        pytest.skip(f"tf2_msgs not built ({exc}); make test builds it")
    description = json.loads((share / "msg" / "TFMessage.json").read_text())
    hashes = {h["type_name"]: h["hash_string"] for h in description["type_hashes"]}
    assert hashes["tf2_msgs/msg/TFMessage"] == JAZZY_TFMESSAGE_HASH


def test_a_recorded_tree_gives_each_frame_from_the_last_transforms_up_to_a_time() -> None:
    from lab.analysis.tf_history import TfHistory

    def moved(x: float) -> np.ndarray:
        m = np.eye(4)
        m[0, 3] = x
        return m

    history = TfHistory()
    history.static["r/tool"] = ("r/base", moved(0.5))
    for at, x in ((2.0, 1.0), (1.0, 0.0), (3.0, 2.0)):  # out of order, as messages may come
        history.add("map", "r/base", at, moved(x))
    assert history.pose("r/tool", 0.5) is None            # nothing known of the base yet
    assert history.pose("r/tool", 1.0)[0, 3] == pytest.approx(0.5)
    assert history.pose("r/tool", 2.5)[0, 3] == pytest.approx(1.5)
    assert history.pose("r/tool", 10.0)[0, 3] == pytest.approx(2.5)
    assert history.pose("r/elsewhere", 2.0) is None
    assert history.span() == (1.0, 3.0)
