"""`station`: one lab station (one instance per station of config/stations.yaml).

    ~/run_station (RunStation)   run the station's process on the rack/tray placed in it
    ~/status (StationStatus)     idle | busy | fault | offline, holding, queue, stocks (latched,
                                 on every change and every `status_period` wall seconds)
    ~/refill_stock (RefillStock) dispensers: refill one stock or all

The kind (config/station_processes.yaml) says what the process is; the instrument backend
(parameter `backend`, default `simulated`; lab.backends.instruments) carries out each step.
A goal is checked before anything happens: the carrier must be in one of the station's
slots (/world_state), the process must exist, every sample within the station's bounds and
its stocks sufficient; otherwise it is aborted with the reason and nothing changes. Goals
arriving while a process runs wait in the queue (shown in the status). A failed step puts
the station in fault for `fault_recovery` simulated seconds; `fault_probability` and
`fail_next` inject faults, `hang_next` makes the next processes hang until cancelled (all
settable at run time with `ros2 param set`).

What must outlive the process is kept in `state_file` (runs/stations/<name>.json, written
atomically): the stock levels, and the process under way (its goal id, rack, samples, step, and
whether the instrument has acted on the samples yet). A station restarted mid-process takes its
stocks back and reports the interrupted process in its status (`interrupted`, `interrupted_goal`,
`interrupted_untouched`) until its next process starts: the lab manager fails those samples with
that reason (half dispensed or half illuminated, they cannot be measured), or, when the process
had not yet acted on them, runs the step again on them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType

from lab.backends.base import backend_class
from lab.backends.instruments import InstrumentBackend, StepCancelled
from lab.core.config.params import StationParams
from lab.core.errors import ConfigError, InvalidGoal, LabError, StationFault
from lab.core.operations.workflow import load_workflows
from lab.core.persist import take_back, write_json
from lab.core.robot.world import load_stations
from lab.core.stations.station import StationCore, Step, interruption, load_kinds, untouched
from lab.ros.clock import ClockWaits, clock_hold, sim_now, sim_reached, wait_sim
from lab.ros.conversions import measurement_to_msg, msg_to_formulation
from lab.ros.main import node_main
from lab.ros.node import LabNode
from lab.ros.params import declare_params, file_or_default
from lab.ros.presence import offer_presence, station_topic
from lab.ros.qos import LATCHED
from lab.ros.safety import SafetyMonitor
from lab_interfaces.action import RunStation
from lab_interfaces.msg import StationStatus, WorldState
from lab_interfaces.srv import RefillStock

#: simulated s an injected hang lasts (for ever, in practice)
HANG = 1e9

STATE_TEXT = {StationStatus.IDLE: "idle", StationStatus.BUSY: "busy", StationStatus.FAULT: "fault",
              StationStatus.OFFLINE: "offline"}


class StationNode(LabNode):
    def __init__(self) -> None:
        super().__init__("station")
        self.params = params = declare_params(self, StationParams)
        self.station = params.station_name or self.get_name()
        stations_file = file_or_default(params.stations_file, "config/stations.yaml")
        stations = load_stations(stations_file).stations
        if self.station not in stations:
            raise ConfigError(f"station '{self.station}' is not in {stations_file} "
                              f"(stations: {', '.join(stations)})")
        self.slots = [f"{self.station}/{s}" for s in stations[self.station].slots]
        kind = params.kind or stations[self.station].kind
        kinds = load_kinds(file_or_default(params.processes_file, "config/station_processes.yaml"))
        if kind not in kinds:
            raise ConfigError(f"station kind '{kind}' has no entry in station_processes.yaml "
                              f"(kinds: {', '.join(kinds)})")
        self.kind = kind
        seed = params.seed or sum(map(ord, self.station))
        flows = load_workflows(file_or_default(params.workflows_file, "config/workflows.yaml"))
        visiting = [w.capacity for w in flows.values() if any(step.kind == kind for step in w.steps)]
        self.core = StationCore(self.station, kinds[kind], seed=seed, capacity=max(visiting, default=None),
                                lab_components={c for k in kinds.values() for c in k.components})
        self.backend: InstrumentBackend = backend_class("instrument", params.backend)(
            self.core, {"take_fault": self._take_fault, "params": params, "logger": self.get_logger()})
        self.backend.connect()

        self._lock = threading.Lock()          # one process at a time
        self._state_lock = threading.Lock()
        self.state, self.message, self.step, self.progress = StationStatus.IDLE, "", "", 0.0
        self.queue: list[str] = []
        self.fault_until = 0.0
        self.world: dict[str, str] | None = None  # object -> location
        self._state_file = Path(params.state_file.replace("{station}", self.station)) if params.state_file else None
        self._process: dict[str, Any] | None = None    # the process under way, as saved
        self._interrupted_record: dict[str, Any] | None = None  # the process a restart interrupted, as saved
        self._restore()
        group = ReentrantCallbackGroup()
        self.safety = SafetyMonitor(self, callback_group=group, until_heard=True)  # runs nothing before it
        self.status_pub = self.create_publisher(StationStatus, "~/status", LATCHED)
        self.create_subscription(WorldState, "/world_state", self._world_state, LATCHED, callback_group=group)
        ActionServer(self, RunStation, "~/run_station", execute_callback=self._execute,
                     goal_callback=lambda _: GoalResponse.ACCEPT, cancel_callback=lambda _: CancelResponse.ACCEPT,
                     callback_group=group, result_timeout=int(self.params.result_keep))
        self.create_service(RefillStock, "~/refill_stock", self._refill, callback_group=group)
        self._presence = offer_presence(self, station_topic(self.station), params.presence_lease)  # lab.ros.presence
        # status on the wall clock: it must flow even when the simulated clock stops
        self.create_timer(params.status_period, self._publish_status,
                          callback_group=group, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._publish_status()
        processes = ", ".join(self.core.spec.processes) or "none"
        self.get_logger().info(f"{self.station}: kind {kind}, processes {processes}")

    def shutdown(self) -> None:
        self.backend.disconnect()

    # ------------------------------------------------------------------ state kept across restarts
    def _restore(self) -> None:
        """Stocks and the interrupted process as the previous process left them (`state_file`); one
        that cannot be used is set aside (renamed, with the reason in the log)."""
        path = self._state_file
        if path is None:
            return
        record, why = take_back(path, self._take_back)
        if why:
            self.get_logger().error(f"{self.station}: {why}; stocks full")
            return
        self._interrupted_record = record or None
        if self.interrupted is not None:
            self.get_logger().error(f"{self.station}: {self.interrupted[1]} (goal {self.interrupted[0]})")
        self._save_state(sync=True)

    def _take_back(self, state: Any) -> dict[str, Any]:
        """A saved state's stocks (all or nothing) and the record of the process it was running
        ({} when none); InvalidGoal when unusable."""
        if not isinstance(state, dict):
            raise InvalidGoal("not a saved station state")
        record = state.get("process") or state.get("interrupted") or {}
        if record:
            interruption(record)  # a malformed record: InvalidGoal
        stocks = state.get("stocks") or {}
        if not isinstance(stocks, dict):
            raise InvalidGoal(f"stocks: not a mapping of stock to level: {stocks!r}")
        self.core.restore_stocks(stocks)  # all or nothing; the last to fail
        return record

    @property
    def interrupted(self) -> tuple[str, str] | None:
        """(goal id, what) of the process a restart interrupted, until the next process starts."""
        record = self._interrupted_record
        return interruption(record) if record else None

    def _save_state(self, sync: bool = False) -> None:
        if self._state_file is None:
            return
        state = {"stocks": self.core.stock_levels(), "process": self._process,
                 "interrupted": self._interrupted_record}
        try:
            write_json(self._state_file, state, sync=sync)
        except OSError as exc:  # a full disk must not stop the station; it is said loudly
            self.get_logger().error(f"{self.station}: could not save its state to {self._state_file}: {exc}",
                                    throttle_duration_sec=60.0)

    def _take_fault(self, step: Step) -> bool:
        return self._take_next("fail_next") or bool(self.core.rng.random() < self.params.fault_probability)

    def _take_next(self, name: str) -> bool:
        """One of the injected faults counted down by a parameter (fail_next, hang_next)."""
        pending = getattr(self.params, name)
        if pending > 0:
            from rclpy.parameter import Parameter

            self.set_parameters([Parameter(name, Parameter.Type.INTEGER, pending - 1)])
            return True
        return False

    def _world_state(self, msg: WorldState) -> None:
        self.world = dict(zip(msg.objects, msg.locations, strict=False))
        self._publish_status()

    # ------------------------------------------------------------------ status
    def _set(self, state: int | None = None, message: str | None = None, step: str | None = None,
             progress: float | None = None) -> None:
        with self._state_lock:
            if state is not None:
                self.state = state
            if message is not None:
                self.message = message
            if step is not None:
                self.step = step
            if progress is not None:
                self.progress = progress
        self._publish_status()

    def _publish_status(self) -> None:
        with self._state_lock:
            if self.state == StationStatus.FAULT and sim_reached(self, self.fault_until) and not self._lock.locked():
                self.state, self.message = StationStatus.IDLE, "recovered from fault"
            msg = StationStatus(name=self.station, kind=self.kind, state=self.state,
                                state_text=STATE_TEXT[self.state], message=self.message, queue=list(self.queue),
                                current_step=self.step, progress=float(self.progress))
            if self.interrupted is not None:
                msg.interrupted_goal, msg.interrupted = self.interrupted
                msg.interrupted_untouched = untouched(self._interrupted_record or {})
        msg.stamp = self.get_clock().now().to_msg()
        world = self.world or {}
        msg.holding = sorted(obj for obj, loc in world.items() if loc in self.slots)
        for stock in self.core.stocks.values():
            msg.stock_names.append(stock.name)
            msg.stock_levels.append(float(stock.level))
            msg.stock_capacities.append(float(stock.capacity))
            msg.stock_units.append(stock.unit)
        self.status_pub.publish(msg)

    def _refill(self, request, response):
        try:
            with self._lock:
                self.core.refill(request.stock, float(request.amount))
                self.backend.refill(request.stock, float(request.amount))
                self._save_state(sync=True)
            response.success, response.message = True, "refilled"
        except (InvalidGoal, StationFault) as exc:
            response.success, response.message = False, str(exc)
        response.stock_names = list(self.core.stocks)
        response.stock_levels = [float(s.level) for s in self.core.stocks.values()]
        self._publish_status()
        return response

    # ------------------------------------------------------------------ the process
    def _refuse(self, goal_handle, reason: str):
        self.get_logger().warning(f"{self.station}: refused {goal_handle.request.rack_id or '?'}: {reason}")
        goal_handle.abort()
        return RunStation.Result(success=False, message=reason)

    def _check_presence(self, rack_id: str) -> None:
        if not self.params.check_presence:
            return
        deadline = time.monotonic() + 5.0
        while self.world is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.world is None:
            raise InvalidGoal("no /world_state received: cannot tell what is in the station")
        # the robot's last release may not be in the world state we hold yet: wait for it a little
        deadline = time.monotonic() + self.params.presence_wait
        while (self.world or {}).get(rack_id) not in self.slots and time.monotonic() < deadline:
            time.sleep(0.02)
        where = (self.world or {}).get(rack_id)
        if where not in self.slots:
            raise InvalidGoal(f"{rack_id or 'the rack'} is not in {self.station} "
                              f"({'it is at ' + where if where else 'no such object'})")

    def _execute(self, goal_handle):
        request = goal_handle.request
        refusal = self.safety.refusal()
        if refusal:
            return self._refuse(goal_handle, refusal)
        try:
            samples = [msg_to_formulation(f) for f in request.formulations]
            steps = self.core.plan(request.process, samples)
        except InvalidGoal as exc:
            return self._refuse(goal_handle, str(exc))
        with self._state_lock:
            self.queue.append(request.rack_id)
        self._publish_status()
        try:
            while not self._lock.acquire(timeout=0.1):
                if goal_handle.is_cancel_requested:
                    goal_handle.canceled()
                    return RunStation.Result(success=False, message="cancelled while queued")
            try:
                with clock_hold(self):  # between its steps the station computes: the clock waits for it
                    return self._run(goal_handle, request, samples, steps)
            finally:
                self._lock.release()
        finally:
            with self._state_lock:
                if request.rack_id in self.queue:
                    self.queue.remove(request.rack_id)
            self._publish_status()

    def _run(self, goal_handle, request, samples, steps: list[Step]):
        try:
            self._check_presence(request.rack_id)
            # checked again here, not only on arrival: a goal that waited in the queue or for the
            # rack's arrival while the lab was stopped must not start
            refusal = self.safety.refusal()
            if refusal:
                raise InvalidGoal(refusal)
            if self.state == StationStatus.FAULT and not sim_reached(self, self.fault_until):
                raise InvalidGoal(f"{self.station} is in fault ({self.message}) for another "
                                  f"{self.fault_until - sim_now(self):.0f} s")
            self.core.plan(request.process, samples)  # stocks may have changed while queued
        except InvalidGoal as exc:
            return self._refuse(goal_handle, str(exc))
        with self._state_lock:
            self.queue.remove(request.rack_id)
        began = sim_now(self)
        self._set(StationStatus.BUSY, f"{request.process or self.core.spec.default} on {request.rack_id}",
                  steps[0].name, 0.0)
        # from here the samples are being changed: a restart before the end reports them interrupted
        self._process = {"goal": bytes(goal_handle.goal_id.uuid).hex(), "rack": request.rack_id,
                         "process": request.process or self.core.spec.default,
                         "samples": [f.sample_id for f in samples], "step": steps[0].name, "progress": 0.0,
                         "touched": False}
        self._interrupted_record = None
        self._save_state(sync=True)
        try:
            return self._steps(goal_handle, request, samples, steps, began)
        finally:
            self._process = None
            self._save_state(sync=True)

    def _steps(self, goal_handle, request, samples, steps: list[Step], began: float):
        total = sum(s.seconds for s in steps) or 1e-9
        done_before = 0.0
        self.backend.begin(samples)
        try:
            for index, step in enumerate(steps):
                self._set(step=step.name)
                if self._process is not None:
                    self._process.update(step=step.name, progress=done_before / total)
                    self._save_state()

                def tick(elapsed: float, index=index, step=step, before=done_before) -> None:
                    progress = min(1.0, (before + elapsed) / total)
                    self._set(progress=progress)
                    if self._process is not None and progress - self._process["progress"] >= 0.05:
                        self._process["progress"] = progress  # what a restart's report will say
                        self._save_state()
                    goal_handle.publish_feedback(RunStation.Feedback(
                        step=step.name, step_index=index, step_count=len(steps), progress=progress,
                        time_left=float(max(0.0, total - before - elapsed))))

                tick(0.0)

                spent = [0.0]  # of this step, over all the backend's waits (a feedback that never goes back)

                def wait(seconds: float, tick=tick, spent=spent) -> bool:
                    began, base = sim_now(self), spent[0]
                    try:
                        return wait_sim(self, seconds, on_tick=lambda elapsed: tick(base + elapsed),
                                        cancelled=lambda: goal_handle.is_cancel_requested or self.safety.stopped)
                    finally:
                        spent[0] = base + max(0.0, sim_now(self) - began)

                self.backend.progress = lambda fraction, tick=tick, step=step, spent=spent: tick(
                    max(spent[0], fraction * step.seconds))

                if index == 0 and self._take_next("hang_next"):
                    # an instrument that stops answering: time passes, the process never ends;
                    # only a cancel (the caller's time-out) or the e-stop ends it
                    self.get_logger().warning(f"{self.station}: {step.name} hangs (injected, hang_next)")
                    wait(HANG)
                    raise StepCancelled(step.name)
                if self._process is not None and not self._process["touched"]:
                    # saved before the instrument acts: a restart until here leaves the samples as
                    # they came (the lab manager runs the step again on them), after it they are spoiled
                    self._process["touched"] = True
                    self._save_state(sync=True)
                self.backend.execute(step, samples, wait)
                done_before += step.seconds
            measurements = self.backend.results(samples)
        except StepCancelled:
            # the stop wins over a cancel: the lab manager cancels its goals *because* of the stop, and
            # its cancel can arrive before this node hears the safety state or with it. Reported as
            # 'cancelled', the batch was not told its samples were spoiled by the stop, and went on to
            # the next station (test_estop_recovery, clean clone at 932c2a6)
            if self.safety.stopped:
                # the process is ended, not held: the instrument is left safe (lamp off, nothing dispensing)
                why = f"stopped: {self.safety.reason()}"
                self._set(StationStatus.IDLE, f"{why} ({request.rack_id})", "", 0.0)
                self.get_logger().error(f"{self.station}: {request.rack_id}: {why}")
                goal_handle.abort()
                return RunStation.Result(success=False, message=why, duration=float(sim_now(self) - began))
            self._set(StationStatus.IDLE, f"cancelled {request.rack_id}", "", 0.0)
            goal_handle.canceled()
            return RunStation.Result(success=False, message="cancelled", duration=float(sim_now(self) - began))
        except (StationFault, LabError) as exc:
            self.fault_until = sim_now(self) + self.params.fault_recovery
            waits = ClockWaits.of(self)  # a lockstep clock must run on until the fault clears
            if waits is not None:
                waits.begin(self.fault_until)
            self._set(StationStatus.FAULT, str(exc), "", 0.0)
            self.get_logger().error(f"{self.station}: {exc}")
            goal_handle.abort()
            return RunStation.Result(success=False, message=str(exc), duration=float(sim_now(self) - began))
        self._set(StationStatus.IDLE, f"done {request.rack_id}", "", 1.0)
        units = {c: spec[2] for c, spec in self.core.spec.components.items()}
        result = RunStation.Result(success=True, duration=float(sim_now(self) - began),
                                   message=f"{len(measurements)} samples")
        kind = samples[0].specimen_kind if samples else ""
        result.measurements = [measurement_to_msg(m, units, kind) for m in measurements]
        goal_handle.succeed()
        return result


def main(args: list[str] | None = None) -> None:
    node_main(StationNode, "station", threads=4)


if __name__ == "__main__":
    main()
