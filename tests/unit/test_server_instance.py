"""lab.ros.actions.ServerInstance: when a goal's action server counts as gone.

A restarted server (other endpoints serve the action) is gone at once; with an `absent_grace`,
a server merely missing from the graph (its host cut off) is waited for, and one that comes
back with the same endpoints still has the goal (`returned`: its result is asked for again).
The graph is a fake: the list of status-publisher gids the test sets."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

pytest.importorskip("rclpy")

from lab.ros.actions import ServerInstance


def _server(gids: list[bytes], grace: float) -> tuple[ServerInstance, list[bytes]]:
    graph = list(gids)
    node = SimpleNamespace(
        get_publishers_info_by_topic=lambda _topic: [SimpleNamespace(endpoint_gid=g) for g in graph],
        resolve_topic_name=lambda name: name)
    client = SimpleNamespace(_node=node, _action_name="/robot1/manipulate")
    return ServerInstance(client, period=0.0, absent_grace=grace), graph  # type: ignore[arg-type]


def test_without_grace_a_server_missing_from_the_graph_is_gone() -> None:
    server, graph = _server([b"a"], grace=0.0)
    assert not server.gone()
    graph.clear()
    assert server.gone()


def test_with_grace_a_server_cut_off_and_back_still_has_the_goal() -> None:
    server, graph = _server([b"a"], grace=0.5)
    graph.clear()
    assert not server.gone() and not server.returned
    graph.append(b"a")
    assert not server.gone() and server.returned


def test_with_grace_a_restarted_server_is_gone_at_once() -> None:
    server, graph = _server([b"a"], grace=60.0)
    graph[:] = [b"b"]
    assert server.gone()


@pytest.mark.parametrize("grace", [0.0, 60.0])
def test_a_restarted_server_is_gone_while_the_dead_one_is_still_in_the_graph(grace: float) -> None:
    """A SIGKILLed node stays in the graph until DDS's lease for it runs out (20 s): the new
    instance beside it is enough to know the goal is lost."""
    server, graph = _server([b"a"], grace=grace)
    graph.append(b"b")
    assert server.gone()


def test_a_server_absent_past_the_grace_is_gone() -> None:
    server, graph = _server([b"a"], grace=0.2)
    graph.clear()
    assert not server.gone()
    time.sleep(0.3)
    assert server.gone()


def test_a_goal_cancelled_while_its_server_is_missing_ends_at_once() -> None:
    """A campaign cancelled while the lab manager is away: its batch's send stops waiting for the
    server (up to server_timeout) as soon as the caller cancels, and nothing is sent."""
    from lab.ros.actions import GoalNotSent, send_goal

    sent: list[object] = []
    client = SimpleNamespace(name="/lab_manager/run_batch", server_is_ready=lambda: False,
                             send_goal_async=lambda *a, **k: sent.append(a))
    began = time.monotonic()
    with pytest.raises(GoalNotSent, match="cancelled while waiting for action server /lab_manager/run_batch"):
        send_goal(client, object(), server_timeout=60.0, cancel=lambda: time.monotonic() - began > 0.3)  # type: ignore[arg-type]
    assert time.monotonic() - began < 30.0 and sent == []


def test_an_action_client_knows_the_goals_it_sent(rclpy_context) -> None:
    """The lab manager tells its own robot goals from an operator's by id (a server's status lists
    every client's): ActionClient remembers the ids it sent, with or without one given."""
    import uuid

    from rclpy.node import Node
    from unique_identifier_msgs.msg import UUID

    from lab.ros.actions import SENT_KEPT, ActionClient
    from lab_interfaces.action import Manipulate

    node = Node("sent_ids", context=rclpy_context)
    try:
        client = ActionClient(node, Manipulate, "/nobody/manipulate")
        given = uuid.uuid4().bytes
        client.send_goal_async(Manipulate.Goal(), goal_uuid=UUID(uuid=list(given)))  # no server: never answered
        client.send_goal_async(Manipulate.Goal())
        assert client.sent(given) and not client.sent(uuid.uuid4().bytes)
        assert len(client._sent) == 2 and all(client.sent(i) for i in client._sent)
        for _ in range(SENT_KEPT):
            client.send_goal_async(Manipulate.Goal())
        assert not client.sent(given) and len(client._sent) == SENT_KEPT  # the oldest forgotten
    finally:
        node.destroy_node()
