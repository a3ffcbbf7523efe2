"""A node's ROS parameters from its model in lab.core.config.params: declared with the model's defaults,
validated at start-up (ConfigError naming the node, the key and the parameter files), and
validated again when changed at run time (`ros2 param set`), which is refused with the reason."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from lab.core.config.params import NodeParams, explain, read_only
from lab.core.errors import ConfigError
from lab.core.robot.kinematics import expand_xacro
from lab.core.robot.world import LabWorld
from lab.paths import share_dir

M = TypeVar("M", bound=NodeParams)

#: rclpy cannot infer a parameter's type from an empty list: such fields are declared typed, unset
_EMPTY_LIST_TYPE = {str: Parameter.Type.STRING_ARRAY, float: Parameter.Type.DOUBLE_ARRAY,
                    int: Parameter.Type.INTEGER_ARRAY, bool: Parameter.Type.BOOL_ARRAY}


def _param_files() -> str:
    files = [sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--params-file"]
    return f" (parameter files: {', '.join(files)})" if files else ""


def declare_params(node: Node, model: type[M]) -> M:
    """Declare every field of `model` on `node` with its default, read what the files and the
    command line set, and return the validated model. The returned object follows later
    changes: a valid `ros2 param set` updates it, an invalid one is refused with the reason."""
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, list) and not default:
            item = info.annotation.__args__[0] if hasattr(info.annotation, "__args__") else str
            node.declare_parameter(name, _EMPTY_LIST_TYPE.get(item, Parameter.Type.STRING_ARRAY))
        else:
            node.declare_parameter(name, default)
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        try:
            value = node.get_parameter(name).value
        except ParameterUninitializedException:
            value = None
        values[name] = info.get_default(call_default_factory=True) if value is None else (
            list(value) if isinstance(value, (list, tuple)) or hasattr(value, "tolist") else value)
    try:
        params = model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"{node.get_fully_qualified_name()}: {explain(exc)}{_param_files()}") from None

    def on_set(changes: list[Any]) -> SetParametersResult:
        frozen = sorted(p.name for p in changes if read_only(p.name))
        if frozen:
            return SetParametersResult(successful=False, reason=(
                f"{', '.join(frozen)}: read-only while the node runs (it points the node at files or hosts, says "
                "who it is, or is its clock): set it in the parameter file and restart the node"))
        update = {p.name: (list(p.value) if isinstance(p.value, (list, tuple)) else p.value)
                  for p in changes if p.name in model.model_fields}
        if not update:
            return SetParametersResult(successful=True)
        try:
            checked = model.model_validate({**params.model_dump(), **update})
        except ValidationError as exc:
            return SetParametersResult(successful=False, reason=explain(exc))
        for name in update:
            object.__setattr__(params, name, getattr(checked, name))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return params


def file_or_default(value: str, relative: str) -> Path:
    """A file parameter's path; "" = the package's share (the checkout when run from it)."""
    return Path(value) if value else share_dir() / relative


def load_world(params: Any) -> LabWorld:
    """The lab's geometry from a node's `world_file` and `stations_file` parameters."""
    return LabWorld.load(file_or_default(params.world_file, "worlds/lab.sdf"),
                         file_or_default(params.stations_file, "config/stations.yaml"))


def robot_urdf(params: Any) -> str:
    """The robot's expanded URDF (no prefix) from a node's `urdf_file` parameter."""
    return expand_xacro(file_or_default(params.urdf_file, "urdf/kmr_iiwa.urdf.xacro"))
