"""`lab bringup`: every node of the table comes up on the ROS graph; Ctrl-C leaves no process.

These start the real node executables as separate processes over Fast DDS, as a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ros_available
from procs import alive, children_of, process, wait_for

from lab.core.config.nodetable import expand

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]

LAB = [sys.executable, "-m", "lab.app.cli"]


class GraphProbe:
    """One node kept for the whole wait: a participant made anew for every look must discover
    the whole lab again each time, which with 20 participants on 2 busy cores can take longer
    than the look lasts."""

    def __init__(self, context) -> None:
        from rclpy.node import Node

        self.node = Node("bringup_probe", context=context)

    def names(self) -> set[str]:
        return {f"{ns.rstrip('/')}/{n}" for n, ns in self.node.get_node_names_and_namespaces()}

    def close(self) -> None:
        self.node.destroy_node()


def test_every_node_of_the_table_comes_up_and_ctrl_c_leaves_nothing(repo_root: Path, rclpy_context,
                                                                     tmp_path: Path) -> None:
    args = ["robots:=2", "speed:=200"]
    expected = {s.full_name for s in expand(repo_root / "config", dict(a.split(":=") for a in args))}
    probe = GraphProbe(rclpy_context)
    with process(LAB + ["bringup", *args], cwd=tmp_path) as proc:
        lines: list[str] = []

        def all_up() -> bool:
            return expected <= probe.names()

        try:
            wait_for(all_up, timeout=180.0, period=0.5, what="every node on the graph")
        except TimeoutError:
            missing = expected - probe.names()
            probe.close()
            proc.send_signal(signal.SIGINT)
            out = proc.communicate(timeout=30)[0]
            pytest.fail(f"nodes never appeared: {sorted(missing)}\n{out[-4000:]}")
        _every_rviz_display_has_a_compatible_publisher(repo_root, probe)
        _every_subscription_of_the_lab_is_qos_compatible_with_its_publishers(probe)
        probe.close()
        kids = children_of(proc.pid)
        assert len(kids) >= len(expected)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=60)
        lines = out.splitlines()
        assert proc.returncode == 0, out[-3000:]
        assert alive(kids) == [], f"left behind: {alive(kids)}"
        assert any(line.startswith("[/robot2/navigator]") for line in lines), "output is prefixed with node names"
        assert lines[-1] == "[bringup] all nodes stopped"


def _every_subscription_of_the_lab_is_qos_compatible_with_its_publishers(probe: GraphProbe) -> None:
    """The lab's nodes create their endpoints without rclpy's incompatible-QoS handlers
    (lab.ros.node: they cost a third of the lab's CPU), so a mismatch between two of them would
    not be logged: every publisher of every topic against every subscription, as DDS matches them."""
    from rclpy.qos import QoSCompatibility, qos_check_compatible

    topics = [name for name, _ in probe.node.get_topic_names_and_types()]
    pairs, bad = 0, []
    for topic in topics:
        subs = [s for s in probe.node.get_subscriptions_info_by_topic(topic) if s.node_name != "bringup_probe"]
        for pub in probe.node.get_publishers_info_by_topic(topic):
            for sub in subs:
                pairs += 1
                compatibility, reason = qos_check_compatible(pub.qos_profile, sub.qos_profile)
                if compatibility == QoSCompatibility.ERROR:
                    bad.append(f"{topic}: {pub.node_namespace}/{pub.node_name} -> "
                               f"{sub.node_namespace}/{sub.node_name}: {reason}")
    assert pairs > 50, (pairs, topics)
    assert not bad, "\n".join(bad)


def _rviz_subscriptions(repo_root: Path) -> list[tuple[str, str, str]]:
    """(display, topic, durability) of every topic rviz/lab.rviz reads, with RViz's own tf
    subscriptions as the node table remaps them."""
    config = yaml.safe_load((repo_root / "rviz" / "lab.rviz").read_text())
    out = [(d["Name"], d[key]["Value"], d[key].get("Durability Policy", "Volatile"))
           for d in config["Visualization Manager"]["Displays"] for key in ("Topic", "Description Topic") if key in d]
    rviz = next(n for n in yaml.safe_load((repo_root / "config" / "nodes.yaml").read_text())["nodes"]
                if n["name"] == "rviz")
    remap = dict(r.split(":=") for r in rviz["remap"])
    return out + [("tf", remap["/tf"], "Volatile"), ("tf_static", remap["/tf_static"], "Transient Local")]


def _every_rviz_display_has_a_compatible_publisher(repo_root: Path, probe: GraphProbe) -> None:
    """What RViz shows as shipped: each display's topic has a publisher in the embedded lab whose
    QoS matches the display's (a transient-local display needs a transient-local publisher, or it
    never connects; RViz subscribes reliably by default)."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    subscriptions = _rviz_subscriptions(repo_root)
    assert len(subscriptions) >= 8

    def unmatched() -> list[str]:
        missing = []
        for display, topic, durability in subscriptions:
            pubs = probe.node.get_publishers_info_by_topic(topic)
            ok = [p for p in pubs if p.qos_profile.reliability == ReliabilityPolicy.RELIABLE and
                  (durability != "Transient Local" or p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL)]
            if not ok:
                missing.append(f"{display} ({topic}, {durability}): {len(pubs)} publisher(s), none compatible")
        return missing

    try:
        wait_for(lambda: not unmatched(), timeout=60.0, period=0.5, what="a publisher for every RViz display")
    except TimeoutError:
        pytest.fail("RViz displays without a publisher: " + "; ".join(unmatched()))


