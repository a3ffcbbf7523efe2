"""A mover that loses the safety node's presence stops as for an emergency stop.

Real DDS: a stand-in safety node (a process of its own) offers the presence writer and the
released state; a node's SafetyMonitor with a contact time-out follows it. A stand-in that is
stopped (SIGSTOP) is heard from no more, as when its host is cut off (DDS liveliness lost): the
monitor must count as stopped, refuse with the reason, and go back to the latched state when
the writer is back. A monitor without the contact check (stations, the lab manager) is not
affected."""

from __future__ import annotations

import time

import pytest
from conftest import ros_available, spinning
from procs import process

pytestmark = pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")


def _until(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


STANDIN = """
import rclpy
from lab.ros.presence import offer_presence
from lab.ros.qos import LATCHED
from lab.ros.safety import PRESENCE_TOPIC, TOPIC
from lab_interfaces.msg import SafetyState
rclpy.init()
node = rclpy.create_node("safety_standin")
state = node.create_publisher(SafetyState, TOPIC, LATCHED)
state.publish(SafetyState(stopped=False))
presence = offer_presence(node, PRESENCE_TOPIC, 0.5)
print("UP", flush=True)
rclpy.spin(node)
"""


def test_a_mover_stops_while_the_safety_node_is_out_of_reach(rclpy_context) -> None:
    """The stand-in safety node is a process of its own; SIGSTOP silences it as a network cut
    would (DDS hears nothing from its participant), SIGCONT brings it back."""
    import signal
    import sys

    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node

    from lab.ros.qos import LATCHED
    from lab.ros.safety import TOPIC, SafetyMonitor
    from lab_interfaces.msg import SafetyState

    mover = Node("mover", context=rclpy_context)
    changes: list[tuple[bool, str]] = []
    watched = SafetyMonitor(mover, lambda stopped, text: changes.append((stopped, text)), contact_timeout=1.0)
    unwatched = SafetyMonitor(mover)
    operator = mover.create_publisher(SafetyState, TOPIC, LATCHED)
    executor = MultiThreadedExecutor(context=rclpy_context)
    executor.add_node(mover)
    with process([sys.executable, "-c", STANDIN]) as standin, spinning(executor):
        assert standin.stdout.readline().strip() == "UP"
        # its state and its presence heard (a fixed 1.5 s sleep here failed once on a loaded machine)
        assert _until(lambda: watched.contact_heard and not watched.stopped, timeout=30.0), watched.refusal()
        assert watched.refusal() == ""
        standin.send_signal(signal.SIGSTOP)
        try:
            assert _until(lambda: watched.stopped), "contact loss not noticed"
            assert "no contact with the safety node" in watched.refusal()
            assert changes and changes[-1][0] is True and "no contact" in changes[-1][1]
            assert not unwatched.stopped  # without the contact check: as before
        finally:
            standin.send_signal(signal.SIGCONT)
        assert _until(lambda: not watched.stopped), "contact not regained"
        assert changes[-1] == (False, "")
        # an emergency stop while in contact is still a stop, with its own reason
        operator.publish(SafetyState(stopped=True, by="operator", reason="test"))
        assert _until(lambda: watched.stopped and unwatched.stopped)
        assert watched.refusal().startswith("refused: emergency stop by operator: test")
    mover.destroy_node()


def test_a_mover_or_station_that_has_not_heard_the_safety_state_yet_does_nothing(
        rclpy_context, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node just started may not have discovered the safety node yet, while the lab may be
    stopped (else a navigator started just before a stop would take a drive goal after it).
    Until it has heard the state once, a monitor with `until_heard` counts as stopped; `refusal()`
    waits up to FIRST_STATE_WAIT for it and answers from what it heard, or refuses with the reason."""
    import threading

    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node

    import lab.ros.safety as safety
    from lab.ros.qos import LATCHED
    from lab_interfaces.msg import SafetyState

    monkeypatch.setattr(safety, "FIRST_STATE_WAIT", 0.5)
    mover = Node("fresh_mover", context=rclpy_context)
    station = safety.SafetyMonitor(mover, until_heard=True)
    arm = safety.SafetyMonitor(mover, contact_timeout=1.0)  # the movers: until_heard by default
    manager = safety.SafetyMonitor(mover)  # the lab manager's: as before
    executor = MultiThreadedExecutor(context=rclpy_context)
    executor.add_node(mover)
    with spinning(executor):
        assert station.stopped and arm.stopped and not manager.stopped
        started = time.monotonic()
        why = station.refusal()
        assert time.monotonic() - started >= 0.45
        assert why.startswith("refused: no contact with the safety node yet (its state not heard"), why
        # the state comes while a goal waits for it: the goal goes on, with no refusal
        answers: list[str] = []
        monkeypatch.setattr(safety, "FIRST_STATE_WAIT", 10.0)
        waiting = threading.Thread(target=lambda: answers.append(arm.refusal()))
        waiting.start()
        time.sleep(0.2)
        publisher = mover.create_publisher(SafetyState, safety.TOPIC, LATCHED)
        publisher.publish(SafetyState(stopped=False))
        waiting.join(10.0)
        assert answers == [""] and not arm.stopped and not station.stopped
        # heard once, a stop is a stop with its own reason
        publisher.publish(SafetyState(stopped=True, by="operator", reason="test"))
        assert _until(lambda: station.stopped and arm.stopped and manager.stopped)
        assert station.refusal().startswith("refused: emergency stop by operator: test")
    mover.destroy_node()


def test_a_safety_node_rediscovered_counts_as_back_when_dds_reports_no_liveliness(rclpy_context) -> None:
    """After a network cut longer than DDS's participant lease, Fast DDS was seen never to report
    the safety node's presence writer alive again to one of the movers. Here DDS's 'alive'
    events are withheld from the watch: the stand-in leaves the graph (Ctrl-C) and a new one
    comes; the watch counts the writer back because it left the graph and is in it again."""
    import signal
    import sys

    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node

    from lab.ros.safety import SafetyMonitor

    mover = Node("cut_mover", context=rclpy_context)
    watched = SafetyMonitor(mover, contact_timeout=1.0)
    watch = watched._watch
    passed = watch._changed
    withhold = [False]
    watch._changed = lambda member, info: None if withhold[0] and info.alive_count > 0 else passed(member, info)
    executor = MultiThreadedExecutor(context=rclpy_context)
    executor.add_node(mover)
    with spinning(executor):
        with process([sys.executable, "-c", STANDIN]) as standin:
            assert standin.stdout.readline().strip() == "UP"
            assert _until(lambda: watched.contact_heard and not watched.stopped, timeout=30.0), watched.refusal()
            withhold[0] = True
            standin.send_signal(signal.SIGINT)
            assert _until(lambda: watched.stopped, timeout=30.0), "contact loss not noticed"
            assert _until(lambda: not mover.get_publishers_info_by_topic("/safety/presence"), timeout=30.0)
        assert watched.stopped and watch.rediscovered == 0
        with process([sys.executable, "-c", STANDIN]) as standin:
            assert standin.stdout.readline().strip() == "UP"
            assert _until(lambda: not watched.stopped, timeout=30.0), "the rediscovered writer not counted back"
            assert watch.rediscovered == 1 and watched.refusal() == ""
    mover.destroy_node()
