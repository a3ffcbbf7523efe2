"""Who is there, from DDS liveliness: a robot's or a station's host that the network lost.

A node that stands for a member of the lab (a robot's navigator, a station node) offers a
presence topic, `/<robot>/presence` or `/stations/<name>/presence`, whose writer has
liveliness AUTOMATIC with a lease of `presence_lease` s: DDS itself asserts it for as long
as the node's process runs and the network reaches it, with no message sent by the node.
The lab manager watches these topics: DDS tells it (the subscription's liveliness-changed
event) when a writer has not been heard from within its lease, and again when it is heard
from again; no wall-clock guess of the lab's own. A member that has never been seen counts
as present (its goals' own time-outs cover a host that never started).

The watcher's requested lease (`presence_timeout`) must be at least every writer's offered
lease, or DDS does not match them (an incompatible-QoS warning in the log).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Empty


def robot_topic(robot: str) -> str:
    return f"/{robot}/presence"


def station_topic(station: str) -> str:
    return f"/stations/{station}/presence"


def _qos(lease: float) -> QoSProfile:
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, liveliness=LivelinessPolicy.AUTOMATIC,
                      liveliness_lease_duration=Duration(seconds=lease))


def offer_presence(node: Node, topic: str, lease: float):
    """The member's presence writer (keep the returned publisher as long as the node lives)."""
    publisher = node.create_publisher(Empty, topic, _qos(lease))
    publisher.publish(Empty())
    return publisher


class PresenceWatch:
    """Follows members' presence writers; `on_change(member, present)` is called from the
    executor when DDS says a member's writer lost or regained liveliness."""

    def __init__(self, node: Node, topics: Mapping[str, str], timeout: float,
                 on_change: Callable[[str, bool], None], callback_group=None) -> None:
        from rclpy.event_handler import SubscriptionEventCallbacks

        self._lock = threading.Lock()
        self._present: dict[str, bool] = {}
        self._on_change = on_change
        self._subscriptions = []
        for member, topic in topics.items():
            events = SubscriptionEventCallbacks(liveliness=lambda info, m=member: self._changed(m, info))
            self._subscriptions.append(node.create_subscription(
                Empty, topic, lambda _msg: None, _qos(timeout), event_callbacks=events,
                callback_group=callback_group))

    def _changed(self, member: str, info) -> None:
        present = info.alive_count > 0
        with self._lock:
            before = self._present.get(member, True)
            self._present[member] = present
        if present != before:
            self._on_change(member, present)

    def present(self, member: str) -> bool:
        with self._lock:
            return self._present.get(member, True)
