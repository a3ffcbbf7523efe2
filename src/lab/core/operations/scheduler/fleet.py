"""The robots' part of a batch: which robot carries a carrier, the legs of a transport (drive,
transfer), making way at a dock, charging, and robots the network has lost.

A failed transport leg is tried once more. A robot whose host the network has lost (DDS
liveliness) is offline: it is given no new work; a leg it fails meanwhile does not count as a
try: the leg waits up to `offline_wait` for it to come back, and past that a carrier still at
its station goes with another robot, while one left on the offline robot fails its batch with
the reason. A robot whose battery is low goes to the charger before its next transport. An idle
robot standing at the dock another robot is sent to is first driven to its parking spot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.core.config.params import LabManagerParams
from lab.core.errors import InvalidGoal
from lab.core.operations.resources import ResourcePool, Unavailable
from lab.core.operations.safety import NO_CONTACT
from lab.core.operations.scheduler.batch import Cancellable, NeverCancelled
from lab.core.operations.scheduler.dispatch import Dispatcher
from lab.core.operations.scheduler.journal import Journal
from lab.core.operations.scheduler.mode import Mode
from lab.core.operations.scheduler.orders import Drive, Lab, Log, Park, RobotOffline, Transfer
from lab.core.operations.scheduler.view import WorldView
from lab.core.robot.world import Pose2D, Station
from lab.core.waits import wait_for

DECK = "deck1"
#: wall s between tries of a leg whose robot refused for want of the safety node's contact: the
#: movers watch the safety node's presence with a 3 s timeout (`safety_timeout`) on a 1 s lease
CONTACT_RETRY = 2.0
#: simulated s between two looks at the battery while charging (about a tenth of a charge)
CHARGE_STEP = 300.0


@dataclass
class _Tries:
    """The tries of one leg: those that failed with the robot present all along count against
    its two; `unheard` is when the robot first refused for want of the safety node's contact."""

    failed: int = 0
    made: int = 0
    unheard: list[float] = field(default_factory=list)


