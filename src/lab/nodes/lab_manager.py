"""`lab_manager`: runs batches of experiments on the lab's robots and stations.

Action `~/run_batch` (lab_interfaces/action/RunBatch): what a batch goes through (its
workflow's steps, reservations, retries, reroutes, charging, parking, pause and stop, the
start-up recovery of batches a crashed lab manager left in flight) is lab.core.operations.scheduler's;
this node is its ROS wiring: the scheduler's orders become action goals (navigators' `navigate_to_station`
and `navigate_to_pose`, arms' `manipulate`, stations' `run_station`), and what the node hears
(/world_state, odometry, battery, station status, the robots' action status, /safety/state)
is passed on to it.

The emergency stop is the `safety` node's (/safety/state): robots, arms and stations enforce it
themselves; the lab manager reacts to it (its goals cancelled, nothing new starts) and, after
a release, stays paused until `~/resume`. Operator services `~/pause` (current steps finish,
nothing new starts; returns once the goals already sent were answered), `~/resume` (refused
while the stop is set: resume never releases it) and `~/estop` (forwards to /safety/stop);
`/lab_status` (LabStatus) is published every second (wall).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from action_msgs.msg import GoalStatus, GoalStatusArray
from geometry_msgs.msg import Pose2D as Pose2DMsg
from nav_msgs.msg import Odometry
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.qos import qos_profile_action_status_default
from sensor_msgs.msg import BatteryState
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from lab.core.campaign.store import record_command
from lab.core.config.params import LabManagerParams
from lab.core.errors import InvalidGoal
from lab.core.operations.scheduler import (
    Call,
    Drive,
    Order,
    Outcome,
    Park,
    Process,
    Progress,
    Scheduler,
)
from lab.core.operations.scheduler import Transfer as TransferOrder
from lab.core.operations.scheduler.view import GoalOwners
from lab.core.operations.workflow import load_workflows
from lab.core.robot.world import load_stations
from lab.core.stations.station import load_kinds
from lab.ros.actions import ActionClient, CallOutcome, call_action, follow_goal
from lab.ros.clock import clock_hold, sim_now, wait_sim
from lab.ros.conversions import amounts_to_msg, batch_line, planar_pose, requested_sample, sample_report
from lab.ros.main import node_main
from lab.ros.markers import station_markers
from lab.ros.node import LabNode
from lab.ros.params import declare_params, file_or_default
from lab.ros.presence import PresenceWatch, robot_topic, station_topic
from lab.ros.qos import LATCHED
from lab.ros.safety import SafetyMonitor
from lab_interfaces.action import Manipulate, NavigateToPose, NavigateToStation, RunBatch, RunStation
from lab_interfaces.msg import LabStatus, RobotStatus, StationStatus, WorldState
from lab_interfaces.srv import SafetyCommand

#: goal states of a goal that is not over (action_msgs/GoalStatus)
UNDER_WAY = (GoalStatus.STATUS_ACCEPTED, GoalStatus.STATUS_EXECUTING, GoalStatus.STATUS_CANCELING)
MODES = {"running": LabStatus.RUNNING, "paused": LabStatus.PAUSED, "estopped": LabStatus.ESTOPPED,
         "idle": LabStatus.IDLE}


#: wall s: a station's change of state publishes /lab_status at once, at most this often
STATUS_SOON = 0.1

class _Watcher:
    """A RunBatch goal as the scheduler sees it: cancel requested, progress as feedback."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    @property
    def is_cancel_requested(self) -> bool:
        return bool(self._handle.is_cancel_requested)

    def publish_feedback(self, progress: Progress) -> None:
        self._handle.publish_feedback(RunBatch.Feedback(
            batch_id=progress.batch_id, phase=progress.phase, samples_done=progress.samples_done,
            samples_total=progress.samples_total, active_steps=progress.active_steps, elapsed=float(progress.elapsed)))


