"""The embedded arm backend sends a trajectory only to a matched controller, within a limit."""

from __future__ import annotations

import threading
import time

import numpy as np
from conftest import spinning


def test_a_trajectory_waits_for_the_controller_to_subscribe_and_is_refused_without_one(
        rclpy_context, repo_root, monkeypatch) -> None:
    """A trajectory published before the controller's subscription matched is lost, and an arm
    holding the clock then waits for ever for a motion that never comes (the first move of a lab
    just started): the backend waits for a subscriber (CONTROLLER_WAIT), refuses without one, and
    the controller that subscribes late gets the trajectory."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    import lab.backends.manipulation as manipulation
    from lab.core.robot.kinematics import Chain, expand_xacro, named_poses

    monkeypatch.setattr(manipulation, "CONTROLLER_WAIT", 1.0)
    urdf = expand_xacro(repo_root / "urdf" / "kmr_iiwa.urdf.xacro")
    chain = Chain.from_urdf(urdf, "base_link", "tool0")
    node = Node("arm_controller_probe", namespace="/controller_probe", context=rclpy_context)
    backend = manipulation.EmbeddedManipulation(node, "r", {
        "chain": chain, "named_poses": named_poses(repo_root / "urdf" / "kmr_iiwa.srdf", "arm")})
    peer = Node("controller_peer", namespace="/controller_probe", context=rclpy_context)
    states = peer.create_publisher(JointState, "joint_states", 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    executor.add_node(peer)
    try:
        with spinning(executor):
            here = np.zeros(len(chain.joint_names))
            deadline = time.monotonic() + 10
            while backend.current() is None and time.monotonic() < deadline:
                states.publish(JointState(name=list(chain.joint_names), position=here.tolist()))
                time.sleep(0.05)
            assert backend.current() is not None
            started = time.monotonic()
            outcome = backend._execute([here + 0.1], lambda: False)
            assert not outcome.success and "no trajectory controller on" in outcome.message, outcome.message
            assert time.monotonic() - started >= 0.9
            # a controller that subscribes while the backend waits gets the trajectory
            got: list[JointTrajectory] = []
            stop = threading.Event()
            runner = threading.Thread(target=lambda: got.append(backend._execute([here + 0.1], stop.is_set)))
            runner.start()
            time.sleep(0.3)
            received: list[JointTrajectory] = []
            peer.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", received.append, 10)
            deadline = time.monotonic() + 5
            while not received and time.monotonic() < deadline:
                time.sleep(0.02)
            stop.set()
            runner.join(5)
            assert received and len(received[0].points) > 1, "the controller did not get the trajectory"
    finally:
        executor.shutdown()
        peer.destroy_node()
        node.destroy_node()
