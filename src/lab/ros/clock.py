"""The node's clock (simulated when use_sim_time is set): reading it, waiting on it, and the
lockstep protocol by which a node tells the embedded simulation what it waits for."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# the wall-clock waits are core's (no ROS in them); the nodes import them from here with the clock's
from lab.core.waits import POLL as POLL
from lab.core.waits import wait_for as wait_for


def to_time(seconds: float) -> Time:
    """A builtin_interfaces/Time of `seconds` (truncated to the ns below, as /clock carries it)."""
    sec = int(seconds)
    return Time(sec=sec, nanosec=min(int((seconds - sec) * 1e9), 999_999_999))


def seconds_of(stamp: Any) -> float:
    """Seconds of a builtin_interfaces Time or Duration."""
    return stamp.sec + stamp.nanosec * 1e-9


def sim_now(node: Node) -> float:
    """The node's clock (simulated when use_sim_time is set) in seconds."""
    return node.get_clock().now().nanoseconds * 1e-9


class ClockWaits:
    """Tell a lockstep simulation which simulated times this node waits for.

    The embedded simulation advances /clock only while a robot moves or some node has said it
    waits on the clock (lab_interfaces/ClockWait on /sim/clock_waits); otherwise the clock
    holds, so the time nodes spend computing between motions costs no simulated time. A
    simulation that ignores the topic (free-running, Gazebo) loses nothing by it. Without
    use_sim_time nothing is published.
    """

    TOPIC = "/sim/clock_waits"
    #: transient local: a wait announced before the simulation's reader has matched this new
    #: publisher (the first wait of a node) reaches it when it does; lost, the clock would hold
    QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)

    def __init__(self, node: Node) -> None:
        from lab_interfaces.msg import ClockWait

        self._msg = ClockWait
        # the node's name and this instance: a node restarted under the same name frees what its
        # predecessor held (the simulation drops an owner's entries when a new instance speaks)
        self._owner = f"{node.get_fully_qualified_name()}#{uuid.uuid4().hex[:8]}"
        self._pub = node.create_publisher(ClockWait, self.TOPIC, self.QOS)
        self._next = 0
        self._lock = threading.Lock()
        # this instance speaks at once (an ended wait 0): the simulation drops what a predecessor
        # under this name held or waited for. Left until the new instance's first wait, a hold of a
        # node killed mid-action would freeze the clock whenever nothing moved
        self._publish(0, 0.0, False)

    @staticmethod
    def of(node: Node) -> ClockWaits | None:
        """The node's ClockWaits (made on first use); None when the node runs on the wall clock."""
        if not node.get_parameter("use_sim_time").value:
            return None
        with _CLOCK_WAITS_LOCK:
            waits = getattr(node, "_lab_clock_waits", None)
            if waits is None:
                waits = ClockWaits(node)
                node._lab_clock_waits = waits  # type: ignore[attr-defined]
        return waits

    def _ident(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def begin(self, until: float) -> int:
        """Announce a wait until `until` (simulated s); returns its id for end()."""
        ident = self._ident()
        self._publish(ident, until, True)
        return ident

    def end(self, ident: int) -> None:
        """The wait ended early: the clock need not run on for it."""
        self._publish(ident, 0.0, False)

    @contextmanager
    def hold(self, yields_to: str = "") -> Iterator[None]:
        """Hold the clock (but for motion and this node's own waits) for the block; with `yields_to`
        (a namespace, '/robot1/'), only while no node under it holds the clock, for up to a wall
        second at a stretch (lab.core.robot.lockstep: the hand-offs between a robot's actions)."""
        ident = self._ident()
        self._publish(ident, 0.0, True, hold=True, yields_to=yields_to)
        try:
            yield
        finally:
            self._publish(ident, 0.0, False, hold=True)

    def _publish(self, ident: int, until: float, active: bool, hold: bool = False, yields_to: str = "") -> None:
        from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

        try:
            self._pub.publish(self._msg(owner=self._owner, id=ident, active=active, hold=hold, until=to_time(until),
                                        yields_to=yields_to))
        except _rclpy.InvalidHandle:
            # the node is being destroyed (a hold or wait still open at shutdown): its release has no
            # one to tell, and needs none: the simulation drops a departed owner's waits and holds
            if active:
                raise


@contextmanager
def clock_hold(node: Node, yields_to: str = "") -> Iterator[None]:
    """ClockWaits.hold for a node, or nothing when it runs on the wall clock. The navigator and
    the arm hold the clock through each action: the robot's compute between motions is free."""
    waits = ClockWaits.of(node)
    if waits is None:
        yield
        return
    with waits.hold(yields_to):
        yield


_CLOCK_WAITS_LOCK = threading.Lock()
#: simulated s: a time counts as reached this close to it. A lockstep clock stops exactly on
#: the time waited for, and the ns of the clock messages need not round back to the same float
CLOCK_SLACK = 1e-6


def sim_reached(node: Node, when: float) -> bool:
    """Whether the node's clock has reached `when` (simulated s), within CLOCK_SLACK."""
    return sim_now(node) >= when - CLOCK_SLACK


def wait_sim(node: Node, duration: float, cancelled: Callable[[], bool] = lambda: False,
             on_tick: Callable[[float], None] | None = None, tick: float = 0.25) -> bool:
    """Wait `duration` s of the node's clock; False if cancelled first.

    `on_tick(elapsed)` is called about every `tick` wall seconds (for feedback). Works with the
    simulated clock and with the wall clock alike (use_sim_time false). A lockstep simulation
    is told (ClockWaits), so that it runs its clock on for this wait.
    """
    start = sim_now(node)
    end = start + max(0.0, duration)
    waits = ClockWaits.of(node) if duration > 0 else None
    ident = waits.begin(end) if waits is not None else 0
    last = time.monotonic()
    reached = False
    try:
        while not cancelled():
            now = sim_now(node)
            if now >= end - CLOCK_SLACK:
                reached = True
                return True
            if on_tick is not None and time.monotonic() - last >= tick:
                last = time.monotonic()
                on_tick(now - start)
            time.sleep(POLL)
        return False
    finally:
        if waits is not None and not reached:
            waits.end(ident)  # cancelled or interrupted: the clock need not run on for it


class SimDeadline:
    """A time limit on the node's clock that also needs `wall_floor` wall seconds to pass.

    With a free-running simulation at high speed, a node that is late reading its messages
    sees the simulated clock run far ahead (30 simulated s are 20 wall ms at 1500x): that
    must not count as the thing it waits for having timed out. With a lockstep simulation
    the clock holds when nothing moves (a motion that never started, a lost command): the
    limit also passes once the clock has stood still for `stalled` wall seconds.
    """

    def __init__(self, node: Node, seconds: float, wall_floor: float = 5.0, stalled: float = 10.0) -> None:
        self.node = node
        self.end = sim_now(node) + seconds
        self.wall_end = time.monotonic() + wall_floor
        self.stalled = stalled
        self._seen = sim_now(node)
        self._seen_at = time.monotonic()

    def passed(self) -> bool:
        now, wall = sim_now(self.node), time.monotonic()
        if now != self._seen:
            self._seen, self._seen_at = now, wall
        if wall <= self.wall_end:
            return False
        return now > self.end or wall - self._seen_at > self.stalled


class Stamped:
    """The latest value of a topic with its stamp (simulated s), and a wait for one stamped at
    or after a given time: what was true when another message (an image) was taken, rather
    than whatever arrived last, which on a busy executor can be older."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._stamp = -math.inf

    def put(self, value: Any, stamp: float) -> None:
        with self._lock:
            if stamp >= self._stamp:
                self._value, self._stamp = value, stamp

    def at_or_after(self, stamp: float, timeout: float) -> Any:
        """The latest value if it is stamped at or after `stamp` (within CLOCK_SLACK), waiting up
        to `timeout` wall s for one; else None."""
        def fresh() -> bool:
            with self._lock:
                return self._stamp >= stamp - CLOCK_SLACK
        if not wait_for(fresh, timeout):
            return None
        with self._lock:
            return self._value


