"""Reading a lab recording (the recorder's MCAP): a robot's tf tree at any recorded time.

    history = TfHistory.read("runs/lab_....mcap", "robot1")
    history.pose("robot1/tool0", at=123.4)     # 4x4 in map, from the last transforms <= 123.4 s

Messages are decoded with the definitions the file carries (mcap-ros2-support), so no ROS
installation is needed to read one. Times are the messages' header stamps in seconds (the
simulated clock in the embedded simulation).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transforms3d.quaternions import quat2mat


def stamp_seconds(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def transform_matrix(t: Any) -> np.ndarray:
    """4x4 of a geometry_msgs/Transform."""
    m = np.eye(4)
    m[:3, :3] = quat2mat([t.rotation.w, t.rotation.x, t.rotation.y, t.rotation.z])
    m[:3, 3] = [t.translation.x, t.translation.y, t.translation.z]
    return m


def messages(path: Path | str, topics: list[str]) -> Iterator[tuple[str, Any]]:
    """(topic, decoded message) of these topics, in the order they were logged."""
    from mcap_ros2.reader import read_ros2_messages

    for m in read_ros2_messages(str(path), topics=topics):
        yield m.channel.topic, m.ros_msg


@dataclass
class _Edge:
    parent: str
    times: list[float] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)


class TfHistory:
    """One robot's transforms (its /<robot>/tf and /<robot>/tf_static) over a recording."""

    def __init__(self) -> None:
        self.static: dict[str, tuple[str, np.ndarray]] = {}
        self.edges: dict[str, _Edge] = {}

    @classmethod
    def read(cls, path: Path | str, robot: str) -> TfHistory:
        history = cls()
        for topic, msg in messages(path, [f"/{robot}/tf", f"/{robot}/tf_static"]):
            for t in msg.transforms:
                if topic.endswith("_static"):
                    history.static[t.child_frame_id] = (t.header.frame_id, transform_matrix(t.transform))
                else:
                    history.add(t.header.frame_id, t.child_frame_id, stamp_seconds(t.header.stamp),
                                transform_matrix(t.transform))
        return history

    def add(self, parent: str, child: str, at: float, pose: np.ndarray) -> None:
        edge = self.edges.setdefault(child, _Edge(parent))
        i = bisect.bisect_right(edge.times, at)
        edge.times.insert(i, at)
        edge.poses.insert(i, pose)

    def span(self) -> tuple[float, float]:
        """The first and last stamp of any moving transform (0, 0 without any)."""
        times = [t for e in self.edges.values() for t in (e.times[0], e.times[-1]) if e.times]
        return (min(times), max(times)) if times else (0.0, 0.0)

    def pose(self, frame: str, at: float, root: str = "map") -> np.ndarray | None:
        """`frame` in `root` from each moving transform's last value at or before `at`; None when
        a transform on the way is not known by then or the frame is not below `root`."""
        pose = np.eye(4)
        seen = set()
        while frame != root:
            if frame in seen:
                return None
            seen.add(frame)
            if frame in self.static:
                parent, m = self.static[frame]
            elif frame in self.edges:
                edge = self.edges[frame]
                i = bisect.bisect_right(edge.times, at + 1e-9) - 1
                if i < 0:
                    return None
                parent, m = edge.parent, edge.poses[i]
            else:
                return None
            pose, frame = m @ pose, parent
        return pose
