"""Ruff on everything, mypy on the pure-Python core (configuration: ruff.toml, mypy.ini)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed (it is pinned in requirements.txt)")
    return found


def test_ruff(repo_root: Path) -> None:
    result = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=repo_root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_core(repo_root: Path) -> None:
    result = subprocess.run([_tool("mypy"), "--no-incremental", "--cache-dir=/dev/null"], cwd=repo_root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_does_not_import_ros(repo_root: Path) -> None:
    """lab.core is pure: no rclpy or ROS message imports (DESIGN.md)."""
    offenders = []
    for path in (repo_root / "src" / "lab" / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.split(".")[0] in {"rclpy", "lab_interfaces", "std_msgs", "geometry_msgs", "launch"}:
                    offenders.append(f"{path.relative_to(repo_root)}: {name}")
    assert not offenders
