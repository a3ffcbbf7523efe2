"""How the lab manager runs batches on the lab's robots and stations (no ROS).

A batch's workflow (config/workflows.yaml) says which station kinds its carrier (a rack of
vials, a tray of specimens) visits; the scheduler takes a free carrier from home, and for
every step reserves a station of that kind, has a robot carry the carrier there (drive,
transfer to the robot's deck, drive, transfer into the station), runs the station's process
and merges what each station reports (as-dispensed amounts, measurements) per sample; then
the carrier goes home. Several batches run at once, each in its own thread: stations, robots
and carriers are reserved (lab.core.resources), so while one rack is under the lamp a robot
prepares the next, and two batches never use a station at the same time.

Failures: a failed station run is retried, on another station of the kind when there is one
(rerouted), up to `max_retries`; a retry on the only station of its kind, in fault, waits for
it to recover; then the samples are marked failed with the reason. A failed transport leg is
retried once. A robot whose host the network has lost (DDS liveliness, `presence`) is offline:
it is given no new work; a transport leg it fails meanwhile does not count as a try: the leg
waits up to `offline_wait` for it to come back, and past that a carrier still at its station
goes with another robot, while one left on the offline robot fails its batch with the reason.
A station offline is not chosen for a step. A robot whose battery is low goes to the charger
before its next transport. An
idle robot standing at the dock another robot is sent to is first driven to its parking spot.
The emergency stop cancels what runs and starts nothing new; after its release the lab stays
paused until resumed; `pause` lets running steps finish and starts nothing new (every order
passes lab.core.gate.StartGate). Each batch's progress is recorded in the campaign database, so
a scheduler that starts (after a crash) takes on the batches its predecessor left in flight and
brings home any carrier away from home that no batch owns.

The scheduler gives its orders (drive, park, transfer, run a process) to a `Lab`, the node's
ROS wiring (actions to the navigators, arms and stations), or a fake in the unit tests; what
it learns of the world (carriers, robots' poses and batteries, stations' states, goals under
way) the node tells it through `world_state`, `robot_pose`, `station_state`, ...
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from lab.core.batches import ACQUIRE, HELD, NO_RECORD, RERUN, SPOILED, recorded_goal_outcome, same_batch, station_choice
from lab.core.errors import InvalidGoal
from lab.core.gate import PAUSED, RUNNING, STOPPED, Interrupted, StartGate
from lab.core.params import LabManagerParams
from lab.core.resources import ResourcePool, Unavailable
from lab.core.safety import NO_CONTACT
from lab.core.station import KindSpec, expected_seconds
from lab.core.waits import wait_for
from lab.core.workflow import Workflow, workflow
from lab.core.world import Pose2D, StationsConfig

DECK = "deck1"
#: wall s a batch waits for the first world state (a lab manager started before the simulation)
WORLD_WAIT = 30.0
#: wall s between tries of a leg whose robot refused for want of the safety node's contact: the
#: movers watch the safety node's presence with a 3 s timeout (`safety_timeout`) on a 1 s lease
CONTACT_RETRY = 2.0
#: wall s a scheduler starting up waits for robot goals under way (its predecessor's) to end: a
#: transfer (~60 simulated s) or a drive across the lab (~2 simulated min), at 1x real time
ROBOTS_SETTLE_WAIT = 300.0
#: wall s `pause` waits for orders sent just before it to be answered (an order's acceptance is
#: one DDS round trip, ms; a goal is re-sent after 5 s; `lab pause` waits 10 s for the answer)
PAUSE_WAIT = 7.0
#: wall s a batch waits for the start-up recovery: the world state, the robots' goals under way
#: (both above), the adopted batches' reservations
RECOVERY_WAIT = WORLD_WAIT + ROBOTS_SETTLE_WAIT + 60.0
#: wall s to wait, after a station's goal was lost to its restart, for the restarted station to
#: report what it interrupted: bringup restarts a node within 1-4 s, a node starts in a few s
#: (the loss itself is only seen once DDS drops the dead node, ~20 s)
RESTART_REPORT_WAIT = 30.0
#: wall s to wait for a station's latched status to say what a restart interrupted, when the station
#: answers that it does not know a recorded goal (the status is there at once, or within a DDS round trip)
REPORT_WAIT = 5.0


class RobotOffline(InvalidGoal):
    """A robot the network lost did not come back within `offline_wait`."""

    def __init__(self, robot: str, text: str) -> None:
        super().__init__(text)
        self.robot = robot


Amounts = dict[str, tuple[float, str]]  # component -> (amount, unit)


# ------------------------------------------------------------------ what the scheduler orders, and hears back
@dataclass(frozen=True)
class Drive:
    robot: str
    station: str
    skip_refinement: bool = False  # no marker refinement at the dock (the charger)


@dataclass(frozen=True)
class Park:
    robot: str
    pose: Pose2D


@dataclass(frozen=True)
class Transfer:
    robot: str
    carrier: str
    source: str  # '<station or robot>/<slot>'
    target: str


@dataclass(frozen=True)
class Process:
    station: str
    carrier: str
    process: str                              # '' = the station's default
    samples: tuple[tuple[str, str, Amounts], ...]  # (sample id, specimen kind, amounts) each
    goal_id: bytes                            # chosen here, recorded before the order is sent


Order = Drive | Park | Transfer | Process


@dataclass
class SampleReport:
    """What a station says of one sample."""

    sample_id: str
    valid: bool
    failure_reason: str = ""
    dispensed: Amounts = field(default_factory=dict)
    measurement: Any = None  # the station's measurement (opaque here), None when it measured nothing


@dataclass
class Outcome:
    """How an order ended."""

    succeeded: bool
    message: str = ""
    lost: bool = False      # the server went away with it (died, restarted): no result came
    unknown: bool = False   # followed after a restart: the server has no record of it
    reports: list[SampleReport] = field(default_factory=list)


@dataclass
class Call:
    """How an order is waited for: `limit` wall s (see Scheduler._call), `cancel()` polled,
    `accepted()` called once the server has it, `overdue()` a second limit ("" within it, else
    what was passed), `feedback(step, fraction)` a station's progress."""

    limit: float
    waiting_for: str
    cancel: Callable[[], bool]
    accepted: Callable[[], None]
    overdue: Callable[[], str] = lambda: ""
    feedback: Callable[[str, float], None] | None = None


class Lab(Protocol):
    """What the scheduler drives: the node's ROS wiring, or a fake."""

    def now(self) -> float:
        """Simulated s (the node's clock)."""

    def sleep(self, seconds: float) -> None:
        """Let `seconds` simulated s pass."""

    def send(self, order: Order, call: Call) -> Outcome:
        """Carry out the order; its outcome, never an exception for a failure of the order."""

    def follow(self, order: Process, limit: float, cancel: Callable[[], bool], waiting_for: str) -> Outcome:
        """The outcome of a process order sent before a restart (by its goal id)."""

    def encode(self, measurement: Any) -> str:
        """A measurement as text, for the record of batches in flight."""

    def decode(self, text: str) -> Any:
        """The measurement back from `encode`'s text."""


