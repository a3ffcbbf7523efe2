"""The console's side of the lab: what it hears over DDS and the commands it sends.

One LabCommander (the CLI's own, so the console sends exactly what `lab campaign run`, `lab pause`
... send) is spun by a thread of its own; it listens to /lab_status (robots, stations, batches),
/safety/state and /world_state (racks and vials), keeps the last of each as plain data and a
list of events (the lab's mode, the e-stop, a station entering or leaving fault, a campaign
started from here ending), and counts changes so that the web side knows when to push.

A source not heard from is reported as such (the page says 'lab manager: not heard from for
12 s', not a blank page): the lab manager publishes /lab_status every
LabManagerParams.status_period (1 s by default), the safety node latches its state.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lab.core.errors import LabError

#: wall s without a /lab_status after which the lab manager counts as not there: it publishes
#: every status_period (1 s of the lab's clock: less than 1 wall s at any speed >= 1)
STATUS_STALE = 5.0
#: wall s between two looks at the campaign store for campaigns that ended
CAMPAIGN_LOOK = 2.0
#: wall s a campaign start waits for the planner to say the campaign's id (its first feedback
#: comes within a second of the goal: lab.nodes.planner._feedback) or to refuse the goal
START_ANSWER = 15.0


@dataclass
class Event:
    time: float
    kind: str      # 'estop' | 'mode' | 'station' | 'stock' | 'robot' | 'campaign' | 'console'
    text: str
    level: str = "info"   # 'info' | 'warning' | 'error'
    key: str = ""         # what the event is about, for a notice to be sent once (e.g. 'station:photoreactor_1')

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, "text": self.text, "level": self.level}


@dataclass
class Snapshot:
    status: dict[str, Any] | None = None
    status_at: float = 0.0
    safety: dict[str, Any] | None = None
    world: dict[str, Any] | None = None
    events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))


def status_dict(msg: Any) -> dict[str, Any]:
    """A LabStatus as plain data (what the page draws)."""
    return {
        "stamp": msg.stamp.sec + msg.stamp.nanosec * 1e-9,   # the lab's clock when it was said
        "mode": msg.mode_text,
        "active_batches": list(msg.active_batches),
        "experiments_running": int(msg.experiments_running),
        "experiments_done": int(msg.experiments_done),
        "experiments_failed": int(msg.experiments_failed),
        "active_steps": list(msg.active_steps),
        "stations": [{"name": s.name, "kind": s.kind, "state": s.state_text, "message": s.message,
                      "holding": list(s.holding), "queue": list(s.queue), "step": s.current_step,
                      "progress": round(float(s.progress), 3),
                      "stocks": [{"name": n, "level": round(lv, 4), "capacity": c, "unit": u} for n, lv, c, u in
                                 zip(s.stock_names, s.stock_levels, s.stock_capacities, s.stock_units, strict=False)]}
                     for s in msg.stations],
        "robots": [{"name": r.name, "x": round(r.pose.x, 3), "y": round(r.pose.y, 3), "yaw": round(r.pose.theta, 3),
                    "battery": round(float(r.battery), 3), "charging": bool(r.charging), "state": r.state,
                    "docked_at": r.docked_at, "holding": list(r.holding), "message": r.message}
                   for r in msg.robots],
    }


class LabLink:
    """The lab as the console sees it. `start()` spins a LabCommander in a thread; `stop()` ends it."""

    def __init__(self, node_name: str = "lab_console", database: Any = None) -> None:
        self.node_name = node_name
        self.database = database                  # the campaign store: campaigns ending are events
        self._statuses: dict[str, str] | None = None
        self._looked = 0.0
        self.snapshot = Snapshot()
        self.version = 0             # bumped on every change the page shows
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cmd: Any = None
        self._tasks: list[tuple[Any, str]] = []   # campaigns started from here, followed to their end
        self.listeners: list[Any] = []            # called with each new Event (lab.console.notify)

    # --- life ------------------------------------------------------------------------
    def start(self, ros_args: list[str] | None = None) -> None:
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        from lab.app.commander import LabCommander
        from lab.ros.qos import LATCHED
        from lab_interfaces.msg import LabStatus, SafetyState, WorldState

        if not rclpy.ok():
            rclpy.init(args=ros_args, signal_handler_options=SignalHandlerOptions.NO)  # uvicorn handles signals
        self.cmd = cmd = LabCommander(self.node_name)
        from lab.ros.presence import GraphRejoin

        self._rejoin = GraphRejoin(cmd)  # the graph heals after a network cut, as for every lab node
        cmd.create_subscription(LabStatus, "/lab_status", self._on_status, 10)
        cmd.create_subscription(SafetyState, "/safety/state", self._on_safety, LATCHED)
        cmd.create_subscription(WorldState, "/world_state", self._on_world, LATCHED)
        self._thread = threading.Thread(target=self._spin, name="lab-link", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.cmd.spin_for(0.05)
                self._follow_tasks()
                if time.monotonic() - self._looked > CAMPAIGN_LOOK:
                    self._looked = time.monotonic()
                    self._campaign_ends()
            except Exception as exc:
                self.event("console", f"the console's link to the lab: {exc}", "error")
                time.sleep(0.5)

    def stop(self) -> None:
        import rclpy

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self.cmd is not None:
            self.cmd.destroy_node()
        rclpy.try_shutdown()

    # --- what is heard ---------------------------------------------------------------
    def event(self, kind: str, text: str, level: str = "info", key: str = "") -> None:
        event = Event(time.time(), kind, text, level, key)
        with self._lock:
            self.snapshot.events.append(event)
            self.version += 1
        for listener in list(self.listeners):
            listener(event)

    def _on_status(self, msg: Any) -> None:
        new = status_dict(msg)
        with self._lock:
            old = self.snapshot.status
            self.snapshot.status, self.snapshot.status_at = new, time.time()
            self.version += 1
        for kind, key, text, level in status_changes(old, new):
            self.event(kind, text, level, key)

    def _on_safety(self, msg: Any) -> None:
        new = {"stopped": bool(msg.stopped), "by": msg.by, "reason": msg.reason}
        with self._lock:
            old, self.snapshot.safety = self.snapshot.safety, new
            self.version += 1
        if old is None or old["stopped"] != new["stopped"]:
            if new["stopped"]:
                self.event("estop", f"EMERGENCY STOP by {new['by']}: {new['reason'] or '(no reason given)'}", "error",
                           "estop")
            elif old is not None:
                self.event("estop", f"e-stop released by {new['by']}", "warning")

    def _on_world(self, msg: Any) -> None:
        with self._lock:
            self.snapshot.world = {"objects": [{"id": o, "kind": k, "at": loc} for o, k, loc in
                                               zip(msg.objects, msg.kinds, msg.locations, strict=False)]}
            self.version += 1

    def state(self) -> dict[str, Any]:
        """Everything the live page shows, with what is missing said."""
        now = time.time()
        with self._lock:
            snap = self.snapshot
            missing = []
            if snap.status is None:
                missing.append("lab manager: nothing heard yet (/lab_status): is the lab up?")
            elif now - snap.status_at > STATUS_STALE:
                missing.append(f"lab manager: not heard from for {now - snap.status_at:.0f} s (/lab_status)")
            if snap.safety is None:
                missing.append("safety node: its state not heard (/safety/state): the e-stop may not reach the lab")
            return {"version": self.version, "time": now, "status": snap.status, "safety": snap.safety,
                    "world": snap.world, "missing": missing,
                    "events": [e.as_dict() for e in list(snap.events)[-50:]]}

    # --- commands ----------------------------------------------------------------------
    def start_campaign(self, name: str, budget: int, batch: int, seed: int, requested_by: str,
                       resume_id: str = "") -> tuple[bool, str, str]:
        """Send the RunCampaign goal the CLI sends; (accepted, message, campaign id) once the planner
        has said the campaign's id or refused it. The goal is followed until it ends (the planner sees
        the console as the campaign's client)."""
        from lab_interfaces.action import RunCampaign

        goal = RunCampaign.Goal(campaign=name, budget=budget, batch_size=batch, seed=seed, resume=bool(resume_id),
                                campaign_id=resume_id, requested_by=requested_by,
                                client_node=self.cmd.get_fully_qualified_name())
        task = self.cmd._send_goal(RunCampaign, "/planner/run_campaign", goal, server_timeout=10.0)
        deadline = time.monotonic() + START_ANSWER
        while time.monotonic() < deadline:
            if task.done.is_set():
                result = task.result
                ok = bool(result is not None and result.success)
                return ok, (result.message if result is not None else "the planner refused the goal"), \
                    (result.campaign_id if result is not None else "")
            if task.feedback is not None and task.feedback.campaign_id:
                with self._lock:
                    self._tasks.append((task, task.feedback.campaign_id))
                return True, f"campaign {task.feedback.campaign_id} started", task.feedback.campaign_id
            time.sleep(0.05)
        with self._lock:
            self._tasks.append((task, ""))
        raise TimeoutError(f"the planner did not answer within {START_ANSWER:g} s (is it running? `lab campaign list` "
                           "shows whether the campaign started)")

    def _follow_tasks(self) -> None:
        with self._lock:
            done = [(t, cid) for t, cid in self._tasks if t.done.is_set()]
            self._tasks = [(t, cid) for t, cid in self._tasks if not t.done.is_set()]
        for task, cid in done:
            result = task.result
            if result is not None:  # (its end, as the store shows it, is the 'campaign' event)
                self.event("console", f"campaign {result.campaign_id or cid}, started here: {result.message}",
                           "info" if result.success else "warning", f"goal:{result.campaign_id or cid}")

    def _campaign_ends(self) -> None:
        """A campaign that was running and is not any more (done, cancelled), whoever started it: an
        event (and a notice). Read from the store every CAMPAIGN_LOOK s; what ended before the console
        started is not news."""
        from lab.core.campaign.store import CampaignStore

        if self.database is None or not self.database.is_file():
            return
        with CampaignStore.open(self.database) as store:
            infos = store.list_campaigns()
            statuses = {i.id: i.status for i in infos}
            ended = [i for i in infos if self._statuses is not None and self._statuses.get(i.id) == "running"
                     and i.status != "running"]
            counts = {i.id: store.count_states(i.id) for i in ended}
        self._statuses = statuses
        for info in ended:
            c = counts[info.id]
            self.event("campaign", f"campaign {info.id} {info.status}: {c.get('done', 0)} measured, "
                       f"{c.get('failed', 0)} failed of {info.budget}", "info" if info.status == "done" else "warning",
                       f"campaign:{info.id}")

    def estop(self, release: bool, reason: str, who: str, socket_path: str = "") -> tuple[bool, str]:
        """Stop (or release) the lab as `lab estop` does: the safety node's fast path on this host
        first (recorded as this process's user for `who`); a stop goes over DDS when that cannot be
        reached, a release never does (lab.core.operations.safety)."""
        from lab.core.operations.safety import fast_path_request

        answer = fast_path_request("release" if release else "stop", reason, socket_path, via="console",
                                   on_behalf=who)
        if not answer.get("unreachable"):
            return bool(answer.get("success")), str(answer.get("message"))
        if release:
            return False, f"cannot release: {answer.get('message')} (a release goes through the safety node's host)"
        from lab_interfaces.srv import SafetyCommand

        try:
            return self.cmd._call_service(SafetyCommand, "/safety/stop",
                                          SafetyCommand.Request(by=f"{who} via console", reason=reason),
                                          timeout=5.0, poll=0.02)
        except TimeoutError as exc:
            return False, f"{exc}: stop the robots by their own hardware stop"

    def call(self, what: str, *args: Any) -> tuple[bool, str]:
        """One of the commander's operator services: pause, resume, cancel_campaign."""
        if what not in ("pause", "resume", "cancel_campaign"):
            raise LabError(f"no such command: {what}")
        return getattr(self.cmd, what)(*args)


