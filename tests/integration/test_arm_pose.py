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
