"""`lab_manager`: runs batches of experiments on the lab's robots and stations.

Action `~/run_batch` (lab_interfaces/action/RunBatch): the batch's workflow
(config/workflows.yaml) says which station kinds its carrier (a rack of vials, a tray of
specimens) visits; the manager takes a free carrier from home, and for every step reserves
a station of that kind, has a robot carry the carrier there (navigate, transfer to the
robot's deck, navigate, transfer into the station), runs the station's process and merges
what each station reports (as-dispensed amounts, measurements) per sample; then the
carrier goes home. Several batches run at once, each in its own thread: stations and
robots are reserved (lab.core.resources), so while one rack is under the lamp a robot
prepares the next, and two batches never use a station at the same time.

Failures: a failed station run is retried, on another station of the kind when there is
one (rerouted), up to `max_retries`; then the samples are marked failed with the reason.
A failed transport leg is retried once. A robot whose battery is low goes to the charger
before its next transport. With several robots, an idle robot standing at the dock another
robot is sent to is first driven to its parking spot (config/stations.yaml `parking`, one per
robot in order); robots meeting on the floor are the navigators' business (lab.nodes.traffic).
The emergency stop is the `safety` node's (/safety/state): robots, arms and stations enforce it
themselves; the lab manager reacts to it (its goals cancelled, nothing new starts) and, after
a release, stays paused until `~/resume`. Operator services `~/pause` (current steps finish,
nothing new starts: every goal this node sends passes lab.core.gate.StartGate, and the pause
returns once the goals already past it were answered),
`~/resume` (refused while the stop is set: resume never releases it) and `~/estop` (forwards
to /safety/stop); `/lab_status` (LabStatus) is published every second (wall). A lab manager
that starts (after a crash, say) and finds a carrier away from home that no batch owns (on a
robot's deck, in a station) brings it home first.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from action_msgs.msg import GoalStatus, GoalStatusArray
from geometry_msgs.msg import Pose2D as Pose2DMsg
from nav_msgs.msg import Odometry
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_action_status_default
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import BatteryState
from std_srvs.srv import Trigger

from lab.core.batches import ACQUIRE, HELD, NO_RECORD, RERUN, SPOILED, recorded_goal_outcome, same_batch, station_choice
from lab.core.errors import InvalidGoal
from lab.core.gate import PAUSED, RUNNING, STOPPED, Interrupted, StartGate
from lab.core.params import LabManagerParams
from lab.core.resources import ResourcePool, Unavailable
from lab.core.station import expected_seconds, load_kinds
from lab.core.workflow import Workflow, load_workflows, workflow
from lab.core.world import Pose2D, Station, load_stations
from lab.ros.actions import ActionClient, call_action, follow_goal
from lab.ros.clock import sim_now, wait_for, wait_sim
from lab.ros.conversions import planar_pose
from lab.ros.main import node_main
from lab.ros.params import declare_params, file_or_default
from lab.ros.qos import LATCHED
from lab.ros.safety import SafetyMonitor
from lab_interfaces.action import Manipulate, NavigateToPose, NavigateToStation, RunBatch, RunStation
from lab_interfaces.msg import Formulation, LabStatus, Measurement, RobotStatus, StationStatus, WorldState
from lab_interfaces.srv import SafetyCommand

DECK = "deck1"
#: wall s a batch waits for the first /world_state (a lab manager started before the simulation)
WORLD_WAIT = 30.0
#: wall s a lab manager starting up waits for robot goals under way (its predecessor's) to end: a
#: transfer (~60 simulated s) or a drive across the lab (~2 simulated min), at 1x real time
ROBOTS_SETTLE_WAIT = 300.0
#: goal states of a goal that is not over (action_msgs/GoalStatus)
UNDER_WAY = (GoalStatus.STATUS_ACCEPTED, GoalStatus.STATUS_EXECUTING, GoalStatus.STATUS_CANCELING)
#: wall s `~/pause` waits for goals sent just before it to be answered (a goal's acceptance is
#: one DDS round trip, ms; send_goal re-sends after 5 s; `lab pause` waits 10 s for the answer)
PAUSE_WAIT = 7.0
#: wall s a batch waits for the start-up recovery: the world state, the robots' goals under way
#: (both above), the adopted batches' reservations
RECOVERY_WAIT = WORLD_WAIT + ROBOTS_SETTLE_WAIT + 60.0
#: wall s to wait, after a station's goal was lost to its restart, for the restarted station to
#: report what it interrupted: bringup restarts a node within 1-4 s, a node starts in a few s
#: (the loss itself is only seen once DDS drops the dead node, ~20 s)
RESTART_REPORT_WAIT = 30.0


@dataclass
class Sample:
    sample_id: str
    requested: Formulation
    dispensed: dict[str, tuple[float, str]] = field(default_factory=dict)
    measurement: Measurement | None = None
    failure: str = ""

    def formulation(self) -> Formulation:
        """What the next station gets: as dispensed so far, as requested otherwise."""
        amounts = dict(zip(self.requested.components,
                           zip(self.requested.amounts, self.requested.units or [""] * len(self.requested.amounts),
                               strict=False), strict=False))
        amounts.update(self.dispensed)
        return Formulation(sample_id=self.sample_id, specimen_kind=self.requested.specimen_kind,
                           components=list(amounts), amounts=[float(v) for v, _ in amounts.values()],
                           units=[u for _, u in amounts.values()])


    def state(self) -> dict[str, Any]:
        return {"id": self.sample_id, "requested": _b64(self.requested),
                "dispensed": {c: list(v) for c, v in self.dispensed.items()},
                "measurement": _b64(self.measurement) if self.measurement is not None else None,
                "failure": self.failure}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Sample:
        measurement = state.get("measurement")
        return cls(str(state["id"]), _msg(state["requested"], Formulation),
                   {str(c): (float(a), str(u)) for c, (a, u) in state["dispensed"].items()},
                   _msg(measurement, Measurement) if measurement else None, str(state["failure"]))


def _b64(msg: Any) -> str:
    return base64.b64encode(serialize_message(msg)).decode()


def _msg(text: str, kind: Any) -> Any:
    return deserialize_message(base64.b64decode(text), kind)


class _Run:
    """One batch in flight: what its record in the campaign database keeps (`state`), and the
    goal-handle view the batch code uses (cancel requested, feedback) for the goals that wait
    for it: the one that started it, or the one re-sent after a restart."""

    def __init__(self, key: str, batch_id: str, workflow: str, samples: list[Sample]) -> None:
        self.key, self.batch_id, self.workflow, self.samples = key, batch_id, workflow, samples
        self.carrier = self.home = self.location = self.held = ""
        self.step = 0                                   # index of the workflow step under way
        self.station_goal: tuple[str, str] | None = None  # (station, goal id hex) while it runs the step
        self.station_goal_accepted = False              # ... and whether the station had accepted it
        self.result: Any = None                         # RunBatch.Result once finished
        self.done = threading.Event()
        self.watchers: list[Any] = []                   # goal handles waiting for it

    @property
    def is_cancel_requested(self) -> bool:
        return any(h.is_cancel_requested for h in list(self.watchers))

    def publish_feedback(self, feedback: Any) -> None:
        for handle in list(self.watchers):
            try:
                handle.publish_feedback(feedback)
            except Exception:  # a goal that has ended takes no feedback; the others still get it
                continue

    def state(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "workflow": self.workflow, "samples": [s.state() for s in self.samples],
                "carrier": self.carrier, "home": self.home, "location": self.location, "held": self.held,
                "step": self.step, "station_goal": list(self.station_goal) if self.station_goal else None,
                "station_goal_accepted": self.station_goal_accepted,
                "result": _b64(self.result) if self.result is not None else None}

    @classmethod
    def from_state(cls, key: str, state: dict[str, Any]) -> _Run:
        run = cls(key, str(state["batch_id"]), str(state["workflow"]),
                  [Sample.from_state(s) for s in state["samples"]])
        run.carrier, run.home = str(state["carrier"]), str(state["home"])
        run.location, run.held, run.step = str(state["location"]), str(state["held"]), int(state["step"])
        goal = state.get("station_goal")
        run.station_goal = (str(goal[0]), str(goal[1])) if goal else None
        run.station_goal_accepted = bool(state.get("station_goal_accepted", False))
        run.result = _msg(state["result"], RunBatch.Result) if state.get("result") else None
        return run


class LabManager(Node):
    def __init__(self) -> None:
        super().__init__("lab_manager")
        self.params = params = declare_params(self, LabManagerParams)
        config = load_stations(file_or_default(params.stations_file, "config/stations.yaml"))
        self.stations: dict[str, Station] = config.stations
        self.kind_of = config.kinds()
        self.parking: list[Pose2D] = config.parking
        self.kinds = load_kinds(file_or_default(params.processes_file, "config/station_processes.yaml"))
        docks = [st.dock for st in self.stations.values()]
        self._lab_diagonal = max((a.distance_to(b) for a in docks for b in docks), default=10.0)
        self.workflows: dict[str, Workflow] = load_workflows(
            file_or_default(params.workflows_file, "config/workflows.yaml"), set(self.kind_of.values()))
        self.robots = [r for r in params.robots if r]
        self.robot_pool = ResourcePool(self.robots)
        self.station_pool = ResourcePool(list(self.stations))
        self._lock = threading.RLock()
        self.carriers: dict[str, str] = {}       # carrier id -> location
        self.carrier_kind: dict[str, str] = {}
        for entry in params.carriers:
            if entry:
                obj, _, loc = entry.partition("@")
                self.carriers[obj], self.carrier_kind[obj] = loc, "tray" if obj.startswith("tray") else "rack"
        self.carrier_pool = ResourcePool(list(self.carriers))
        self.station_status: dict[str, StationStatus] = {}
        self.robot_pose: dict[str, Pose2D] = {}
        self.battery: dict[str, float] = {}
        self.robot_state: dict[str, str] = {r: "idle" for r in self.robots}
        self.robot_at: dict[str, str] = {r: "" for r in self.robots}
        self.gate = StartGate()  # every goal this node sends starts through it (lab.core.gate)
        self._mode_lock = threading.Lock()  # the safety monitor's transitions vs resume
        self.stops = 0  # emergency stops seen: a step that failed while this changed was stopped
        self.active_steps: dict[str, str] = {}
        self.active_batches: list[str] = []
        self.handles: dict[int, object] = {}
        self._last_handle: dict[int, object] = {}  # thread -> the goal handle its _call holds
        self.counts = {"done": 0, "failed": 0, "running": 0}
        self._store = None  # the campaign database (lab.core.store), opened when first needed
        self.runs: dict[str, _Run] = {}  # batches in flight or finished and not yet answered, by key
        group = ReentrantCallbackGroup()
        self.group = group
        self.nav = {r: ActionClient(self, NavigateToStation, f"/{r}/navigate_to_station", callback_group=group)
                    for r in self.robots}
        self.arm = {r: ActionClient(self, Manipulate, f"/{r}/manipulate", callback_group=group) for r in self.robots}
        self.nav_pose = {r: ActionClient(self, NavigateToPose, f"/{r}/navigate_to_pose", callback_group=group)
                         for r in self.robots}
        self.run_station = {s: ActionClient(self, RunStation, f"/stations/{s}/run_station", callback_group=group)
                            for s in self.stations}
        for s in self.stations:
            self.create_subscription(StationStatus, f"/stations/{s}/status",
                                     lambda m, s=s: self.station_status.__setitem__(s, m), LATCHED,
                                     callback_group=group)
        for r in self.robots:
            self.create_subscription(Odometry, f"/{r}/odom", lambda m, r=r: self._odom(r, m), 10, callback_group=group)
            self.create_subscription(BatteryState, f"/{r}/battery_state",
                                     lambda m, r=r: self.battery.__setitem__(r, m.percentage), 10,
                                     callback_group=group)
        self.create_subscription(WorldState, "/world_state", self._world_state, LATCHED, callback_group=group)
        # the robots' goals under way, whoever sent them (a lab manager that died leaves its goals
        # running): the action servers' status topics, as `ros2 action` tools read them
        self.goals_under_way: dict[str, int] = {}
        for r in self.robots:
            for action in (f"/{r}/navigate_to_station", f"/{r}/navigate_to_pose", f"/{r}/manipulate"):
                self.create_subscription(GoalStatusArray, f"{action}/_action/status",
                                         lambda m, a=action: self.goals_under_way.__setitem__(a, sum(
                                             1 for st in m.status_list if st.status in UNDER_WAY)),
                                         qos_profile_action_status_default, callback_group=group)
        self.status_pub = self.create_publisher(LabStatus, "/lab_status", 10)
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
                               f"workflows {', '.join(self.workflows)}")
        # no batch starts before the start-up recovery is over: it would find its own record and
        # robot goals taken for a predecessor's (seen: a batch driven twice), and a batch re-sent
        # by the planner must find the adopted one to attach to
        self._recovered = threading.Event()
        threading.Thread(target=self._recover, daemon=True, name="recover").start()

    def _recover(self) -> None:
        """At start-up, once the world state says where the carriers are: the batches the last lab
        manager left in flight are taken on again, then any other carrier away from home goes home."""
        try:
            self._recover_leftovers()
        finally:
            self._recovered.set()

    def _recover_leftovers(self) -> None:
        if not wait_for(lambda: bool(self.carriers), WORLD_WAIT):
            self.get_logger().warning(f"no /world_state within {WORLD_WAIT:g} s: batches a previous lab manager "
                                      "left in flight and carriers away from home are not looked for")
            return
        # a robot still carrying out a goal of the lab manager that died must finish it first: a new
        # goal would meet the arm half-way through a transfer
        deadline = time.monotonic() + ROBOTS_SETTLE_WAIT
        while any(self.goals_under_way.values()):
            if time.monotonic() > deadline:
                self.get_logger().error(f"robot goals still under way after {ROBOTS_SETTLE_WAIT:g} s: "
                                        f"{self._under_way()}; taking the lab on regardless")
                break
            self.get_logger().warning(f"waiting for goals a previous lab manager left under way to end: "
                                      f"{self._under_way()}", throttle_duration_sec=30.0)
            time.sleep(0.2)
        self._adopt_recorded()
        self._recovered.set()  # batches may start: strays share the robots with them through the pools
        self._bring_strays_home()

    def _under_way(self) -> str:
        return ", ".join(f"{action} ({n})" for action, n in self.goals_under_way.items() if n)

    def _bring_strays_home(self) -> None:
        """At start-up (a restart after a crash, say): every carrier the world state shows away
        from home with no batch of this lab manager to own it (on a robot's deck, in a station)
        is brought home, by the rule a stopped batch's carrier follows."""
        wait_for(lambda: all(r in self.robot_pose for r in self.robots), 10.0)
        with self._lock:
            strays = {c: loc for c, loc in self.carriers.items() if not self._at_home(c, loc)}
        for carrier, location in strays.items():
            try:
                self.carrier_pool.acquire([carrier], "strays", timeout=0.0)
            except Unavailable:
                continue  # a batch has it
            try:
                target = self._free_home_slot(carrier)
                if target is None:
                    self.get_logger().error(f"{carrier} is at {location}: no free place at its home to bring it to")
                    continue
                self.get_logger().warning(f"{carrier} is at {location}, away from home, with no batch: "
                                          f"bringing it to {target}")
                self._transport("strays", carrier, location, target, _NeverCancelled(None), None)
            except (Interrupted, Unavailable, InvalidGoal) as exc:
                self.get_logger().error(f"{carrier} could not be brought home from {location}: {exc}")
            finally:
                self.carrier_pool.release(carrier, "strays")

    def _homes(self, carrier: str) -> set[str]:
        """The station kinds where `carrier` waits between batches (its workflows' home)."""
        kind = self.carrier_kind.get(carrier, "")
        return {wf.home for wf in self.workflows.values() if wf.carrier == kind}

    def _at_home(self, carrier: str, location: str) -> bool:
        return self.kind_of.get(location.partition("/")[0], "") in self._homes(carrier)

    def _free_home_slot(self, carrier: str) -> str | None:
        with self._lock:
            taken = set(self.carriers.values())
        homes = self._homes(carrier)
        return next((f"{s}/{slot}" for s, station in self.stations.items() if self.kind_of[s] in homes
                     for slot in station.slots if f"{s}/{slot}" not in taken), None)

    # ------------------------------------------------------------------ inputs
    def _odom(self, robot: str, msg: Odometry) -> None:
        pose = planar_pose(msg.pose.pose)
        self.robot_pose[robot] = pose

    def _world_state(self, msg: WorldState) -> None:
        with self._lock:
            new = [o for o in msg.objects if o not in self.carriers and not o.count("/")]
            for obj, kind, loc in zip(msg.objects, msg.kinds, msg.locations, strict=False):
                if "/" in obj:
                    continue  # samples inside a carrier
                self.carriers[obj], self.carrier_kind[obj] = loc, kind
            if new:
                self.carrier_pool.add(new)

    # ------------------------------------------------------------------ operator
    def _on_safety(self, stopped: bool, text: str) -> None:
        """The lab manager reacts to the emergency stop (the robots and stations enforce it): its
        own goals are cancelled and nothing new starts; after a release the lab stays paused
        until the operator resumes it."""
        if stopped:
            self.stops += 1
        with self._mode_lock:
            # a release leaves a stopped lab paused; an operator who resumed between the release
            # and this callback (the monitor already said "not stopped") has the last word
            if stopped or self.gate.mode == STOPPED:
                self.gate.set_mode(STOPPED if stopped else PAUSED)
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
        if self.gate.mode == STOPPED or self.safety.stopped:
            response.success = False
            response.message = f"the lab is emergency-stopped ({self.safety.reason()}): release it first"
            return response
        # returns once the goals being sent have been answered: after it nothing new starts
        settled = self.gate.set_mode(PAUSED, wait=PAUSE_WAIT)
        response.success = True
        response.message = "paused: running steps finish, nothing new starts" if settled else \
            (f"paused, but {self.gate.starting} goal(s) sent before the pause were still unanswered "
             f"after {PAUSE_WAIT:g} s: they may still start")
        return response

    def _srv_resume(self, _request, response):
        with self._mode_lock:
            if self.safety.stopped:
                response.success = False
                response.message = (f"{self.safety.reason()}: resume does not release it; "
                                    "release first (lab estop --release)")
                return response
            previous = self.gate.mode
            self.gate.set_mode(RUNNING)
        response.success = True
        response.message = "resumed" if previous != RUNNING else "already running"
        return response

    @contextmanager
    def _starting(self, goal_handle) -> Iterator[Callable[[], None]]:
        """The start gate for one batch's step (lab.core.gate.StartGate.start): waits while the
        lab is paused or stopped; Interrupted('batch cancelled') when the batch is cancelled."""
        try:
            with self.gate.start(lambda: goal_handle.is_cancel_requested) as started:
                yield started
        except Interrupted:
            raise Interrupted("batch cancelled") from None

    def _gate(self, goal_handle) -> None:
        """Block while paused or stopped; Interrupted when the batch is cancelled."""
        with self._starting(goal_handle):
            pass

    @property
    def mode(self) -> int:
        return {RUNNING: LabStatus.RUNNING, PAUSED: LabStatus.PAUSED, STOPPED: LabStatus.ESTOPPED}[self.gate.mode]

    def _stopped(self) -> bool:
        return self.gate.mode == STOPPED or self.safety.stopped

    # ------------------------------------------------------------------ children
    def _limit(self, expected: float) -> float:
        """A goal's limit (simulated s) from what it should take."""
        return self.params.margin_factor * expected + self.params.margin_seconds

    def _drive_limit(self, robot: str, to: Pose2D) -> float:
        here = self.robot_pose.get(robot)
        length = here.distance_to(to) if here is not None else self._lab_diagonal
        return self._limit(length / self.params.nominal_speed) + self.params.traffic_wait

    def _station_limit(self, station: str, process: str, samples: int) -> float:
        spec = self.kinds.get(self.kind_of[station])
        return self._limit(expected_seconds(spec, process, samples) if spec else 0.0)

    def _call(self, client, goal, what: str, holder: str, goal_handle, limit: float, cancel=lambda: False,
              feedback=None, goal_id: bytes | None = None, accepted=None, sim_limit: float = 0.0):
        """Send a goal through the start gate (it waits while the lab is paused; Interrupted when
        the batch is cancelled meanwhile) and wait for its result, up to `limit` s, derived from
        simulated durations and counted in wall s: an upper bound whenever the simulation runs at
        1x or faster (not in simulated time: the embedded simulation's one clock runs on for every
        node waiting on it, so a robot's hand-offs cost simulated time while stations work). A
        station's process runs on the simulated clock (and holds it while computing): its goal
        also ends past `sim_limit` simulated s (> 0), which comes first when the simulation runs
        faster than real time (a hung instrument is found in minutes, not hours, at 400x), while
        the wall limit still ends it when the clock stops. Past either the goal is cancelled and
        the outcome says what was waited for."""
        try:
            accepted_at: list[float] = []  # simulated time the goal was accepted (the process starts)
            with self._starting(goal_handle) as started:
                def keep(handle) -> None:
                    started()
                    accepted_at.append(sim_now(self))
                    with self._lock:
                        self.handles[id(handle)] = handle
                        self._last_handle[threading.get_ident()] = handle
                    if accepted is not None:
                        accepted(handle)

                with self._lock:
                    self.active_steps[holder] = what

                def overdue() -> str:
                    if not accepted_at or sim_limit <= 0:
                        return ""
                    now = sim_now(self)
                    if accepted_at[0] <= 0.0:
                        # no /clock yet when the goal was accepted (a lab manager just started reads 0;
                        # counted from there, a goal was once cancelled as 5000 s late): from the first
                        accepted_at[0] = now
                        return ""
                    return f"{sim_limit:.0f} simulated s" if now - accepted_at[0] > sim_limit else ""

                outcome = call_action(client, goal, timeout=limit, feedback=feedback,
                                      waiting_for=f"{what} (what it should take, with margin)",
                                      cancel=lambda: cancel() or self._stopped(), on_handle=keep, goal_id=goal_id,
                                      overdue=overdue)
        finally:
            with self._lock:
                handle = self._last_handle.pop(threading.get_ident(), None)
                self.handles.pop(id(handle), None)
                self.active_steps.pop(holder, None)
        return outcome

    def _record(self, batch_id: str, resource: str, start: float, end: float, what: str) -> None:
        """Busy interval for the campaign's utilisation plot (campaign id = batch id before '/')."""
        campaign_id, sep, _ = batch_id.partition("#")[0].rpartition("/")
        if not sep:
            return
        try:
            store = self._database()
            with self._lock:
                store.add_interval(campaign_id, resource, start, end, what)
        except Exception as exc:
            self.get_logger().warning(f"could not record the interval of {resource}: {exc}")

    # ------------------------------------------------------------------ robots
    def _leg(self, robot: str, batch_id: str, station: str, source: str, target: str, carrier: str,
             goal_handle) -> None:
        """Drive `robot` to `station` and transfer carrier source -> target; retried once."""
        reason = ""
        for attempt in range(2):
            self._gate(goal_handle)
            if attempt:
                # where the carrier really is after a failed transfer (a missed release leaves it
                # in the gripper): /world_state is the truth the next attempt starts from
                wait_sim(self, 1.0)
                with self._lock:
                    where = self.carriers.get(carrier, source)
                if where == target:
                    return
                if where.partition("/")[0] == robot:
                    source = where
            began = sim_now(self)
            self.robot_state[robot] = "navigating"
            if self.robot_at[robot] != station:
                self._make_way(robot, station, batch_id, goal_handle)
                nav = self._call(self.nav[robot], NavigateToStation.Goal(station=station),
                                 f"{robot}: drive to {station}", f"{batch_id}/{robot}", goal_handle,
                                 self._drive_limit(robot, self.stations[station].dock))
                if not nav.succeeded:
                    reason = f"{robot} could not reach {station}: {nav.message}"
                    self.robot_at[robot] = ""
                    continue
                self.robot_at[robot] = station
            self.robot_state[robot] = "manipulating"
            arm = self._call(self.arm[robot], Manipulate.Goal(operation="transfer", object_id=carrier, source=source,
                                                             target=target),
                             f"{robot}: {carrier} {source} -> {target}", f"{batch_id}/{robot}", goal_handle,
                             self._limit(self.params.arm_seconds))
            self.robot_state[robot] = "idle"
            self._record(batch_id, robot, began, sim_now(self), f"{carrier} -> {target}")
            if arm.succeeded:
                with self._lock:
                    self.carriers[carrier] = target
                return
            reason = f"{robot} could not move {carrier} {source} -> {target}: {arm.message}"
            self.robot_at[robot] = ""  # re-dock (and re-refine) before trying again
            if self._stopped():
                self._gate(goal_handle)
        # the last attempt may have failed after the release (the arm's retreat, say, cut short by
        # a restarted simulation): a carrier at its target has made the trip
        wait_sim(self, 1.0)
        with self._lock:
            if self.carriers.get(carrier) == target:
                self.get_logger().warning(f"{batch_id}: {reason}; but {carrier} is at {target}: going on")
                return
        raise InvalidGoal(reason)

    def _standing_at(self, station: str, tolerance: float = 0.3) -> list[str]:
        """The robots whose odometry puts them at the station's dock (waits up to 5 wall s for
        every robot's first odometry)."""
        dock = self.stations[station].dock
        wait_for(lambda: all(r in self.robot_pose for r in self.robots), 5.0)
        return [r for r, pose in list(self.robot_pose.items()) if pose.distance_to(dock) <= tolerance]

    def _make_way(self, robot: str, station: str, batch_id: str, goal_handle) -> None:
        """Before `robot` drives to `station`: an idle robot standing at its dock drives to its
        parking spot. A busy one is left to finish (the navigator waits for it to leave)."""
        for other in self._standing_at(station):
            if other == robot or other not in self.robots:
                continue
            index = self.robots.index(other)
            if index >= len(self.parking):
                self.get_logger().warning(f"{other} stands at {station} and has no parking spot "
                                          f"(config/stations.yaml parking); {robot} waits for it to leave")
                continue
            try:
                self.robot_pool.acquire([other], f"{batch_id}/make-way", timeout=0.0)
            except Unavailable:
                continue  # busy: it will leave when its own task takes it elsewhere
            try:
                spot = self.parking[index]
                x, y, yaw = spot.x, spot.y, spot.yaw
                self.get_logger().info(f"{other} stands idle at {station}, where {robot} must go: "
                                       f"parking it at ({x:g}, {y:g})")
                self.robot_state[other] = "parking"
                nav = self._call(self.nav_pose[other], NavigateToPose.Goal(pose=Pose2DMsg(x=x, y=y, theta=yaw)),
                                 f"{other}: out of {robot}'s way to its parking spot", f"{batch_id}/{other}",
                                 goal_handle, self._drive_limit(other, spot))
                self.robot_at[other] = ""
                if not nav.succeeded:
                    self.get_logger().warning(f"{other} could not clear {station} for {robot}: {nav.message}")
            finally:
                self.robot_state[other] = "idle"
                self.robot_pool.release(other, f"{batch_id}/make-way")

    def _charge_if_needed(self, robot: str, batch_id: str, goal_handle) -> None:
        level = self.battery.get(robot, 1.0)
        if level >= self.params.battery_low:
            return
        chargers = [s for s, k in self.kind_of.items() if k == "charger"]
        if not chargers:
            return
        self.get_logger().info(f"{robot}: battery {level:.0%}, going to charge")
        with self.station_pool.reserved(chargers, f"{batch_id}/{robot}",
                                        cancelled=lambda: goal_handle.is_cancel_requested) as charger:
            self._make_way(robot, charger, batch_id, goal_handle)
            nav = self._call(self.nav[robot], NavigateToStation.Goal(station=charger, skip_refinement=True),
                             f"{robot}: drive to {charger}", f"{batch_id}/{robot}", goal_handle,
                             self._drive_limit(robot, self.stations[charger].dock))
            self.robot_at[robot] = charger if nav.succeeded else ""
            if not nav.succeeded:
                self.get_logger().warning(f"{robot}: cannot reach the charger: {nav.message}")
                return
            self.robot_state[robot] = "charging"
            began = sim_now(self)
            target = self.params.battery_resume
            while self.battery.get(robot, 1.0) < target and not goal_handle.is_cancel_requested:
                wait_sim(self, 60.0)
            self.robot_state[robot] = "idle"
            self._record(batch_id, robot, began, sim_now(self), "charging")

    def _transport(self, batch_id: str, carrier: str, source: str, target: str, goal_handle,
                   release_after_pick: str | None) -> None:
        src_station, dst_station = source.partition("/")[0], target.partition("/")[0]
        on_robot = src_station in self.robots  # left on a robot by a failed transfer: that robot takes it
        at_source = set() if on_robot else \
            {r for r in self.robots if self.robot_at[r] == src_station} | set(self._standing_at(src_station))
        robot = self.robot_pool.acquire([src_station] if on_robot else self.robots, batch_id,
                                        cancelled=lambda: goal_handle.is_cancel_requested,
                                        usable=lambda r: self._unladen(r, carrier),
                                        prefer=lambda r: 0.0 if r in at_source else 1.0,
                                        waiting=self._waiting(batch_id))
        try:
            self._charge_if_needed(robot, batch_id, goal_handle)
            deck = f"{robot}/{DECK}"
            if on_robot:
                deck = source
            else:
                self._leg(robot, batch_id, src_station, source, deck, carrier, goal_handle)
            if release_after_pick:
                self.station_pool.release(release_after_pick, batch_id)
            self._leg(robot, batch_id, dst_station, deck, target, carrier, goal_handle)
        finally:
            self.robot_pool.release(robot, batch_id)

    def _unladen(self, robot: str, carrier: str) -> bool:
        """A robot may carry `carrier` only when nothing else is on it (a carrier a stop left on
        its deck goes home first: its batch takes this robot for that)."""
        with self._lock:
            return not any(loc.partition("/")[0] == robot and c != carrier for c, loc in self.carriers.items())

    def _waiting(self, batch_id: str):
        """What a reservation that waits long says, every minute (wall), in the log."""
        return lambda text: self.get_logger().warning(f"{batch_id}: {text}")

    # ------------------------------------------------------------------ stations
    def _usable(self, station: str) -> bool:
        status = self.station_status.get(station)
        return status is None or status.state in (StationStatus.IDLE, StationStatus.BUSY)

    def _free_for(self, carrier: str):
        """A station may be reserved for `carrier` only when it is usable and the slot the carrier
        goes to holds nothing else (as the world state says: a carrier a stop left there, say)."""
        def usable(station: str) -> bool:
            slot = self._slot(station)
            with self._lock:
                occupant = next((c for c, loc in self.carriers.items() if loc == slot and c != carrier), None)
            if occupant is not None:
                self.get_logger().warning(f"{station} holds {occupant}: not reserved for {carrier}",
                                          throttle_duration_sec=30.0)
            return occupant is None and self._usable(station)
        return usable

    def _slot(self, station: str) -> str:
        slots = self.stations[station].slots
        if not slots:
            raise InvalidGoal(f"station {station} has no slot to put a carrier in")
        return f"{station}/{next(iter(slots))}"

    def _run_process(self, run: _Run, station: str, process: str, samples: list[Sample], progress) -> tuple[bool, str]:
        began = sim_now(self)
        goal = RunStation.Goal(rack_id=run.carrier, process=process, formulations=[s.formulation() for s in samples])

        # the goal's id is recorded before it is sent: a lab manager restarted meanwhile asks the station for it
        goal_id = uuid.uuid4().bytes
        run.station_goal = (station, goal_id.hex())
        run.station_goal_accepted = False
        self._save(run)

        def accepted(_handle) -> None:  # the station has it: one that forgets it was restarted
            run.station_goal_accepted = True
            self._save(run)

        limit = self._station_limit(station, process, len(samples))
        outcome = self._call(self.run_station[station], goal, f"{station}: {process or 'process'} on {run.carrier}",
                             f"{run.key}/{station}", run, limit, sim_limit=limit,
                             cancel=lambda: run.is_cancel_requested,
                             feedback=lambda fb: progress(f"{station}: {fb.step} ({fb.progress:.0%})"),
                             goal_id=goal_id, accepted=accepted)
        self._record(run.key, station, began, sim_now(self), f"{process or 'process'} {run.carrier}")
        if outcome.lost:
            interrupted = self._interrupted(station, goal_id.hex(), RESTART_REPORT_WAIT)
            if interrupted:
                return self._spoiled(station, samples, interrupted)
        return self._merge(station, samples, outcome)

    def _interrupted(self, station: str, goal_id: str, wait: float) -> str:
        """What a restarted station reports of goal `goal_id` (hex), which its restart interrupted
        (StationStatus.interrupted); "" when it says nothing of it within `wait` wall s."""
        deadline = time.monotonic() + wait
        while True:
            status = self.station_status.get(station)
            if status is not None and status.interrupted_goal == goal_id:
                return status.interrupted
            if time.monotonic() >= deadline:
                return ""
            time.sleep(0.1)

    def _spoiled(self, station: str, samples: list[Sample], interrupted: str) -> tuple[bool, str]:
        """A process a station's restart interrupted: its samples, part-processed, fail with the
        station's report (run again they would be dispensed or illuminated twice)."""
        self.get_logger().error(f"{station}: {interrupted}")
        for sample in samples:
            if not sample.failure:
                sample.failure = f"{station}: {interrupted}"
        return False, interrupted

    @staticmethod
    def _merge(station: str, samples: list[Sample], outcome) -> tuple[bool, str]:
        """What a station's result says of each sample: as dispensed, measured, or why not."""
        if not outcome.succeeded:
            return False, outcome.message or "failed"
        by_id = {m.sample_id: m for m in outcome.result.measurements}
        for sample in samples:
            m = by_id.get(sample.sample_id)
            if m is None:
                continue
            if not m.valid:
                sample.failure = f"{station}: {m.failure_reason or 'invalid measurement'}"
                continue
            dispensed = m.as_dispensed
            for comp, amount, unit in zip(dispensed.components, dispensed.amounts,
                                          dispensed.units or [""] * len(dispensed.amounts), strict=False):
                sample.dispensed[comp] = (amount, unit)
            if m.objectives:
                sample.measurement = m
        return True, ""

    def _step(self, run: _Run, kind: str, process: str, progress) -> None:
        """Run one workflow step (with retries/rerouting); run.location and run.held follow the carrier."""
        candidates = [s for s, k in self.kind_of.items() if k == kind]
        retries = self.params.max_retries
        avoid: set[str] = set()
        station = None
        batch_id, carrier = run.key, run.carrier
        for attempt in range(retries + 1):
            self._gate(run)
            alive = [s for s in run.samples if not s.failure]
            if not alive:
                break
            in_held = bool(run.held) and run.held in candidates and run.location == self._slot(run.held)
            how, choices = station_choice(candidates, avoid, station, run.held, in_held)
            if how == HELD:  # already in a station of this kind, reserved (a batch taken on again after a restart)
                station = run.held
                target = run.location
            elif how == ACQUIRE:
                new = self.station_pool.acquire(list(choices), batch_id, usable=self._free_for(carrier),
                                                cancelled=lambda: run.is_cancel_requested,
                                                waiting=self._waiting(batch_id))
                if station is not None:
                    self.get_logger().warning(f"{batch_id}: rerouting {kind} from {station} to {new}")
                station = new
                target = self._slot(station)
                if run.location != target:
                    try:
                        self._transport(batch_id, carrier, run.location, target, run, run.held or None)
                    except BaseException:
                        # the carrier never got there: the station is free for others (a leaked
                        # reservation left every later batch waiting for it)
                        self.station_pool.release(station, batch_id)
                        raise
                elif run.held and run.held != station:
                    # already there (a lab manager that died just after the transfer left its record a
                    # step behind): the station it came from is free
                    self.station_pool.release(run.held, batch_id)
                run.location, run.held = target, station
                self._save(run)
            elif not self._usable(station):  # AGAIN: the only station left, maybe in fault
                self._await_recovery(run, station)
            ok, why = self._run_process(run, station, process, alive, progress)
            run.station_goal = None
            self._save(run)
            if ok:
                return
            self.get_logger().warning(f"{batch_id}: {station} failed (attempt {attempt + 1}): {why}")
            if self._stopped() or run.is_cancel_requested:
                why = f"stopped: {self.safety.reason() or 'emergency stop'}" if self._stopped() else "batch cancelled"
                for s in alive:
                    s.failure = f"{station}: {why}"
                break
            avoid.add(station)
            if attempt == retries:
                for s in alive:
                    s.failure = f"{station}: {why} (after {retries + 1} attempts)"

    def _await_recovery(self, run: _Run, station: str) -> None:
        """A step tried again on a station in fault (the only one of its kind, say) waits for it to
        recover (its `fault_recovery`, simulated s) up to `fault_wait` simulated s (and as many wall
        s), instead of failing its samples against the fault at once."""
        began, wall_end = sim_now(self), time.monotonic() + self.params.fault_wait
        self.get_logger().warning(f"{run.key}: {station} is in fault; waiting for it to recover before trying again")
        while not self._usable(station):
            if (run.is_cancel_requested or self._stopped() or sim_now(self) - began > self.params.fault_wait
                    or time.monotonic() > wall_end):
                return
            time.sleep(0.1)

    # ------------------------------------------------------------------ batches
    def _execute(self, goal_handle):
        request = goal_handle.request
        if not self._recovered.wait(RECOVERY_WAIT):
            self.get_logger().error(f"start-up recovery not over after {RECOVERY_WAIT:g} s; "
                                    f"{request.batch_id or 'the batch'} starts regardless")
        run = self._claim(request)
        if run is not None:
            # a batch in flight already (recorded by a lab manager that died, or a re-sent goal):
            # this goal waits for it and answers with its result instead of running it twice
            self.get_logger().warning(f"{request.batch_id or run.key}: the batch is in flight as {run.key} "
                                      f"(step {run.step + 1}); this goal gets its result")
            with self._lock:
                run.watchers.append(goal_handle)
            run.done.wait()
        else:
            try:
                run = self._new_run(request)
            except InvalidGoal as exc:
                goal_handle.abort()
                return RunBatch.Result(batch_id=request.batch_id, success=False, message=str(exc))
            run.watchers.append(goal_handle)
            self._save(run)
            self._drive(run)
        result = run.result
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        self._forget(run)  # answered: its record is no longer needed
        return result

    def _new_run(self, request) -> _Run:
        """A new batch from a goal; InvalidGoal (nothing recorded) when it cannot run."""
        wf = workflow(self.workflows, request.workflow)
        if not request.formulations:
            raise InvalidGoal("a batch needs at least one formulation")
        if len(request.formulations) > wf.capacity:
            raise InvalidGoal(f"{len(request.formulations)} formulations do not fit one {wf.carrier} "
                              f"(capacity {wf.capacity})")
        batch_id = request.batch_id or f"batch-{uuid.uuid4().hex[:8]}"
        samples = [Sample(f.sample_id or f"{batch_id}/{i:02d}", f) for i, f in enumerate(request.formulations)]
        # reservations are held per run: a key of its own, whatever the caller's batch id
        run = _Run(f"{batch_id}#{uuid.uuid4().hex[:6]}", batch_id, wf.name, samples)
        with self._lock:
            self.runs[run.key] = run
        return run

    def _claim(self, request) -> _Run | None:
        """The batch in flight (or recorded and not yet answered) that `request` asks for: the
        same batch id, or the same samples of the same campaign (a resumed campaign re-sends
        its unfinished experiments under a new batch id)."""
        ids = sorted(f.sample_id for f in request.formulations)
        with self._lock:
            for run in self.runs.values():
                if same_batch(run.batch_id, [s.sample_id for s in run.samples], request.batch_id, ids):
                    return run
        return None

    def _drive(self, run: _Run) -> None:
        """Run the batch from the step its record is at, recording its progress; sets run.result."""
        wf = self.workflows[run.workflow]
        samples = run.samples
        batch_id = run.key
        result = RunBatch.Result(batch_id=batch_id)
        began = sim_now(self)
        with self._lock:
            self.active_batches.append(batch_id)
            self.counts["running"] += len(samples)
        last = {"text": ""}

        def progress(text: str = "") -> None:
            last["text"] = text or last["text"]
            done = sum(1 for s in samples if s.measurement is not None or s.failure)
            run.publish_feedback(RunBatch.Feedback(
                batch_id=batch_id, phase=last["text"], samples_done=done, samples_total=len(samples),
                active_steps=[v for k, v in list(self.active_steps.items()) if k.startswith(batch_id)],
                elapsed=float(sim_now(self) - began)))

        message = ""
        try:
            if not run.carrier:
                run.carrier, run.home = self._take_carrier(wf, batch_id, run)
                run.location = run.home
                self._save(run)
            for index in range(run.step, len(wf.steps)):
                if all(s.failure for s in samples):
                    break
                step = wf.steps[index]
                run.step = index
                progress(f"{step.kind}")
                self._step(run, step.kind, step.process, progress)
                run.step = index + 1
                self._save(run)
        except (Interrupted, Unavailable, InvalidGoal) as exc:
            message = str(exc)
            for s in samples:
                if not s.failure and s.measurement is None:
                    s.failure = message
        finally:
            if run.carrier:
                message = self._go_home(batch_id, run.carrier, run.home, run.held or None, run, message)
            with self._lock:
                self.active_batches.remove(batch_id)
                self.counts["running"] -= len(samples)
        for s in samples:
            if not s.failure and s.measurement is None:
                s.failure = "no station of the workflow measured it"
        result.measurements = [self._measurement(s) for s in samples]
        failed = sum(1 for s in samples if s.failure)
        with self._lock:
            self.counts["failed"] += failed
            self.counts["done"] += len(samples) - failed
        result.duration = float(sim_now(self) - began)
        result.success = failed < len(samples)
        result.message = message or f"{len(samples) - failed} of {len(samples)} samples measured"
        run.result = result
        run.step = len(wf.steps)
        self._save(run)  # kept until a goal has been answered with it
        run.done.set()
        self.get_logger().info(f"{batch_id}: {result.message} in {result.duration / 60:.0f} simulated min")

    # ------------------------------------------------------------------ the record of batches in flight
    def _save(self, run: _Run) -> None:
        """Record the batch's progress (which step, where its carrier is, what each sample has
        received, the station goal under way, its result) in the campaign database."""
        try:
            self._database().save_lab_batch(run.key, run.batch_id, run.state())
        except Exception as exc:  # a full disk must not stop the lab; it is said loudly
            self.get_logger().error(f"{run.key}: could not record the batch's progress: {exc}",
                                    throttle_duration_sec=60.0)

    def _forget(self, run: _Run) -> None:
        with self._lock:
            self.runs.pop(run.key, None)
        try:
            self._database().drop_lab_batch(run.key)
        except Exception as exc:
            self.get_logger().error(f"{run.key}: could not drop the batch's record: {exc}")

    def _adopt_recorded(self) -> None:
        """At start-up (after a crash, say): every batch the previous lab manager recorded and did
        not answer is taken on again: finished ones wait for their goal to be sent again (the
        planner re-sends a batch whose lab manager went away); the others go on from the step
        their record is at, the carrier where the world state says it is, and a station goal that
        was under way asked for its result."""
        try:
            records = self._database().lab_batches()
            ages = self._database().lab_batch_ages()
        except Exception as exc:
            self.get_logger().error(f"the batches in flight could not be read from {self.params.database}: {exc}")
            return
        for key, state in records.items():
            try:
                run = _Run.from_state(key, state)
                if run.workflow not in self.workflows:
                    raise InvalidGoal(f"workflow {run.workflow} is not configured")
            except (InvalidGoal, KeyError, TypeError, ValueError) as exc:
                self.get_logger().error(f"recorded batch {key} cannot be taken on ({exc}): dropped")
                self._database().drop_lab_batch(key)
                continue
            with self._lock:
                self.runs[key] = run
            if run.result is not None:
                if ages.get(key, 0.0) > self.params.keep_results:
                    self.get_logger().warning(f"{key}: finished {ages[key] / 3600:.0f} h ago and nobody asked for its "
                                              f"result (keep_results {self.params.keep_results:g} s): dropped")
                    self._forget(run)
                    continue
                run.done.set()
                self.get_logger().warning(f"{key}: finished before the restart; answered when its goal is re-sent")
                continue
            try:
                if run.carrier:
                    self.carrier_pool.acquire([run.carrier], key, timeout=0.0)
                if run.held:
                    self.station_pool.acquire([run.held], key, timeout=0.0)
            except (KeyError, Unavailable) as exc:
                self.get_logger().error(f"{key}: its carrier or station cannot be reserved again: {exc}")
            self.get_logger().warning(f"{key}: in flight when the lab manager stopped (step {run.step + 1}, "
                                      f"{run.carrier or 'no carrier yet'}): going on with it")
            threading.Thread(target=self._resume, args=(run,), daemon=True, name=f"adopt-{key}").start()

    def _resume(self, run: _Run) -> None:
        if run.station_goal is not None:
            station, goal_id = run.station_goal
            alive = [s for s in run.samples if not s.failure]
            self.get_logger().warning(f"{run.key}: asking {station} for the result of goal {goal_id} (sent before "
                                      "the restart)")
            process = self.workflows[run.workflow].steps[run.step].process
            outcome = follow_goal(self.run_station[station], bytes.fromhex(goal_id),
                                  self._station_limit(station, process, len(alive)),
                                  cancel=lambda: run.is_cancel_requested,
                                  waiting_for=f"{station}'s result for {run.carrier}")
            unknown = outcome.status == GoalStatus.STATUS_UNKNOWN and not outcome.reason
            # a station restarted since says what it interrupted (its status is latched: here at once,
            # or within the restart report's wait when it restarts while we ask)
            interrupted = (self._interrupted(station, goal_id, RESTART_REPORT_WAIT if outcome.lost else 5.0)
                           if (unknown and run.station_goal_accepted) or outcome.lost else "")
            what = recorded_goal_outcome(run.station_goal_accepted, unknown, interrupted)
            if what == RERUN:
                # recorded but never accepted: the lab manager died before the station had it; the
                # step runs again from the start
                self.get_logger().warning(f"{run.key}: {station} never had goal {goal_id}: the step runs again")
            else:
                self._settle_recorded(run, station, goal_id, what, alive, outcome, interrupted)
            run.station_goal = None
            self._save(run)
        with self._lock:
            run.location = self.carriers.get(run.carrier, run.location) if run.carrier else run.location
        self._drive(run)

    def _settle_recorded(self, run: _Run, station: str, goal_id: str, what: str, alive: list[Sample], outcome,
                         interrupted: str) -> None:
        """The recorded station goal's outcome into the batch: merged (the step done), or its
        samples failed with the reason."""
        if what == SPOILED:
            self._spoiled(station, alive, interrupted)
            return
        if what == NO_RECORD:
            # accepted, and the station has no record of it: restarted since (or the result
            # expired); what the samples went through is unknown
            ok, why = False, f"{station} has no record of goal {goal_id} (restarted since it accepted it)"
        else:
            ok, why = self._merge(station, alive, outcome)
        if ok:
            self.get_logger().info(f"{run.key}: {station}'s result, asked for after the restart, merged")
            run.step += 1
            return
        for s in alive:
            s.failure = (f"{station}: the lab manager restarted during the process and its result could not be "
                         f"had: {why}")

    def _database(self):
        if self._store is None:
            from lab.core.store import CampaignStore

            self._store = CampaignStore(Path(self.params.database))
        return self._store

    def _take_carrier(self, wf: Workflow, batch_id: str, goal_handle) -> tuple[str, str]:
        homes = {s for s, k in self.kind_of.items() if k == wf.home}
        if not self.carriers and not wait_for(lambda: bool(self.carriers), WORLD_WAIT):
            raise InvalidGoal(f"no /world_state within {WORLD_WAIT:g} s: where the carriers are is unknown")
        with self._lock:
            pool = self.carrier_pool
            candidates = [c for c, loc in self.carriers.items()
                          if self.carrier_kind.get(c) == wf.carrier and loc.partition("/")[0] in homes]
        if not candidates:
            raise InvalidGoal(f"no {wf.carrier} at {wf.home} for workflow {wf.name}")
        carrier = pool.acquire(candidates, batch_id, cancelled=lambda: goal_handle.is_cancel_requested,
                               usable=lambda c: self.carriers.get(c, "").partition("/")[0] in homes,
                               waiting=self._waiting(batch_id))
        return carrier, self.carriers[carrier]

    def _go_home(self, batch_id: str, carrier: str, home: str, held: str | None, goal_handle, message: str) -> str:
        try:
            location = self.carriers.get(carrier, home)
            while location != home:
                if self._stopped():
                    # the rule after a stop: the carrier stays where the stop left it until the operator
                    # has released the stop and resumed the lab; then it goes home and the batch ends
                    self.get_logger().warning(f"{batch_id}: {carrier} stays at {location} until the emergency "
                                              "stop is released and the lab resumed; then it goes home")
                    self._gate(goal_handle)
                stops = self.stops
                try:
                    self._transport(batch_id, carrier, self.carriers.get(carrier, location), home,
                                    _NeverCancelled(goal_handle), held)
                except InvalidGoal:
                    if self.stops == stops and not self._stopped():
                        raise
                    # stopped on the way home (the stop may be released already): once the lab runs
                    # again it tries again, from where the carrier is now
                    wait_sim(self, 1.0)  # /world_state after the stop says where that is
                held = None if self.carriers.get(carrier, location).partition("/")[0] != held else held
                location = self.carriers.get(carrier, home)
            if held:
                self.station_pool.release(held, batch_id)
        except (Interrupted, Unavailable, InvalidGoal) as exc:
            self.get_logger().error(f"{batch_id}: {carrier} could not go home from {self.carriers.get(carrier)}: {exc}")
            message = (message + "; " if message else "") + f"{carrier} left at {self.carriers.get(carrier)}: {exc}"
            if held:
                self.station_pool.release(held, batch_id)
        finally:
            self.carrier_pool.release(carrier, batch_id)
        return message

    @staticmethod
    def _measurement(sample: Sample) -> Measurement:
        m = sample.measurement if sample.measurement is not None and not sample.failure else \
            Measurement(sample_id=sample.sample_id, valid=False, failure_reason=sample.failure)
        m.sample_id = sample.sample_id
        m.as_dispensed = sample.formulation()
        return m

    # ------------------------------------------------------------------ status
    def _publish_status(self) -> None:
        msg = LabStatus()
        msg.stamp = self.get_clock().now().to_msg()
        with self._lock:
            msg.mode = self.mode
            if self.mode == LabStatus.RUNNING and not self.active_batches:
                msg.mode = LabStatus.IDLE
            msg.active_batches = list(self.active_batches)
            msg.active_steps = list(self.active_steps.values())
            msg.experiments_running = self.counts["running"]
            msg.experiments_done = self.counts["done"]
            msg.experiments_failed = self.counts["failed"]
        msg.mode_text = {LabStatus.RUNNING: "running", LabStatus.PAUSED: "paused", LabStatus.ESTOPPED: "estopped",
                         LabStatus.IDLE: "idle"}[msg.mode]
        msg.stations = list(self.station_status.values())
        for robot in self.robots:
            status = RobotStatus(name=robot, state=self.robot_state[robot], docked_at=self.robot_at[robot])
            status.stamp = msg.stamp
            pose = self.robot_pose.get(robot, Pose2D(0.0, 0.0, 0.0))
            x, y, yaw = pose.x, pose.y, pose.yaw
            status.pose.x, status.pose.y, status.pose.theta = x, y, yaw
            status.battery = float(self.battery.get(robot, 1.0))
            status.charging = self.robot_state[robot] == "charging"
            status.holding = [c for c, loc in self.carriers.items() if loc.startswith(f"{robot}/")]
            msg.robots.append(status)
        self.status_pub.publish(msg)


class _NeverCancelled:
    """A goal handle view for the trip home: a cancelled batch still brings its carrier back."""

    def __init__(self, handle) -> None:
        self._handle = handle

    is_cancel_requested = False


def main(args: list[str] | None = None) -> None:
    node_main(LabManager, "lab_manager", threads=16)


if __name__ == "__main__":
    main()
