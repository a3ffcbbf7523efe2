"""A lab node's service whose callback raises answers with the node's name and the error, and the
node lives on (lab.ros.node.LabNode.create_service); rclpy alone would end the node's spin."""

from __future__ import annotations

import time


def test_a_service_that_raises_answers_with_whose_failure_it_was_and_the_node_lives_on(rclpy_context) -> None:
    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import Trigger

    from lab.ros.node import LabNode

    calls = []

    def pause(request, response):
        calls.append(1)
        if len(calls) == 1:
            raise AttributeError("'LabManager' object has no attribute 'params'")
        response.success, response.message = True, "paused"
        return response

    server = LabNode("guarded_server", context=rclpy_context)
    client_node = LabNode("guarded_client", context=rclpy_context)
    server.create_service(Trigger, "~/pause", pause)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(server)
    executor.add_node(client_node)
    client = client_node.create_client(Trigger, "/guarded_server/pause")
    try:
        answers = []
        for _ in range(2):
            deadline = time.monotonic() + 10
            while not client.service_is_ready():
                assert time.monotonic() < deadline, "the service never appeared"
                executor.spin_once(timeout_sec=0.05)
            future = client.call_async(Trigger.Request())
            while not future.done():
                assert time.monotonic() < deadline, "no answer"
                executor.spin_once(timeout_sec=0.05)  # an exception here would be the node dying
            answers.append(future.result())
        assert not answers[0].success
        assert answers[0].message.startswith("/guarded_server failed to answer ~/pause: AttributeError:")
        assert answers[1].success and answers[1].message == "paused"  # still serving
    finally:
        executor.shutdown()
        server.destroy_node()
        client_node.destroy_node()
