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
LAYERS = {"core": 0, "paths": 0, "ros": 1, "backends": 2, "instruments": 2, "nodes": 3}
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


#: lab.core's domains, lowest first: a domain imports its own modules, the domains below it and
#: the shared basics (errors, waits, persist) only. The science knows nothing of robots or
#: stations; stations know samples; the robot knows neither batches nor campaigns; operations
#: use them all; config (the node table) describes every node, so it sits on top. One exception:
#: the parameter models (lab.core.config.params), which every domain's node is configured by.
CORE_DOMAINS = {"campaign": 1, "stations": 2, "robot": 3, "operations": 4, "config": 5}
CORE_SHARED = {"lab.core.config.params"}


def _domain(module: str) -> int:
    parts = module.split(".")
    return CORE_DOMAINS.get(parts[2], 0) if len(parts) > 2 and parts[1] == "core" else -1


def test_core_domains_import_downwards_only(repo_root: Path) -> None:
    src = repo_root / "src"
    offenders = []
    for path in (src / "lab" / "core").rglob("*.py"):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for name in _imports(path):
            if (name.startswith("lab.core.") and _domain(name) > _domain(module)
                    and not any(name == s or name.startswith(s + ".") for s in CORE_SHARED)):
                offenders.append(f"{module} imports {name}")
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_core_domain_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check above is not vacuous: the planner importing the scheduler is caught."""
    bad = tmp_path / "x.py"
    bad.write_text("from lab.core.operations.scheduler import Scheduler\n")
    assert any(_domain(n) > _domain("lab.core.campaign.planner") for n in _imports(bad) if n.startswith("lab.core."))


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