def status_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Events between two lab statuses, as (kind, key, text, level): the lab's mode, a station entering
    or leaving fault or offline, a robot stopped with a message, a stock falling below its refill level."""
    if old is None:
        return []
    out = []
    if old["mode"] != new["mode"]:
        out.append(("mode", "mode", f"lab {new['mode']} (was {old['mode']})", "info"))
    before = {s["name"]: s for s in old["stations"]}
    for s in new["stations"]:
        prev = before.get(s["name"])
        if prev is None:
            continue
        if prev["state"] != s["state"]:
            if s["state"] in ("fault", "offline"):
                out.append(("station", f"station:{s['name']}", f"{s['name']} {s['state']}: "
                            f"{s['message'] or '(no message)'}", "error"))
            elif prev["state"] in ("fault", "offline"):
                out.append(("station", f"station:{s['name']}", f"{s['name']} back ({s['state']})", "warning"))
        low_before = {k["name"] for k in prev.get("stocks", []) if _low(k)}
        for k in s.get("stocks", []):
            if _low(k) and k["name"] not in low_before:
                out.append(("stock", f"stock:{s['name']}/{k['name']}", f"{s['name']}: {k['name']} low "
                            f"({k['level']:g} of {k['capacity']:g} {k['unit']}): refill it", "warning"))
    robots = {r["name"]: r for r in old["robots"]}
    for r in new["robots"]:
        prev = robots.get(r["name"])
        if prev is not None and r["state"] == "stopped" and prev["state"] != "stopped" and r["message"]:
            out.append(("robot", f"robot:{r['name']}", f"{r['name']} stopped: {r['message']}", "error"))
    return out


#: a stock counts as low below this fraction of its capacity (the station's own refill level is not
#: in StationStatus; lab.core.stations' dispensers refuse a dispense they cannot finish)
LOW_STOCK = 0.15


def _low(stock: dict[str, Any]) -> bool:
    return stock["capacity"] > 0 and stock["level"] < LOW_STOCK * stock["capacity"]
