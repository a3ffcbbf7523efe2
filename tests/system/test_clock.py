"""The embedded simulation's lockstep clock, over DDS: it holds while nothing moves and nobody
waits, runs for a node's wait to exactly the time waited for, stops when a wait is cancelled,
and while a node holds it (a robot's nodes between motions) runs only for the holder's waits;
a holder restarted under its name frees what its predecessor held."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import ros_available
from helpers import lab
from procs import wait_for

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]


def _past(seconds: float):
    """A wait's `cancelled` that turns true `seconds` wall s from now: a clock that never comes
    fails the test rather than hanging the suite (seen once in a clean-clone run)."""
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


def test_the_clock_runs_only_for_what_waits_on_it(tmp_path) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock

    from lab.ros.clock import ClockWaits, clock_hold, sim_now, wait_sim

    with lab(tmp_path, ["robots:=1", "speed:=1000", "record:=false"], keep={"sim"}):
        context = rclpy.Context()
        rclpy.init(context=context)
        node = Node("clock_test", context=context, parameter_overrides=[Parameter("use_sim_time", value=True)])
        seen: list[float] = []
        node.create_subscription(Clock, "/clock", lambda m: seen.append(m.clock.sec + m.clock.nanosec * 1e-9), 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            wait_for(lambda: bool(seen), 60, what="/clock from the simulation")
            held = sim_now(node)
            time.sleep(2.5)  # 2500 simulated s at 1000x if it ran free
            assert sim_now(node) == held and seen[-1] == held, "the clock ran with nothing moving or waiting"

            count, began = len(seen), time.monotonic()
            assert wait_sim(node, 600.0, cancelled=_past(60.0))
            # every node with use_sim_time wakes for each /clock message: a running clock nobody
            # reads at motion's pace goes out at clock_publish_rate (20 wall Hz), not every tick (100 Hz)
            sent, wall = len(seen) - count, time.monotonic() - began
            assert 1 <= sent <= 20.0 * wall + 3, (sent, wall)
            time.sleep(1.5)  # the clock stops on the time waited for and stays there
            assert sim_now(node) == pytest.approx(held + 600.0, abs=1e-3)

            stop = threading.Event()
            threading.Timer(0.3, stop.set).start()
            assert not wait_sim(node, 1e6, cancelled=stop.is_set)
            time.sleep(0.5)
            cancelled_at = sim_now(node)
            time.sleep(1.5)
            assert sim_now(node) == cancelled_at, "the clock ran on for a cancelled wait"
            assert cancelled_at < held + 600.0 + 1e5

            # a hold by another node: a station's wait does not run the clock, the holder's own does
            other = Node("clock_holder", context=context, parameter_overrides=[Parameter("use_sim_time", value=True)])
            executor.add_node(other)
            start = sim_now(node)
            station_wait = threading.Thread(target=wait_sim, args=(node, 3600.0), daemon=True)
            with clock_hold(other):
                time.sleep(0.5)  # the hold reaches the simulation before the wait does
                station_wait.start()
                time.sleep(2.0)
                assert sim_now(node) == start, "a station's wait ran the clock through a hold"
                assert wait_sim(other, 30.0, cancelled=_past(60.0))
                assert sim_now(node) == pytest.approx(start + 30.0, abs=1e-3)
                time.sleep(1.0)
                assert sim_now(node) == pytest.approx(start + 30.0, abs=1e-3)
            station_wait.join(timeout=20.0)
            assert not station_wait.is_alive(), "the hold ended but the station's wait did not complete"
            assert sim_now(node) == pytest.approx(start + 3600.0, abs=1e-3)
            executor.remove_node(other)
            other.destroy_node()

            # a holder killed mid-hold and restarted under the same name: the new instance's first
            # word frees its predecessor's hold (before, the clock froze until a full restart)
            first = Node("restarted_holder", context=context,
                         parameter_overrides=[Parameter("use_sim_time", value=True)])
            executor.add_node(first)
            kept = ClockWaits.of(first).hold()  # entered, never left: its process "dies" holding the clock
            kept.__enter__()  # (a reference is kept: a collected generator would end the hold)
            time.sleep(0.5)
            start = sim_now(node)
            waiting = threading.Thread(target=wait_sim, args=(node, 100.0), daemon=True)
            waiting.start()
            time.sleep(1.5)
            assert sim_now(node) == start, "the clock ran through the first instance's hold"
            executor.remove_node(first)
            first.destroy_node()
            second = Node("restarted_holder", context=context,
                          parameter_overrides=[Parameter("use_sim_time", value=True)])
            executor.add_node(second)
            began = time.monotonic()
            assert wait_sim(second, 1.0, cancelled=_past(30.0)), ("the restarted holder's wait never reached",
                                                                   spinner.is_alive())
            waiting.join(timeout=3.0)
            # well before the 5 s after which a node gone from the graph loses its holds anyway
            assert not waiting.is_alive() and time.monotonic() - began < 4.0, time.monotonic() - began
            executor.remove_node(second)
            second.destroy_node()
        finally:
            executor.shutdown()
            node.destroy_node()
            context.try_shutdown()
            spinner.join(timeout=5)
