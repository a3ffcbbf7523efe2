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
import time
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
    executor when DDS says a member's writer lost or regained liveliness.

    A member lost also counts as back once its writer has left the graph and is in it again
    (rediscovered: the network reaches it), or a writer that was not there when it was lost is
    (its node restarted), checked every `recheck` wall s: after a network cut
    longer than DDS's participant lease (20 s), Fast DDS was seen never to report the writer
    alive again to one reader (a robot's arm stayed "out of contact" with the safety node for
    minutes while its navigator, on the same host, watching the same writer, was back at once;
    Fast DDS tracks AUTOMATIC liveliness per participant, not per reader: eProsima/Fast-DDS#4373,
    #4501). A cut shorter than that lease leaves the writer in the graph: there the liveliness
    event is the only sign, as before."""

    def __init__(self, node: Node, topics: Mapping[str, str], timeout: float,
                 on_change: Callable[[str, bool], None], callback_group=None, recheck: float = 1.0) -> None:
        from rclpy.clock import Clock, ClockType
        from rclpy.event_handler import SubscriptionEventCallbacks

        self._node = node
        self._lock = threading.Lock()
        self._present: dict[str, bool] = {}
        self._dropped: set[str] = set()  # lost members whose writer has left the graph since
        self._at_loss: dict[str, set[bytes]] = {}  # lost members' writers in the graph when they were lost
        self._on_change = on_change
        self._topics = dict(topics)
        self.rediscovered = 0
        self._subscriptions = []
        for member, topic in self._topics.items():
            events = SubscriptionEventCallbacks(liveliness=lambda info, m=member: self._changed(m, info))
            self._subscriptions.append(node.create_subscription(
                Empty, topic, lambda _msg: None, _qos(timeout), event_callbacks=events,
                callback_group=callback_group))
        # wall clock: the node's own may be the simulation's, which stands still while nothing waits
        node.create_timer(recheck, self._recheck, callback_group=callback_group,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _recheck(self) -> None:
        with self._lock:
            lost = [m for m, present in self._present.items() if not present]
        for member in lost:
            now = self._writers(member)
            if not self._node.context.ok():
                return
            with self._lock:
                if self._present.get(member, True):
                    continue  # DDS's event came meanwhile
                before = self._at_loss.setdefault(member, now)
                if not now:
                    self._dropped.add(member)
                # back: a writer not there when it was lost (the member's node restarted), or its
                # writer again after it had left the graph (its host's link back after a long cut)
                if not (now - before or (now and member in self._dropped)):
                    continue
                self._dropped.discard(member)
                self._at_loss.pop(member, None)
                self._present[member] = True
                self.rediscovered += 1
            self._node.get_logger().info(f"{member}: its presence writer is in the graph again (restarted or "
                                         "rediscovered): counted as back (DDS has reported no liveliness change "
                                         "for it)")
            self._on_change(member, True)

    def _writers(self, member: str) -> set[bytes]:
        """The member's presence writers in this node's graph (none once Ctrl-C has shut the
        context down under a callback)."""
        try:
            return {bytes(i.endpoint_gid) for i in self._node.get_publishers_info_by_topic(self._topics[member])}
        except Exception:
            if self._node.context.ok():
                raise
            return set()

    def _changed(self, member: str, info) -> None:
        present = info.alive_count > 0
        writers = set() if present else self._writers(member)  # the ones it was lost with
        with self._lock:
            before = self._present.get(member, True)
            self._present[member] = present
            if present:
                self._dropped.discard(member)
                self._at_loss.pop(member, None)
            elif before:
                self._at_loss[member] = writers
        if present != before:
            self._on_change(member, present)

    def present(self, member: str) -> bool:
        with self._lock:
            return self._present.get(member, True)

    def heard(self, member: str) -> bool:
        """Whether DDS has reported the member's writer alive at least once (its loss can be noticed)."""
        with self._lock:
            return member in self._present


#: every lab node's own presence, for its peers to notice it coming back (GraphRejoin)
LAB_TOPIC = "/lab/presence"


class GraphRejoin:
    """Heals the node names other nodes see after a network cut.

    When a host is cut off for longer than DDS's participant lease (Fast DDS: 20 s), the others
    drop its participant; when it comes back DDS rediscovers its endpoints, but rmw_fastrtps'
    graph keeps its node names unknown (`ros2 node list` and get_node_names_and_namespaces()
    miss them, the endpoints show `_NODE_NAME_UNKNOWN_`): the node-to-participant table
    (ros_discovery_info) is only published when a participant's entities change, and the sample
    sent before the cut is not sent again. Measured here in three network namespaces: still
    unknown 35 s after the link came back. So every lab node offers a writer on /lab/presence and
    watches the others': when a writer it had seen leave the graph is back, the node creates and
    destroys a throwaway publisher, which makes rmw publish its participant's entities again;
    its peers, seeing it back, do the same for theirs.
    """

    def __init__(self, node: Node, lease: float = 2.0, min_interval: float = 1.0) -> None:
        from rclpy.event_handler import SubscriptionEventCallbacks

        self._node = node
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()
        self._gone: set[bytes] = set()
        self._min_interval = min_interval
        self._last = 0.0
        self.refreshes = 0
        self._writer = node.create_publisher(Empty, LAB_TOPIC, _qos(lease))
        self._reader = node.create_subscription(
            Empty, LAB_TOPIC, lambda _msg: None, _qos(lease),
            event_callbacks=SubscriptionEventCallbacks(liveliness=lambda _info: self.check()))

    def check(self) -> bool:
        """Compare the writers in the graph with those seen before; refresh when one came back."""
        try:
            now = {bytes(i.endpoint_gid) for i in self._node.get_publishers_info_by_topic(LAB_TOPIC)}
        except Exception:
            if self._node.context.ok():
                raise
            return False  # Ctrl-C shut the context down under this callback (peers leaving fire it)
        with self._lock:
            back = self._gone & now
            self._gone = (self._gone | self._seen) - now
            self._seen |= now
            if not back or time.monotonic() - self._last < self._min_interval:
                return False
            self._last = time.monotonic()
            self.refreshes += 1
        self._node.get_logger().info(f"{len(back)} node(s) back in the graph after a network cut: "
                                     "announcing this node's entities again")
        self._node.destroy_publisher(self._node.create_publisher(Empty, f"{LAB_TOPIC}_refresh", 1))
        return True
