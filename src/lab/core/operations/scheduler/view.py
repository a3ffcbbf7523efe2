"""What the scheduler knows of the world: where the carriers are, the robots' poses and
batteries, the stations' states, the robots' goals under way, and who the network has lost.

The node tells it through methods (every input is a call, never a write into a dictionary);
every read that another thread's write may race holds `lock`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from lab.core.operations.resources import ResourcePool
from lab.core.operations.scheduler.orders import Log
from lab.core.robot.world import Pose2D


class WorldView:
    def __init__(self, robots: list[str], carriers: list[str], now: Callable[[], float], log: Log) -> None:
        self.lock = threading.RLock()
        self._now, self._log = now, log
        self.carriers: dict[str, str] = {}       # carrier id -> location
        self.carrier_kind: dict[str, str] = {}
        for entry in carriers:
            if entry:
                obj, _, loc = entry.partition("@")
                self.carriers[obj], self.carrier_kind[obj] = loc, "tray" if obj.startswith("tray") else "rack"
        self.carrier_pool = ResourcePool(list(self.carriers))
        self.usable: dict[str, bool] = {}         # station -> idle or busy (not in fault, not offline)
        self.interrupted: dict[str, tuple[str, str]] = {}  # station -> (goal id hex, what its restart interrupted)
        self.untouched: dict[str, bool] = {}  # station -> that process had not yet acted on its samples
        self.poses: dict[str, Pose2D] = {}
        self.batteries: dict[str, float] = {}
        self.under_way: dict[str, int] = {}  # the robots' action servers' goals under way, whoever sent them
        # of those, goals this lab manager neither sent nor found under way when it started (an
        # operator's by hand), and when (monotonic wall s) each action last had one
        self.others: dict[str, int] = {}
        self.others_seen: dict[str, float] = {}
        # members (robots, stations) the network has lost -> (wall time, simulated time) since when,
        # and how often each went offline (a try that failed while this changed does not count)
        self.offline: dict[str, tuple[float, float]] = {}
        self.losses: dict[str, int] = {}
        self.robots = robots

    # ------------------------------------------------------------------ inputs
    def world_state(self, objects: list[tuple[str, str, str]]) -> None:
        """The world's objects as (id, kind, location); samples inside a carrier ('rack_1/03') are not carriers."""
        with self.lock:
            new = [o for o, _, _ in objects if o not in self.carriers and "/" not in o]
            for obj, kind, loc in objects:
                if "/" not in obj:
                    self.carriers[obj], self.carrier_kind[obj] = loc, kind
        if new:
            self.carrier_pool.add(new)

    def station_state(self, station: str, usable: bool, interrupted_goal: str = "", interrupted: str = "",
                      untouched: bool = False) -> None:
        """A station's status: whether it can take work (idle or busy), what a restart interrupted,
        and whether that process had not yet acted on its samples."""
        with self.lock:
            self.usable[station] = usable
            if interrupted_goal:
                self.interrupted[station] = (interrupted_goal, interrupted)
                self.untouched[station] = untouched
            else:
                self.interrupted.pop(station, None)

    def presence(self, member: str, present: bool) -> None:
        """DDS liveliness of a robot's or a station's presence writer changed (lab.ros.presence)."""
        with self.lock:
            if present and member in self.offline:
                since = self.offline.pop(member)[0]
                self._log.warning(f"{member} is back after {time.time() - since:.0f} s offline")
            elif not present and member not in self.offline:
                self.offline[member] = (time.time(), self._now())
                self.losses[member] = self.losses.get(member, 0) + 1
                self._log.error(f"{member} is offline: the network has not heard from it within its presence "
                                "lease; no new work goes to it until it is back")

    def robot_pose(self, robot: str, pose: Pose2D) -> None:
        with self.lock:
            self.poses[robot] = pose

    def battery(self, robot: str, level: float) -> None:
        with self.lock:
            self.batteries[robot] = level

    def goals_under_way(self, action: str, count: int, others: int = 0) -> None:
        """How many goals `action`'s server has under way (its status topic), whoever sent them, and
        how many of them are someone else's (neither this lab manager's nor found at its start)."""
        with self.lock:
            self.under_way[action] = count
            if others or self.others.get(action):
                self.others_seen[action] = time.monotonic()
            self.others[action] = others

    # ------------------------------------------------------------------ reads
    def offline_since(self, member: str) -> str:
        """'' when present; else since when it is offline (UTC)."""
        with self.lock:
            since = self.offline.get(member)
        return "" if since is None else datetime.fromtimestamp(since[0], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def is_offline(self, member: str) -> bool:
        with self.lock:
            return member in self.offline

    def station_usable(self, station: str) -> bool:
        with self.lock:
            return self.usable.get(station, True) and station not in self.offline

    def where(self, carrier: str, default: str) -> str:
        with self.lock:
            return self.carriers.get(carrier, default)

    def moved(self, carrier: str, location: str) -> None:
        with self.lock:
            self.carriers[carrier] = location

    def holding(self, robot: str) -> list[str]:
        with self.lock:
            return [c for c, loc in self.carriers.items() if loc.startswith(f"{robot}/")]

    def occupant(self, slot: str, besides: str) -> str | None:
        """The carrier at `slot` other than `besides`, if any."""
        with self.lock:
            return next((c for c, loc in self.carriers.items() if loc == slot and c != besides), None)

    def unladen(self, robot: str, carrier: str) -> bool:
        """Nothing but `carrier` is on `robot`."""
        with self.lock:
            return not any(loc.partition("/")[0] == robot and c != carrier for c, loc in self.carriers.items())

    def pose(self, robot: str) -> Pose2D | None:
        with self.lock:
            return self.poses.get(robot)

    def battery_level(self, robot: str) -> float:
        with self.lock:
            return self.batteries.get(robot, 1.0)

    def standing_at(self, dock: Pose2D, tolerance: float = 0.3) -> list[str]:
        """The robots whose pose puts them at `dock`."""
        with self.lock:
            return [r for r, pose in self.poses.items() if pose.distance_to(dock) <= tolerance]

    def every_pose_heard(self) -> bool:
        with self.lock:
            return all(r in self.poses for r in self.robots)

    def goals_still_under_way(self) -> str:
        """The robots' actions with goals under way ('' when none)."""
        with self.lock:
            return ", ".join(f"{action} ({n})" for action, n in self.under_way.items() if n)

    def others_busy(self, quiet: float) -> str:
        """The robots' actions that have someone else's goal under way, or had one within the last
        `quiet` wall s ('' when none): wall s, as an operator's next command comes in wall time."""
        now = time.monotonic()
        with self.lock:
            return ", ".join(a for a, t in self.others_seen.items() if self.others.get(a) or now - t < quiet)

    def interrupted_report(self, station: str, goal_id: str) -> str:
        """What station's restart interrupted of goal `goal_id` ('' when it says nothing of it)."""
        with self.lock:
            goal, text = self.interrupted.get(station, ("", ""))
        return text if goal == goal_id else ""

    def interrupted_untouched(self, station: str, goal_id: str) -> bool:
        """Whether the station says its restart interrupted goal `goal_id` before it acted on the samples."""
        with self.lock:
            goal, _ = self.interrupted.get(station, ("", ""))
            return goal == goal_id and self.untouched.get(station, False)


class GoalOwners:
    """Whose are a robot action's goals under way (from its status topic, by goal id): the lab
    manager's own, someone else's (an operator's, by hand), or neither. Not someone else's: goals
    under way in the first status heard of the action (the topic is latched: what a predecessor
    left running, which the start-up recovery waits out), and goals under way while one of the
    lab manager's own is under way on the same robot (the navigator's move of the arm to
    `inspect` inside a drive is part of that drive). Action names are /<robot>/<action>."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # each action's status callback may run on its own thread
        self._heard: set[str] = set()
        self._inherited: set[bytes] = set()
        self._own: dict[str, int] = {}  # action -> the lab manager's goals under way on it

    def others(self, action: str, under_way: list[bytes], sent: Callable[[bytes], bool]) -> int:
        """How many of `action`'s goals `under_way` are someone else's; `sent(id)`: whether the
        lab manager sent that goal."""
        robot = action.split("/")[1]
        with self._lock:
            if action not in self._heard:
                self._heard.add(action)
                self._inherited.update(under_way)
            self._own[action] = sum(1 for i in under_way if sent(i))
            if any(n for a, n in self._own.items() if a.split("/")[1] == robot):
                return 0
            return sum(1 for i in under_way if i not in self._inherited and not sent(i))

