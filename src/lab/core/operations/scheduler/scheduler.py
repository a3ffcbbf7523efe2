"""The scheduler: what the lab manager node talks to. It wires the parts (mode, world view,
dispatch, fleet, steps, journal, recovery), runs each batch's workflow, and gives the node
its status as a snapshot value."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from lab.core.config.params import LabManagerParams
from lab.core.errors import InvalidGoal
from lab.core.operations.batches import same_batch
from lab.core.operations.gate import Interrupted
from lab.core.operations.resources import ResourcePool, Unavailable
from lab.core.operations.scheduler.batch import NeverCancelled, Run, Sample, Watcher
from lab.core.operations.scheduler.dispatch import Dispatcher
from lab.core.operations.scheduler.fleet import Fleet
from lab.core.operations.scheduler.journal import Journal
from lab.core.operations.scheduler.mode import Mode
from lab.core.operations.scheduler.orders import Lab, Log, Progress, Result
from lab.core.operations.scheduler.recovery import RECOVERY_WAIT, WORLD_WAIT, Recovery
from lab.core.operations.scheduler.steps import Steps
from lab.core.operations.scheduler.view import WorldView
from lab.core.operations.workflow import Workflow, workflow
from lab.core.robot.world import Pose2D, StationsConfig
from lab.core.stations.station import KindSpec
from lab.core.waits import wait_for


@dataclass(frozen=True)
class RobotSnapshot:
    name: str
    state: str             # idle, navigating, manipulating, parking, charging
    docked_at: str
    offline_since: str     # '' when present
    pose: Pose2D
    battery: float
    holding: list[str]


@dataclass(frozen=True)
class Snapshot:
    """The lab as the scheduler sees it, for /lab_status."""

    mode: str  # running, paused, estopped, idle
    active_batches: list[str]
    active_steps: list[str]
    running: int
    done: int
    failed: int
    robots: list[RobotSnapshot]


class Scheduler:
    def __init__(self, params: LabManagerParams, config: StationsConfig, kinds: dict[str, KindSpec],
                 workflows: dict[str, Workflow], lab: Lab, log: Log) -> None:
        self.params, self.lab, self.log, self.workflows = params, lab, log, workflows
        self.stations, self.kind_of, self.parking = config.stations, config.kinds(), config.parking
        docks = [st.dock for st in self.stations.values()]
        diagonal = max((a.distance_to(b) for a in docks for b in docks), default=10.0)
        self.robots = [r for r in params.robots if r]
        self.control = Mode()
        self.view = WorldView(self.robots, list(params.carriers), lab.now, log)
        self.station_pool = ResourcePool(list(self.stations))
        self.journal = Journal(params.database, log)
        self.dispatch = Dispatcher(params, lab, self.control, self.view, kinds, self.kind_of, diagonal)
        self.fleet = Fleet(params, self.stations, self.kind_of, self.parking, lab, log, self.view, self.control,
                           self.dispatch, self.journal, self.station_pool)
        self.steps = Steps(params, self.stations, self.kind_of, lab, log, self.view, self.control, self.dispatch,
                           self.journal, self.fleet, self.station_pool)
        self.runs: dict[str, Run] = {}  # batches in flight or finished and not yet answered, by key
        self._lock = threading.Lock()
        self._active: list[str] = []  # keys of the batches whose workflow runs
        self._counts = {"done": 0, "failed": 0, "running": 0}
        self.recovery = Recovery(params, self.stations, self.kind_of, workflows, lab, log, self.view, self.dispatch,
                                 self.journal, self.fleet, self.steps, self.station_pool,
                                 self._adopt, self.forget, self._run_workflow)
        self.recovered = self.recovery.recovered
        self.robot_pool, self.carrier_pool = self.fleet.robot_pool, self.view.carrier_pool

    def start(self) -> None:
        """The start-up recovery, in a thread of its own (batches wait for it)."""
        threading.Thread(target=self.recovery.run, daemon=True, name="recover").start()

    # ------------------------------------------------------------------ what the node tells it
    def world_state(self, objects: list[tuple[str, str, str]]) -> None:
        self.view.world_state(objects)

    def station_state(self, station: str, usable: bool, interrupted_goal: str = "", interrupted: str = "",
                      untouched: bool = False) -> None:
        self.view.station_state(station, usable, interrupted_goal, interrupted, untouched)

    def presence(self, member: str, present: bool) -> None:
        self.view.presence(member, present)

    def robot_pose(self, robot: str, pose: Pose2D) -> None:
        self.view.robot_pose(robot, pose)

    def battery(self, robot: str, level: float) -> None:
        self.view.battery(robot, level)

    def goals_under_way(self, action: str, count: int, others: int = 0) -> None:
        self.view.goals_under_way(action, count, others)

    def safety(self, stopped: bool, reason: str) -> None:
        """The emergency stop set (reason) or released. The robots and stations enforce it
        themselves; the scheduler starts nothing new, its orders end, and after a release the lab
        stays paused until resumed."""
        self.control.safety(stopped, reason)

    # ------------------------------------------------------------------ the operator
    def pause(self) -> tuple[bool, str]:
        return self.control.pause()

    def resume(self) -> tuple[bool, str]:
        return self.control.resume()

    @property
    def mode(self) -> str:
        """'running', 'paused', 'estopped' or 'idle' (running with no batch)."""
        with self._lock:
            busy = bool(self._active)
        return self.control.name(busy)

    def offline_since(self, member: str) -> str:
        return self.view.offline_since(member)

    def snapshot(self) -> Snapshot:
        with self._lock:
            active, counts = list(self._active), dict(self._counts)
        robots = [RobotSnapshot(r, self.fleet.state[r], self.fleet.docked[r], self.view.offline_since(r),
                                self.view.pose(r) or Pose2D(0.0, 0.0, 0.0), self.view.battery_level(r),
                                self.view.holding(r)) for r in self.robots]
        return Snapshot(self.control.name(bool(active)), active, self.dispatch.active_steps(), counts["running"],
                        counts["done"], counts["failed"], robots)

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
            with self._lock:
                run.watchers.append(watcher)
            run.done.wait()
            return run
        run = self._new_run(batch_id, workflow_name, requested)
        run.watchers.append(watcher)
        self.journal.save(run)
        self._run_workflow(run)
        return run

    def forget(self, run: Run) -> None:
        """A batch answered: its record is no longer needed."""
        with self._lock:
            self.runs.pop(run.key, None)
        self.journal.drop(run.key)

    def _adopt(self, run: Run) -> None:
        with self._lock:
            self.runs[run.key] = run

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
        self._adopt(run)
        return run

    def _claim(self, batch_id: str, sample_ids: list[str]) -> Run | None:
        """The batch in flight (or recorded and not yet answered) that a goal asks for: the same
        batch id, or the same samples of the same campaign (a resumed campaign re-sends its
        unfinished experiments under a new batch id)."""
        with self._lock:
            for run in self.runs.values():
                if same_batch(run.batch_id, [s.sample_id for s in run.samples], batch_id, sample_ids):
                    return run
        return None

    def _run_workflow(self, run: Run) -> None:
        """Run the batch from the step its record is at, recording its progress; sets run.result."""
        wf = self.workflows[run.workflow]
        samples = run.samples
        began = self.lab.now()
        with self._lock:
            self._active.append(run.key)
            self._counts["running"] += len(samples)
        last = [""]

        def progress(text: str = "") -> None:
            last[0] = text or last[0]
            done = sum(1 for s in samples if s.finished)
            run.publish_feedback(Progress(run.key, last[0], done, len(samples), self.dispatch.active_steps(run.key),
                                          self.lab.now() - began))

        message = ""
        try:
            if not run.carrier:
                run.carrier, run.home = self._take_carrier(wf, run)
                run.location = run.home
                self.journal.save(run)
            for index in range(run.step, len(wf.steps)):
                if not run.alive():
                    break
                step = wf.steps[index]
                run.step = index
                progress(f"{step.kind}")
                self.steps.step(run, step.kind, step.process, progress)
                run.step = index + 1
                self.journal.save(run)
        except (Interrupted, Unavailable, InvalidGoal) as exc:
            message = str(exc)
            for s in samples:
                if not s.finished:
                    s.failure = message
        finally:
            if run.carrier:
                message = self._go_home(run, message)
            with self._lock:
                self._active.remove(run.key)
                self._counts["running"] -= len(samples)
        for s in samples:
            if not s.finished:
                s.failure = "no station of the workflow measured it"
        failed = sum(1 for s in samples if s.failure)
        with self._lock:
            self._counts["failed"] += failed
            self._counts["done"] += len(samples) - failed
        run.result = Result(failed < len(samples),
                            message or f"{len(samples) - failed} of {len(samples)} samples measured",
                            self.lab.now() - began)
        run.step = len(wf.steps)
        self.journal.save(run)  # kept until a goal has been answered with it
        run.done.set()
        self.log.info(f"{run.key}: {run.result.message} in {run.result.duration / 60:.0f} simulated min")

    def _take_carrier(self, wf: Workflow, run: Run) -> tuple[str, str]:
        homes = {s for s, k in self.kind_of.items() if k == wf.home}
        view = self.view
        if not wait_for(lambda: bool(view.carriers), WORLD_WAIT):
            raise InvalidGoal(f"no world state within {WORLD_WAIT:g} s: where the carriers are is unknown")
        with view.lock:
            candidates = [c for c, loc in view.carriers.items()
                          if view.carrier_kind.get(c) == wf.carrier and loc.partition("/")[0] in homes]
        if not candidates:
            raise InvalidGoal(f"no {wf.carrier} at {wf.home} for workflow {wf.name}")
        carrier = view.carrier_pool.acquire(candidates, run.key, cancelled=lambda: run.is_cancel_requested,
                                            usable=lambda c: view.where(c, "").partition("/")[0] in homes,
                                            waiting=self.fleet.waiting(run.key))
        return carrier, view.where(carrier, "")

    def _go_home(self, run: Run, message: str) -> str:
        """The batch's carrier back home (also after a failure or a cancel); `message` with what
        went wrong on the way appended."""
        carrier, home, held, key = run.carrier, run.home, run.held or None, run.key
        failed = False
        try:
            location = self.view.where(carrier, home)
            while location != home:
                if self.control.stopped():
                    # the rule after a stop: the carrier stays where the stop left it until the operator
                    # has released the stop and resumed the lab; then it goes home and the batch ends
                    self.log.warning(f"{key}: {carrier} stays at {location} until the emergency "
                                     "stop is released and the lab resumed; then it goes home")
                    self.control.wait_to_start(run)
                stops = self.control.stops
                try:
                    self.fleet.transport(key, carrier, self.view.where(carrier, location), home, NeverCancelled(), held)
                except InvalidGoal:
                    if self.control.stops == stops and not self.control.stopped():
                        raise
                    # stopped on the way home (the stop may be released already): once the lab runs
                    # again it tries again, from where the carrier is now (the world state after the stop)
                    self.lab.sleep(1.0)
                held = None if self.view.where(carrier, location).partition("/")[0] != held else held
                location = self.view.where(carrier, home)
            if held:
                self.station_pool.release(held, key)
        except (Interrupted, Unavailable, InvalidGoal) as exc:
            where = self.view.where(carrier, "?")
            self.log.error(f"{key}: {carrier} could not go home from {where}: {exc}")
            message = (message + "; " if message else "") + f"{carrier} left at {where}: {exc}"
            if held:
                self.station_pool.release(held, key)
            failed = True
        finally:
            self.view.carrier_pool.release(carrier, key)
        if failed:
            self.recovery.strays_later()  # (after the release: the retry takes the carrier as a stray)
        return message
