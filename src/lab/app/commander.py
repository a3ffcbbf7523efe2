"""LabCommander: a mission script's view of the lab (after nav2_simple_commander).

    commander = LabCommander()
    handle = commander.run_campaign("photocatalysis", budget=64, batch_size=16, seed=1)
    while not commander.is_task_complete(handle):
        print(commander.get_feedback(handle))
    result = commander.get_result(handle)

Every action goes through one `_send_goal` helper; results come back as the action's own
result message, and `TaskResult` says how the goal ended.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import rclpy
from action_msgs.msg import GoalStatus
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import Trigger

from lab.ros.actions import ACK_TIMEOUT, ActionClient, send_goal
from lab.ros.node import LabNode
from lab_interfaces.action import Manipulate, NavigateToStation, RunBatch, RunCampaign, RunStation
from lab_interfaces.msg import Formulation

#: wall s an operator service (pause, resume, stop, release) has to answer: they answer at once,
#: but a pause first waits (up to lab.core.operations.scheduler.PAUSE_WAIT, 7 s) for goals being sent
ANSWER_TIMEOUT = 15.0


class ServiceNotThere(TimeoutError):
    """An operator service that was not in the graph within the wait (as GoalNotSent for actions):
    nothing was sent, so a caller may fall back to what it can do without the node."""


class TaskResult(enum.Enum):
    """How a goal ended."""

    UNKNOWN = 0
    SUCCEEDED = 1
    CANCELED = 2
    FAILED = 3      # aborted by the server, or succeeded with success=false
    REJECTED = 4


@dataclass
class Task:
    """A goal in flight: its latest feedback, and its result once done."""

    action: str
    goal_handle: Any = None
    result_future: Any = None
    feedback: Any = None
    result: Any = None
    status: int = GoalStatus.STATUS_UNKNOWN
    done: threading.Event = field(default_factory=threading.Event)
    adopted: bool = False   # a re-sent goal's first send was accepted; this follows that goal


def requester() -> str:
    """Who is sending a goal, as `lab campaign list` shows it: user@host."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the uid says who
        import os

        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class LabCommander(LabNode):
    def __init__(self, node_name: str = "lab_commander", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.ack_timeout = ACK_TIMEOUT  # wall s to wait for a goal's answer before sending it again
        self._action_clients: dict[tuple[type, str], ActionClient] = {}
        # service clients are kept as the action clients are: the console calls pause and resume
        # again and again, and a client made for each call had to be discovered and matched first
        # (a resume from the page went unanswered for 20 s under the suite's load, 2026-12-04)
        self._service_clients: dict[tuple[type, str], Any] = {}
        self._clients_lock = threading.Lock()
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self)
        self._spin_lock = threading.Lock()

    # --- one helper for every action ---------------------------------------------------
    def _client(self, action_type: type, name: str) -> ActionClient:
        key = (action_type, name)
        if key not in self._action_clients:
            self._action_clients[key] = ActionClient(self, action_type, name)
        return self._action_clients[key]

    def spin_for(self, seconds: float) -> None:
        with self._spin_lock:
            self._executor.spin_once(timeout_sec=seconds)

    def _send_goal(self, action_type: type, name: str, goal: Any, server_timeout: float = 30.0) -> Task:
        """Send through lab.ros.actions.send_goal (the path nodes use too), spinning while it waits."""
        client = self._client(action_type, name)
        task = Task(action=name)

        def on_feedback(feedback: Any) -> None:
            task.feedback = feedback

        sent = send_goal(client, goal, pause=self.spin_for, feedback=on_feedback, server_timeout=server_timeout,
                         ack_timeout=self.ack_timeout, log=self.get_logger().warning)
        task.goal_handle, task.adopted = sent.handle, sent.adopted
        if not sent.accepted:
            task.status = GoalStatus.STATUS_ABORTED
            task.done.set()
            return task
        task.result_future = sent.handle.get_result_async()

        def on_result(fut: Any) -> None:
            response = fut.result()
            if sent.refused(response.status):
                task.goal_handle = None  # the server never had the goal: it refused it
            task.result, task.status = response.result, response.status
            task.done.set()

        task.result_future.add_done_callback(on_result)
        return task

    def is_task_complete(self, task: Task, wait: float = 0.1) -> bool:
        if not task.done.is_set():
            self.spin_for(wait)
        return task.done.is_set()

    def wait(self, task: Task, timeout: float | None = None) -> TaskResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_task_complete(task):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{task.action}: no result within {timeout} s")
        return self.get_result(task)

    def get_feedback(self, task: Task) -> Any:
        return task.feedback

    def get_result(self, task: Task) -> TaskResult:
        if not task.done.is_set():
            return TaskResult.UNKNOWN
        if task.goal_handle is None or not task.goal_handle.accepted:
            return TaskResult.REJECTED
        if task.status == GoalStatus.STATUS_CANCELED:
            return TaskResult.CANCELED
        if task.status == GoalStatus.STATUS_SUCCEEDED and getattr(task.result, "success", True):
            return TaskResult.SUCCEEDED
        return TaskResult.FAILED

    def cancel(self, task: Task, timeout: float = 30.0) -> TaskResult:
        if task.goal_handle is not None and not task.done.is_set():
            future = task.goal_handle.cancel_goal_async()
            while not future.done():
                self.spin_for(0.1)
        return self.wait(task, timeout)

    # --- the lab's actions ---------------------------------------------------------------
    def run_campaign(self, campaign: str, budget: int, batch_size: int = 0, seed: int = 0,
                     resume: bool = False, campaign_id: str = "", server_timeout: float = 30.0) -> Task:
        goal = RunCampaign.Goal(campaign=campaign, budget=budget, batch_size=batch_size, seed=seed,
                                resume=resume, campaign_id=campaign_id, requested_by=requester(),
                                client_node=self.get_fully_qualified_name())
        return self._send_goal(RunCampaign, "/planner/run_campaign", goal, server_timeout=server_timeout)

    def run_batch(self, workflow: str, formulations: list[Formulation], batch_id: str = "") -> Task:
        goal = RunBatch.Goal(batch_id=batch_id, workflow=workflow, formulations=formulations)
        return self._send_goal(RunBatch, "/lab_manager/run_batch", goal)

    def navigate_to_station(self, robot: str, station: str) -> Task:
        return self._send_goal(NavigateToStation, f"/{robot}/navigate_to_station",
                               NavigateToStation.Goal(station=station))

    def manipulate(self, robot: str, operation: str, source: str, target: str, object_id: str = "") -> Task:
        goal = Manipulate.Goal(operation=operation, object_id=object_id, source=source, target=target)
        return self._send_goal(Manipulate, f"/{robot}/manipulate", goal)

    def run_station(self, station: str, rack_id: str, formulations: list[Formulation] | None = None,
                    process: str = "") -> Task:
        goal = RunStation.Goal(rack_id=rack_id, process=process, formulations=formulations or [])
        return self._send_goal(RunStation, f"/stations/{station}/run_station", goal)

    # --- operator services ---------------------------------------------------------------
    def _trigger(self, service: str, timeout: float = 10.0, resend: float = 0.0) -> tuple[bool, str]:
        return self._call_service(Trigger, service, Trigger.Request(), timeout, resend=resend)

    def _call_service(self, srv_type: type, service: str, request: Any, timeout: float = 10.0,
                      poll: float = 0.1, resend: float = 0.0) -> tuple[bool, str]:
        """Call an operator service whose response has success and message; TimeoutError naming
        the service when it is not there within `timeout` or does not answer in ANSWER_TIMEOUT.
        `resend` > 0 (idempotent services only): the request is sent again after that many s
        without an answer: a service that has just appeared may answer before its response writer
        has matched this client (Fast DDS: "failed to send response (timeout)"), and the answer is
        lost."""
        with self._clients_lock:
            client = self._service_clients.get((srv_type, service))
            if client is None:
                client = self._service_clients[(srv_type, service)] = self.create_client(srv_type, service)
        deadline = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise ServiceNotThere(f"service {service} is not available (is the lab brought up?)")
            self.spin_for(poll)
        futures = [client.call_async(request)]
        deadline = time.monotonic() + ANSWER_TIMEOUT  # a pause waits for goals being sent (up to 7 s)
        again = time.monotonic() + resend
        while not any(f.done() for f in futures):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service} did not answer within {ANSWER_TIMEOUT:g} s")
            if resend > 0 and time.monotonic() > again:
                again = time.monotonic() + resend
                futures.append(client.call_async(request))
            self.spin_for(poll)
        response = next(f for f in futures if f.done()).result()
        return bool(response.success), str(response.message)

    def estop(self, reason: str = "", release: bool = False, by: str = "lab commander") -> tuple[bool, str]:
        """Stop the lab through the safety node's DDS service (open to all), or release it through its
        fast path on this host (the only way to release: lab.core.operations.safety)."""
        from lab_interfaces.srv import SafetyCommand

        if release:
            from lab.core.operations.safety import fast_path_request

            answer = fast_path_request("release", reason)
            return bool(answer.get("success")), str(answer.get("message"))
        return self._call_service(SafetyCommand, "/safety/stop", SafetyCommand.Request(by=by, reason=reason),
                                  poll=0.02)

    def refill_stock(self, station: str, stock: str = "", amount: float = 0.0,
                     timeout: float = 10.0) -> tuple[bool, str]:
        """Refill one stock of a station (every stock when `stock` is ""), to full when `amount` <= 0."""
        from lab_interfaces.srv import RefillStock

        return self._call_service(RefillStock, f"/stations/{station}/refill_stock",
                                  RefillStock.Request(stock=stock, amount=float(amount)), timeout,
                                  resend=3.0 if amount <= 0 else 0.0)  # to full is idempotent; adding is not

    def cancel_campaign(self, campaign_id: str) -> tuple[bool, str]:
        """Ask the planner to end its running campaign `campaign_id` (resumable)."""
        from lab_interfaces.srv import CancelCampaign

        return self._call_service(CancelCampaign, "/planner/cancel_campaign",
                                  CancelCampaign.Request(campaign_id=campaign_id))

    def pause(self) -> tuple[bool, str]:
        return self._trigger("/lab_manager/pause")

    def resume(self) -> tuple[bool, str]:
        # idempotent ("already running" is a success), so a lost answer is asked again
        return self._trigger("/lab_manager/resume", resend=3.0)

    def destroy_node(self) -> None:
        # The executor first: spin_once keeps its wait-set generator (rclpy Executor._cb_iter) between
        # calls, and the generator holds every entity's handle in use until it is dropped; an action
        # client destroyed before that waits in destroy_when_not_in_use for ever (seen in a clean-clone
        # run, 2026-12-04: a failed system test's teardown hung there). shutdown() drops the generator.
        self._executor.remove_node(self)
        self._executor.shutdown()
        for client in self._action_clients.values():
            client.destroy()
        super().destroy_node()


def commander(args: list[str] | None = None) -> LabCommander:
    """Initialise rclpy (if needed) and return a commander."""
    if not rclpy.ok():
        rclpy.init(args=args)
    return LabCommander()
