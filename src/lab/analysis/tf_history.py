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


# ------------------------------------------------------------------ the top-down picture
def covers(path: Path, start: float, end: float) -> bool:
    """Whether a recording's logged time span (the simulated clock) overlaps [start, end] s."""
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        stats = make_reader(f).get_summary()
    if stats is None or stats.statistics is None:
        return False
    first, last = stats.statistics.message_start_time * 1e-9, stats.statistics.message_end_time * 1e-9
    return first <= end and start <= last


def robots_in(path: Path) -> list[str]:
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    topics = {c.topic for c in summary.channels.values()} if summary else set()
    return sorted(t.split("/")[1] for t in topics if t.count("/") == 2 and t.endswith("/tf"))


def rack_time(path: Path, start: float, end: float) -> dict[str, dict[str, float]]:
    """Seconds each rack spent at each owner (station or robot) within [start, end], from /world_state
    (a message stamped earlier than the one before it is left out)."""
    spent: dict[str, dict[str, float]] = {}
    last: tuple[float, dict[str, str]] | None = None

    def close(until: float) -> None:
        if last is None:
            return
        since, where = last
        span = min(until, end) - max(since, start)
        if span > 0:
            for obj, loc in where.items():
                spent.setdefault(obj, {}).setdefault(loc.split("/")[0], 0.0)
                spent[obj][loc.split("/")[0]] += span

    for _, msg in messages(path, ["/world_state"]):
        at = stamp_seconds(msg.stamp)
        if last is not None and at < last[0]:
            continue  # stamped before the state it follows (a publisher without the clock yet): not a change
        close(at)
        racks = {o: loc for o, kind, loc in zip(msg.objects, msg.kinds, msg.locations, strict=False) if kind == "rack"}
        last = (at, racks)
    close(end)
    return spent


def draw_lab_map(path: Path, world: Any, start: float, end: float, out: Path) -> Path:
    """A top-down picture of the lab during [start, end] s of a recording: walls and stations, each
    robot's driven path (from its recorded tf), and how long each rack spent where."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(6.5, 8.5))

    def box(b: Any, **style: Any) -> None:
        w, h = b.size[0], b.size[1]
        ax.add_patch(Rectangle((b.pose.x - w / 2, b.pose.y - h / 2), w, h, angle=float(np.degrees(b.pose.yaw)),
                               rotation_point="center", **style))

    for wall in world.walls:
        box(wall, color="0.35")
    racks = rack_time(path, start, end)
    for name, station in world.stations.items():
        box(station, facecolor="0.85", edgecolor="0.3")
        here = [f"{obj} {spent[name] / 3600:.1f} h" for obj, spent in sorted(racks.items()) if spent.get(name, 0) > 0]
        ax.annotate("\n".join([name, *here]), (station.pose.x, station.pose.y), fontsize=6.5, ha="center",
                    va="center")
    for k, robot in enumerate(robots_in(path)):
        history = TfHistory.read(path, robot)
        edge = history.edges.get(f"{robot}/base_footprint")
        times = [t for t in (edge.times if edge else []) if start <= t <= end]
        poses = [history.pose(f"{robot}/base_footprint", t) for t in times]
        xy = np.array([p[:2, 3] for p in poses if p is not None]).reshape(-1, 2)
        if len(xy):
            ax.plot(xy[:, 0], xy[:, 1], color=f"C{k}", lw=1.0, alpha=0.8, label=f"{robot}'s path")
            ax.plot(*xy[-1], marker="o", color=f"C{k}")
            on_robot = [f"{obj} {spent[robot] / 3600:.1f} h" for obj, spent in sorted(racks.items())
                        if spent.get(robot, 0) > 0]
            if on_robot:
                ax.annotate("on the robot: " + ", ".join(on_robot), xy[-1], fontsize=6.5, color=f"C{k}",
                            xytext=(5, 5), textcoords="offset points")
    ax.set_xlim(0, world.width)
    ax.set_ylim(0, world.length)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, map)")
    ax.set_ylabel("y (m, map)")
    ax.set_title(f"the lab from the recording, {(end - start) / 3600:.1f} h simulated")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
