"""The start-up recovery: a scheduler that starts (after a crash) takes on the batches its
predecessor recorded in flight and brings home any carrier away from home that no batch owns.

No batch starts before it is over (`recovered`): a new batch would find its own record and
robot goals taken for a predecessor's, and a batch re-sent by the planner must find the
adopted one to attach to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from lab.core.config.params import LabManagerParams
from lab.core.errors import InvalidGoal
from lab.core.operations.batches import NO_RECORD, RERUN, SPOILED, recorded_goal_outcome
from lab.core.operations.gate import Interrupted
from lab.core.operations.resources import ResourcePool, Unavailable
from lab.core.operations.scheduler.batch import NeverCancelled, Run, Sample
from lab.core.operations.scheduler.dispatch import Dispatcher
from lab.core.operations.scheduler.fleet import Fleet
from lab.core.operations.scheduler.journal import Journal
from lab.core.operations.scheduler.orders import Lab, Log, Outcome, Process
from lab.core.operations.scheduler.steps import RESTART_REPORT_WAIT, Steps, merge
from lab.core.operations.scheduler.view import WorldView
from lab.core.operations.workflow import Workflow
from lab.core.robot.world import Station
from lab.core.waits import wait_for

#: wall s a batch waits for the first world state (a lab manager started before the simulation)
WORLD_WAIT = 30.0
#: wall s a scheduler starting up waits for robot goals under way (its predecessor's) to end: a
#: transfer (~60 simulated s) or a drive across the lab (~2 simulated min), at 1x real time
ROBOTS_SETTLE_WAIT = 300.0
#: wall s a batch waits for the start-up recovery: the world state, the robots' goals under way
#: (both above), the adopted batches' reservations
RECOVERY_WAIT = WORLD_WAIT + ROBOTS_SETTLE_WAIT + 60.0
#: wall s to wait for a station's latched status to say what a restart interrupted, when the station
#: answers that it does not know a recorded goal (the status is there at once, or within a DDS round trip)
REPORT_WAIT = 5.0
#: simulated s before a carrier that could not go home is tried again, doubled after each failure up
#: to STRAY_RETRY_MAX: a carrier left in a station keeps every later batch out of it, so it must
#: not stay there for want of one more try (a robot that failed to dock often docks the next time)
STRAY_RETRY, STRAY_RETRY_MAX = 60.0, 1800.0
#: wall s after the last goal someone else (an operator, by hand) had on a robot before carriers
#: away from home count as strays: the carrier an operator just put somewhere is part of their work,
#: and their next command follows in seconds (the tries after STRAY_RETRY look again)
OTHERS_QUIET = 60.0


class Recovery:
    def __init__(self, params: LabManagerParams, stations: dict[str, Station], kind_of: dict[str, str],
                 workflows: dict[str, Workflow], lab: Lab, log: Log, view: WorldView, dispatch: Dispatcher,
                 journal: Journal, fleet: Fleet, steps: Steps, station_pool: ResourcePool,
                 adopt: Callable[[Run], None], forget: Callable[[Run], None], go_on: Callable[[Run], None]) -> None:
        self.params, self.stations, self.kind_of, self.workflows = params, stations, kind_of, workflows
        self.lab, self.log, self.view, self.dispatch, self.journal = lab, log, view, dispatch, journal
        self.fleet, self.steps, self.station_pool = fleet, steps, station_pool
        self._adopt, self._forget, self._go_on = adopt, forget, go_on
        self.recovered = threading.Event()
        self._retrying = threading.Lock()  # held while a thread tries the strays again
        self._left_to_others: set[str] = set()  # strays left for someone else's goals (said once)
        self._homeless: set[str] = set()  # carriers of a kind no workflow uses (said once)

    def run(self) -> None:
        """Once the world state says where the carriers are: the batches the last scheduler left in
        flight are taken on again, then any other carrier away from home goes home."""
        try:
            self._recover()
        finally:
            self.recovered.set()

    def _recover(self) -> None:
        if not wait_for(lambda: bool(self.view.carriers), WORLD_WAIT):
            self.log.warning(f"no world state within {WORLD_WAIT:g} s: batches a previous lab manager "
                             "left in flight and carriers away from home are not looked for")
            return
        # a robot still carrying out an order of the scheduler that died must finish it first: a new
        # order would meet the arm half-way through a transfer
        if not wait_for(lambda: not self.view.goals_still_under_way(), ROBOTS_SETTLE_WAIT, poll=0.2):
            self.log.error(f"robot goals still under way after {ROBOTS_SETTLE_WAIT:g} s: "
                           f"{self.view.goals_still_under_way()}; taking the lab on regardless")
        self._adopt_recorded()
        self.recovered.set()  # batches may start: strays share the robots with them through the pools
        if self._bring_strays_home():
            self.strays_later()

    # ------------------------------------------------------------------ carriers no batch owns
    def _homes(self, carrier: str) -> set[str]:
        """The station kinds where `carrier` waits between batches (its workflows' home)."""
        kind = self.view.carrier_kind.get(carrier, "")
        return {wf.home for wf in self.workflows.values() if wf.carrier == kind}

    def _free_home_slot(self, carrier: str) -> str | None:
        with self.view.lock:
            taken = set(self.view.carriers.values())
        homes = self._homes(carrier)
        return next((f"{s}/{slot}" for s, station in self.stations.items() if self.kind_of[s] in homes
                     for slot in station.slots if f"{s}/{slot}" not in taken), None)

    def strays_later(self) -> None:
        """A batch left its carrier away from home: try the strays again after STRAY_RETRY
        simulated s, and again (the wait doubled) until none is left or a batch owns it."""
        if not self._retrying.acquire(blocking=False):
            return  # a thread already tries: it looks at every carrier
        threading.Thread(target=self._retry_strays, name="strays", daemon=True).start()

    def _retry_strays(self) -> None:
        delay = STRAY_RETRY
        try:
            while True:
                self.lab.sleep(delay)
                if not self._bring_strays_home():
                    return
                delay = min(2 * delay, STRAY_RETRY_MAX)
        except Exception as exc:  # the node shutting down ends its clock: nothing is left to bring home
            self.log.warning(f"strays no longer tried: {exc}")
        finally:
            self._retrying.release()

    def _bring_strays_home(self) -> list[str]:
        """Every carrier the world state shows away from home with no batch to own it (on a
        robot's deck, in a station) is brought home, by the rule a stopped batch's carrier follows,
        unless someone else's goals are on the robots or were within OTHERS_QUIET. The carriers that
        could not be brought home or were left."""
        wait_for(self.view.every_pose_heard, 10.0)
        with self.view.lock:
            carriers = dict(self.view.carriers)
        strays = {}
        for carrier, location in carriers.items():
            homes = self._homes(carrier)
            if not homes:
                # no workflow of this lab manager uses its kind (a lab run with a workflows file of
                # its own): it has no home to go to and is not this lab manager's to move. It was
                # an error at every pass ('no free place at its home'), and retried for ever
                if carrier not in self._homeless:
                    self._homeless.add(carrier)
                    self.log.info(f"{carrier} is at {location}: no workflow uses a "
                                  f"{self.view.carrier_kind.get(carrier) or 'carrier of its kind'}, so it has "
                                  f"no home: left where it is")
                continue
            if self.kind_of.get(location.partition("/")[0], "") not in homes:  # away from home
                strays[carrier] = location
        pool = self.view.carrier_pool
        left = []
        for carrier, location in strays.items():
            try:
                pool.acquire([carrier], "strays", timeout=0.0)
            except Unavailable:
                continue  # a batch has it
            try:
                others = self.view.others_busy(OTHERS_QUIET)
                if others:
                    if carrier not in self._left_to_others:
                        self._left_to_others.add(carrier)
                        self.log.warning(f"{carrier} is at {location}, away from home, with no batch, but goals this "
                                         f"lab manager did not send are on {others} (an operator's?): left there "
                                         f"until they have been quiet for {OTHERS_QUIET:g} s")
                    left.append(carrier)
                    continue
                self._left_to_others.discard(carrier)
                target = self._free_home_slot(carrier)
                if target is None:
                    self.log.error(f"{carrier} is at {location}: no free place at its home to bring it to")
                    left.append(carrier)
                    continue
                self.log.warning(f"{carrier} is at {location}, away from home, with no batch: bringing it to {target}")
                self.fleet.transport("strays", carrier, location, target, NeverCancelled(), None)
            except (Interrupted, Unavailable, InvalidGoal) as exc:
                self.log.error(f"{carrier} could not be brought home from {location}: {exc}; tried again later")
                left.append(carrier)
            finally:
                pool.release(carrier, "strays")
        return left

    # ------------------------------------------------------------------ batches in flight
    def _adopt_recorded(self) -> None:
        """Every batch the previous scheduler recorded and did not answer is taken on again:
        finished ones wait for their goal to be sent again (the planner re-sends a batch whose lab
        manager went away); the others go on from the step their record is at, the carrier where
        the world state says it is, and a station order that was under way asked for its result."""
        try:
            records = self.journal.store().lab_batches()
            ages = self.journal.store().lab_batch_ages()
        except Exception as exc:
            self.log.error(f"the batches in flight could not be read from {self.journal.path}: {exc}")
            return
        for key, state in records.items():
            try:
                run = Run.from_state(key, state)
                if run.workflow not in self.workflows:
                    raise InvalidGoal(f"workflow {run.workflow} is not configured")
            except (InvalidGoal, KeyError, TypeError, ValueError) as exc:
                self.log.error(f"recorded batch {key} cannot be taken on ({exc}): dropped")
                self.journal.drop(key)
                continue
            self._adopt(run)
            if run.result is not None:
                if ages.get(key, 0.0) > self.params.keep_results:
                    self.log.warning(f"{key}: finished {ages[key] / 3600:.0f} h ago and nobody asked for its "
                                     f"result (keep_results {self.params.keep_results:g} s): dropped")
                    self._forget(run)
                    continue
                run.done.set()
                self.log.warning(f"{key}: finished before the restart; answered when its goal is re-sent")
                continue
            try:
                if run.carrier:
                    self.view.carrier_pool.acquire([run.carrier], key, timeout=0.0)
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
            alive = run.alive()
            self.log.warning(f"{run.key}: asking {station} for the result of goal {goal_id} (sent before the restart)")
            process = self.workflows[run.workflow].steps[run.step].process
            order = Process(station, run.carrier, process, tuple(s.order() for s in alive), bytes.fromhex(goal_id))
            outcome = self.dispatch.follow(order, self.dispatch.station_limit(station, process, len(alive)),
                                           lambda: run.is_cancel_requested, f"{station}'s result for {run.carrier}")
            # a station restarted since says what it interrupted (its status is latched: here at once,
            # or within the restart report's wait when it restarts while we ask)
            interrupted = (self.steps.interrupted(station, goal_id,
                                                  RESTART_REPORT_WAIT if outcome.lost else REPORT_WAIT)
                           if (outcome.unknown and run.station_goal_accepted) or outcome.lost else "")
            what = recorded_goal_outcome(run.station_goal_accepted, outcome.unknown, interrupted,
                                         self.view.interrupted_untouched(station, goal_id))
            if what == RERUN:
                # recorded but never accepted (the scheduler died before the station had it), or
                # interrupted before the station acted on the samples: the step runs again
                self.log.warning(f"{run.key}: {station} " + (f"says: {interrupted}" if interrupted else
                                                             f"never had goal {goal_id}") + ": the step runs again")
            else:
                self._settle_recorded(run, station, goal_id, what, alive, outcome, interrupted)
            run.station_goal = None
            self.journal.save(run)
        if run.carrier:
            run.location = self.view.where(run.carrier, run.location)
        self._go_on(run)

    def _settle_recorded(self, run: Run, station: str, goal_id: str, what: str, alive: list[Sample],
                         outcome: Outcome, interrupted: str) -> None:
        """The recorded station order's outcome into the batch: merged (the step done), or its
        samples failed with the reason."""
        if what == SPOILED:
            self.steps.spoiled(station, alive, interrupted)
            return
        if what == NO_RECORD:
            # accepted, and the station has no record of it: restarted since (or the result
            # expired); what the samples went through is unknown
            ok, why = False, f"{station} has no record of goal {goal_id} (restarted since it accepted it)"
        else:
            ok, why = merge(station, alive, outcome)
        if ok:
            self.log.info(f"{run.key}: {station}'s result, asked for after the restart, merged")
            run.step += 1
            return
        for s in alive:
            s.failure = (f"{station}: the lab manager restarted during the process and its result could not be "
                         f"had: {why}")