class Log(Protocol):
    def info(self, text: str) -> Any: ...

    def warning(self, text: str, **kwargs: Any) -> Any: ...

    def error(self, text: str, **kwargs: Any) -> Any: ...


class Watcher(Protocol):
    """A goal waiting for a batch (the node's goal handle)."""

    @property
    def is_cancel_requested(self) -> bool: ...

    def publish_feedback(self, progress: Progress) -> None: ...


@dataclass
class Progress:
    batch_id: str
    phase: str
    samples_done: int
    samples_total: int
    active_steps: list[str]
    elapsed: float  # simulated s


@dataclass
class Result:
    success: bool
    message: str
    duration: float  # simulated s


# ------------------------------------------------------------------ a batch and its samples
@dataclass
class Sample:
    sample_id: str
    specimen_kind: str
    requested: Amounts
    dispensed: Amounts = field(default_factory=dict)
    measurement: Any = None
    failure: str = ""

    def amounts(self) -> Amounts:
        """What the next station gets: as dispensed so far, as requested otherwise."""
        return {**self.requested, **self.dispensed}

    def order(self) -> tuple[str, str, Amounts]:
        return self.sample_id, self.specimen_kind, self.amounts()

    def state(self, encode: Callable[[Any], str]) -> dict[str, Any]:
        return {"id": self.sample_id, "kind": self.specimen_kind,
                "requested": [[c, a, u] for c, (a, u) in self.requested.items()],
                "dispensed": {c: list(v) for c, v in self.dispensed.items()},
                "measurement": encode(self.measurement) if self.measurement is not None else None,
                "failure": self.failure}

    @classmethod
    def from_state(cls, state: dict[str, Any], decode: Callable[[str], Any]) -> Sample:
        measurement = state.get("measurement")
        return cls(str(state["id"]), str(state["kind"]), {str(c): (float(a), str(u)) for c, a, u in state["requested"]},
                   {str(c): (float(a), str(u)) for c, (a, u) in state["dispensed"].items()},
                   decode(measurement) if measurement else None, str(state["failure"]))


class Run:
    """One batch in flight: what its record in the campaign database keeps (`state`), and the
    view of the goals that wait for it (cancel requested, feedback): the one that started it,
    or the one re-sent after a restart."""

    def __init__(self, key: str, batch_id: str, workflow: str, samples: list[Sample]) -> None:
        self.key, self.batch_id, self.workflow, self.samples = key, batch_id, workflow, samples
        self.carrier = self.home = self.location = self.held = ""
        self.step = 0                                   # index of the workflow step under way
        self.station_goal: tuple[str, str] | None = None  # (station, goal id hex) while it runs the step
        self.station_goal_accepted = False              # ... and whether the station had accepted it
        self.result: Result | None = None               # once finished
        self.done = threading.Event()
        self.watchers: list[Watcher] = []

    @property
    def is_cancel_requested(self) -> bool:
        return any(w.is_cancel_requested for w in list(self.watchers))

    def publish_feedback(self, progress: Progress) -> None:
        for watcher in list(self.watchers):
            try:
                watcher.publish_feedback(progress)
            except Exception:  # a goal that has ended takes no feedback; the others still get it
                continue

    def state(self, encode: Callable[[Any], str]) -> dict[str, Any]:
        result = self.result
        return {"batch_id": self.batch_id, "workflow": self.workflow,
                "samples": [s.state(encode) for s in self.samples],
                "carrier": self.carrier, "home": self.home, "location": self.location, "held": self.held,
                "step": self.step, "station_goal": list(self.station_goal) if self.station_goal else None,
                "station_goal_accepted": self.station_goal_accepted,
                "result": [result.success, result.message, result.duration] if result is not None else None}

    @classmethod
    def from_state(cls, key: str, state: dict[str, Any], decode: Callable[[str], Any]) -> Run:
        run = cls(key, str(state["batch_id"]), str(state["workflow"]),
                  [Sample.from_state(s, decode) for s in state["samples"]])
        run.carrier, run.home = str(state["carrier"]), str(state["home"])
        run.location, run.held, run.step = str(state["location"]), str(state["held"]), int(state["step"])
        goal = state.get("station_goal")
        run.station_goal = (str(goal[0]), str(goal[1])) if goal else None
        run.station_goal_accepted = bool(state.get("station_goal_accepted", False))
        result = state.get("result")
        run.result = Result(bool(result[0]), str(result[1]), float(result[2])) if result else None
        return run


class _NeverCancelled:
    """The view of a batch for the trip home: a cancelled batch still brings its carrier back."""

    is_cancel_requested = False


