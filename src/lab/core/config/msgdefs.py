"""ROS 2 message definitions as text, in the concatenated form MCAP's `ros2msg` schemas use.

rosbag2 stores each topic's full definition: the type's own .msg text followed by every type
it depends on, each after a line of 80 '=' and `MSG: pkg/Type`. Readers (ros2 bag, Foxglove,
mcap-ros2-support) decode CDR messages from that text alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "string", "wstring",
}
_SEPARATOR = "=" * 80


def _field_types(text: str, package: str) -> list[str]:
    """The non-primitive types (pkg/Type) the fields of a .msg text refer to."""
    found: list[str] = []
    for raw in text.splitlines():
        tokens = raw.split("#", 1)[0].split()
        if len(tokens) < 2 or "=" in tokens[1] or (len(tokens) > 2 and tokens[2].startswith("=")):
            continue  # blank, or a constant (`uint8 IDLE=0`), which is always primitive
        type_token = tokens[0]
        base = re.sub(r"\[.*\]$", "", type_token)
        base = re.sub(r"<=\d+$", "", base)
        if base in PRIMITIVES:
            continue
        if base == "Header":
            base = "std_msgs/Header"
        if "/" not in base:
            base = f"{package}/{base}"
        parts = base.split("/")
        base = f"{parts[0]}/{parts[-1]}"  # pkg/msg/Type -> pkg/Type
        if base not in found:
            found.append(base)
    return found


def full_definition(type_name: str, find_msg: Callable[[str, str], Path]) -> str:
    """The concatenated definition of `pkg/msg/Type` (or `pkg/Type`).

    `find_msg(package, type)` returns the path of that type's .msg file.
    """
    parts = type_name.split("/")
    package, name = parts[0], parts[-1]
    main_text = find_msg(package, name).read_text()
    sections: list[str] = [main_text.rstrip("\n")]
    seen: set[str] = {f"{package}/{name}"}
    queue = _field_types(main_text, package)
    while queue:
        dep = queue.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        dep_pkg, dep_name = dep.split("/")
        text = find_msg(dep_pkg, dep_name).read_text()
        sections.append(f"{_SEPARATOR}\nMSG: {dep}\n{text.rstrip(chr(10))}")
        queue.extend(t for t in _field_types(text, dep_pkg) if t not in seen)
    return "\n".join(sections) + "\n"