def _write_table(tmp_path: Path, repo_root: Path, nodes: list[dict]) -> Path:
    table = tmp_path / "nodes.yaml"
    table.write_text(yaml.safe_dump({"nodes": nodes}))
    return table


def test_a_dying_node_is_restarted_and_one_that_keeps_dying_stops_the_lab(repo_root: Path,
                                                                          tmp_path: Path) -> None:
    """Supervision: a SIGKILLed node is started again (said, with its exit code); past the
    restart limit (here --restarts 1) a required node stops the lab, and nothing is left."""
    rec = str(repo_root / "config" / "params" / "recorder.yaml")
    table = _write_table(tmp_path, repo_root, [
        {"name": "recorder", "executable": "recorder", "params": [rec], "set": {"output_dir": str(tmp_path)}},
        {"name": "recorder_b", "executable": "recorder", "params": [rec], "set": {"output_dir": str(tmp_path)}},
    ])

    def victim_of(pid: int) -> int | None:
        return next((p for p in children_of(pid)
                     if "recorder_b" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")), None)

    with process(LAB + ["bringup", "--table", str(table), "--restarts", "1", "sim:=none"], cwd=tmp_path) as proc:
        wait_for(lambda: len(children_of(proc.pid)) >= 2, timeout=30, what="two nodes started")
        time.sleep(2.0)
        first = victim_of(proc.pid)
        assert first is not None
        others = [p for p in children_of(proc.pid) if p != first]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: victim_of(proc.pid) not in (None, first), timeout=30, what="recorder_b restarted")
        time.sleep(2.0)
        second = victim_of(proc.pid)
        assert alive(others) == others, "the other node was touched by the restart"
        os.kill(second, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "[bringup] /recorder_b exited unexpectedly (exit code -9); restarting it in 1 s (restart 1 of 1" in out
    assert f"[bringup] restarted /recorder_b (pid {second})" in out
    assert "[bringup] /recorder_b exited unexpectedly (exit code -9), 2 times in 10 min; stopping the lab" in out
    assert alive([first, second, *others]) == []


@pytest.mark.parametrize("args, message", [
    (["robot:=2"], "unknown bringup argument 'robot'"),
    (["sim:=mujoco"], "sim:=mujoco: must be one of embedded, gazebo, none"),
    (["robots=2"], "write name:=value"),
])
def test_bad_arguments_stop_before_any_node(args: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(LAB + ["bringup", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "started" not in result.stdout


def test_malformed_parameter_file_stops_before_any_node(repo_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    output_dir: [1, two]\n")
    table = _write_table(tmp_path, repo_root, [{"name": "recorder", "executable": "recorder", "params": [str(bad)]}])
    result = subprocess.run(LAB + ["bringup", "--table", str(table)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 2
    assert f"{bad}: /**.ros__parameters.output_dir: a list must hold values of one scalar type" in result.stderr
    assert "started" not in result.stdout
