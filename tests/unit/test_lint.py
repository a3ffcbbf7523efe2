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


def _imports(path: Path) -> list[str]:
    """Every module a file imports (at any depth: also the imports inside functions)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


#: the layers, lowest first; a module may import lab modules of its own layer or below only
LAYERS = {"core": 0, "paths": 0, "ros": 1, "backends": 2, "nodes": 3}
COMMAND = 4  # everything else: the command, the session, bringup, benches, the launch helpers


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], COMMAND) if len(parts) > 1 else COMMAND


def test_layers_import_downwards_only(repo_root: Path) -> None:
    """core <- ros <- backends <- nodes <- command: no arrow points up (README "Layout",
    src/lab/ros/__init__.py)."""
    src = repo_root / "src"
    offenders = []
    for path in (src / "lab").rglob("*.py"):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for name in _imports(path):
            if name.startswith("lab.") and _layer(name) > _layer(module):
                offenders.append(f"{module} (layer {_layer(module)}) imports {name} (layer {_layer(name)})")
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check above is not vacuous: an import from a node in a backend is caught."""
    bad = tmp_path / "lab" / "backends" / "x.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from lab.nodes.arm import ArmNode\n")
    assert any(_layer(n) > _layer("lab.backends.x") for n in _imports(bad) if n.startswith("lab."))


def test_core_does_not_import_ros(repo_root: Path) -> None:
    """lab.core is pure: no rclpy or ROS message imports."""
    offenders = []
    for path in (repo_root / "src" / "lab" / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.split(".")[0] in {"rclpy", "lab_interfaces", "std_msgs", "geometry_msgs", "launch"}:
                    offenders.append(f"{path.relative_to(repo_root)}: {name}")
    assert not offenders
