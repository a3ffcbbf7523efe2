"""A workflow step at a station: which station of the kind, the carrier taken there, the
process run, what the station reports merged into each sample, and retries.

A failed station run is retried, on another station of the kind when there is one (rerouted),
up to `max_retries` (a process a station's restart interrupted before it acted on the samples
too; one that had acted fails them: run again they would be dispensed or illuminated twice);
a retry on the only station of its kind, in fault, waits for it to recover; then the samples
are marked failed with the reason. A station offline is not chosen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from lab.core.config.params import LabManagerParams
from lab.core.errors import InvalidGoal
from lab.core.operations.batches import ACQUIRE, HELD, station_choice
from lab.core.operations.resources import ResourcePool
from lab.core.operations.scheduler.batch import Run, Sample
from lab.core.operations.scheduler.dispatch import Dispatcher
from lab.core.operations.scheduler.fleet import Fleet
from lab.core.operations.scheduler.journal import Journal
from lab.core.operations.scheduler.mode import Mode
from lab.core.operations.scheduler.orders import Lab, Log, Outcome, Process
from lab.core.operations.scheduler.view import WorldView
from lab.core.robot.world import Station
from lab.core.waits import wait_for

#: wall s to wait, after a station's goal was lost to its restart, for the restarted station to
#: report what it interrupted: bringup restarts a node within 1-4 s, a node starts in a few s
#: (the loss itself is seen when the restarted node's action server appears)
RESTART_REPORT_WAIT = 30.0


class Steps:
    def __init__(self, params: LabManagerParams, stations: dict[str, Station], kind_of: dict[str, str], lab: Lab,
                 log: Log, view: WorldView, mode: Mode, dispatch: Dispatcher, journal: Journal, fleet: Fleet,
                 station_pool: ResourcePool) -> None:
        self.params, self.stations, self.kind_of, self.lab, self.log = params, stations, kind_of, lab, log
        self.view, self.mode, self.dispatch, self.journal, self.fleet = view, mode, dispatch, journal, fleet
        self.station_pool = station_pool

    def step(self, run: Run, kind: str, process: str, progress: Callable[[str], None]) -> None:
        """Run one workflow step (with retries/rerouting); run.location and run.held follow the carrier."""
        candidates = [s for s, k in self.kind_of.items() if k == kind]
        retries = self.params.max_retries
        avoid: set[str] = set()
        station: str | None = None
        for attempt in range(retries + 1):
            self.mode.wait_to_start(run)
            alive = run.alive()
            if not alive:
                break
            in_held = bool(run.held) and run.held in candidates and run.location == self.slot(run.held)
            how, choices = station_choice(candidates, avoid, station, run.held, in_held)
            if how == HELD:  # already in a station of this kind, reserved (a batch taken on again after a restart)
                station = run.held
            elif how == ACQUIRE:
                station = self._take_station(run, list(choices), kind, station)
            elif station is not None and not self.view.station_usable(station):
                self._await_recovery(run, station)  # AGAIN: the only station left, maybe in fault
            assert station is not None
            stops = self.mode.stops
            ok, why = self._run_process(run, station, process, alive, progress)
            run.station_goal = None
            self.journal.save(run)
            if ok:
                return
            self.log.warning(f"{run.key}: {station} failed (attempt {attempt + 1}): {why}")
            if (stopped := self.mode.heard_stop(why, stops)) or run.is_cancel_requested:
                why = self.mode.why_stopped() if stopped else "batch cancelled"
                for s in alive:
                    s.failure = f"{station}: {why}"
                break
            avoid.add(station)
            if attempt == retries:
                for s in alive:
                    s.failure = f"{station}: {why} (after {retries + 1} attempts)"

    def _take_station(self, run: Run, choices: list[str], kind: str, previous: str | None) -> str:
        """Reserve one of `choices` (instead of `previous`, which failed) and bring the batch's
        carrier into it."""
        station = self.station_pool.acquire(choices, run.key, usable=self._free_for(run.carrier),
                                            cancelled=lambda: run.is_cancel_requested,
                                            waiting=self.fleet.waiting(run.key))
        if previous is not None:
            self.log.warning(f"{run.key}: rerouting {kind} from {previous} to {station}")
        target = self.slot(station)
        if run.location != target:
            try:
                self.fleet.transport(run.key, run.carrier, run.location, target, run, run.held or None)
            except BaseException:
                # the carrier never got there: the station is free for others (a reservation kept
                # would leave every later batch waiting for it)
                self.station_pool.release(station, run.key)
                raise
        elif run.held and run.held != station:
            # already there (a scheduler that died just after the transfer left its record a
            # step behind): the station it came from is free
            self.station_pool.release(run.held, run.key)
        run.location, run.held = target, station
        self.journal.save(run)
        return station

    def _free_for(self, carrier: str) -> Callable[[str], bool]:
        """A station may be reserved for `carrier` only when it is usable and the slot the carrier
        goes to holds nothing else (as the world state says: a carrier a stop left there, say)."""
        def usable(station: str) -> bool:
            occupant = self.view.occupant(self.slot(station), carrier)
            if occupant is not None:
                self.log.warning(f"{station} holds {occupant}: not reserved for {carrier}", throttle_duration_sec=30.0)
            return occupant is None and self.view.station_usable(station)
        return usable

    def slot(self, station: str) -> str:
        slots = self.stations[station].slots
        if not slots:
            raise InvalidGoal(f"station {station} has no slot to put a carrier in")
        return f"{station}/{next(iter(slots))}"

    def _await_recovery(self, run: Run, station: str) -> None:
        """A step tried again on a station in fault (the only one of its kind, say) waits for it to
        recover (its `fault_recovery`, simulated s) up to `fault_wait` simulated s (and as many wall
        s), instead of failing its samples against the fault at once."""
        began = self.lab.now()
        self.log.warning(f"{run.key}: {station} is in fault; waiting for it to recover before trying again")
        wait_for(lambda: (self.view.station_usable(station) or run.is_cancel_requested or self.mode.stopped()
                          or self.lab.now() - began > self.params.fault_wait), self.params.fault_wait, poll=0.1)

    def _run_process(self, run: Run, station: str, process: str, samples: list[Sample],
                     progress: Callable[[str], None]) -> tuple[bool, str]:
        began = self.lab.now()
        # the order's id is recorded before it is sent: a scheduler restarted meanwhile asks the station for it
        goal_id = uuid.uuid4().bytes
        run.station_goal = (station, goal_id.hex())
        run.station_goal_accepted = False
        self.journal.save(run)

        def accepted() -> None:  # the station has it: one that forgets it was restarted
            run.station_goal_accepted = True
            self.journal.save(run)

        limit = self.dispatch.station_limit(station, process, len(samples))
        order = Process(station, run.carrier, process, tuple(s.order() for s in samples), goal_id)
        outcome = self.dispatch.call(order, f"{station}: {process or 'process'} on {run.carrier}",
                                     f"{run.key}/{station}", run, limit, sim_limit=limit,
                                     cancel=lambda: run.is_cancel_requested, accepted=accepted,
                                     feedback=lambda step, fraction: progress(f"{station}: {step} ({fraction:.0%})"))
        self.journal.busy(run.key, station, began, self.lab.now(), f"{process or 'process'} {run.carrier}")
        if outcome.lost:
            interrupted = self.interrupted(station, goal_id.hex(), RESTART_REPORT_WAIT)
            if interrupted and self.view.interrupted_untouched(station, goal_id.hex()):
                # the samples are as they came: the step is tried again on them (a retry, below)
                self.log.warning(f"{station}: {interrupted}")
                return False, interrupted
            if interrupted:
                return self.spoiled(station, samples, interrupted)
        return merge(station, samples, outcome)

    def interrupted(self, station: str, goal_id: str, wait: float) -> str:
        """What a restarted station reports of goal `goal_id` (hex), which its restart interrupted;
        "" when it says nothing of it within `wait` wall s."""
        wait_for(lambda: bool(self.view.interrupted_report(station, goal_id)), wait, poll=0.1)
        return self.view.interrupted_report(station, goal_id)

    def spoiled(self, station: str, samples: list[Sample], interrupted: str) -> tuple[bool, str]:
        """A process a station's restart interrupted: its samples, part-processed, fail with the
        station's report (run again they would be dispensed or illuminated twice)."""
        self.log.error(f"{station}: {interrupted}")
        for sample in samples:
            if not sample.failure:
                sample.failure = f"{station}: {interrupted}"
        return False, interrupted


def merge(station: str, samples: list[Sample], outcome: Outcome) -> tuple[bool, str]:
    """What a station's result says of each sample: as dispensed, measured, or why not."""
    if not outcome.succeeded:
        return False, outcome.message or "failed"
    by_id = {r.sample_id: r for r in outcome.reports}
    for sample in samples:
        report = by_id.get(sample.sample_id)
        if report is None:
            continue
        if not report.valid:
            # the station measured the sample and found it invalid: the chemistry's failure (every
            # other failure, an order that did not succeed, is the equipment's)
            sample.failure = f"{station}: {report.failure_reason or 'invalid measurement'}"
            sample.chemistry = True
            continue
        sample.dispensed.update(report.dispensed)
        if report.measurement is not None:
            sample.measurement = report.measurement
    return True, ""
