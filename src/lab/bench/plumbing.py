"""`lab bench plumbing`: what one ROS 2 action round trip costs on this machine.

A server process (this module with --serve) answers RunStation goals at once with one
feedback message; the client sends goals one after another and measures, per goal, the
wall time from send to accepted, to first feedback and to result. Both run over Fast DDS on
loopback, as the lab's nodes do.

    lab bench plumbing [--goals 300] [--json docs/bench/plumbing.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.bench import print_figures, write_json


def serve() -> None:
    import rclpy
    from rclpy.action import ActionServer
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node

    from lab_interfaces.action import RunStation

    rclpy.init()
    node = Node("plumbing_server")

    def execute(handle):
        handle.publish_feedback(RunStation.Feedback(step="echo", step_index=0, step_count=1, progress=1.0))
        handle.succeed()
        return RunStation.Result(success=True, message="echo")

    ActionServer(node, RunStation, "plumbing_echo", execute_callback=execute)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


@contextmanager
def echo_server() -> Iterator[None]:
    """The echo server (`plumbing_echo`) in a process of its own while the block runs."""
    server = subprocess.Popen([sys.executable, "-m", "lab.bench.plumbing", "--serve"], env=dict(os.environ),
                              start_new_session=True)
    try:
        yield
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def measure(goals: int) -> dict[str, float]:
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from lab_interfaces.action import RunStation

    rclpy.init()
    node = Node("plumbing_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    def spin() -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    client = ActionClient(node, RunStation, "plumbing_echo")
    try:
        if not client.wait_for_server(timeout_sec=30):
            raise SystemExit("plumbing: the echo server did not come up")
        accepted, feedback, result = [], [], []
        for i in range(goals + 10):
            marks: dict[str, float] = {}
            done = threading.Event()
            t0 = time.perf_counter()

            def on_feedback(_msg, marks=marks) -> None:
                marks.setdefault("feedback", time.perf_counter())

            future = client.send_goal_async(RunStation.Goal(rack_id=f"r{i}"), feedback_callback=on_feedback)

            def on_goal(fut, marks=marks, done=done) -> None:
                marks["accepted"] = time.perf_counter()
                fut.result().get_result_async().add_done_callback(
                    lambda _f: (marks.__setitem__("result", time.perf_counter()), done.set()))

            future.add_done_callback(on_goal)
            if not done.wait(10):
                raise SystemExit("plumbing: a goal got no result in 10 s")
            if i >= 10:  # the first goals warm up discovery and allocations
                accepted.append(marks["accepted"] - t0)
                feedback.append(marks.get("feedback", marks["result"]) - t0)
                result.append(marks["result"] - t0)
    finally:
        rclpy.try_shutdown()
        spinner.join(5)
        node.destroy_node()
    ms = 1000.0
    return {"goals": goals,
            "accepted_median_ms": statistics.median(accepted) * ms, "accepted_p99_ms": percentile(accepted, 99) * ms,
            "feedback_median_ms": statistics.median(feedback) * ms, "feedback_p99_ms": percentile(feedback, 99) * ms,
            "result_median_ms": statistics.median(result) * ms, "result_p99_ms": percentile(result, 99) * ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench plumbing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--goals", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.serve:
        serve()
        return 0
    with echo_server():
        figures = measure(ns.goals)
    print_figures(figures, 22)
    write_json(figures, ns.json)
    print(f"action round trip (send -> result): median {figures['result_median_ms']:.2f} ms, "
          f"p99 {figures['result_p99_ms']:.2f} ms over {ns.goals} goals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