class LabManager(LabNode):
    def __init__(self) -> None:
        super().__init__("lab_manager")
        params = declare_params(self, LabManagerParams)
        config = load_stations(file_or_default(params.stations_file, "config/stations.yaml"))
        kinds = load_kinds(file_or_default(params.processes_file, "config/station_processes.yaml"))
        workflows = load_workflows(file_or_default(params.workflows_file, "config/workflows.yaml"),
                                   set(config.kinds().values()))
        self.scheduler = sched = Scheduler(params, config, kinds, workflows, self, self.get_logger())
        self.offline_wait = params.offline_wait
        self.robots, self.stations = sched.robots, list(config.stations)
        self._station_places = config.stations
        self._lock = threading.Lock()
        self.handles: dict[int, Any] = {}  # the goals this node has under way: cancelled at an emergency stop
        self.station_status: dict[str, StationStatus] = {}
        group = ReentrantCallbackGroup()
        self.nav = {r: ActionClient(self, NavigateToStation, f"/{r}/navigate_to_station", callback_group=group)
                    for r in self.robots}
        self.arm = {r: ActionClient(self, Manipulate, f"/{r}/manipulate", callback_group=group) for r in self.robots}
        self.nav_pose = {r: ActionClient(self, NavigateToPose, f"/{r}/navigate_to_pose", callback_group=group)
                         for r in self.robots}
        self.run_station = {s: ActionClient(self, RunStation, f"/stations/{s}/run_station", callback_group=group)
                            for s in self.stations}
        for s in self.stations:
            self.create_subscription(StationStatus, f"/stations/{s}/status", lambda m, s=s: self._station(s, m),
                                     LATCHED, callback_group=group)
        for r in self.robots:
            self.create_subscription(Odometry, f"/{r}/odom",
                                     lambda m, r=r: sched.robot_pose(r, planar_pose(m.pose.pose)), 10,
                                     callback_group=group)
            self.create_subscription(BatteryState, f"/{r}/battery_state",
                                     lambda m, r=r: sched.battery(r, m.percentage), 10,
                                     callback_group=group)
        # who is there (DDS liveliness of each robot's and station's presence writer)
        members = {r: robot_topic(r) for r in self.robots} | {s: station_topic(s) for s in self.stations}
        self.presence = PresenceWatch(self, members, params.presence_timeout, sched.presence, callback_group=group)
        self.create_subscription(WorldState, "/world_state", lambda m: sched.world_state(
            list(zip(m.objects, m.kinds, m.locations, strict=False))), LATCHED, callback_group=group)
        # the robots' goals under way, whoever sent them (a lab manager that died leaves its goals
        # running): the action servers' status topics, as `ros2 action` tools read them
        self._robot_goals_seen = GoalOwners()
        for r in self.robots:
            for action, client in ((f"/{r}/navigate_to_station", self.nav[r]),
                                   (f"/{r}/navigate_to_pose", self.nav_pose[r]), (f"/{r}/manipulate", self.arm[r])):
                self.create_subscription(GoalStatusArray, f"{action}/_action/status",
                                         lambda m, a=action, c=client: self._robot_goals(a, c, m),
                                         qos_profile_action_status_default, callback_group=group)
        self._status_lock = threading.Lock()   # the tick and a station's change may publish at once
        self._status_soon = 0.0                # monotonic s of the last status published on a station's change
        self.status_pub = self.create_publisher(LabStatus, "/lab_status", 10)
        self.markers_pub = self.create_publisher(MarkerArray, "/lab_status_markers", LATCHED)  # RViz: station states
        self.create_timer(1.0, self._publish_status, callback_group=group,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))  # wall: sim time runs hundreds x faster
        self.safety = SafetyMonitor(self, self._on_safety, callback_group=group)
        self.safety_stop = self.create_client(SafetyCommand, "/safety/stop", callback_group=group)
        for name in ("estop", "pause", "resume"):
            self.create_service(Trigger, f"~/{name}", getattr(self, f"_srv_{name}"), callback_group=group)
        ActionServer(self, RunBatch, "~/run_batch", execute_callback=self._execute,
                     goal_callback=lambda _: GoalResponse.ACCEPT, cancel_callback=lambda _: CancelResponse.ACCEPT,
                     callback_group=group)
        self.get_logger().info(f"robots {', '.join(self.robots)}; {len(self.stations)} stations; "
                               f"workflows {', '.join(workflows)}")
        sched.start()

    # ------------------------------------------------------------------ the scheduler's Lab
    def now(self) -> float:
        return sim_now(self)

    def sleep(self, seconds: float, cancelled: Callable[[], bool] = lambda: False) -> None:
        wait_sim(self, seconds, cancelled)

    def hold(self, robot: str) -> AbstractContextManager[Any]:
        return clock_hold(self, yields_to=f"/{robot}/")

    def send(self, order: Order, call: Call) -> Outcome:
        client, goal = self._goal(order)
        kept: list[int] = []

        def on_handle(handle: Any) -> None:
            with self._lock:
                self.handles[id(handle)] = handle
                kept.append(id(handle))
            call.accepted()

        feedback = call.feedback
        try:
            outcome = call_action(client, goal, timeout=call.limit, waiting_for=call.waiting_for, cancel=call.cancel,
                                  on_handle=on_handle, overdue=call.overdue, absent_grace=self.offline_wait,
                                  feedback=(lambda fb: feedback(fb.step, fb.progress)) if feedback else None,
                                  goal_id=order.goal_id if isinstance(order, Process) else None)
        finally:
            with self._lock:
                for key in kept:
                    self.handles.pop(key, None)
        return self._outcome(outcome)

    def follow(self, order: Process, call: Call) -> Outcome:
        return self._outcome(follow_goal(self.run_station[order.station], order.goal_id, call.limit,
                                         cancel=call.cancel, waiting_for=call.waiting_for, overdue=call.overdue))

    def _goal(self, order: Order) -> tuple[ActionClient, Any]:
        if isinstance(order, Drive):
            return self.nav[order.robot], NavigateToStation.Goal(station=order.station,
                                                                 skip_refinement=order.skip_refinement)
        if isinstance(order, Park):
            pose = order.pose
            return self.nav_pose[order.robot], NavigateToPose.Goal(pose=Pose2DMsg(x=pose.x, y=pose.y, theta=pose.yaw))
        if isinstance(order, TransferOrder):
            return self.arm[order.robot], Manipulate.Goal(operation="transfer", object_id=order.carrier,
                                                          source=order.source, target=order.target)
        return self.run_station[order.station], RunStation.Goal(
            rack_id=order.carrier, process=order.process, formulations=[amounts_to_msg(*s) for s in order.samples])

    @staticmethod
    def _outcome(outcome: CallOutcome) -> Outcome:
        result = outcome.result
        return Outcome(outcome.succeeded, outcome.message, lost=outcome.lost,
                       unknown=outcome.status == GoalStatus.STATUS_UNKNOWN and not outcome.reason,
                       reports=[sample_report(m) for m in getattr(result, "measurements", [])])

    # ------------------------------------------------------------------ inputs
    def _robot_goals(self, action: str, client: ActionClient, status: GoalStatusArray) -> None:
        ids = [bytes(st.goal_info.goal_id.uuid) for st in status.status_list if st.status in UNDER_WAY]
        self.scheduler.goals_under_way(action, len(ids), self._robot_goals_seen.others(action, ids, client.sent))

    def _station(self, station: str, msg: StationStatus) -> None:
        before = self.station_status.get(station)
        self.station_status[station] = msg
        self.scheduler.station_state(station, msg.state in (StationStatus.IDLE, StationStatus.BUSY),
                                     msg.interrupted_goal, msg.interrupted, msg.interrupted_untouched)
        # a station entering or leaving busy or fault is said at once, not at the next 1 s tick: the
        # console showed a station's change 1.6-2.7 s late (lab bench console); at most every
        # STATUS_SOON s, the tick saying the rest
        if before is None or before.state != msg.state:
            now = time.monotonic()
            with self._status_lock:
                soon, self._status_soon = now - self._status_soon >= STATUS_SOON, max(self._status_soon, now)
            if soon:
                self._publish_status()

    # ------------------------------------------------------------------ operator
    def _on_safety(self, stopped: bool, text: str) -> None:
        """The lab manager reacts to the emergency stop (the robots and stations enforce it): its
        own goals are cancelled and nothing new starts; after a release the lab stays paused
        until the operator resumes it."""
        self.scheduler.safety(stopped, text)
        with self._lock:
            handles = list(self.handles.values()) if stopped else []
        for handle in handles:
            handle.cancel_goal_async()
        if stopped:
            self.get_logger().error(f"{text}: {len(handles)} running goal(s) of the lab manager cancelled")
        else:
            self.get_logger().warning("emergency stop released: the lab is paused until `lab resume`")

    def _srv_estop(self, _request, response):
        """Kept for `ros2 service call /lab_manager/estop`: asks the safety node to stop the lab."""
        self.safety_stop.call_async(SafetyCommand.Request(by="lab_manager/estop service", reason=""))
        self._on_safety(True, "emergency stop requested through the lab manager")
        response.success, response.message = True, "emergency stop sent to /safety/stop"
        return response

    def _srv_pause(self, _request, response):
        response.success, response.message = self.scheduler.pause()
        self._audit("pause", response)
        return response

    def _srv_resume(self, _request, response):
        response.success, response.message = self.scheduler.resume()
        self._audit("resume", response)
        return response

    def _audit(self, command: str, response) -> None:
        # (a Trigger says nobody: who asked is not known here)
        record_command(self.scheduler.journal.path, "not said", f"DDS service /lab_manager/{command}", command, {},
                       response.message, response.success, self.get_logger())

    # ------------------------------------------------------------------ batches
    def _execute(self, goal_handle):
        request = goal_handle.request
        try:
            run = self.scheduler.run_batch(request.batch_id, request.workflow,
                                           [requested_sample(f) for f in request.formulations], _Watcher(goal_handle))
        except InvalidGoal as exc:
            goal_handle.abort()
            return RunBatch.Result(batch_id=request.batch_id, success=False, message=str(exc))
        done = run.result
        assert done is not None  # run_batch returns a finished run
        result = RunBatch.Result(batch_id=run.key, success=done.success, message=done.message,
                                 duration=float(done.duration), measurements=[batch_line(s) for s in run.samples])
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        self.scheduler.forget(run)  # answered: its record is no longer needed
        return result

    # ------------------------------------------------------------------ status
    def _publish_status(self) -> None:
        with self._status_lock:
            self._publish_status_locked()

    def _publish_status_locked(self) -> None:
        sched = self.scheduler
        now = sched.snapshot()
        msg = LabStatus()
        msg.stamp = self.get_clock().now().to_msg()
        msg.mode_text, msg.mode = now.mode, MODES[now.mode]
        msg.active_batches, msg.active_steps = now.active_batches, now.active_steps
        msg.experiments_running, msg.experiments_done, msg.experiments_failed = now.running, now.done, now.failed
        msg.stations = []
        for station, reported in list(self.station_status.items()):
            since = sched.offline_since(station)
            if since:  # its last status, as the network lost it
                reported = copy.copy(reported)
                reported.state, reported.state_text = StationStatus.OFFLINE, "offline"
                reported.message = f"offline since {since}: the network lost its host"
            msg.stations.append(reported)
        for robot in now.robots:
            since = robot.offline_since
            status = RobotStatus(name=robot.name, state="offline" if since else robot.state, docked_at=robot.docked_at,
                                 message=f"offline since {since}: the network lost its host" if since else "")
            status.stamp = msg.stamp
            status.pose.x, status.pose.y, status.pose.theta = robot.pose.x, robot.pose.y, robot.pose.yaw
            status.battery = float(robot.battery)
            status.charging = robot.state == "charging"
            status.holding = robot.holding
            msg.robots.append(status)
        self.status_pub.publish(msg)
        self.markers_pub.publish(station_markers(self._station_places, self.station_status, msg.stamp))


def main(args: list[str] | None = None) -> None:
    node_main(LabManager, "lab_manager", threads=16)


if __name__ == "__main__":
    main()
