"""The lockstep clock's bookkeeping (no ROS): which simulated times nodes wait for, which nodes
hold the clock, and whether the clock may run on. The embedded simulation (lab.nodes.sim) keeps
one ClockTable and feeds it the lab_interfaces/ClockWait messages of /sim/clock_waits.

A wait says "run the clock on to this time for me". A hold says "I am computing: do not run the
clock for others' waits" (the navigator, the arm and a station inside their actions); a holder
that waits on the clock itself, or has a robot moving, is not computing.

A hold may *yield* to a namespace (`yields_to`, e.g. '/robot1/'): the lab manager holds the clock
over a robot's transport, which is a chain of actions (drive, transfer, drive, transfer). Inside
each action the robot's own node holds it; between two (the result's way back, the lab manager
deciding, the next goal's way out and acceptance) nobody did, and a station waiting on its process
ran the clock at full speed through that hand-off: each wall ms of it cost `speed` simulated ms of
the robot's leg (issue 37: 60 % of robot1's leg time still, at 400x). So a yielding hold stands
aside while some node under its namespace holds the clock, and holds it in between.

A yielding hold blocks for at most `HANDOFF_WALL` wall seconds at a stretch: a hand-off takes
milliseconds; a lab manager that has waited longer between two actions is waiting for something
(an operator's pause, a robot offline, an action server restarting), not computing, and the
stations' processes must not stand still for that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: wall s a yielding hold may stop the clock at a stretch (hand-offs measured at 2-40 ms wall on
#: this 2-core machine under a campaign's load; see BENCHMARKS.md, issue 37)
HANDOFF_WALL = 1.0

Key = tuple[str, int]  # (owner: node name '#' instance, id)


@dataclass
class _Hold:
    yields_to: str = ""
    blocking_since: float | None = None  # wall s it began to block without a holder in its namespace
    expired: bool = False                # this stretch went past HANDOFF_WALL


def node_of(owner: str) -> str:
    """The node's fully qualified name of a ClockWait owner ('/robot1/arm#1a2b3c4d')."""
    return owner.partition("#")[0]


class ClockTable:
    """The waits and holds in force. Not thread-safe: the simulation calls it under its physics lock."""

    def __init__(self, handoff_wall: float = HANDOFF_WALL) -> None:
        self.waits: dict[Key, float] = {}   # -> simulated s waited for
        self.holds: dict[Key, _Hold] = {}
        self.handoff_wall = handoff_wall
        self.expired = 0                    # stretches of yielding holds that went past handoff_wall

    def owners(self) -> set[str]:
        return {k[0] for k in [*self.waits, *self.holds]}

    def update(self, owner: str, ident: int, hold: bool, active: bool, until: float, yields_to: str = "") -> int:
        """One ClockWait message; returns how many entries of a predecessor of the owner's node (a
        restarted node: same name, another instance) it dropped."""
        name = node_of(owner)
        stale = self.drop(lambda o: o != owner and node_of(o) == name)
        key = (owner, int(ident))
        if hold:
            if active:
                self.holds[key] = _Hold(yields_to)
            else:
                self.holds.pop(key, None)
        elif active:
            self.waits[key] = until
        else:
            self.waits.pop(key, None)
        return stale

    def drop(self, which: Callable[[str], bool]) -> int:
        """Drop the waits and holds whose owner `which(owner)` picks; how many."""
        dropped = 0
        for table in (self.waits, self.holds):
            for key in [k for k in table if which(k[0])]:
                del table[key]
                dropped += 1
        return dropped

    def reached(self, now: float) -> None:
        """Forget the waits the clock has reached (a wait need not say it ended)."""
        for key in [k for k, until in self.waits.items() if until <= now + 1e-7]:
            del self.waits[key]

    def landed(self, now: float) -> bool:
        """Whether `now` is a time some node waits for (the clock's step landed on it)."""
        return any(until <= now + 1e-7 for until in self.waits.values())

    def earliest(self) -> float | None:
        return min(self.waits.values(), default=None)

    def computing(self, wall: float) -> set[str]:
        """The owners the clock waits for: holders that wait on nothing themselves, less yielding
        holds standing aside (a node in their namespace holds the clock) or past HANDOFF_WALL."""
        waiting = {k[0] for k in self.waits}
        holding = {node_of(k[0]) for k in self.holds}
        out = set()
        for (owner, _), hold in self.holds.items():
            if owner in waiting:
                continue
            if hold.yields_to:
                if any(n.startswith(hold.yields_to) for n in holding):
                    hold.blocking_since, hold.expired = None, False
                    continue
                if hold.blocking_since is None:
                    hold.blocking_since = wall
                if wall - hold.blocking_since > self.handoff_wall:
                    if not hold.expired:
                        hold.expired = True
                        self.expired += 1
                    continue
            out.add(owner)
        return out


class WallAccount:
    """Where the lockstep clock's wall time goes: each tick's wall seconds charged to what the
    clock did in it: 'moving' (a robot moved), 'waits' (ran on for nodes' waits alone), 'held by
    <node>' (a holder computing: split among them), 'idle' (nothing moved or waited). What a run
    slower than its speed spent its wall time on (issue 37)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def charge(self, wall: float, moving: bool, computing: set[str], waiting: bool) -> None:
        if wall <= 0:
            return
        if moving:
            self._add("moving", wall)
        elif computing:
            for owner in computing:
                self._add(f"held by {node_of(owner)}", wall / len(computing))
        else:
            self._add("waits" if waiting else "idle", wall)

    def _add(self, key: str, wall: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + wall

    def summary(self, top: int = 6) -> str:
        """'moving 41 %, held by /lab_manager 12 %, ...' (the largest `top`), '' when empty."""
        total = sum(self.seconds.values())
        if total <= 0:
            return ""
        ranked = sorted(self.seconds.items(), key=lambda kv: -kv[1])[:top]
        return f"{total:.0f} wall s: " + ", ".join(f"{k} {v / total:.0%}" for k, v in ranked)
