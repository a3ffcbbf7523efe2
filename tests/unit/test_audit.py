"""`lab fullstack audit`: the graph the full-stack launch would start passes for one and two robots
in Gazebo and on real hardware, and the audit finds each of issue 31's findings 1, 3, 4, 6 and 7
when the code is put back the way it was (each mutation below is the old code's behaviour)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from lab.bringup import audit
from lab.bringup.full_stack import robot_names
from lab.paths import share_dir

SHARE = share_dir()

pytestmark = pytest.mark.skipif(importlib.util.find_spec("xacro") is None, reason="xacro not installed")


def run(given: dict[str, str]) -> tuple[list[audit.GraphNode], list[str]]:
    given = {"navigation": "nav2", "arm": "moveit", **given}
    nodes = audit.build(SHARE, given)
    return nodes, [str(f) for f in audit.check(nodes, robot_names(given))]


@pytest.mark.parametrize("sim", ["gazebo", "none"])
@pytest.mark.parametrize("robots", ["1", "2"])
def test_the_full_stack_graph_passes(sim: str, robots: str) -> None:
    nodes, findings = run({"sim": sim, "robots": robots, "rviz": "true"})
    assert findings == []
    names = {n.name for n in nodes}
    for robot in robot_names({"robots": robots}):
        assert {f"/{robot}/amcl", f"/{robot}/controller_server", f"/{robot}/local_costmap/local_costmap",
                f"/{robot}/moveit_py", f"/{robot}/move_group", f"/{robot}/controller_manager",
                f"/{robot}/robot_state_publisher", f"/{robot}/{robot}_basic_navigator"} <= names
    amcl = next(n for n in nodes if n.name == "/robot1/amcl")
    assert amcl.matched == ["robot1/amcl"] and amcl.params["set_initial_pose"] is True
    assert ("/robot1/tf", "map", "robot1/odom") in amcl.tf


def test_rcl_key_matching() -> None:
    from lab.bringup.upstream import key_matches

    assert key_matches("robot1/amcl", "/robot1/amcl") and key_matches("/robot1/amcl", "/robot1/amcl")
    assert not key_matches("robot1/amcl", "/amcl") and not key_matches("moveit_py", "/robot1/moveit_py")
    assert key_matches("/**", "/robot1/moveit_py") and key_matches("/*/amcl", "/robot2/amcl")
    assert not key_matches("/*/amcl", "/a/b/amcl") and key_matches("/**/amcl", "/a/b/amcl")


def test_finding_1_nav2_without_its_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The includes as they were (no GroupAction with PushROSNamespace): every robot's Nav2 in /,
    twice, and its file keyed robot1/amcl matching no node."""
    from lab.bringup import full_stack

    real = full_stack.full_stack_actions

    def unpushed(*args, **kwargs):
        out = []
        for action in real(*args, **kwargs):
            if type(action).__name__ == "GroupAction":
                out += [a for a in action.args[0] if type(a).__name__ != "PushROSNamespace"]
            else:
                out.append(action)
        return out

    monkeypatch.setattr(full_stack, "full_stack_actions", unpushed)
    _, findings = run({"sim": "gazebo", "robots": "2"})
    assert "[names] two nodes named /amcl: nav2_bringup localization_launch.py and nav2_bringup " \
           "localization_launch.py" in findings, findings
    assert any(f.startswith("[parameters] /amcl (nav2_bringup localization_launch.py) gets no parameters") and
               "set_initial_pose" in f for f in findings), findings
    assert any(f.startswith("[parameters] /collision_monitor") and "polygons" in f for f in findings), findings


def test_finding_3_and_7_moveit_py_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """MoveItPy(node_name, name_space, config_dict) as it was: no parameters (keyed moveit_py), /tf
    where nothing is published, and a second get_planning_scene."""
    from lab.backends import stack_nodes
    from lab.backends.moveit_config import moveit_parameters
    from lab.core.robot.robot_files import robot_description

    def old(share: Path, robot: str, use_sim_time: bool) -> dict:
        return {"node_name": "moveit_py", "name_space": robot,
                "config_dict": moveit_parameters(share, robot, robot_description(share, robot))}

    monkeypatch.setattr(stack_nodes, "moveit_py_arguments", old)
    _, findings = run({"sim": "gazebo", "robots": "1"})
    assert any(f.startswith("[parameters] /robot1/moveit_py (moveit backend (MoveItPy)) gets no parameters")
               and "robot_description_semantic" in f for f in findings), findings
    assert any(f.startswith("[topics] /robot1/moveit_py subscribes /tf ") for f in findings), findings
    assert "[services] /robot1/get_planning_scene offered by both /robot1/move_group and /robot1/moveit_py" \
        in findings, findings


def test_finding_4_amcl_without_its_initial_pose(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.bringup import full_stack
    from lab.core.robot.robot_files import prefixed_yaml

    monkeypatch.setattr(full_stack, "nav2_params", lambda path, robot, start: prefixed_yaml(path, robot))
    _, findings = run({"sim": "gazebo", "robots": "1"})
    assert any(f.startswith("[parameters] /robot1/amcl has no set_initial_pose") for f in findings), findings


def test_finding_6_rviz_plan_transient_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    doc = yaml.safe_load((SHARE / "rviz" / "lab.rviz").read_text(encoding="utf-8"))
    for display in doc["Visualization Manager"]["Displays"]:
        topic = display.get("Topic")
        if isinstance(topic, dict) and topic.get("Value") == "/robot1/plan":
            topic["Durability Policy"] = "Transient Local"
    (tmp_path / "lab.rviz").write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.setattr(audit, "rviz_file", lambda share: tmp_path / "lab.rviz")
    _, findings = run({"sim": "gazebo", "robots": "1", "rviz": "true"})
    assert any(f.startswith("[qos] /rviz subscribes /robot1/plan reliable, transient local") and
               "/robot1/planner_server: reliable, volatile" in f for f in findings), findings


def test_frames_of_two_robots_must_be_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not vacuous: robot2's AMCL given robot1's odom frame breaks robot2's tree."""
    from lab.bringup import full_stack

    real = full_stack.nav2_params

    def crossed(path, robot, start):
        text = real(path, robot, start)
        return text.replace("robot2/odom", "robot1/odom") if robot == "robot2" else text

    monkeypatch.setattr(full_stack, "nav2_params", crossed)
    _, findings = run({"sim": "gazebo", "robots": "2"})
    assert any(f.startswith("[tf] robot2's frames do not form one tree") for f in findings), findings


def test_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert audit.main(["robots:=2", "sim:=none"]) == 0
    out = capsys.readouterr().out
    assert "/robot2/amcl  [nav2_bringup localization_launch.py]" in out and "0 finding(s)" in out
    assert audit.main(["robots:=0"]) == 2
    assert audit.main(["sim:=embedded"]) == 2
