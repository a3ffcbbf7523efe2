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

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from geometry_msgs.msg import Pose2D as Pose2DMsg
from nav_msgs.msg import Odometry
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import BatteryState
from std_srvs.srv import Trigger

from lab.core.errors import InvalidGoal
from lab.core.gate import PAUSED, RUNNING, STOPPED, Interrupted, StartGate
from lab.core.params import LabManagerParams
from lab.core.resources import ResourcePool, Unavailable
from lab.core.workflow import Workflow, load_workflows, workflow
from lab.core.world import Pose2D, Station, load_stations
from lab.ros.actions import ActionClient, call_action
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
#: wall s `~/pause` waits for goals sent just before it to be answered (a goal's acceptance is
#: one DDS round trip, ms; send_goal re-sends after 5 s; `lab pause` waits 10 s for the answer)
PAUSE_WAIT = 7.0


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


class LabManager(Node):
    def __init__(self) -> None:
        super().__init__("lab_manager")
        self.params = params = declare_params(self, LabManagerParams)
        config = load_stations(file_or_default(params.stations_file, "config/stations.yaml"))
        self.stations: dict[str, Station] = config.stations
        self.kind_of = config.kinds()
        self.parking: list[Pose2D] = config.parking
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
        self.counts = {"done": 0, "failed": 0, "running": 0}
        self._store = None
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
        threading.Thread(target=self._bring_strays_home, daemon=True, name="strays").start()

    def _bring_strays_home(self) -> None:
        """At start-up (a restart after a crash, say): every carrier the world state shows away
        from home with no batch of this lab manager to own it (on a robot's deck, in a station)
        is brought home, by the rule a stopped batch's carrier follows."""
        if not wait_for(lambda: bool(self.carriers), WORLD_WAIT):
            return
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
                self.carrier_pool = ResourcePool(list(self.carriers))

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
    def _call(self, client, goal, what: str, holder: str, goal_handle, cancel=lambda: False, feedback=None):
        """Send a goal through the start gate (it waits while the lab is paused; Interrupted when
        the batch is cancelled meanwhile) and wait for its result."""
        self._last_handle = getattr(self, "_last_handle", {})
        try:
            with self._starting(goal_handle) as started:
                def keep(handle) -> None:
                    started()
                    with self._lock:
                        self.handles[id(handle)] = handle
                        self._last_handle[threading.get_ident()] = handle

                with self._lock:
                    self.active_steps[holder] = what
                outcome = call_action(client, goal, timeout=self.params.station_timeout, feedback=feedback,
                                      cancel=lambda: cancel() or self._stopped(), on_handle=keep)
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
            if self._store is None:
                from pathlib import Path

                from lab.core.store import CampaignStore

                self._store = CampaignStore(Path(self.params.database))
            with self._lock:
                self._store.add_interval(campaign_id, resource, start, end, what)
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
                                 f"{robot}: drive to {station}", f"{batch_id}/{robot}", goal_handle)
                if not nav.succeeded:
                    reason = f"{robot} could not reach {station}: {nav.message}"
                    self.robot_at[robot] = ""
                    continue
                self.robot_at[robot] = station
            self.robot_state[robot] = "manipulating"
            arm = self._call(self.arm[robot], Manipulate.Goal(operation="transfer", object_id=carrier, source=source,
                                                             target=target),
                             f"{robot}: {carrier} {source} -> {target}", f"{batch_id}/{robot}", goal_handle)
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
                                 goal_handle)
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
                             f"{robot}: drive to {charger}", f"{batch_id}/{robot}", goal_handle)
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

    def _run_process(self, batch_id: str, station: str, carrier: str, process: str, samples: list[Sample],
                     goal_handle, progress) -> tuple[bool, str]:
        began = sim_now(self)
        goal = RunStation.Goal(rack_id=carrier, process=process, formulations=[s.formulation() for s in samples])
        outcome = self._call(self.run_station[station], goal, f"{station}: {process or 'process'} on {carrier}",
                             f"{batch_id}/{station}", goal_handle, cancel=lambda: goal_handle.is_cancel_requested,
                             feedback=lambda fb: progress(f"{station}: {fb.step} ({fb.progress:.0%})"))
        self._record(batch_id, station, began, sim_now(self), f"{process or 'process'} {carrier}")
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

    def _step(self, batch_id: str, kind: str, process: str, carrier: str, location: str, held: str | None,
              samples: list[Sample], goal_handle, progress) -> tuple[str, str]:
        """Run one workflow step (with retries/rerouting); returns (location, station held)."""
        candidates = [s for s, k in self.kind_of.items() if k == kind]
        retries = self.params.max_retries
        avoid: set[str] = set()
        station = None
        for attempt in range(retries + 1):
            self._gate(goal_handle)
            alive = [s for s in samples if not s.failure]
            if not alive:
                break
            others = [c for c in candidates if c not in avoid and c != station]
            if station is None or others:
                new = self.station_pool.acquire(others or candidates, batch_id, usable=self._free_for(carrier),
                                                cancelled=lambda: goal_handle.is_cancel_requested,
                                                waiting=self._waiting(batch_id))
                if station is not None:
                    self.get_logger().warning(f"{batch_id}: rerouting {kind} from {station} to {new}")
                station = new
                target = self._slot(station)
                if location != target:
                    try:
                        self._transport(batch_id, carrier, location, target, goal_handle, held)
                    except BaseException:
                        # the carrier never got there: the station is free for others (a leaked
                        # reservation left every later batch waiting for it)
                        self.station_pool.release(station, batch_id)
                        raise
                    location, held = target, station
            ok, why = self._run_process(batch_id, station, carrier, process, alive, goal_handle, progress)
            if ok:
                return location, held or ""
            self.get_logger().warning(f"{batch_id}: {station} failed (attempt {attempt + 1}): {why}")
            if self._stopped() or goal_handle.is_cancel_requested:
                why = f"stopped: {self.safety.reason() or 'emergency stop'}" if self._stopped() else "batch cancelled"
                for s in alive:
                    s.failure = f"{station}: {why}"
                break
            avoid.add(station)
            if attempt == retries:
                for s in alive:
                    s.failure = f"{station}: {why} (after {retries + 1} attempts)"
        return location, held or ""

    # ------------------------------------------------------------------ batches
    def _execute(self, goal_handle):
        request = goal_handle.request
        batch_id = request.batch_id or f"batch-{uuid.uuid4().hex[:8]}"
        result = RunBatch.Result(batch_id=batch_id)
        began = sim_now(self)
        try:
            wf = workflow(self.workflows, request.workflow)
            if not request.formulations:
                raise InvalidGoal("a batch needs at least one formulation")
            if len(request.formulations) > wf.capacity:
                raise InvalidGoal(f"{len(request.formulations)} formulations do not fit one {wf.carrier} "
                                  f"(capacity {wf.capacity})")
        except InvalidGoal as exc:
            result.success, result.message = False, str(exc)
            goal_handle.abort()
            return result
        samples = [Sample(f.sample_id or f"{batch_id}/{i:02d}", f) for i, f in enumerate(request.formulations)]
        # reservations are held per goal: a re-sent batch (a restarted planner) never frees the first one's
        batch_id = f"{batch_id}#{uuid.uuid4().hex[:6]}"
        with self._lock:
            self.active_batches.append(batch_id)
            self.counts["running"] += len(samples)
        last = {"text": ""}

        def progress(text: str = "") -> None:
            last["text"] = text or last["text"]
            done = sum(1 for s in samples if s.measurement is not None or s.failure)
            goal_handle.publish_feedback(RunBatch.Feedback(
                batch_id=batch_id, phase=last["text"], samples_done=done, samples_total=len(samples),
                active_steps=[v for k, v in list(self.active_steps.items()) if k.startswith(batch_id)],
                elapsed=float(sim_now(self) - began)))

        carrier = home = held = None
        message = ""
        try:
            carrier, home = self._take_carrier(wf, batch_id, goal_handle)
            location = home
            for step in wf.steps:
                if all(s.failure for s in samples):
                    break
                progress(f"{step.kind}")
                location, held = self._step(batch_id, step.kind, step.process, carrier, location, held, samples,
                                            goal_handle, progress)
        except (Interrupted, Unavailable, InvalidGoal) as exc:
            message = str(exc)
            for s in samples:
                if not s.failure and s.measurement is None:
                    s.failure = message
        finally:
            if carrier is not None:
                message = self._go_home(batch_id, carrier, home, held, goal_handle, message)
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
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        self.get_logger().info(f"{batch_id}: {result.message} in {result.duration / 60:.0f} simulated min")
        return result

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
