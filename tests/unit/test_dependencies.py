"""A Jazzy user's install gets every module the lab imports (issue 31, item 3): each third-party
import of src/lab is declared in package.xml with a rosdep key (so `rosdep install` gets it from
apt), is an optional full-stack backend's (docs/ros2_users.md lists its apt package), or is in
requirements-jazzy.txt (no suitable apt package), pinned as in requirements.txt."""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: module -> the rosdep key that provides it. The python3-* keys were looked up in ros/rosdistro
#: rosdep/python.yaml at 8468e88 (2026-08-22): each has an apt package for Ubuntu 24.04
#: ('*' or noble); the others are ROS 2 packages (their key is the package name).
ROSDEP = {"numpy": "python3-numpy", "yaml": "python3-yaml", "cv2": "python3-opencv",
          "transforms3d": "python3-transforms3d", "scipy": "python3-scipy", "sklearn": "python3-sklearn",
          "matplotlib": "python3-matplotlib", "pydantic": "python3-pydantic", "xacro": "xacro",
          "fastapi": "python3-fastapi", "uvicorn": "python3-uvicorn", "sila2": "python3-sila2-pip",
          "rclpy": "rclpy", "launch": "launch", "launch_ros": "launch_ros",
          "ament_index_python": "ament_index_python", "rcl_interfaces": "rcl_interfaces",
          "action_msgs": "action_msgs", "builtin_interfaces": "builtin_interfaces",
          "unique_identifier_msgs": "unique_identifier_msgs", "tf2_msgs": "tf2_msgs", "std_msgs": "std_msgs",
          "std_srvs": "std_srvs", "geometry_msgs": "geometry_msgs", "nav_msgs": "nav_msgs",
          "sensor_msgs": "sensor_msgs", "visualization_msgs": "visualization_msgs",
          "trajectory_msgs": "trajectory_msgs", "rosgraph_msgs": "rosgraph_msgs", "lab_interfaces": "lab_interfaces"}
#: module -> pip distribution, for what no rosdep key provides (or not in the version needed)
PIP = {"skopt": "scikit-optimize", "mcap": "mcap", "mcap_ros2": "mcap-ros2-support", "foxglove": "foxglove-sdk",
       "pydantic": "pydantic", "fastapi": "fastapi", "uvicorn": "uvicorn", "argon2": "argon2-cffi",
       "itsdangerous": "itsdangerous", "selenium": "selenium", "sila2": "sila2"}
#: optional backends: imported only when chosen, their apt packages in lab.bringup.full_stack.PACKAGES
BACKENDS = {"moveit": "ros-jazzy-moveit-py", "moveit_configs_utils": "ros-jazzy-moveit",
            "nav2_simple_commander": "ros-jazzy-nav2-simple-commander"}


def imported_modules() -> set[str]:
    found = set()
    for path in (ROOT / "src" / "lab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.partition(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names) - {"lab", "__future__"}


def declared() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag in ("depend", "exec_depend") and e.text}


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if match:
            out[match.group(1).split("[")[0].lower()] = match.group(2)
    return out


def undeclared(keys: set[str]) -> list[str]:
    """Modules src/lab imports that neither `keys` (package.xml), requirements-jazzy.txt nor a
    named backend's apt package installs."""
    from lab.bringup.full_stack import PACKAGES

    jazzy = pins("requirements-jazzy.txt")
    apt = {p for group in PACKAGES.values() for p in group}
    missing = []
    for module in sorted(imported_modules()):
        if module in BACKENDS:
            if BACKENDS[module] not in apt:
                missing.append(module)
        elif not (module in PIP and PIP[module] in jazzy) and ROSDEP.get(module) not in keys:
            missing.append(module)
    return missing


def test_every_import_is_installed_by_rosdep_pip_or_a_named_backend() -> None:
    assert undeclared(declared()) == []


def test_the_jazzy_pins_are_the_tested_ones() -> None:
    tested, jazzy = pins("requirements.txt"), pins("requirements-jazzy.txt")
    assert jazzy and all(tested.get(name) == version for name, version in jazzy.items()), (jazzy, tested)


def test_the_check_sees_an_undeclared_import() -> None:
    """Not vacuous: with python3-scipy taken out of package.xml, scipy is reported."""
    assert undeclared(declared() - {"python3-scipy"}) == ["scipy"]
