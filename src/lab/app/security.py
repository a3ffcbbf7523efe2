"""`lab security policy [--out FILE]` and `lab security keystore DIR --policy FILE` (issue 33, item 3).

`policy` reads the running lab's graph (as sros2's `ros2 security generate_policy` does) and
writes an SROS2 access-control policy (format 0.2.0, sros2 e349fcf
sros2/sros2/policy/schemas/policy.xsd) with one enclave per lab node, `/lab<node's full name>`:
the topics it publishes and subscribes, the services it serves and calls (an action is its
hidden `_action/` services and topics, as the graph shows them). Run it with the whole lab up
(every node of the deployment, every backend in use), so every endpoint a node opens is seen.

`keystore` hands the policy to `ros2 security` (create_keystore, generate_artifacts) where that
exists: a Jazzy install with sros2. The PyPI wheels this project runs on carry neither sros2
nor Fast DDS's security plugins; there the command says so and stops (docs/security.md).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

#: the graph's own nodes that are not the lab's (this command's, other operators' commands)
_NOT_LAB = ("lab_commander", "lab_estop", "_ros2cli", "transform_listener_impl")


def policy_xml(graph: dict[str, dict[str, list[str]]]) -> str:
    """The policy for `graph`: full node name -> {'publish', 'subscribe', 'reply', 'request'} names."""
    root = ET.Element("policy", version="0.2.0")
    enclaves = ET.SubElement(root, "enclaves")
    for full in sorted(graph):
        namespace, _, name = full.rpartition("/")
        enclave = ET.SubElement(enclaves, "enclave", path=f"/lab{full}")
        profile = ET.SubElement(ET.SubElement(enclave, "profiles"), "profile", ns=namespace or "/", node=name)
        for tag, item, rule in (("topics", "topic", "publish"), ("topics", "topic", "subscribe"),
                                ("services", "service", "reply"), ("services", "service", "request")):
            names = sorted(set(graph[full].get(rule, [])))
            if names:
                group = ET.SubElement(profile, tag, {rule: "ALLOW"})
                for n in names:
                    ET.SubElement(group, item).text = n
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def read_graph(cmd, settle: float = 3.0, limit: float = 30.0) -> dict[str, dict[str, list[str]]]:
    """Every lab node's endpoints, read until two readings `settle` s apart agree (a node still
    starting adds endpoints), at most `limit` s."""
    def once() -> dict[str, dict[str, list[str]]]:
        out: dict[str, dict[str, list[str]]] = {}
        for name, ns in cmd.get_node_names_and_namespaces():
            if name.startswith(_NOT_LAB) or name.startswith("_") or name == cmd.get_name():
                continue  # (the reader itself, other operators' commands, hidden nodes)
            full = f"{ns.rstrip('/')}/{name}"
            out[full] = {
                "publish": [t for t, _ in cmd.get_publisher_names_and_types_by_node(name, ns)],
                "subscribe": [t for t, _ in cmd.get_subscriber_names_and_types_by_node(name, ns)],
                "reply": [s for s, _ in cmd.get_service_names_and_types_by_node(name, ns)],
                "request": [s for s, _ in cmd.get_client_names_and_types_by_node(name, ns)]}
        return out

    deadline = time.monotonic() + limit
    last = once()
    while time.monotonic() < deadline:
        cmd.spin_for(settle)
        now = once()
        if now == last and now:
            return now
        last = now
    return last


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab security")
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("policy", help="an SROS2 policy from the running lab's graph")
    p.add_argument("--out", type=Path, default=Path("runs/lab.policy.xml"))
    p = verbs.add_parser("keystore", help="create the keystore and enclaves with ros2 security (Jazzy + sros2)")
    p.add_argument("directory", type=Path)
    p.add_argument("--policy", type=Path, required=True)
    ns = parser.parse_args(argv)
    if ns.verb == "keystore":
        return _keystore(ns.directory, ns.policy)
    import rclpy

    from lab.app.commander import LabCommander

    rclpy.init()
    cmd = LabCommander("lab_commander_security")
    try:
        cmd.spin_for(2.0)  # discovery
        graph = read_graph(cmd)
    finally:
        cmd.destroy_node()
        rclpy.try_shutdown()
    if not graph:
        print("lab security policy: no lab node in the graph: bring the lab up first (lab bringup)", file=sys.stderr)
        return 1
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(policy_xml(graph), encoding="utf-8")
    print(f"lab security policy: {len(graph)} enclaves (/lab/<node>) in {ns.out}")
    return 0


def _keystore(directory: Path, policy: Path) -> int:
    ros2 = shutil.which("ros2")
    if ros2 is None or subprocess.run([ros2, "security", "-h"], capture_output=True).returncode != 0:
        print("lab security keystore: `ros2 security` (sros2) is not installed here: on a Jazzy install, apt "
              "install ros-jazzy-sros2; the PyPI wheels this lab can run on carry neither sros2 nor DDS security "
              "plugins (docs/security.md)", file=sys.stderr)
        return 2
    if not policy.is_file():
        print(f"lab security keystore: no policy file {policy} (lab security policy writes one)", file=sys.stderr)
        return 2
    for step in ([ros2, "security", "create_keystore", str(directory)],
                 [ros2, "security", "generate_artifacts", "-k", str(directory), "-p", str(policy)]):
        if subprocess.run(step).returncode != 0:
            print(f"lab security keystore: {' '.join(step)} failed", file=sys.stderr)
            return 1
    print(f"lab security keystore: {directory} (enclaves /lab/<node>); docs/security.md says how to start the lab "
          "with it")
    return 0