class Fleet:
    def __init__(self, params: LabManagerParams, stations: dict[str, Station], kind_of: dict[str, str],
                 parking: list[Pose2D], lab: Lab, log: Log, view: WorldView, mode: Mode, dispatch: Dispatcher,
                 journal: Journal, station_pool: ResourcePool) -> None:
        self.params, self.stations, self.kind_of, self.parking = params, stations, kind_of, parking
        self.lab, self.log, self.view, self.mode, self.dispatch, self.journal = lab, log, view, mode, dispatch, journal
        self.station_pool = station_pool
        self.robots = [r for r in params.robots if r]
        self.robot_pool = ResourcePool(self.robots)
        self.state: dict[str, str] = {r: "idle" for r in self.robots}  # what each robot does
        self.docked: dict[str, str] = {r: "" for r in self.robots}     # the station each stands docked at

    # ------------------------------------------------------------------ transports
    def transport(self, batch_id: str, carrier: str, source: str, target: str, run: Cancellable,
                  release_after_pick: str | None) -> None:
        """`carrier` from `source` to `target` ('<station or robot>/<slot>'); the station reserved
        as `release_after_pick` is released once the carrier has left it."""
        while True:
            src_station, dst_station = source.partition("/")[0], target.partition("/")[0]
            on_robot = src_station in self.robots  # left on a robot by a failed transfer: that robot takes it
            robot = self._take_robot(batch_id, carrier, src_station, on_robot, run)
            try:
                self._charge_if_needed(robot, batch_id, run)
                deck = f"{robot}/{DECK}"
                # the transport's hand-offs (a result back, the next goal out) cost no simulated
                # time: the hold stands aside while the robot's own nodes hold the clock in an action
                with self.lab.hold(robot):
                    if on_robot:
                        deck = source
                    else:
                        self._leg(robot, batch_id, src_station, source, deck, carrier, run)
                    if release_after_pick:
                        self.station_pool.release(release_after_pick, batch_id)
                    self._leg(robot, batch_id, dst_station, deck, target, carrier, run)
                return
            except RobotOffline as exc:
                where = self.carrier_at(carrier, source)
                if where == target:  # the move was made; only its answer was lost with the robot
                    return
                if where.partition("/")[0] == exc.robot:
                    raise RobotOffline(exc.robot, f"{carrier} is on {exc.robot}, {exc}") from None
                self.log.warning(f"{batch_id}: {exc}; {carrier} (at {where}) goes with another robot")
                source = where
            finally:
                self.robot_pool.release(robot, batch_id)
                self._top_up_later(robot)

    def carrier_at(self, carrier: str, default: str) -> str:
        """Where the world state says `carrier` is, a simulated second after a failed or stopped
        transfer (the next world state tells where it ended)."""
        self.lab.sleep(1.0)
        return self.view.where(carrier, default)

    def waiting(self, batch_id: str) -> Callable[[str], None]:
        """What a reservation that waits long says, every minute (wall), in the log."""
        return lambda text: self.log.warning(f"{batch_id}: {text}")

    def standing_at(self, station: str) -> list[str]:
        """The robots whose pose puts them at the station's dock (waits up to 5 wall s for every
        robot's first pose)."""
        wait_for(self.view.every_pose_heard, 5.0)
        return self.view.standing_at(self.stations[station].dock)

    def _take_robot(self, batch_id: str, carrier: str, src_station: str, on_robot: bool, run: Cancellable) -> str:
        """Reserve the robot for a transport from `src_station` (the robot itself when the carrier is
        on it): one present and unladen, preferably one already there. A robot may carry `carrier`
        only when nothing else is on it (a carrier a stop left on its deck goes home first: its
        batch takes this robot for that)."""
        at_source = set() if on_robot else \
            {r for r in self.robots if self.docked[r] == src_station} | set(self.standing_at(src_station))
        return self.robot_pool.acquire([src_station] if on_robot else self.robots, batch_id,
                                       cancelled=lambda: run.is_cancel_requested,
                                       usable=lambda r: self.view.unladen(r, carrier)
                                       and (on_robot or not self.view.is_offline(r)),
                                       prefer=lambda r: 0.0 if r in at_source else 1.0,
                                       waiting=self.waiting(batch_id))

    # ------------------------------------------------------------------ one leg: drive, transfer
    def _leg(self, robot: str, batch_id: str, station: str, source: str, target: str, carrier: str,
             run: Cancellable) -> None:
        """Drive `robot` to `station` and transfer carrier source -> target; tried twice. A carrier
        that the world state shows at its target after a failed attempt has made the trip (the
        arm's retreat after the release cut short by a restarted simulation, say)."""
        reason = ""
        tries = _Tries()
        while True:
            if tries.made:
                # where the carrier really is after a failed transfer (a missed release leaves it
                # in the gripper): the world state is the truth the next attempt starts from
                where = self.carrier_at(carrier, source)
                if where == target:
                    if tries.failed == 2:
                        self.log.warning(f"{batch_id}: {reason}; but {carrier} is at {target}: going on")
                    return
                if tries.failed == 2:
                    break
                if where.partition("/")[0] == robot:
                    source = where
            tries.made += 1
            self.mode.wait_to_start(run)
            self._await_robot(robot, batch_id, run)
            losses = self.view.losses.get(robot, 0)
            began = self.lab.now()
            self.state[robot] = "navigating"
            if self.docked[robot] != station:
                self.make_way(robot, station, batch_id, run)
                stops = self.mode.stops
                nav = self.dispatch.call(Drive(robot, station), f"{robot}: drive to {station}", f"{batch_id}/{robot}",
                                         run, self.dispatch.drive_limit(robot, self.stations[station].dock))
                if not nav.succeeded:
                    reason = f"{robot} could not reach {station}: {nav.message}"
                    self.docked[robot] = ""
                    # a drive the emergency stop ended is the operator's, not the robot's: not
                    # counted as a try; the next one waits at the gate above for release and resume
                    if not self.mode.heard_stop(nav.message, stops):
                        tries.failed += self._counts(robot, losses, reason, batch_id, run, tries)
                    continue
                self.docked[robot] = station
            self.state[robot] = "manipulating"
            stops = self.mode.stops
            arm = self.dispatch.call(Transfer(robot, carrier, source, target),
                                     f"{robot}: {carrier} {source} -> {target}", f"{batch_id}/{robot}", run,
                                     self.dispatch.limit(self.params.arm_seconds))
            self.state[robot] = "idle"
            self.journal.busy(batch_id, robot, began, self.lab.now(), f"{carrier} -> {target}")
            if arm.succeeded:
                self.view.moved(carrier, target)
                return
            reason = f"{robot} could not move {carrier} {source} -> {target}: {arm.message}"
            self.docked[robot] = ""  # re-dock (and re-refine) before trying again
            if self.mode.heard_stop(arm.message, stops):  # the operator's, as for the drive above
                self.mode.wait_to_start(run)
            else:
                tries.failed += self._counts(robot, losses, reason, batch_id, run, tries)
        raise InvalidGoal(reason)

    def _counts(self, robot: str, losses: int, reason: str, batch_id: str, run: Cancellable, tries: _Tries) -> int:
        """1 when a failed try counts against the leg's two; 0 when the robot went offline during it
        (or is offline now: DDS may say so only after the goal failed): then the failure is the
        network's, and the leg is tried again once the robot is back.

        Also 0 when the robot refused because it cannot hear the safety node (NO_CONTACT): after a
        network cut heals, the lab manager may hear the robot again before the robot hears the
        safety node (each pair of hosts rediscovers the other on its own). The leg is tried again
        every `CONTACT_RETRY` wall s, for up to `offline_wait` from the first such refusal; past
        that the refusal counts like any other failure (nothing moved meanwhile: the robot refused)."""
        if NO_CONTACT in reason:
            if not tries.unheard:
                tries.unheard.append(time.time())
                self.log.warning(f"{batch_id}: {reason}; {robot} cannot hear the safety node yet (the network's "
                                 f"failure): not counted as a try; trying again every {CONTACT_RETRY:g} s for up "
                                 f"to {self.params.offline_wait:g} s")
            if tries.unheard[0] + self.params.offline_wait - time.time() > 0:
                wait_for(lambda: run.is_cancel_requested or self.mode.stopped(), CONTACT_RETRY, poll=0.1)
                return 0
        if self.view.losses.get(robot, 0) == losses and not self.view.is_offline(robot):
            return 1
        self.log.warning(f"{batch_id}: {reason}; {robot} went offline meanwhile: not counted as a try")
        return 0

    def _await_robot(self, robot: str, batch_id: str, run: Cancellable) -> None:
        """Before a robot's order: an offline robot is waited for, up to `offline_wait` wall s;
        RobotOffline (the batch's reason) when it is not back by then."""
        with self.view.lock:
            since = self.view.offline.get(robot)
        if since is None:
            return
        left = max(0.0, since[0] + self.params.offline_wait - time.time())
        self.log.warning(f"{batch_id}: {robot} is offline (since {self.view.offline_since(robot)}); waiting up to "
                         f"{left:.0f} s more for it to come back")
        back = wait_for(lambda: not self.view.is_offline(robot) or run.is_cancel_requested or self.mode.stopped(),
                        left, poll=0.1)
        if self.view.is_offline(robot):
            raise RobotOffline(robot, f"{robot} offline since {self.view.offline_since(robot)}"
                               + ("" if back else f", not back within {self.params.offline_wait:g} s"))

    # ------------------------------------------------------------------ making way, charging
    def make_way(self, robot: str, station: str, batch_id: str, run: Cancellable) -> None:
        """Before `robot` drives to `station`: an idle robot standing at its dock drives to its
        parking spot. A busy one is left to finish (the navigator waits for it to leave)."""
        for other in self.standing_at(station):
            if other == robot or other not in self.robots:
                continue
            if self.view.is_offline(other):
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
                self.state[other] = "parking"
                nav = self.dispatch.call(Park(other, spot), f"{other}: out of {robot}'s way to its parking spot",
                                         f"{batch_id}/{other}", run, self.dispatch.drive_limit(other, spot))
                self.docked[other] = ""
                if not nav.succeeded:
                    self.log.warning(f"{other} could not clear {station} for {robot}: {nav.message}")
            finally:
                self.state[other] = "idle"
                self.robot_pool.release(other, f"{batch_id}/make-way")

    def _top_up_later(self, robot: str) -> None:
        """A robot just freed whose battery is below `battery_top_up` charges while idle (a thread
        of its own: the batch that freed it goes on)."""
        if self.params.battery_top_up <= 0 or self.view.battery_level(robot) >= self.params.battery_top_up \
                or self.view.is_offline(robot) or self.mode.stopped():
            return
        threading.Thread(target=self._top_up, args=(robot,), daemon=True, name=f"top-up-{robot}").start()

    def _top_up(self, robot: str) -> None:
        """Charge `robot` while nothing waits for it: the robot and a charger are taken only if free
        now; it leaves the charger (stays docked there, released) as soon as a batch waits for a
        robot it could be, once its battery is above `battery_low`, or at `battery_resume`."""
        chargers = [s for s, k in self.kind_of.items() if k == "charger"]
        holder = f"top-up/{robot}"
        if not chargers or self.robot_pool.wanted(robot):
            return
        try:
            self.robot_pool.acquire([robot], holder, timeout=0.0)
        except Unavailable:
            return  # a batch took it meanwhile
        try:
            charger = self.station_pool.acquire(chargers, holder, timeout=0.0)
        except Unavailable:
            self.robot_pool.release(robot, holder)  # the charger is taken: no top-up now
            return
        def enough() -> bool:
            return self.mode.stopped() or (self.robot_pool.wanted(robot)
                                           and self.view.battery_level(robot) > self.params.battery_low)

        try:
            self._charge(robot, charger, holder, NeverCancelled(), enough)
        except Exception as exc:  # a top-up is optional: its failure is logged, not raised
            self.log.warning(f"{robot}: topping up its battery failed: {exc}")
        finally:
            self.station_pool.release(charger, holder)
            self.robot_pool.release(robot, holder)

    def _charge_if_needed(self, robot: str, batch_id: str, run: Cancellable) -> None:
        level = self.view.battery_level(robot)
        if level >= self.params.battery_low:
            return
        chargers = [s for s, k in self.kind_of.items() if k == "charger"]
        if not chargers:
            return
        self.log.info(f"{robot}: battery {level:.0%}, going to charge")
        with self.station_pool.reserved(chargers, f"{batch_id}/{robot}",
                                        cancelled=lambda: run.is_cancel_requested) as charger:
            self._charge(robot, charger, batch_id, run)

    def _charge(self, robot: str, charger: str, batch_id: str, run: Cancellable,
                enough: Callable[[], bool] = lambda: False) -> None:
        """Drive `robot` to `charger` and charge it up to `battery_resume`, or until `enough()`."""
        self.make_way(robot, charger, batch_id, run)
        nav = self.dispatch.call(Drive(robot, charger, skip_refinement=True), f"{robot}: drive to {charger}",
                                 f"{batch_id}/{robot}", run,
                                 self.dispatch.drive_limit(robot, self.stations[charger].dock))
        self.docked[robot] = charger if nav.succeeded else ""
        if not nav.succeeded:
            self.log.warning(f"{robot}: cannot reach the charger: {nav.message}")
            return
        self.state[robot] = "charging"
        began = self.lab.now()
        try:
            # a look at the battery every CHARGE_STEP simulated s; `enough` ends a step at once (a
            # batch waiting for a topping-up robot). Short steps cost wall time: each lands the
            # lockstep clock (30 s steps made the campaign a third slower at 2000x)
            while self.view.battery_level(robot) < self.params.battery_resume and not run.is_cancel_requested \
                    and not enough():
                self.lab.sleep(CHARGE_STEP, cancelled=lambda: run.is_cancel_requested or enough())
        finally:
            self.state[robot] = "idle"
            self.journal.busy(batch_id, robot, began, self.lab.now(), "charging")
