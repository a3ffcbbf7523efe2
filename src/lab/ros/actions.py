"""Sending goals to action servers: one path for node-to-node calls and the operator's commander.

`send_goal` is that path: it waits for the server, sends the goal, and when no answer comes
within `ack_timeout` sends it again with the same goal id, so that a server which did accept
the first send refuses the copy instead of running the goal twice; the goal it then follows
is the one the server accepted ("adopted"). `call_action` (a node's worker thread, its
executor spinning elsewhere) and `lab.app.commander.LabCommander` (spinning itself) both use it;
they differ only in how they let time pass: a worker thread blocks until the answer's future
is done (its node's executor completes it), the commander spins its own executor meanwhile
(`pause`).
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient as _RclpyActionClient
from rclpy.action.client import ClientGoalHandle
from unique_identifier_msgs.msg import UUID

#: wall s to wait for a goal to be accepted or refused before sending it again
ACK_TIMEOUT = 5.0
#: goal ids an ActionClient remembers having sent (far more than a node has under way at once)
SENT_KEPT = 1024


class ActionClient(_RclpyActionClient):
    """rclpy's ActionClient with a request/response race closed.

    rclpy's `send_goal_async`, `_get_result_async` and `_cancel_goal_async` send the request
    first and store its pending future after; when another thread sends while the executor
    thread takes the response, the response is looked up before it is stored, dropped
    ("Ignoring unexpected goal response ...") and the caller waits for ever. Upstream:
    ros2/rclpy#1123, fixed by ros2/rclpy#1308 and its backports #1517/#1519 (merged
    2025-10). The pinned rclpy 7.1.6 (requirements.txt) does not have the fix (its
    send_goal_async stores the future after send_goal_request, with no lock; checked in the
    installed client.py), so the override stays until the pin moves to a release that has
    it. The lock makes each send-and-store atomic with respect to handling a response.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._race_lock = threading.RLock()
        # the ids of the goals this client sent (the latest SENT_KEPT): a server's status topic
        # lists every client's goals, and a node tells its own from someone else's by them
        self._sent: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def sent(self, goal_id: bytes) -> bool:
        """Whether this client sent the goal of that id (one of its latest SENT_KEPT)."""
        with self._race_lock:
            return goal_id in self._sent

    @property
    def name(self) -> str:
        return str(self._action_name)

    @property
    def action_type(self) -> Any:
        return self._action_type

    def send_goal_async(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        with self._race_lock:
            if kwargs.get("goal_uuid") is None:
                kwargs["goal_uuid"] = UUID(uuid=list(uuid.uuid4().bytes))
            self._sent[bytes(kwargs["goal_uuid"].uuid)] = None
            while len(self._sent) > SENT_KEPT:
                self._sent.popitem(last=False)
            return super().send_goal_async(*args, **kwargs)

    def _get_result_async(self, goal_handle):  # type: ignore[no-untyped-def]
        with self._race_lock:
            return super()._get_result_async(goal_handle)

    def _cancel_goal_async(self, goal_handle):  # type: ignore[no-untyped-def]
        with self._race_lock:
            return super()._cancel_goal_async(goal_handle)

    async def execute(self, taken_data):  # type: ignore[no-untyped-def]
        with self._race_lock:
            pass  # a request being sent has stored its future once this lock is free
        await super().execute(taken_data)


class GoalNotSent(TimeoutError):
    """The server was not there, or did not answer the goal: says which and for how long."""


@dataclass
class SentGoal:
    """A goal the server answered: its handle, and whether it is a re-sent goal's adopted first send."""

    handle: Any
    adopted: bool = False

    @property
    def accepted(self) -> bool:
        return self.handle is not None and bool(self.handle.accepted)

    def refused(self, status: int) -> bool:
        """An adopted goal whose result comes back STATUS_UNKNOWN was never the server's: it
        refused the copy because it refused the goal, not because it had it already."""
        return self.adopted and status == GoalStatus.STATUS_UNKNOWN


def _wait_done(future: Any, seconds: float, pause: Callable[[float], None] | None) -> bool:
    """Whether `future` is done within `seconds` (wall): woken by its completion where another
    thread's executor completes it (`pause` None), else spinning with `pause` meanwhile."""
    if pause is None:
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        return done.wait(seconds) or future.done()
    end = time.monotonic() + seconds
    while not future.done() and time.monotonic() < end:
        pause(0.02)
    return bool(future.done())


def send_goal(client: ActionClient, goal: Any, pause: Callable[[float], None] | None = None,
              feedback: Callable[[Any], None] | None = None, server_timeout: float = 15.0,
              ack_timeout: float = ACK_TIMEOUT, log: Callable[[str], None] | None = None,
              goal_id: bytes | None = None, cancel: Callable[[], bool] = lambda: False) -> SentGoal:
    """Send `goal` and wait (wall s) until the server accepts or refuses it; GoalNotSent otherwise.
    `pause(seconds)` lets time pass while the caller's own executor must spin (the commander);
    None: another thread's executor spins (a node's worker thread).

    A request sent just as a server appears can go unanswered (a restarted server's old DDS
    entities still look alive; or the server has not yet matched our response reader, Fast
    DDS: "failed to send response (timeout)"), so the goal is sent again after `ack_timeout`
    with the same id. When the copy is refused the first send may have been accepted: the
    returned SentGoal then follows that goal (`adopted`); asking for its result tells (an
    unknown goal answers at once with STATUS_UNKNOWN).
    """
    deadline = time.monotonic() + server_timeout
    while not client.server_is_ready():
        if cancel():  # a caller cancelled while its server is missing: nothing was sent, nothing to wait for
            raise GoalNotSent(f"cancelled while waiting for action server {client.name}")
        if time.monotonic() > deadline:
            raise GoalNotSent(f"action server {client.name} is not available after {server_timeout:g} s "
                              "(is the lab brought up?)")
        (pause or time.sleep)(0.1)
    goal_uuid = UUID(uuid=list(goal_id or uuid.uuid4().bytes))
    callback = (lambda msg: feedback(msg.feedback)) if feedback is not None else None
    attempts = max(1, int(server_timeout // ack_timeout))
    future = None
    attempt = 0
    for attempt in range(attempts):
        future = client.send_goal_async(goal, feedback_callback=callback, goal_uuid=goal_uuid)
        if _wait_done(future, ack_timeout, pause):
            break
        if log is not None:
            log(f"{client.name}: no answer to the goal after {ack_timeout:g} s; sending it again "
                f"(attempt {attempt + 2} of {attempts})")
    if future is None or not future.done():
        raise GoalNotSent(f"action server {client.name} did not answer the goal in {attempts} attempt(s) "
                          f"of {ack_timeout:g} s")
    handle = future.result()
    if attempt and handle is not None and not handle.accepted:
        accepted = client.action_type.Impl.SendGoalService.Response(accepted=True)
        return SentGoal(ClientGoalHandle(client, goal_uuid, accepted), adopted=True)
    return SentGoal(handle)


class CallOutcome:
    """How a child action ended: result (None when it never ran), status, reason."""

    def __init__(self, result: Any, status: int, reason: str = "", lost: bool = False) -> None:
        self.result = result
        self.status = status
        self.reason = reason
        self.lost = lost  # the server went away during the goal (died, restarted): the result never came

    @property
    def succeeded(self) -> bool:
        return self.status == GoalStatus.STATUS_SUCCEEDED and bool(getattr(self.result, "success", True))

    @property
    def message(self) -> str:
        return self.reason or str(getattr(self.result, "message", ""))


class ServerInstance:
    """Which action server instance took a goal: the DDS endpoints (gids) of its status
    publisher. A server whose node died or was restarted under the same name has new ones once
    started (a SIGKILLed participant stays in the graph until its lease runs out: 20 s with Fast
    DDS's defaults); then its goals are gone, and waiting on for their results would wait until
    the time-out."""

    def __init__(self, client: ActionClient, period: float = 2.0, absent_grace: float = 0.0) -> None:
        node = client._node  # rclpy keeps the node there (no public accessor)
        self._lookup = lambda: {bytes(info.endpoint_gid) for info in node.get_publishers_info_by_topic(
            node.resolve_topic_name(client._action_name) + "/_action/status")}
        self._gids = self._lookup()
        self._period = period
        self._next = time.monotonic() + period
        self._grace = absent_grace
        self._absent_since: float | None = None
        self.returned = False  # it was absent and is back (the same instance): ask for the result again

    def gone(self) -> bool:
        """True once the instance is gone for good: another instance serves the action (its node
        was restarted), or none has for `absent_grace` s. An instance absent for less (its host
        cut off by the network, say) that comes back still has the goal: `returned` turns true."""
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self._period
        now = self._lookup()
        if not self._gids:  # not in this node's graph yet when the goal was accepted
            self._gids = now
            return False
        if self._gids & now:
            if now - self._gids:
                # another instance serves the action beside it: its node was restarted, and the
                # dead one stays in the graph until DDS's lease for it runs out (20 s)
                return True
            if self._absent_since is not None:
                self._absent_since, self.returned = None, True
            return False
        if now or self._grace <= 0:
            return True
        if self._absent_since is None:
            self._absent_since = time.monotonic()
        return time.monotonic() - self._absent_since > self._grace


def call_action(client: ActionClient, goal: Any, timeout: float = 3600.0, feedback: Callable | None = None,
                cancel: Callable[[], bool] = lambda: False, on_handle: Callable | None = None,
                server_timeout: float = 15.0, log: Callable[[str], None] | None = None,
                waiting_for: str = "", goal_id: bytes | None = None, cancel_grace: float = 30.0,
                overdue: Callable[[], str] = lambda: "", absent_grace: float = 0.0) -> CallOutcome:
    """Send goal (through `send_goal`) and wait (wall s) for its result, from a worker thread.

    `cancel()` is polled: when it turns true the goal is cancelled and its final result
    awaited. `on_handle(handle)` sees the goal handle (to cancel it from elsewhere). Past
    `timeout` the goal is cancelled and the outcome says what was waited for (`waiting_for`).
    `goal_id` (16 bytes): the goal's id, chosen by the caller (to record it before sending).
    `cancel_grace`: wall s to wait for the result after cancelling. `overdue()`: a second limit,
    in the caller's terms ("" while within it, else what was passed, e.g. "7500 simulated s"),
    that ends the goal as `timeout` does. `absent_grace`: wall s the server may be missing from the
    graph (its host cut off) before its goal counts as lost (ServerInstance).
    """
    try:
        sent = send_goal(client, goal, feedback=feedback, server_timeout=server_timeout, log=log, goal_id=goal_id,
                         cancel=cancel)
    except GoalNotSent as exc:
        return CallOutcome(None, GoalStatus.STATUS_UNKNOWN, str(exc))
    if not sent.accepted:
        return CallOutcome(None, GoalStatus.STATUS_UNKNOWN, f"{client.name}: goal rejected")
    if on_handle is not None:
        on_handle(sent.handle)
    return await_result(client, sent.handle, timeout, cancel, sent.adopted, waiting_for, cancel_grace=cancel_grace,
                        overdue=overdue, absent_grace=absent_grace)


def follow_goal(client: ActionClient, goal_id: bytes, timeout: float, cancel: Callable[[], bool] = lambda: False,
                waiting_for: str = "", overdue: Callable[[], str] = lambda: "") -> CallOutcome:
    """Wait for the result of a goal this process did not send (one its predecessor sent before
    it died, say): any client may ask a server for a goal's result by its id. A server that
    does not know the goal (restarted, or the result expired) answers STATUS_UNKNOWN at once."""
    response = client.action_type.Impl.SendGoalService.Response(accepted=True)
    handle = ClientGoalHandle(client, UUID(uuid=list(goal_id)), response)
    return await_result(client, handle, timeout, cancel, False, waiting_for, ask_again=ACK_TIMEOUT, overdue=overdue)


def await_result(client: ActionClient, handle: Any, timeout: float, cancel: Callable[[], bool], adopted: bool,
                 waiting_for: str = "", ask_again: float = 0.0, cancel_grace: float = 30.0,
                 overdue: Callable[[], str] = lambda: "", absent_grace: float = 0.0) -> CallOutcome:
    """The result of an accepted goal (see call_action). `ask_again` > 0: the request for the result
    is sent again after that many s, then at doubling intervals (up to a minute) while unanswered: a
    request sent just after this process started can be lost (the server's response writer has not yet
    matched our reader, as in send_goal), and asking again for a result costs the server nothing."""
    done = threading.Event()
    futures = [handle.get_result_async()]
    futures[0].add_done_callback(lambda _: done.set())
    deadline = time.monotonic() + timeout
    cancelled = timed_out = False
    passed = f"{timeout:g} s"  # the limit that ended it
    server = ServerInstance(client, absent_grace=absent_grace)
    interval = ask_again
    next_ask = time.monotonic() + interval
    while not done.wait(0.02):
        if interval > 0 and time.monotonic() > next_ask:
            interval = min(2 * interval, 60.0)
            next_ask = time.monotonic() + interval
            futures.append(client._get_result_async(handle))
            futures[-1].add_done_callback(lambda _: done.set())
        if server.gone():
            why = ("its node died or was restarted" if absent_grace <= 0 else
                   f"its node was restarted, or was not seen again within {absent_grace:g} s")
            return CallOutcome(None, GoalStatus.STATUS_UNKNOWN,
                               f"{client.name}: the action server went away during the goal ({why}): "
                               "the goal's result is lost", lost=True)
        if server.returned:
            # back from a network cut: a result sent meanwhile was lost with it, and a request sent
            # as the server reappears can be lost too (its response writer not yet matched with our
            # reader): asked now, then again at doubling intervals until answered
            server.returned = False
            interval, next_ask = ACK_TIMEOUT / 2, time.monotonic()
        over = "" if cancelled else overdue()
        if not cancelled and (cancel() or time.monotonic() > deadline or over):
            timed_out = time.monotonic() > deadline or bool(over)
            passed = over or passed
            cancelled = True
            handle.cancel_goal_async()
            deadline = time.monotonic() + cancel_grace
        elif cancelled and time.monotonic() > deadline:
            why = (f"no result after {passed}" + (f" waiting for {waiting_for}" if waiting_for else "")
                   if timed_out else "cancelled")
            return CallOutcome(None, GoalStatus.STATUS_UNKNOWN,
                               f"{client.name}: {why}; no answer to the cancel within {cancel_grace:g} s")
    response = next(f for f in futures if f.done()).result()
    if adopted and response.status == GoalStatus.STATUS_UNKNOWN:
        return CallOutcome(None, GoalStatus.STATUS_UNKNOWN, f"{client.name}: goal rejected")
    outcome = CallOutcome(response.result, response.status)
    if timed_out:
        outcome.reason = (f"{client.name}: no result after {passed}"
                          + (f" waiting for {waiting_for}" if waiting_for else "") + ": the goal was cancelled")
    return outcome
