"""The arm places slots from odometry published after its goal came, not from a backlog."""

from __future__ import annotations

import os
import time

from conftest import spinning


def _odom(x: float):
    from nav_msgs.msg import Odometry

    msg = Odometry()
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    return msg


def test_odometry_published_before_the_goal_is_not_fresh_even_when_taken_after_it() -> None:
    import rclpy
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor

    from lab.nodes.arm import FRESH_POSE_WAIT, ArmNode

    context_args = ["--ros-args", "-r", f"__ns:=/arm_pose_probe_{os.getpid()}"]
    rclpy.init(args=context_args)
    arm = ArmNode()
    publisher = rclpy.create_node("odom_probe")
    odom = publisher.create_publisher(Odometry, "odom", 10)
    executor = SingleThreadedExecutor()
    executor.add_node(arm)
    try:
        deadline = time.monotonic() + 10
        while arm.count_publishers("odom") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        executor.spin_once(timeout_sec=0.5)  # matched both ways before anything is sent
        # the backlog: a pose from before the localisation correction, sent before the goal came and
        # taken only after it (the arm's executor was busy), as in a release that missed by 1.9 cm
        odom.publish(_odom(1.0))
        asked = time.time_ns()
        with spinning(executor):
            deadline = time.monotonic() + 5
            while arm._pose is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert arm._pose is not None and arm._pose.x == 1.0  # taken after the goal came
            started = time.monotonic()
            assert arm._fresh_pose(asked) is False  # ... but published before it: not fresh
            assert time.monotonic() - started >= FRESH_POSE_WAIT * 0.9
            odom.publish(_odom(2.0))  # published after the goal: the corrected pose
            assert arm._fresh_pose(asked) is True
            assert arm._pose.x == 2.0
    finally:
        executor.shutdown()
        publisher.destroy_node()
        arm.destroy_node()
        rclpy.try_shutdown()


def test_the_arm_waits_for_a_slow_synced_world_and_a_miss_ends_the_wait_at_once() -> None:
    """After its motion the arm waits for the simulation's world to show the rack where it put it;
    the world goes out once the release is synced to the disk, which on a loaded machine took more
    than the 2 s the arm used to wait (its second try then grasped at an empty deck). A miss the
    simulation reports ends the wait as soon as it comes, with the simulation's words."""
    import threading

    import rclpy

    from lab.nodes.arm import ArmNode
    from lab_interfaces.msg import WorldState

    rclpy.init(args=["--ros-args", "-r", f"__ns:=/arm_world_probe_{os.getpid()}"])
    arm = ArmNode()
    robot = arm.robot

    def world(rack_at: str, misses: tuple[str, ...] = ()) -> WorldState:
        return WorldState(objects=["rack_1"], kinds=["rack"], locations=[rack_at], misses=list(misses))

    try:
        arm._world_state(world(f"{robot}/deck1"))
        seen = arm._miss_count
        threading.Timer(3.0, lambda: arm._world_state(world("solid_dispenser/rack"))).start()
        assert arm._world_after("rack_1", "solid_dispenser/rack", seen) == ""  # shown after 3 s: done
        arm._world_state(world(f"{robot}/deck1"))  # the next transfer's rack, on the deck
        seen = arm._miss_count
        threading.Timer(0.3, lambda: arm._world_state(world(
            f"{robot}/deck1", (f"{robot}: rack_1: release missed solid_dispenser/rack by 3 cm",)))).start()
        started = time.monotonic()
        why = arm._world_after("rack_1", "solid_dispenser/rack", seen)
        assert time.monotonic() - started < 2.0, "a reported miss waited the limit out"
        assert why == (f"rack_1 is at {robot}/deck1, not solid_dispenser/rack: "
                       "rack_1: release missed solid_dispenser/rack by 3 cm"), why
    finally:
        arm.destroy_node()
        rclpy.try_shutdown()