# ------------------------------------------------------------------ the scheduler
class Scheduler:
    def __init__(self, params: LabManagerParams, config: StationsConfig, kinds: dict[str, KindSpec],
                 workflows: dict[str, Workflow], lab: Lab, log: Log) -> None:
        self.params, self.lab, self.log = params, lab, log
        self.stations = config.stations
        self.kind_of = config.kinds()
        self.parking = config.parking
        self.kinds, self.workflows = kinds, workflows
        docks = [st.dock for st in self.stations.values()]
        self._lab_diagonal = max((a.distance_to(b) for a in docks for b in docks), default=10.0)
        self.robots = [r for r in params.robots if r]
        self.robot_pool = ResourcePool(self.robots)
        self.station_pool = ResourcePool(list(self.stations))
        self.lock = threading.RLock()
        self.carriers: dict[str, str] = {}       # carrier id -> location
        self.carrier_kind: dict[str, str] = {}
        for entry in params.carriers:
            if entry:
                obj, _, loc = entry.partition("@")
                self.carriers[obj], self.carrier_kind[obj] = loc, "tray" if obj.startswith("tray") else "rack"
        self.carrier_pool = ResourcePool(list(self.carriers))
        self.usable: dict[str, bool] = {}         # station -> idle or busy (not in fault, not offline)
        self.interrupted: dict[str, tuple[str, str]] = {}  # station -> (goal id hex, what its restart interrupted)
        self.robot_pose: dict[str, Pose2D] = {}
        self.battery: dict[str, float] = {}
        self.goals_under_way: dict[str, int] = {}  # the robots' action servers' goals under way, whoever sent them
        self.robot_state: dict[str, str] = {r: "idle" for r in self.robots}
        self.robot_at: dict[str, str] = {r: "" for r in self.robots}
        # members (robots, stations) the network has lost -> (wall time, simulated time) since when,
        # and how often each went offline (a try that failed while this changed does not count)
        self.offline: dict[str, tuple[float, float]] = {}
        self.losses: dict[str, int] = {}
        self.gate = StartGate()  # every order starts through it (lab.core.gate)
        self._mode_lock = threading.Lock()  # the emergency stop's transitions vs resume
        self._estop = ""  # why the lab is emergency-stopped, "" when it is not
        self.stops = 0  # emergency stops seen: a step that failed while this changed was stopped
        self.active_steps: dict[str, str] = {}
        self.active_batches: list[str] = []
        self.counts = {"done": 0, "failed": 0, "running": 0}
        self._store: Any = None  # the campaign database (lab.core.store), opened when first needed
        self.runs: dict[str, Run] = {}  # batches in flight or finished and not yet answered, by key
        # no batch starts before the start-up recovery is over: it would find its own record and
        # robot goals taken for a predecessor's (seen: a batch driven twice), and a batch re-sent
        # by the planner must find the adopted one to attach to
        self.recovered = threading.Event()

    def start(self) -> None:
        """The start-up recovery, in a thread of its own (batches wait for it)."""
        threading.Thread(target=self._recover, daemon=True, name="recover").start()

    # ------------------------------------------------------------------ what the node tells it
    def world_state(self, objects: list[tuple[str, str, str]]) -> None:
        """The world's objects as (id, kind, location); samples inside a carrier ('rack_1/03') are not carriers."""
        with self.lock:
            new = [o for o, _, _ in objects if o not in self.carriers and "/" not in o]
            for obj, kind, loc in objects:
                if "/" not in obj:
                    self.carriers[obj], self.carrier_kind[obj] = loc, kind
        if new:
            self.carrier_pool.add(new)

    def station_state(self, station: str, usable: bool, interrupted_goal: str = "", interrupted: str = "") -> None:
        """A station's status: whether it can take work (idle or busy), and what a restart interrupted."""
        self.usable[station] = usable
        if interrupted_goal:
            self.interrupted[station] = (interrupted_goal, interrupted)
        else:
            self.interrupted.pop(station, None)

    def presence(self, member: str, present: bool) -> None:
        """DDS liveliness of a robot's or a station's presence writer changed (lab.ros.presence)."""
        with self.lock:
            if present and member in self.offline:
                since = self.offline.pop(member)[0]
                self.log.warning(f"{member} is back after {time.time() - since:.0f} s offline")
            elif not present and member not in self.offline:
                self.offline[member] = (time.time(), self.lab.now())
                self.losses[member] = self.losses.get(member, 0) + 1
                self.log.error(f"{member} is offline: the network has not heard from it within its presence "
                               "lease; no new work goes to it until it is back")

    def offline_since(self, member: str) -> str:
        """'' when present; else since when it is offline (UTC)."""
        with self.lock:
            since = self.offline.get(member)
        return "" if since is None else datetime.fromtimestamp(since[0], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def _await_robot(self, robot: str, batch_id: str, run: Any) -> None:
        """Before a robot's order: an offline robot is waited for, up to `offline_wait` wall s;
        RobotOffline (the batch's reason) when it is not back by then."""
        with self.lock:
            since = self.offline.get(robot)
        if since is None:
            return
        left = max(0.0, since[0] + self.params.offline_wait - time.time())
        self.log.warning(f"{batch_id}: {robot} is offline (since {self.offline_since(robot)}); waiting up to "
                         f"{left:.0f} s more for it to come back")
        back = wait_for(lambda: robot not in self.offline or run.is_cancel_requested or self._stopped(), left,
                        poll=0.1)
        if robot in self.offline:
            raise RobotOffline(robot, f"{robot} offline since {self.offline_since(robot)}"
                               + ("" if back else f", not back within {self.params.offline_wait:g} s"))

    def safety(self, stopped: bool, reason: str) -> None:
        """The emergency stop set (reason) or released. The robots and stations enforce it
        themselves; the scheduler starts nothing new, its orders end (`_stopped` is polled by
        every wait), and after a release the lab stays paused until resumed."""
        with self._mode_lock:
            if stopped:
                self.stops += 1
            self._estop = (reason or "emergency stop") if stopped else ""
            # a release leaves a stopped lab paused; an operator who resumed between the release
            # and this call has the last word
            if stopped or self.gate.mode == STOPPED:
                self.gate.set_mode(STOPPED if stopped else PAUSED)

    # ------------------------------------------------------------------ the operator
    def pause(self) -> tuple[bool, str]:
        if self._stopped():
            return False, f"the lab is emergency-stopped ({self._estop or 'stop set'}): release it first"
        # returns once the orders being sent have been answered: after it nothing new starts
        settled = self.gate.set_mode(PAUSED, wait=PAUSE_WAIT)
        return True, "paused: running steps finish, nothing new starts" if settled else \
            (f"paused, but {self.gate.starting} goal(s) sent before the pause were still unanswered "
             f"after {PAUSE_WAIT:g} s: they may still start")

    def resume(self) -> tuple[bool, str]:
        with self._mode_lock:
            if self._estop:
                return False, f"{self._estop}: resume does not release it; release first (lab estop --release)"
            previous = self.gate.mode
            self.gate.set_mode(RUNNING)
        return True, "resumed" if previous != RUNNING else "already running"

    @property
    def mode(self) -> str:
        """'running', 'paused', 'estopped' or 'idle' (running with no batch)."""
        mode = {RUNNING: "running", PAUSED: "paused", STOPPED: "estopped"}[self.gate.mode]
        return "idle" if mode == "running" and not self.active_batches else mode

    def holding(self, robot: str) -> list[str]:
        with self.lock:
            return [c for c, loc in self.carriers.items() if loc.startswith(f"{robot}/")]

    def _stopped(self) -> bool:
        return self.gate.mode == STOPPED or bool(self._estop)

    @contextmanager
    def _starting(self, run: Any) -> Iterator[Callable[[], None]]:
        """The start gate for one batch's step (lab.core.gate.StartGate.start): waits while the
        lab is paused or stopped; Interrupted('batch cancelled') when the batch is cancelled."""
        try:
            with self.gate.start(lambda: run.is_cancel_requested) as started:
                yield started
        except Interrupted:
            raise Interrupted("batch cancelled") from None

    def _gate(self, run: Any) -> None:
        """Block while paused or stopped; Interrupted when the batch is cancelled."""
        with self._starting(run):
            pass

    # ------------------------------------------------------------------ orders
    def _limit(self, expected: float) -> float:
        """An order's limit (simulated s) from what it should take."""
        return self.params.margin_factor * expected + self.params.margin_seconds

    def _drive_limit(self, robot: str, to: Pose2D) -> float:
        here = self.robot_pose.get(robot)
        length = here.distance_to(to) if here is not None else self._lab_diagonal
        return self._limit(length / self.params.nominal_speed) + self.params.traffic_wait

    def _station_limit(self, station: str, process: str, samples: int) -> float:
        spec = self.kinds.get(self.kind_of[station])
        return self._limit(expected_seconds(spec, process, samples) if spec else 0.0)

    def _call(self, order: Order, what: str, holder: str, run: Any, limit: float, sim_limit: float = 0.0,
              cancel: Callable[[], bool] = lambda: False, accepted: Callable[[], None] | None = None,
              feedback: Callable[[str, float], None] | None = None) -> Outcome:
        """Send an order through the start gate (it waits while the lab is paused; Interrupted when
        the batch is cancelled meanwhile) and wait for its outcome, up to `limit` s, derived from
        simulated durations and counted in wall s: an upper bound whenever the simulation runs at
        1x or faster (not in simulated time: the embedded simulation's one clock runs on for every
        node waiting on it, so a robot's hand-offs cost simulated time while stations work). A
        station's process runs on the simulated clock (and holds it while computing): its order
        also ends past `sim_limit` simulated s (> 0), which comes first when the simulation runs
        faster than real time (a hung instrument is found in minutes, not hours, at 400x), while
        the wall limit still ends it when the clock stops. Past either the order is cancelled and
        the outcome says what was waited for."""
        try:
            accepted_at: list[float] = []  # simulated time the order was accepted (the process starts)
            with self._starting(run) as started:
                def on_accepted() -> None:
                    started()
                    accepted_at.append(self.lab.now())
                    if accepted is not None:
                        accepted()

                def overdue() -> str:
                    if not accepted_at or sim_limit <= 0:
                        return ""
                    now = self.lab.now()
                    if accepted_at[0] <= 0.0:
                        # no clock yet when the order was accepted (a lab manager just started reads 0;
                        # counted from there, a goal was once cancelled as 5000 s late): from the first
                        accepted_at[0] = now
                        return ""
                    return f"{sim_limit:.0f} simulated s" if now - accepted_at[0] > sim_limit else ""

                with self.lock:
                    self.active_steps[holder] = what
                return self.lab.send(order, Call(limit, f"{what} (what it should take, with margin)",
                                                 lambda: cancel() or self._stopped(), on_accepted, overdue, feedback))
        finally:
            with self.lock:
                self.active_steps.pop(holder, None)

    def _record(self, batch_id: str, resource: str, start: float, end: float, what: str) -> None:
        """Busy interval for the campaign's utilisation plot (campaign id = batch id before '/')."""
        campaign_id, sep, _ = batch_id.partition("#")[0].rpartition("/")
        if not sep:
            return
        try:
            store = self._database()
            with self.lock:
                store.add_interval(campaign_id, resource, start, end, what)
        except Exception as exc:
            self.log.warning(f"could not record the interval of {resource}: {exc}")

    # ------------------------------------------------------------------ robots
    def _carrier_at(self, carrier: str, default: str) -> str:
        """Where the world state says `carrier` is, a simulated second after a failed or stopped
        transfer (the next world state tells where it ended)."""
        self.lab.sleep(1.0)
        with self.lock:
            return self.carriers.get(carrier, default)

    def _leg(self, robot: str, batch_id: str, station: str, source: str, target: str, carrier: str, run: Any) -> None:
        """Drive `robot` to `station` and transfer carrier source -> target; tried twice. A carrier
        that the world state shows at its target after a failed attempt has made the trip (the
        arm's retreat after the release cut short by a restarted simulation, say)."""
        reason = ""
        failed = tried = 0  # tries that failed with the robot present all along; tries made
        unheard: list[float] = []  # when the robot first refused for want of the safety node's contact
        while True:
            if tried:
                # where the carrier really is after a failed transfer (a missed release leaves it
                # in the gripper): the world state is the truth the next attempt starts from
                where = self._carrier_at(carrier, source)
                if where == target:
                    if failed == 2:
                        self.log.warning(f"{batch_id}: {reason}; but {carrier} is at {target}: going on")
                    return
                if failed == 2:
                    break
                if where.partition("/")[0] == robot:
                    source = where
            tried += 1
            self._gate(run)
            self._await_robot(robot, batch_id, run)
            losses = self.losses.get(robot, 0)
            began = self.lab.now()
            self.robot_state[robot] = "navigating"
            if self.robot_at[robot] != station:
                self._make_way(robot, station, batch_id, run)
                nav = self._call(Drive(robot, station), f"{robot}: drive to {station}", f"{batch_id}/{robot}", run,
                                 self._drive_limit(robot, self.stations[station].dock))
                if not nav.succeeded:
                    reason = f"{robot} could not reach {station}: {nav.message}"
                    self.robot_at[robot] = ""
                    failed += self._counts(robot, losses, reason, batch_id, run, unheard)
                    continue
                self.robot_at[robot] = station
            self.robot_state[robot] = "manipulating"
            arm = self._call(Transfer(robot, carrier, source, target), f"{robot}: {carrier} {source} -> {target}",
                             f"{batch_id}/{robot}", run, self._limit(self.params.arm_seconds))
            self.robot_state[robot] = "idle"
            self._record(batch_id, robot, began, self.lab.now(), f"{carrier} -> {target}")
            if arm.succeeded:
                with self.lock:
                    self.carriers[carrier] = target
                return
            reason = f"{robot} could not move {carrier} {source} -> {target}: {arm.message}"
            self.robot_at[robot] = ""  # re-dock (and re-refine) before trying again
            failed += self._counts(robot, losses, reason, batch_id, run, unheard)
            if self._stopped():
                self._gate(run)
        raise InvalidGoal(reason)

    def _counts(self, robot: str, losses: int, reason: str, batch_id: str, run: Any, unheard: list[float]) -> int:
        """1 when a failed try counts against the leg's two; 0 when the robot went offline during it
        (or is offline now: DDS may say so only after the goal failed): then the failure is the
        network's, and the leg is tried again once the robot is back.

        Also 0 when the robot refused because it cannot hear the safety node (lab.core.safety
        NO_CONTACT): after a network cut heals, the lab manager may hear the robot again before the
        robot hears the safety node (each pair of hosts rediscovers the other on its own; seen in
        CI: a batch's 16 experiments failed that way). The leg is tried again every
        `CONTACT_RETRY` wall s, for up to `offline_wait` from the first such refusal; past that the
        refusal counts like any other failure (nothing moved meanwhile: the robot refused)."""
        if NO_CONTACT in reason:
            if not unheard:
                unheard.append(time.time())
                self.log.warning(f"{batch_id}: {reason}; {robot} cannot hear the safety node yet (the network's "
                                 f"failure): not counted as a try; trying again every {CONTACT_RETRY:g} s for up "
                                 f"to {self.params.offline_wait:g} s")
            left = unheard[0] + self.params.offline_wait - time.time()
            if left > 0:
                wait_for(lambda: run.is_cancel_requested or self._stopped(), CONTACT_RETRY, poll=0.1)
                return 0
        if self.losses.get(robot, 0) == losses and robot not in self.offline:
            return 1
        self.log.warning(f"{batch_id}: {reason}; {robot} went offline meanwhile: not counted as a try")
        return 0

    def _standing_at(self, station: str, tolerance: float = 0.3) -> list[str]:
        """The robots whose pose puts them at the station's dock (waits up to 5 wall s for every
        robot's first pose)."""
        dock = self.stations[station].dock
        wait_for(lambda: all(r in self.robot_pose for r in self.robots), 5.0)
        return [r for r, pose in list(self.robot_pose.items()) if pose.distance_to(dock) <= tolerance]

    def _make_way(self, robot: str, station: str, batch_id: str, run: Any) -> None:
        """Before `robot` drives to `station`: an idle robot standing at its dock drives to its
        parking spot. A busy one is left to finish (the navigator waits for it to leave)."""
        for other in self._standing_at(station):
            if other == robot or other not in self.robots:
                continue
            if other in self.offline:
                self.log.warning(f"{other} stands at {station}, where {robot} must go, and is offline: it cannot "
                                 f"be moved; {robot} waits for the way (the navigator's traffic wait)")
                continue
            index = self.robots.index(other)
            if index >= len(self.parking):
                self.log.warning(f"{other} stands at {station} and has no parking spot "
                                 f"(config/stations.yaml parking); {robot} waits for it to leave")
                continue
            try:
                self.robot_pool.acquire([other], f"{batch_id}/make-way", timeout=0.0)
            except Unavailable:
                continue  # busy: it will leave when its own task takes it elsewhere
            try:
                spot = self.parking[index]
                self.log.info(f"{other} stands idle at {station}, where {robot} must go: "
                              f"parking it at ({spot.x:g}, {spot.y:g})")
                self.robot_state[other] = "parking"
                nav = self._call(Park(other, spot), f"{other}: out of {robot}'s way to its parking spot",
                                 f"{batch_id}/{other}", run, self._drive_limit(other, spot))
                self.robot_at[other] = ""
                if not nav.succeeded:
                    self.log.warning(f"{other} could not clear {station} for {robot}: {nav.message}")
            finally:
                self.robot_state[other] = "idle"
                self.robot_pool.release(other, f"{batch_id}/make-way")

    def _charge_if_needed(self, robot: str, batch_id: str, run: Any) -> None:
        level = self.battery.get(robot, 1.0)
        if level >= self.params.battery_low:
            return
        chargers = [s for s, k in self.kind_of.items() if k == "charger"]
        if not chargers:
            return
        self.log.info(f"{robot}: battery {level:.0%}, going to charge")
        with self.station_pool.reserved(chargers, f"{batch_id}/{robot}",
                                        cancelled=lambda: run.is_cancel_requested) as charger:
            self._make_way(robot, charger, batch_id, run)
            nav = self._call(Drive(robot, charger, skip_refinement=True), f"{robot}: drive to {charger}",
                             f"{batch_id}/{robot}", run, self._drive_limit(robot, self.stations[charger].dock))
            self.robot_at[robot] = charger if nav.succeeded else ""
            if not nav.succeeded:
                self.log.warning(f"{robot}: cannot reach the charger: {nav.message}")
                return
            self.robot_state[robot] = "charging"
            began = self.lab.now()
            while self.battery.get(robot, 1.0) < self.params.battery_resume and not run.is_cancel_requested:
                self.lab.sleep(60.0)
            self.robot_state[robot] = "idle"
            self._record(batch_id, robot, began, self.lab.now(), "charging")

    def _transport(self, batch_id: str, carrier: str, source: str, target: str, run: Any,
                   release_after_pick: str | None) -> None:
        while True:
            src_station, dst_station = source.partition("/")[0], target.partition("/")[0]
            on_robot = src_station in self.robots  # left on a robot by a failed transfer: that robot takes it
            robot = self._take_robot(batch_id, carrier, src_station, on_robot, run)
            try:
                self._charge_if_needed(robot, batch_id, run)
                deck = f"{robot}/{DECK}"
                if on_robot:
                    deck = source
                else:
                    self._leg(robot, batch_id, src_station, source, deck, carrier, run)
                if release_after_pick:
                    self.station_pool.release(release_after_pick, batch_id)
                self._leg(robot, batch_id, dst_station, deck, target, carrier, run)
                return
            except RobotOffline as exc:
                where = self._carrier_at(carrier, source)
                if where == target:  # the move was made; only its answer was lost with the robot
                    return
                if where.partition("/")[0] == exc.robot:
                    raise RobotOffline(exc.robot, f"{carrier} is on {exc.robot}, {exc}") from None
                self.log.warning(f"{batch_id}: {exc}; {carrier} (at {where}) goes with another robot")
                source = where
            finally:
                self.robot_pool.release(robot, batch_id)

    def _take_robot(self, batch_id: str, carrier: str, src_station: str, on_robot: bool, run: Any) -> str:
        """Reserve the robot for a transport from `src_station` (the robot itself when the carrier is
        on it): one present and unladen, preferably one already there."""
        at_source = set() if on_robot else \
            {r for r in self.robots if self.robot_at[r] == src_station} | set(self._standing_at(src_station))
        return self.robot_pool.acquire([src_station] if on_robot else self.robots, batch_id,
                                       cancelled=lambda: run.is_cancel_requested,
                                       usable=lambda r: self._unladen(r, carrier)
                                       and (on_robot or r not in self.offline),
                                       prefer=lambda r: 0.0 if r in at_source else 1.0,
                                       waiting=self._waiting(batch_id))

    def _unladen(self, robot: str, carrier: str) -> bool:
        """A robot may carry `carrier` only when nothing else is on it (a carrier a stop left on
        its deck goes home first: its batch takes this robot for that)."""
        with self.lock:
            return not any(loc.partition("/")[0] == robot and c != carrier for c, loc in self.carriers.items())

    def _waiting(self, batch_id: str) -> Callable[[str], None]:
        """What a reservation that waits long says, every minute (wall), in the log."""
        return lambda text: self.log.warning(f"{batch_id}: {text}")

    # ------------------------------------------------------------------ stations
    def _usable(self, station: str) -> bool:
        return self.usable.get(station, True) and station not in self.offline

    def _free_for(self, carrier: str) -> Callable[[str], bool]:
        """A station may be reserved for `carrier` only when it is usable and the slot the carrier
        goes to holds nothing else (as the world state says: a carrier a stop left there, say)."""
        def usable(station: str) -> bool:
            slot = self._slot(station)
            with self.lock:
                occupant = next((c for c, loc in self.carriers.items() if loc == slot and c != carrier), None)
            if occupant is not None:
                self.log.warning(f"{station} holds {occupant}: not reserved for {carrier}", throttle_duration_sec=30.0)
            return occupant is None and self._usable(station)
        return usable

    def _slot(self, station: str) -> str:
        slots = self.stations[station].slots
        if not slots:
            raise InvalidGoal(f"station {station} has no slot to put a carrier in")
        return f"{station}/{next(iter(slots))}"

    def _run_process(self, run: Run, station: str, process: str, samples: list[Sample],
                     progress: Callable[[str], None]) -> tuple[bool, str]:
        began = self.lab.now()
        # the order's id is recorded before it is sent: a scheduler restarted meanwhile asks the station for it
        goal_id = uuid.uuid4().bytes
        run.station_goal = (station, goal_id.hex())
        run.station_goal_accepted = False
        self._save(run)

        def accepted() -> None:  # the station has it: one that forgets it was restarted
            run.station_goal_accepted = True
            self._save(run)

        limit = self._station_limit(station, process, len(samples))
        order = Process(station, run.carrier, process, tuple(s.order() for s in samples), goal_id)
        outcome = self._call(order, f"{station}: {process or 'process'} on {run.carrier}", f"{run.key}/{station}",
                             run, limit, sim_limit=limit, cancel=lambda: run.is_cancel_requested, accepted=accepted,
                             feedback=lambda step, fraction: progress(f"{station}: {step} ({fraction:.0%})"))
        self._record(run.key, station, began, self.lab.now(), f"{process or 'process'} {run.carrier}")
        if outcome.lost:
            interrupted = self._interrupted(station, goal_id.hex(), RESTART_REPORT_WAIT)
            if interrupted:
                return self._spoiled(station, samples, interrupted)
        return self._merge(station, samples, outcome)

    def _interrupted(self, station: str, goal_id: str, wait: float) -> str:
        """What a restarted station reports of goal `goal_id` (hex), which its restart interrupted;
        "" when it says nothing of it within `wait` wall s."""
        def report() -> str:
            goal, text = self.interrupted.get(station, ("", ""))
            return text if goal == goal_id else ""
        wait_for(lambda: bool(report()), wait, poll=0.1)
        return report()

    def _spoiled(self, station: str, samples: list[Sample], interrupted: str) -> tuple[bool, str]:
        """A process a station's restart interrupted: its samples, part-processed, fail with the
        station's report (run again they would be dispensed or illuminated twice)."""
        self.log.error(f"{station}: {interrupted}")
        for sample in samples:
            if not sample.failure:
                sample.failure = f"{station}: {interrupted}"
        return False, interrupted

    @staticmethod
    def _merge(station: str, samples: list[Sample], outcome: Outcome) -> tuple[bool, str]:
        """What a station's result says of each sample: as dispensed, measured, or why not."""
        if not outcome.succeeded:
            return False, outcome.message or "failed"
        by_id = {r.sample_id: r for r in outcome.reports}
        for sample in samples:
            report = by_id.get(sample.sample_id)
            if report is None:
                continue
            if not report.valid:
                sample.failure = f"{station}: {report.failure_reason or 'invalid measurement'}"
                continue
            sample.dispensed.update(report.dispensed)
            if report.measurement is not None:
                sample.measurement = report.measurement
        return True, ""

    def _step(self, run: Run, kind: str, process: str, progress: Callable[[str], None]) -> None:
        """Run one workflow step (with retries/rerouting); run.location and run.held follow the carrier."""
        candidates = [s for s, k in self.kind_of.items() if k == kind]
        retries = self.params.max_retries
        avoid: set[str] = set()
        station: str | None = None
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
            elif how == ACQUIRE:
                new = self.station_pool.acquire(list(choices), batch_id, usable=self._free_for(carrier),
                                                cancelled=lambda: run.is_cancel_requested,
                                                waiting=self._waiting(batch_id))
                if station is not None:
                    self.log.warning(f"{batch_id}: rerouting {kind} from {station} to {new}")
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
                    # already there (a scheduler that died just after the transfer left its record a
                    # step behind): the station it came from is free
                    self.station_pool.release(run.held, batch_id)
                run.location, run.held = target, station
                self._save(run)
            elif station is not None and not self._usable(station):  # AGAIN: the only station left, maybe in fault
                self._await_recovery(run, station)
            assert station is not None
            ok, why = self._run_process(run, station, process, alive, progress)
            run.station_goal = None
            self._save(run)
            if ok:
                return
            self.log.warning(f"{batch_id}: {station} failed (attempt {attempt + 1}): {why}")
            if self._stopped() or run.is_cancel_requested:
                why = f"stopped: {self._estop or 'emergency stop'}" if self._stopped() else "batch cancelled"
                for s in alive:
                    s.failure = f"{station}: {why}"
                break
            avoid.add(station)
            if attempt == retries:
                for s in alive:
                    s.failure = f"{station}: {why} (after {retries + 1} attempts)"

    def _await_recovery(self, run: Run, station: str) -> None:
        """A step tried again on a station in fault (the only one of its kind, say) waits for it to
        recover (its `fault_recovery`, simulated s) up to `fault_wait` simulated s (and as many wall
        s), instead of failing its samples against the fault at once."""
        began = self.lab.now()
        self.log.warning(f"{run.key}: {station} is in fault; waiting for it to recover before trying again")
        wait_for(lambda: (self._usable(station) or run.is_cancel_requested or self._stopped()
                          or self.lab.now() - began > self.params.fault_wait), self.params.fault_wait, poll=0.1)

    # ------------------------------------------------------------------ batches
    def run_batch(self, batch_id: str, workflow_name: str, requested: list[Sample], watcher: Watcher) -> Run:
        """Run a batch (or, when it is in flight already, wait for it) and return it with its
        result; InvalidGoal (nothing recorded) when it cannot run. The caller answers its goal
        and then `forget`s the run."""
        if not self.recovered.wait(RECOVERY_WAIT):
            self.log.error(f"start-up recovery not over after {RECOVERY_WAIT:g} s; "
                           f"{batch_id or 'the batch'} starts regardless")
        run = self._claim(batch_id, [s.sample_id for s in requested])
        if run is not None:
            # a batch in flight already (recorded by a scheduler that died, or a re-sent goal):
            # this goal waits for it and answers with its result instead of running it twice
            self.log.warning(f"{batch_id or run.key}: the batch is in flight as {run.key} "
                             f"(step {run.step + 1}); this goal gets its result")
            with self.lock:
                run.watchers.append(watcher)
            run.done.wait()
            return run
        run = self._new_run(batch_id, workflow_name, requested)
        run.watchers.append(watcher)
        self._save(run)
        self._drive(run)
        return run

    def _new_run(self, batch_id: str, workflow_name: str, samples: list[Sample]) -> Run:
        """A new batch; InvalidGoal (nothing recorded) when it cannot run."""
        wf = workflow(self.workflows, workflow_name)
        if not samples:
            raise InvalidGoal("a batch needs at least one formulation")
        if len(samples) > wf.capacity:
            raise InvalidGoal(f"{len(samples)} formulations do not fit one {wf.carrier} (capacity {wf.capacity})")
        batch_id = batch_id or f"batch-{uuid.uuid4().hex[:8]}"
        for i, sample in enumerate(samples):
            sample.sample_id = sample.sample_id or f"{batch_id}/{i:02d}"
        # reservations are held per run: a key of its own, whatever the caller's batch id
        run = Run(f"{batch_id}#{uuid.uuid4().hex[:6]}", batch_id, wf.name, samples)
        with self.lock:
            self.runs[run.key] = run
        return run

    def _claim(self, batch_id: str, sample_ids: list[str]) -> Run | None:
        """The batch in flight (or recorded and not yet answered) that a goal asks for: the same
        batch id, or the same samples of the same campaign (a resumed campaign re-sends its
        unfinished experiments under a new batch id)."""
        with self.lock:
            for run in self.runs.values():
                if same_batch(run.batch_id, [s.sample_id for s in run.samples], batch_id, sample_ids):
                    return run
        return None

    def _drive(self, run: Run) -> None:
        """Run the batch from the step its record is at, recording its progress; sets run.result."""
        wf = self.workflows[run.workflow]
        samples = run.samples
        batch_id = run.key
        began = self.lab.now()
        with self.lock:
            self.active_batches.append(batch_id)
            self.counts["running"] += len(samples)
        last = {"text": ""}

        def progress(text: str = "") -> None:
            last["text"] = text or last["text"]
            done = sum(1 for s in samples if s.measurement is not None or s.failure)
            run.publish_feedback(Progress(batch_id, last["text"], done, len(samples),
                                          [v for k, v in list(self.active_steps.items()) if k.startswith(batch_id)],
                                          self.lab.now() - began))

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
            with self.lock:
                self.active_batches.remove(batch_id)
                self.counts["running"] -= len(samples)
        for s in samples:
            if not s.failure and s.measurement is None:
                s.failure = "no station of the workflow measured it"
        failed = sum(1 for s in samples if s.failure)
        with self.lock:
            self.counts["failed"] += failed
            self.counts["done"] += len(samples) - failed
        run.result = Result(failed < len(samples),
                            message or f"{len(samples) - failed} of {len(samples)} samples measured",
                            self.lab.now() - began)
        run.step = len(wf.steps)
        self._save(run)  # kept until a goal has been answered with it
        run.done.set()
        self.log.info(f"{batch_id}: {run.result.message} in {run.result.duration / 60:.0f} simulated min")

    def _take_carrier(self, wf: Workflow, batch_id: str, run: Run) -> tuple[str, str]:
        homes = {s for s, k in self.kind_of.items() if k == wf.home}
        if not self.carriers and not wait_for(lambda: bool(self.carriers), WORLD_WAIT):
            raise InvalidGoal(f"no world state within {WORLD_WAIT:g} s: where the carriers are is unknown")
        with self.lock:
            candidates = [c for c, loc in self.carriers.items()
                          if self.carrier_kind.get(c) == wf.carrier and loc.partition("/")[0] in homes]
        if not candidates:
            raise InvalidGoal(f"no {wf.carrier} at {wf.home} for workflow {wf.name}")
        carrier = self.carrier_pool.acquire(candidates, batch_id, cancelled=lambda: run.is_cancel_requested,
                                            usable=lambda c: self.carriers.get(c, "").partition("/")[0] in homes,
                                            waiting=self._waiting(batch_id))
        return carrier, self.carriers[carrier]

    def _go_home(self, batch_id: str, carrier: str, home: str, held: str | None, run: Run, message: str) -> str:
        try:
            location = self.carriers.get(carrier, home)
            while location != home:
                if self._stopped():
                    # the rule after a stop: the carrier stays where the stop left it until the operator
                    # has released the stop and resumed the lab; then it goes home and the batch ends
                    self.log.warning(f"{batch_id}: {carrier} stays at {location} until the emergency "
                                     "stop is released and the lab resumed; then it goes home")
                    self._gate(run)
                stops = self.stops
                try:
                    self._transport(batch_id, carrier, self.carriers.get(carrier, location), home,
                                    _NeverCancelled(), held)
                except InvalidGoal:
                    if self.stops == stops and not self._stopped():
                        raise
                    # stopped on the way home (the stop may be released already): once the lab runs
                    # again it tries again, from where the carrier is now (the world state after the stop)
                    self.lab.sleep(1.0)
                held = None if self.carriers.get(carrier, location).partition("/")[0] != held else held
                location = self.carriers.get(carrier, home)
            if held:
                self.station_pool.release(held, batch_id)
        except (Interrupted, Unavailable, InvalidGoal) as exc:
            self.log.error(f"{batch_id}: {carrier} could not go home from {self.carriers.get(carrier)}: {exc}")
            message = (message + "; " if message else "") + f"{carrier} left at {self.carriers.get(carrier)}: {exc}"
            if held:
                self.station_pool.release(held, batch_id)
        finally:
            self.carrier_pool.release(carrier, batch_id)
        return message

    # ------------------------------------------------------------------ the record of batches in flight
    def _database(self) -> Any:
        if self._store is None:
            from lab.core.store import CampaignStore

            self._store = CampaignStore(Path(self.params.database))
        return self._store

    def _save(self, run: Run) -> None:
        """Record the batch's progress (which step, where its carrier is, what each sample has
        received, the station order under way, its result) in the campaign database."""
        try:
            self._database().save_lab_batch(run.key, run.batch_id, run.state(self.lab.encode))
        except Exception as exc:  # a full disk must not stop the lab; it is said loudly
            self.log.error(f"{run.key}: could not record the batch's progress: {exc}", throttle_duration_sec=60.0)

    def forget(self, run: Run) -> None:
        """A batch answered: its record is no longer needed."""
        with self.lock:
            self.runs.pop(run.key, None)
        try:
            self._database().drop_lab_batch(run.key)
        except Exception as exc:
            self.log.error(f"{run.key}: could not drop the batch's record: {exc}")

    # ------------------------------------------------------------------ start-up recovery
    def _recover(self) -> None:
        """At start-up, once the world state says where the carriers are: the batches the last
        scheduler left in flight are taken on again, then any other carrier away from home goes home."""
        try:
            self._recover_leftovers()
        finally:
            self.recovered.set()

    def _recover_leftovers(self) -> None:
        if not wait_for(lambda: bool(self.carriers), WORLD_WAIT):
            self.log.warning(f"no world state within {WORLD_WAIT:g} s: batches a previous lab manager "
                             "left in flight and carriers away from home are not looked for")
            return
        # a robot still carrying out an order of the scheduler that died must finish it first: a new
        # order would meet the arm half-way through a transfer
        if not wait_for(lambda: not any(self.goals_under_way.values()), ROBOTS_SETTLE_WAIT, poll=0.2):
            self.log.error(f"robot goals still under way after {ROBOTS_SETTLE_WAIT:g} s: "
                           f"{self._under_way()}; taking the lab on regardless")
        self._adopt_recorded()
        self.recovered.set()  # batches may start: strays share the robots with them through the pools
        self._bring_strays_home()

    def _under_way(self) -> str:
        return ", ".join(f"{action} ({n})" for action, n in self.goals_under_way.items() if n)

    def _homes(self, carrier: str) -> set[str]:
        """The station kinds where `carrier` waits between batches (its workflows' home)."""
        kind = self.carrier_kind.get(carrier, "")
        return {wf.home for wf in self.workflows.values() if wf.carrier == kind}

    def _at_home(self, carrier: str, location: str) -> bool:
        return self.kind_of.get(location.partition("/")[0], "") in self._homes(carrier)

    def _free_home_slot(self, carrier: str) -> str | None:
        with self.lock:
            taken = set(self.carriers.values())
        homes = self._homes(carrier)
        return next((f"{s}/{slot}" for s, station in self.stations.items() if self.kind_of[s] in homes
                     for slot in station.slots if f"{s}/{slot}" not in taken), None)

    def _bring_strays_home(self) -> None:
        """Every carrier the world state shows away from home with no batch to own it (on a
        robot's deck, in a station) is brought home, by the rule a stopped batch's carrier follows."""
        wait_for(lambda: all(r in self.robot_pose for r in self.robots), 10.0)
        with self.lock:
            strays = {c: loc for c, loc in self.carriers.items() if not self._at_home(c, loc)}
        for carrier, location in strays.items():
            try:
                self.carrier_pool.acquire([carrier], "strays", timeout=0.0)
            except Unavailable:
                continue  # a batch has it
            try:
                target = self._free_home_slot(carrier)
                if target is None:
                    self.log.error(f"{carrier} is at {location}: no free place at its home to bring it to")
                    continue
                self.log.warning(f"{carrier} is at {location}, away from home, with no batch: bringing it to {target}")
                self._transport("strays", carrier, location, target, _NeverCancelled(), None)
            except (Interrupted, Unavailable, InvalidGoal) as exc:
                self.log.error(f"{carrier} could not be brought home from {location}: {exc}")
            finally:
                self.carrier_pool.release(carrier, "strays")

    def _adopt_recorded(self) -> None:
        """Every batch the previous scheduler recorded and did not answer is taken on again:
        finished ones wait for their goal to be sent again (the planner re-sends a batch whose lab
        manager went away); the others go on from the step their record is at, the carrier where
        the world state says it is, and a station order that was under way asked for its result."""
        try:
            records = self._database().lab_batches()
            ages = self._database().lab_batch_ages()
        except Exception as exc:
            self.log.error(f"the batches in flight could not be read from {self.params.database}: {exc}")
            return
        for key, state in records.items():
            try:
                run = Run.from_state(key, state, self.lab.decode)
                if run.workflow not in self.workflows:
                    raise InvalidGoal(f"workflow {run.workflow} is not configured")
            except (InvalidGoal, KeyError, TypeError, ValueError) as exc:
                self.log.error(f"recorded batch {key} cannot be taken on ({exc}): dropped")
                self._database().drop_lab_batch(key)
                continue
            with self.lock:
                self.runs[key] = run
            if run.result is not None:
                if ages.get(key, 0.0) > self.params.keep_results:
                    self.log.warning(f"{key}: finished {ages[key] / 3600:.0f} h ago and nobody asked for its "
                                     f"result (keep_results {self.params.keep_results:g} s): dropped")
                    self.forget(run)
                    continue
                run.done.set()
                self.log.warning(f"{key}: finished before the restart; answered when its goal is re-sent")
                continue
            try:
                if run.carrier:
                    self.carrier_pool.acquire([run.carrier], key, timeout=0.0)
                if run.held:
                    self.station_pool.acquire([run.held], key, timeout=0.0)
            except (KeyError, Unavailable) as exc:
                self.log.error(f"{key}: its carrier or station cannot be reserved again: {exc}")
            self.log.warning(f"{key}: in flight when the lab manager stopped (step {run.step + 1}, "
                             f"{run.carrier or 'no carrier yet'}): going on with it")
            threading.Thread(target=self._resume, args=(run,), daemon=True, name=f"adopt-{key}").start()

    def _resume(self, run: Run) -> None:
        if run.station_goal is not None:
            station, goal_id = run.station_goal
            alive = [s for s in run.samples if not s.failure]
            self.log.warning(f"{run.key}: asking {station} for the result of goal {goal_id} (sent before the restart)")
            process = self.workflows[run.workflow].steps[run.step].process
            order = Process(station, run.carrier, process, tuple(s.order() for s in alive), bytes.fromhex(goal_id))
            outcome = self.lab.follow(order, self._station_limit(station, process, len(alive)),
                                      lambda: run.is_cancel_requested, f"{station}'s result for {run.carrier}")
            # a station restarted since says what it interrupted (its status is latched: here at once,
            # or within the restart report's wait when it restarts while we ask)
            interrupted = (self._interrupted(station, goal_id, RESTART_REPORT_WAIT if outcome.lost else REPORT_WAIT)
                           if (outcome.unknown and run.station_goal_accepted) or outcome.lost else "")
            what = recorded_goal_outcome(run.station_goal_accepted, outcome.unknown, interrupted)
            if what == RERUN:
                # recorded but never accepted: the scheduler died before the station had it; the
                # step runs again from the start
                self.log.warning(f"{run.key}: {station} never had goal {goal_id}: the step runs again")
            else:
                self._settle_recorded(run, station, goal_id, what, alive, outcome, interrupted)
            run.station_goal = None
            self._save(run)
        with self.lock:
            run.location = self.carriers.get(run.carrier, run.location) if run.carrier else run.location
        self._drive(run)

    def _settle_recorded(self, run: Run, station: str, goal_id: str, what: str, alive: list[Sample],
                         outcome: Outcome, interrupted: str) -> None:
        """The recorded station order's outcome into the batch: merged (the step done), or its
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
            self.log.info(f"{run.key}: {station}'s result, asked for after the restart, merged")
            run.step += 1
            return
        for s in alive:
            s.failure = (f"{station}: the lab manager restarted during the process and its result could not be "
                         f"had: {why}")
