"""The embedded simulation's lockstep loop rests at the idle rate while its clock rests and is
back at its full rate the moment a robot is given a path (lab.nodes.sim SimNode._pace): the
loop's wake-ups at 100 Hz were most of an idle lab's CPU."""

from __future__ import annotations

import os
import time


def test_the_loop_rests_while_nothing_moves_and_wakes_at_full_rate_for_a_path(tmp_path) -> None:
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Path as PathMsg
    from rclpy.executors import SingleThreadedExecutor

    from lab.nodes.sim import SimNode

    rclpy.init(args=["--ros-args", "-r", f"__ns:=/sim_pace_probe_{os.getpid()}",
                     "-p", f"state_file:={tmp_path / 'world.json'}", "-p", "speed:=10.0",
                     # state at most once a wall second while moving: the pose at rest goes out only
                     # because the motion ended, not because a publishing period came round
                     "-p", "publish_rate:=1.0"])
    sim = SimNode()
    executor = SingleThreadedExecutor()
    executor.add_node(sim)
    full, idle = int(1e9 / sim.params.clock_rate), int(1e9 / sim.params.idle_publish_rate)
    try:
        assert sim.params.lockstep and full != idle
        deadline = time.monotonic() + 5
        while sim._timer.timer_period_ns != idle and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert sim._timer.timer_period_ns == idle, "the loop did not rest with nothing moving"
        began = sim.lab.time
        robot = sim.robot_names[0]
        start = sim.lab.robots[robot].truth
        path = PathMsg()
        for dx in (0.0, 0.5):  # half a metre straight ahead
            pose = PoseStamped()
            pose.pose.position.x, pose.pose.position.y = start.x + dx, start.y
            pose.pose.orientation.w = 1.0
            path.poses.append(pose)
        time.sleep(0.15)  # resting: longer than a full-rate tick since the loop's last
        sim._follow(robot, path)  # as the path's subscription does: triggers the loop's guard condition
        # the tick the guard runs, here and now: one spin_once runs whichever callback is ready
        # first, which was not always the tick (clean clone at 09af101)
        sim._tick()
        assert sim.lab.time > began, "the path did not start the clock"
        # the first step after the rest is one full-rate tick's worth, not the rest's gap
        assert sim.lab.time - began <= sim.params.speed / sim.params.clock_rate + 1e-6, \
            f"the first step after the rest was {sim.lab.time - began:.3f} simulated s"
        assert sim.lab.busy and sim._timer.timer_period_ns == full, "a moving robot's loop stayed at the idle rate"
        deadline = time.monotonic() + 10
        while sim.lab.busy and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        # the tick the motion ended in sent the robot's state at rest (the next is an idle period away)
        r = sim.lab.robots[robot]
        assert sim._gate.sent[robot]["base"][0] == (r.estimate, r.truth, tuple(r.velocity)), \
            "the pose at rest was not sent when the motion ended"
        executor.spin_once(timeout_sec=0.2)
        assert not sim.lab.busy and sim._timer.timer_period_ns == idle, "the loop did not rest again"
    finally:
        executor.shutdown()
        sim.destroy_node()
        rclpy.try_shutdown()


def test_a_missed_grasp_after_a_good_one_is_logged_and_the_loop_goes_on(tmp_path) -> None:
    """The gripper's events are logged, a miss as a warning: rclpy raises when one line of code logs
    at two severities (its logger keys a call's context by the caller), which killed the sim."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from lab.nodes.sim import SimNode

    rclpy.init(args=["--ros-args", "-r", f"__ns:=/sim_log_probe_{os.getpid()}",
                     "-p", f"state_file:={tmp_path / 'world.json'}"])
    sim = SimNode()
    executor = SingleThreadedExecutor()
    executor.add_node(sim)
    try:
        robot = sim.robot_names[0]
        for missed in (False, True, False):
            sim.lab.gripper_events.append((robot, f"rack_1: {'missed' if missed else 'grasped'}", missed))
            sim._tick()  # raised ValueError('Logger severity cannot be changed between calls.') on the miss
    finally:
        executor.shutdown()
        sim.destroy_node()
        rclpy.try_shutdown()
