"""lab_interfaces built by colcon work across processes: a goal, its feedback and result over Fast DDS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import ros_available
from procs import process

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")]


def test_action_round_trip_across_processes(rclpy_context) -> None:
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from lab_interfaces.action import RunStation
    from lab_interfaces.msg import Formulation

    server = Path(__file__).with_name("action_server_proc.py")
    with process([sys.executable, str(server)]) as proc:
        assert _said(proc.stdout) == "READY"
        node = Node("roundtrip_client", context=rclpy_context)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        client = ActionClient(node, RunStation, "run_station")
        assert client.wait_for_server(timeout_sec=20.0), "server not discovered over DDS"
        feedback: list[RunStation.Feedback] = []
        goal = RunStation.Goal(rack_id="rack_7", formulations=[
            Formulation(sample_id="s1", components=["P10-MIX1", "NaCl-3M"], amounts=[5.0, 1.25], units=["mg", "mL"]),
            Formulation(sample_id="s2", components=["NaOH-1M"], amounts=[0.5], units=["mL"]),
        ])
        send = client.send_goal_async(goal, feedback_callback=lambda msg: feedback.append(msg.feedback))
        executor.spin_until_future_complete(send, timeout_sec=20.0)
        handle = send.result()
        assert handle is not None and handle.accepted
        result_future = handle.get_result_async()
        executor.spin_until_future_complete(result_future, timeout_sec=20.0)
        result = result_future.result().result
        assert result.success and result.message == "ran rack_7"
        assert [m.sample_id for m in result.measurements] == ["s1", "s2"]
        assert result.measurements[0].values[0] == pytest.approx(6.25)
        assert result.measurements[0].as_dispensed.components == ["P10-MIX1", "NaCl-3M"]
        # feedback is best effort in ROS 2 actions; over loopback all three arrive in order
        assert [f.step for f in feedback] == ["step0", "step1", "step2"]
        client.destroy()
        node.destroy_node()
        executor.shutdown()


def _late_answer(rclpy_context, name: str, *flags: str):
    """Run rack_9 on an echo station that answers the first goal 2.5 s late (ack_timeout 1 s):
    (how the goal ended, the task, what the server printed)."""
    import select

    from lab.app.commander import LabCommander

    server = Path(__file__).with_name("action_server_proc.py")
    with process([sys.executable, str(server), "--namespace", "/stations/echo", "--slow-first-answer", "2.5",
                  *flags]) as proc:
        assert _said(proc.stdout) == "READY"
        cmd = LabCommander(name, context=rclpy_context)
        cmd.ack_timeout = 1.0
        try:
            task = cmd.run_station("echo", "rack_9")
            outcome = cmd.wait(task, timeout=30.0)
            printed = []
            while select.select([proc.stdout], [], [], 1.0)[0]:
                printed.append(_said(proc.stdout))
            return outcome, task, printed
        finally:
            cmd.destroy_node()


def test_a_goal_sent_again_after_a_late_answer_runs_once(rclpy_context) -> None:
    """LabCommander re-sends a goal nobody answered within ack_timeout (a response Fast DDS
    could not deliver yet). The copy carries the same goal id: a server that did accept the
    first send refuses it, and the commander follows the first goal to its result instead of
    the goal running twice (which moved a rack, then failed on the empty slot)."""
    from lab.app.commander import TaskResult

    outcome, task, printed = _late_answer(rclpy_context, "resend_client")
    assert outcome is TaskResult.SUCCEEDED
    assert task.adopted, "the first answer came in time: the test did not exercise a re-send"
    assert task.result.message == "ran rack_9"
    assert printed == ["RAN rack_9"]
    # a goal the server refuses is still reported as refused when the refusal came late
    outcome, task, printed = _late_answer(rclpy_context, "resend_client_2", "--refuse")
    assert outcome is TaskResult.REJECTED and task.adopted and printed == []


def _said(stream) -> str:
    """The server process's next line of its own: Python warnings rclpy prints into the same
    stream are passed over (a clean clone at 1a326f6 read Fast DDS's 'failed to send response
    (timeout)' RuntimeWarning where 'STARTED rack_0' was expected), with their indented source line."""
    while True:
        line = stream.readline()
        if "Warning:" in line or (line.startswith(" ") and line.strip()):
            continue
        return line.strip()


def test_a_goal_whose_server_dies_and_restarts_ends_with_the_reason(rclpy_context) -> None:
    """A goal past its limit is cancelled and says what was waited for. A station killed
    mid-process and started again under its name: the client's wait for that goal's result ends
    once the new instance is seen (not when DDS's 20 s lease for the dead one runs out, nor at
    the 300 s time-out) saying why. A goal's result can be
    asked for by its id from another client; an unknown id answers STATUS_UNKNOWN."""
    import os
    import signal
    import threading
    import time
    import uuid

    from action_msgs.msg import GoalStatus
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from lab.ros.actions import ActionClient, call_action, follow_goal
    from lab_interfaces.action import RunStation

    server = Path(__file__).with_name("action_server_proc.py")
    command = [sys.executable, str(server), "--namespace", "/stations/gone"]
    node = Node("gone_client", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        with process([*command, "--hang"]) as first:
            assert _said(first.stdout) == "READY"
            client = ActionClient(node, RunStation, "/stations/gone/run_station")
            # past its limit a goal is cancelled, and the outcome says what was waited for
            late = call_action(client, RunStation.Goal(rack_id="rack_0"), timeout=1.0, cancel_grace=1.0,
                               waiting_for="rack_0's process")
            assert _said(first.stdout) == "STARTED rack_0"
            assert late.message == ("/stations/gone/run_station: no result after 1 s waiting for rack_0's process; "
                                    "no answer to the cancel within 1 s"), late.message
            outcome: dict = {}
            waiter = threading.Thread(target=lambda: outcome.update(call=call_action(
                client, RunStation.Goal(rack_id="rack_1"), timeout=300.0)), daemon=True)
            waiter.start()
            assert _said(first.stdout) == "STARTED rack_1"
            os.kill(first.pid, signal.SIGKILL)
            killed = time.monotonic()
        with process(command) as again:
            assert _said(again.stdout) == "READY"
            ready = time.monotonic()
            waiter.join(timeout=60.0)
            assert not waiter.is_alive(), "still waiting for a goal its server forgot"
            # (discovery of the new instance, then ServerInstance's 2 s period; the dead one's lease is 20 s)
            assert time.monotonic() - ready < 15.0, time.monotonic() - ready
            # a goal sent under an id the caller chose (and recorded): another client (a restarted
            # lab manager) gets its result by that id; an id the server never had is STATUS_UNKNOWN
            goal_id = uuid.uuid4().bytes
            sent = call_action(client, RunStation.Goal(rack_id="rack_2"), timeout=30.0, goal_id=goal_id)
            assert sent.succeeded and sent.result.message == "ran rack_2", sent.message
            other = ActionClient(node, RunStation, "/stations/gone/run_station")
            again_asked = follow_goal(other, goal_id, timeout=30.0)
            assert again_asked.succeeded and again_asked.result.message == "ran rack_2", again_asked.message
            unknown = follow_goal(other, uuid.uuid4().bytes, timeout=30.0)
            assert unknown.status == GoalStatus.STATUS_UNKNOWN and not unknown.reason and not unknown.lost
        message = outcome["call"].message
        assert "the action server went away during the goal" in message, message
        assert time.monotonic() - killed < 45.0
    finally:
        executor.shutdown()
        node.destroy_node()
        spinner.join(timeout=5)


def test_resume_asks_again_when_its_answer_is_lost(rclpy_context) -> None:
    """`lab resume` is idempotent, so the commander sends it again when no answer came within
    3 s (an answer Fast DDS lost or delayed: seen once, the lab resumed but the command reported
    no answer within 15 s). Here the stand-in lab manager never answers the first request."""
    import threading

    from conftest import spinning
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from std_srvs.srv import Trigger

    from lab.app.commander import LabCommander

    release = threading.Event()
    requests: list[int] = []

    def answer(_request, response):
        requests.append(len(requests) + 1)
        if len(requests) == 1:
            release.wait(30.0)  # the first answer is "lost": it comes after the commander gave up
        response.success, response.message = True, f"answered request {len(requests)}"
        return response

    server = Node("lab_manager", context=rclpy_context)
    server.create_service(Trigger, "/lab_manager/resume", answer, callback_group=ReentrantCallbackGroup())
    executor = MultiThreadedExecutor(num_threads=3, context=rclpy_context)
    executor.add_node(server)
    cmd = LabCommander("resume_client", context=rclpy_context)
    try:
        with spinning(executor):
            ok, message = cmd.resume()
            release.set()
        assert ok and message == "answered request 2", message
        assert requests == [1, 2]
    finally:
        release.set()
        cmd.destroy_node()
        server.destroy_node()
        executor.shutdown()
