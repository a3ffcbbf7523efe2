"""Workflows (config/workflows.yaml): which stations a batch visits, on which carrier."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.core import yamlfile
from lab.core.errors import ConfigError, InvalidGoal


@dataclass(frozen=True)
class WorkflowStep:
    kind: str          # station kind
    process: str = ""  # '' = the station's default process


@dataclass(frozen=True)
class Workflow:
    name: str
    carrier: str       # 'rack' | 'tray'
    capacity: int      # samples per carrier
    home: str          # station kind where carriers wait
    steps: tuple[WorkflowStep, ...]


def parse_workflows(doc: Any, source: str, station_kinds: set[str] | None = None) -> dict[str, Workflow]:
    """Validate the document; ConfigError names source and key."""
    if not isinstance(doc, dict) or not isinstance(doc.get("workflows"), dict):
        raise ConfigError(f"{source}: needs a mapping 'workflows'")
    result = {}
    for name, body in doc["workflows"].items():
        key = f"{source}: workflows.{name}"
        if not isinstance(body, dict):
            raise ConfigError(f"{key}: must be a mapping")
        for field, kind in (("carrier", str), ("capacity", int), ("home", str), ("steps", list)):
            if not isinstance(body.get(field), kind):
                raise ConfigError(f"{key}.{field}: must be a {kind.__name__}")
        if body["capacity"] < 1:
            raise ConfigError(f"{key}.capacity: must be at least 1")
        steps = []
        for i, step in enumerate(body["steps"]):
            if isinstance(step, str):
                step = {"kind": step}
            if not isinstance(step, dict) or not isinstance(step.get("kind"), str):
                raise ConfigError(f"{key}.steps[{i}]: needs a station 'kind'")
            unknown = set(step) - {"kind", "process"}
            if unknown:
                raise ConfigError(f"{key}.steps[{i}]: unknown keys {sorted(unknown)}")
            if station_kinds is not None and step["kind"] not in station_kinds:
                raise ConfigError(f"{key}.steps[{i}].kind: no station of kind '{step['kind']}' in the lab")
            steps.append(WorkflowStep(step["kind"], str(step.get("process", ""))))
        if not steps:
            raise ConfigError(f"{key}.steps: at least one step")
        if station_kinds is not None and body["home"] not in station_kinds:
            raise ConfigError(f"{key}.home: no station of kind '{body['home']}' in the lab")
        result[name] = Workflow(name, body["carrier"], body["capacity"], body["home"], tuple(steps))
    return result


def load_workflows(path: Path, station_kinds: set[str] | None = None) -> dict[str, Workflow]:
    try:
        doc = yamlfile.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_workflows(doc, str(path), station_kinds)


def workflow(workflows: dict[str, Workflow], name: str) -> Workflow:
    if name not in workflows:
        raise InvalidGoal(f"unknown workflow '{name}' (known: {', '.join(workflows)})")
    return workflows[name]
