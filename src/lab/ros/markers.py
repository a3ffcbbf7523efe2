"""Text markers the operator reads in RViz: station states (lab manager) and campaign progress
(planner), on both stacks (not only in the embedded simulation)."""

from __future__ import annotations

from typing import Any

from visualization_msgs.msg import Marker, MarkerArray

#: StationStatus.state_text -> colour (r, g, b, a)
STATE_COLOURS = {"idle": (0.75, 0.75, 0.75, 1.0), "busy": (0.2, 0.85, 0.3, 1.0), "fault": (1.0, 0.25, 0.2, 1.0),
                 "offline": (0.45, 0.45, 0.45, 1.0)}


def text_marker(ns: str, ident: int, xyz: tuple[float, float, float], text: str, stamp: Any,
                colour: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0), height: float = 0.22) -> Marker:
    m = Marker()
    m.header.stamp, m.header.frame_id = stamp, "map"
    m.ns, m.id, m.type, m.action = ns, ident, Marker.TEXT_VIEW_FACING, Marker.ADD
    m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in xyz)
    m.pose.orientation.w = 1.0
    m.scale.z = float(height)
    m.color.r, m.color.g, m.color.b, m.color.a = colour
    m.text = text
    return m


def station_markers(stations: dict[str, Any], statuses: dict[str, Any], stamp: Any) -> MarkerArray:
    """One text above each station: its state and what it holds or runs (from its status)."""
    out = MarkerArray()
    for i, (name, station) in enumerate(stations.items()):
        status = statuses.get(name)
        state = status.state_text if status is not None else "no status yet"
        held = ", ".join(status.holding) if status is not None and status.holding else ""
        text = state + (f": {held}" if held else "")
        out.markers.append(text_marker("station_state", i, (station.pose.x, station.pose.y, 2.0), text, stamp,
                                       STATE_COLOURS.get(state, (1.0, 1.0, 1.0, 1.0))))
    return out
