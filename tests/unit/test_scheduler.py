"""The lab manager's scheduling (lab.core.operations.scheduler) against a fake lab: no ROS, no simulation.

The fake carries out the scheduler's orders at once (a drive puts the robot at the dock, a
transfer moves the carrier if it is where the order says, a station answers for each sample)
and keeps them in order, so a test can say what the lab was told to do; a test scripts a
failure, a lost goal or a slow process by replacing one answer."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lab.core.campaign.formulation import CHEMISTRY, EQUIPMENT, MeasurementData
from lab.core.config.params import LabManagerParams
from lab.core.errors import InvalidGoal
from lab.core.operations.resources import Unavailable
from lab.core.operations.scheduler import (
    Call,
    Drive,
    Order,
    Outcome,
    Park,
    Process,
    Progress,
    Run,
    Sample,
    SampleReport,
    Scheduler,
    Transfer,
    recovery,
)
from lab.core.operations.workflow import load_workflows
from lab.core.robot.world import Pose2D, StationsConfig, load_stations
from lab.core.stations.station import load_kinds

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ["solid_dispenser", "liquid_dispenser", "photoreactor", "gas_chromatograph"]


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(text)

    def warning(self, text: str, **_: Any) -> None:
        self.lines.append(text)

    def error(self, text: str, **_: Any) -> None:
        self.lines.append(text)

    def said(self, part: str) -> bool:
        return any(part in line for line in self.lines)


#: every FakeLab of the test under way: closed when it ends (see _close_fake_labs)
_OPEN: list[FakeLab] = []


@pytest.fixture(autouse=True)
def _close_fake_labs():
    """A scheduler's background threads (a stray carrier retried every 60-1800 simulated s) ran
    on after their test on a fake clock whose sleep returns at once: one kept a core half busy
    for the rest of the suite's run. Closed, the fake clock ends them (as a node's shutdown does)."""
    yield
    for fake in _OPEN:
        fake.closed = True
    _OPEN.clear()


class FakeLab:
    """Carries out orders at once; `script(order, call)` may answer one instead (None: the default)."""

    def __init__(self, config: StationsConfig) -> None:
        self.closed = False
        _OPEN.append(self)
        self.config = config
        self.t = 0.0
        self.orders: list[Order] = []
        self.world: dict[str, str] = {}
        self.sched: Scheduler | None = None
        self.script: Callable[[Order, Call], Outcome | None] = lambda order, call: None
        self.followed: Callable[[Process, Call], Outcome] = lambda order, call: Outcome(False, unknown=True)
        self.lock = threading.Lock()
        self.held: dict[str, int] = {}         # robot -> holds open on it (Lab.hold)
        self.held_orders: list[Order] = []     # the robots' orders sent under their robot's hold

    def put(self, carrier: str, location: str) -> None:
        self.world[carrier] = location
        assert self.sched is not None
        self.sched.world_state([(c, "tray" if c.startswith("tray") else "rack", loc) for c, loc in self.world.items()])

    # the scheduler's Lab
    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float, cancelled: Callable[[], bool] = lambda: False) -> None:
        if self.closed:
            raise RuntimeError("the test is over: its fake lab's clock has stopped")
        with self.lock:
            self.t += seconds

    def send(self, order: Order, call: Call) -> Outcome:
        assert self.sched is not None
        if call.cancel():
            return Outcome(False, "cancelled")
        call.accepted()
        with self.lock:
            self.orders.append(order)
            if isinstance(order, Drive | Transfer) and self.held.get(order.robot, 0) > 0:
                self.held_orders.append(order)
            self.t += 10.0
        scripted = self.script(order, call)
        if scripted is not None:
            return scripted
        if isinstance(order, Drive):
            self.sched.robot_pose(order.robot, self.config.stations[order.station].dock)
        elif isinstance(order, Park):
            self.sched.robot_pose(order.robot, order.pose)
        elif isinstance(order, Transfer):
            if self.world.get(order.carrier) != order.source:
                return Outcome(False, f"{order.carrier} is not at {order.source}")
            self.put(order.carrier, order.target)
        else:
            return Outcome(True, reports=[self.measure(order.station, s) for s in order.samples])
        return Outcome(True)

    @staticmethod
    def measure(station: str, sample: tuple[str, str, dict[str, tuple[float, str]]]) -> SampleReport:
        sample_id, _, amounts = sample
        if station.startswith("solid"):  # dispenses 2 % more than asked
            return SampleReport(sample_id, True, dispensed={c: (a * 1.02, u) for c, (a, u) in amounts.items()
                                                            if u == "mg"})
        if station.startswith("gas_chromatograph") or station.startswith("gc"):
            return SampleReport(sample_id, True, measurement=MeasurementData(sample_id, True, {"h2": 1.0},
                                                                             station=station))
        return SampleReport(sample_id, True)

    def follow(self, order: Process, call: Call) -> Outcome:
        return self.followed(order, call)

    @contextmanager
    def hold(self, robot: str) -> Iterator[None]:
        with self.lock:
            self.held[robot] = self.held.get(robot, 0) + 1
        try:
            yield
        finally:
            with self.lock:
                self.held[robot] -= 1

    # what the tests read
    def processes(self) -> list[str]:
        return [o.station for o in self.orders if isinstance(o, Process)]


class Watcher:
    def __init__(self) -> None:
        self.is_cancel_requested = False
        self.progress: list[Progress] = []

    def publish_feedback(self, progress: Progress) -> None:
        self.progress.append(progress)


def lab(tmp_path: Path, robots: tuple[str, ...] = ("robot1",), extra: dict[str, str] | None = None,
        only_workflows: tuple[str, ...] | None = None, **params: Any) -> tuple[Scheduler, FakeLab, Log]:
    """A scheduler over the shipped stations (plus `extra`: name -> a copy of that station),
    carriers rack_1, rack_2 in rack storage, robots at rack storage's dock."""
    config = load_stations(ROOT / "config/stations.yaml")
    stations = dict(config.stations)
    for i, (name, like) in enumerate((extra or {}).items()):
        stations[name] = dataclasses.replace(stations[like], name=name,
                                             dock=Pose2D(stations[like].dock.x + 3.0 + i, stations[like].dock.y))
    config = StationsConfig(config.path, stations, config.parking)
    fake = FakeLab(config)
    log = Log()
    kinds = load_kinds(ROOT / "config/station_processes.yaml")
    workflows = load_workflows(ROOT / "config/workflows.yaml", set(config.kinds().values()))
    if only_workflows is not None:  # a lab run with a workflows file of its own
        workflows = {name: wf for name, wf in workflows.items() if name in only_workflows}
    settings = LabManagerParams(robots=list(robots), database=str(tmp_path / "campaigns.db"), **params)
    sched = Scheduler(settings, config, kinds, workflows, fake, log)
    fake.sched = sched
    for robot in robots:
        sched.robot_pose(robot, stations["rack_storage"].dock)
        sched.battery(robot, 1.0)
    fake.put("rack_1", "rack_storage/slot1")
    fake.put("rack_2", "rack_storage/slot2")
    return sched, fake, log


def samples(n: int, prefix: str = "e") -> list[Sample]:
    return [Sample(f"{prefix}{i:03d}", "vial", {"P10": (2.0, "mg"), "water": (5.0, "mL")}) for i in range(n)]


def run(sched: Scheduler, n: int = 3, batch_id: str = "camp/b001", watcher: Watcher | None = None) -> Run:
    sched.recovered.set()
    return sched.run_batch(batch_id, "photocatalysis", samples(n), watcher or Watcher())


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(target()), daemon=True)
    thread.start()
    return thread, out


def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def free(sched: Scheduler) -> bool:
    pools = (sched.station_pool, sched.robot_pool, sched.carrier_pool)
    return all(not pool.holder(name) for pool in pools for name in pool.names)


# ------------------------------------------------------------------ a batch
def test_a_batch_visits_its_workflows_stations_in_order_and_its_rack_goes_home(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path)
    watcher = Watcher()
    done = run(sched, 3, watcher=watcher)
    assert done.result is not None and done.result.success, done.result
    assert done.result.message == "3 of 3 samples measured"
    assert fake.processes() == PHOTO
    # every station order names the rack, which stands in that station's slot when the order is sent
    assert all(o.carrier == "rack_1" for o in fake.orders if isinstance(o, Process))
    # picked from home, carried through each station, back to the same slot
    moves = [(o.source, o.target) for o in fake.orders if isinstance(o, Transfer)]
    assert moves[0] == ("rack_storage/slot1", "robot1/deck1") and moves[-1] == ("robot1/deck1", "rack_storage/slot1")
    assert fake.world["rack_1"] == "rack_storage/slot1" and free(sched)
    # every drive and transfer is sent under its robot's clock hold (a transport's hand-offs cost
    # no simulated time), and no hold outlives its transport
    robot_orders = [o for o in fake.orders if isinstance(o, Drive | Transfer)]
    assert robot_orders and fake.held_orders == robot_orders and not any(fake.held.values())
    # what the solid dispenser dispensed (2 % more) is what the next stations get, and what is reported
    liquid = next(o for o in fake.orders if isinstance(o, Process) and o.station == "liquid_dispenser")
    assert liquid.samples[0][2]["P10"] == (2.04, "mg") and liquid.samples[0][2]["water"] == (5.0, "mL")
    assert [s.measurement.station for s in done.samples if s.measurement] == ["gas_chromatograph"] * 3
    assert done.samples[0].amounts()["P10"] == (2.04, "mg")
    assert watcher.progress and watcher.progress[-1].samples_total == 3
    now = sched.snapshot()
    assert (now.done, now.failed, now.running, now.mode) == (3, 0, 0, "idle")
    # the record is kept until the goal has been answered with it
    assert list(sched.journal.store().lab_batches()) == [done.key]
    sched.forget(done)
    assert sched.journal.store().lab_batches() == {}


def test_a_batch_that_cannot_run_is_refused_with_the_reason_and_nothing_recorded(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path)
    sched.recovered.set()
    with pytest.raises(InvalidGoal, match="unknown workflow 'photo'"):
        sched.run_batch("b", "photo", samples(2), Watcher())
    with pytest.raises(InvalidGoal, match="17 formulations do not fit one rack"):
        sched.run_batch("b", "photocatalysis", samples(17), Watcher())
    with pytest.raises(InvalidGoal, match="at least one formulation"):
        sched.run_batch("b", "photocatalysis", [], Watcher())
    assert fake.orders == [] and sched.journal.store().lab_batches() == {} and sched.runs == {}


# ------------------------------------------------------------------ failures
def test_a_failed_step_is_rerouted_to_another_station_of_its_kind(tmp_path: Path) -> None:
    sched, fake, log = lab(tmp_path, extra={"gc_2": "gas_chromatograph", "gc_3": "gas_chromatograph"},
                           max_retries=2)
    fake.script = lambda o, c: Outcome(False, "column blocked") if isinstance(o, Process) and \
        o.station in ("gas_chromatograph", "gc_2") else None
    done = run(sched)
    assert done.result is not None and done.result.success
    assert fake.processes() == PHOTO + ["gc_2", "gc_3"]  # never back to one that failed while another is left
    assert log.said("rerouting gas_chromatograph from gas_chromatograph to gc_2")
    assert [s.measurement.station for s in done.samples if s.measurement] == ["gc_3"] * 3 and free(sched)


def test_a_step_failing_every_try_fails_its_samples_with_the_reason_and_the_rack_comes_home(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path, max_retries=2)
    fake.script = lambda o, c: Outcome(False, "lamp failed") if isinstance(o, Process) and \
        o.station == "photoreactor" else None
    done = run(sched, 2)
    assert done.result is not None and not done.result.success
    assert fake.processes() == PHOTO[:3] + ["photoreactor"] * 2  # the only one of its kind, tried 3 times
    assert [s.failure for s in done.samples] == ["photoreactor: lamp failed (after 3 attempts)"] * 2
    assert fake.world["rack_1"] == "rack_storage/slot1" and free(sched)
    assert sched.snapshot().failed == 2


def test_a_retry_on_the_only_station_of_its_kind_waits_while_it_is_in_fault(tmp_path: Path) -> None:
    sched, fake, log = lab(tmp_path)
    attempts: list[float] = []

    def gc(order: Order, call: Call) -> Outcome | None:
        if not (isinstance(order, Process) and order.station == "gas_chromatograph"):
            return None
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            sched.station_state("gas_chromatograph", usable=False)  # a failed step puts it in fault
            threading.Timer(0.5, lambda: sched.station_state("gas_chromatograph", usable=True)).start()
            return Outcome(False, "detector saturated")
        return None

    fake.script = gc
    done = run(sched)
    assert done.result is not None and done.result.success
    assert log.said("gas_chromatograph is in fault; waiting for it to recover")
    assert attempts[1] - attempts[0] >= 0.45  # tried again once it had recovered, not against the fault


def test_a_process_lost_to_the_stations_restart_fails_its_samples_with_the_stations_report(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path)
    said = "illuminate on rack_1 was interrupted by a restart of the station at illuminate (40% done)"

    def restart(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Process) and order.station == "photoreactor":
            sched.station_state("photoreactor", True, order.goal_id.hex(), said)  # the restarted station's report
            return Outcome(False, "the server went away", lost=True)
        return None

    fake.script = restart
    done = run(sched, 2)
    # not run again (the vials were part-illuminated): failed with the station's report, the rack home
    assert fake.processes() == PHOTO[:3]
    assert [s.failure for s in done.samples] == [f"photoreactor: {said}"] * 2
    assert [s.failure_kind for s in done.samples] == [EQUIPMENT] * 2  # the planner makes them again
    assert fake.world["rack_1"] == "rack_storage/slot1" and free(sched)


def test_a_process_lost_to_a_restart_before_it_acted_runs_again_on_the_same_samples(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path)
    said = "illuminate on rack_1 was interrupted by a restart of the station before it acted on its 2 samples"
    restarts: list[bytes] = []

    def restart_once(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Process) and order.station == "photoreactor" and not restarts:
            restarts.append(order.goal_id)
            sched.station_state("photoreactor", True, order.goal_id.hex(), said, untouched=True)
            return Outcome(False, "the server went away", lost=True)
        return None

    fake.script = restart_once
    done = run(sched, 2)
    # the photoreactor's step a second time, on the same rack and samples: every sample measured
    assert fake.processes() == PHOTO[:3] + PHOTO[2:]
    assert done.result is not None and done.result.success, done.result
    assert [s.failure for s in done.samples] == ["", ""]
    assert fake.world["rack_1"] == "rack_storage/slot1" and free(sched)


def test_a_sample_the_station_measured_invalid_is_the_chemistrys_failure(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path)

    def one_invalid(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Process) and order.station == "gas_chromatograph":
            first, second = order.samples
            return Outcome(True, reports=[SampleReport(first[0], False, "no hydrogen peak above the noise"),
                                          FakeLab.measure(order.station, second)])
        return None

    fake.script = one_invalid
    done = run(sched, 2)
    assert [s.failure_kind for s in done.samples] == [CHEMISTRY, ""]
    assert done.samples[0].failure == "gas_chromatograph: no hydrogen peak above the noise"


def test_a_transfer_that_failed_after_the_release_goes_on_when_the_rack_is_at_its_target(tmp_path: Path) -> None:
    sched, fake, log = lab(tmp_path)

    def cut_short(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Transfer) and order.target == "solid_dispenser/rack":
            fake.put(order.carrier, order.target)  # placed, then the retreat failed
            return Outcome(False, "retreat aborted")
        return None

    fake.script = cut_short
    done = run(sched)
    assert done.result is not None and done.result.success
    # the second attempt saw the rack in place and did not try to move it again
    assert sum(1 for o in fake.orders if isinstance(o, Transfer) and o.target == "solid_dispenser/rack") == 1


# ------------------------------------------------------------------ robots
def test_a_robot_low_on_battery_charges_before_it_carries(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path)
    sched.battery("robot1", 0.1)
    charged = fake.sleep

    def sleep(seconds: float, cancelled: Callable[[], bool] = lambda: False) -> None:  # the battery fills
        charged(seconds)
        sched.battery("robot1", min(1.0, sched.view.battery_level("robot1") + 0.2))

    fake.sleep = sleep  # type: ignore[method-assign]
    done = run(sched)
    assert done.result is not None and done.result.success
    assert fake.orders[0] == Drive("robot1", "charger", skip_refinement=True)
    assert sched.view.battery_level("robot1") >= 0.9 and isinstance(fake.orders[1], Drive)


def test_an_idle_robot_tops_up_its_battery_and_leaves_the_charger_when_a_batch_needs_it(tmp_path: Path) -> None:
    """Below battery_top_up (0.6) a robot charges between its transports, not only at battery_low
    just before one (which kept the chromatograph waiting an hour in the 688-experiment campaign)."""
    sched, fake, _ = lab(tmp_path)
    sched.battery("robot1", 0.5)
    charged = fake.sleep

    def sleep(seconds: float, cancelled: Callable[[], bool] = lambda: False) -> None:  # slow: the batch
        charged(seconds)                                                              # comes back for it
        time.sleep(0.002)
        sched.battery("robot1", min(1.0, sched.view.battery_level("robot1") + 0.002))

    fake.sleep = sleep  # type: ignore[method-assign]
    levels: list[tuple[Order, float]] = []  # each robot order with the battery when it was sent

    def script(order: Order, call: Call) -> None:
        if isinstance(order, Process):
            time.sleep(0.05)  # a station's process: the robot is idle meanwhile
        else:
            levels.append((order, sched.view.battery_level("robot1")))

    fake.script = script
    done = run(sched)
    assert done.result is not None and done.result.success, done.result
    assert levels[0] == (Drive("robot1", "rack_storage"), 0.5)  # above battery_low: no charge first
    tops = [i for i, (o, _) in enumerate(levels) if o == Drive("robot1", "charger", skip_refinement=True)]
    # the robot went to charge after its first transport, and left the charger (well below
    # battery_resume) when the batch wanted it back
    assert tops and tops[0] < len(levels) - 1 and levels[tops[0] + 1][1] < 0.9, levels
    # the top-ups let the robot go when the batch wanted it, and it ended above battery_top_up
    until(lambda: free(sched))
    assert sched.view.battery_level("robot1") >= 0.6


def test_a_top_up_never_keeps_a_robot_a_batch_waits_for(tmp_path: Path) -> None:
    """A robot wanted by a waiting reservation is not taken for a top-up (a top-up that took it and
    then returned without releasing it stalled the 688-experiment campaign)."""
    sched, fake, _ = lab(tmp_path)
    sched.battery("robot1", 0.5)
    stop = threading.Event()

    def wait() -> None:
        with pytest.raises(Unavailable):  # it never takes the robot: it only wants it
            sched.robot_pool.acquire(["robot1"], "waiter", usable=lambda r: False, cancelled=stop.is_set,
                                     timeout=10.0)

    waiter, _ = in_thread(wait)
    until(lambda: sched.robot_pool.wanted("robot1"))
    sched.fleet._top_up("robot1")
    assert sched.robot_pool.holder("robot1") == "" and not fake.orders
    stop.set()
    waiter.join(5.0)
    assert not sched.robot_pool.wanted("robot1")


def test_an_idle_robot_at_the_dock_another_is_sent_to_is_parked_first(tmp_path: Path) -> None:
    sched, fake, log = lab(tmp_path, robots=("robot1", "robot2"))
    sched.robot_pose("robot2", sched.stations["solid_dispenser"].dock)
    done = run(sched)
    assert done.result is not None and done.result.success
    park = fake.orders.index(Park("robot2", sched.parking[1]))  # robot2's own parking spot
    assert park < fake.orders.index(Drive("robot1", "solid_dispenser"))
    assert log.said("robot2 stands idle at solid_dispenser, where robot1 must go")


def test_two_batches_at_once_never_share_a_station_robot_or_rack(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path, robots=("robot1", "robot2"))
    busy: dict[str, str] = {}
    clashes: list[str] = []
    lock = threading.Lock()

    def hold(order: Order, call: Call) -> Outcome | None:
        key = order.station if isinstance(order, Process) else order.robot
        with lock:
            if key in busy:
                clashes.append(f"{key}: {busy[key]} and {order}")
            busy[key] = str(order)
        time.sleep(0.01)
        with lock:
            busy.pop(key, None)
        return None

    fake.script = hold
    one, out1 = in_thread(lambda: run(sched, 2, "camp/b001"))
    two, out2 = in_thread(lambda: sched.run_batch("camp/b002", "photocatalysis", samples(2, "f"), Watcher()))
    one.join(30)
    two.join(30)
    assert clashes == []
    assert out1[0].result.success and out2[0].result.success
    assert {out1[0].carrier, out2[0].carrier} == {"rack_1", "rack_2"}
    assert fake.processes().count("photoreactor") == 2 and free(sched)


# ------------------------------------------------------------------ the operator
def blocking(station: str) -> tuple[threading.Event, threading.Event, Callable[[Order, Call], Outcome | None]]:
    """A script whose `station` process runs until released (or cancelled: then it says so)."""
    running, release = threading.Event(), threading.Event()

    def script(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Process) and order.station == station:
            running.set()
            while not release.wait(0.01):
                if call.cancel():
                    return Outcome(False, "cancelled")
        return None

    return running, release, script


def test_pause_lets_the_running_step_finish_and_starts_nothing_new_until_resumed(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path)
    running, release, fake.script = blocking("liquid_dispenser")
    thread, out = in_thread(lambda: run(sched))
    assert running.wait(10)
    assert sched.pause() == (True, "paused: running steps finish, nothing new starts")
    release.set()
    time.sleep(0.3)
    sent = len(fake.orders)
    assert isinstance(fake.orders[-1], Process) and sched.mode == "paused"  # the dispensing ended; nothing after
    time.sleep(0.3)
    assert len(fake.orders) == sent
    assert sched.resume() == (True, "resumed")
    thread.join(10)
    assert out[0].result.success and fake.processes() == PHOTO


def test_an_emergency_stop_ends_the_step_and_the_rack_waits_for_release_and_resume(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path)
    running, _, fake.script = blocking("photoreactor")
    thread, out = in_thread(lambda: run(sched, 2))
    assert running.wait(10)
    sched.safety(True, "emergency stop by operator: test")
    until(lambda: all(s.failure for s in sched.runs[next(iter(sched.runs))].samples))
    time.sleep(0.3)
    assert fake.world["rack_1"] == "photoreactor/rack"  # stays where the stop left it
    assert sched.pause()[0] is False
    assert sched.resume() == (False, "emergency stop by operator: test: resume does not release it; "
                                     "release first (lab estop --release)")
    sched.safety(False, "")
    time.sleep(0.2)
    assert sched.mode == "paused" and fake.world["rack_1"] == "photoreactor/rack"  # released: paused
    fake.script = lambda o, c: None
    assert sched.resume()[0]
    thread.join(10)
    done = out[0]
    assert [s.failure for s in done.samples] == ["photoreactor: stopped: emergency stop by operator: test"] * 2
    assert fake.world["rack_1"] == "rack_storage/slot1" and free(sched)
    assert fake.processes() == PHOTO[:3]


def test_a_stop_the_station_reports_before_the_lab_manager_hears_it_is_not_retried(tmp_path: Path) -> None:
    """The station's 'stopped: <the stop>' result can arrive before the lab manager's own safety
    state: the step must end with the stop, not be retried into the stopped station's refusal."""
    sched, fake, _ = lab(tmp_path)
    reason = "emergency stop by operator: test"

    def script(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Process) and order.station == "photoreactor":
            threading.Timer(0.3, lambda: sched.safety(True, reason)).start()  # heard later than the station
            return Outcome(False, f"stopped: {reason}")
        return None

    fake.script = script
    thread, out = in_thread(lambda: run(sched, 2))
    until(lambda: sched.mode == "estopped")
    until(lambda: bool(sched.runs) and all(s.failure for s in sched.runs[next(iter(sched.runs))].samples))
    sched.safety(False, "")
    until(lambda: sched.mode == "paused")
    fake.script = lambda o, c: None
    assert sched.resume()[0]
    thread.join(10)
    assert [s.failure for s in out[0].samples] == [f"photoreactor: stopped: {reason}"] * 2
    assert [o.station for o in fake.orders if isinstance(o, Process)].count("photoreactor") == 1  # no retry


@pytest.mark.parametrize("said", ["stopped: emergency stop by operator: test", "cancelled"])
def test_a_step_whose_result_comes_after_the_release_still_ends_with_the_stop(tmp_path: Path, said: str) -> None:
    """The station's result can come after the stop was set and released (seen in CI: 0.1 s after
    the release), and a station the lab manager's cancel reached before the stop says 'cancelled':
    either way the stop ended the step, so the batch fails with the stop's reason and its rack goes
    home, not on to the next station as if the step had failed on its own."""
    sched, fake, _ = lab(tmp_path)
    reason = "emergency stop by operator: test"
    running, answer = threading.Event(), threading.Event()

    def script(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Process) and order.station == "solid_dispenser":
            running.set()
            assert answer.wait(10)
            return Outcome(False, said)
        return None

    fake.script = script
    thread, out = in_thread(lambda: run(sched, 2))
    assert running.wait(10)
    sched.safety(True, reason)
    sched.safety(False, "")
    assert sched.mode == "paused"
    answer.set()
    until(lambda: bool(sched.runs) and all(s.failure for s in sched.runs[next(iter(sched.runs))].samples))
    assert sched.resume()[0]
    thread.join(10)
    assert [s.failure for s in out[0].samples] == [f"solid_dispenser: stopped: {reason}"] * 2
    assert fake.processes() == ["solid_dispenser"]  # not retried, not taken on to the liquid dispenser
    assert fake.world["rack_1"] == "rack_storage/slot1" and free(sched)


def test_a_leg_stopped_twice_is_not_failed_for_it(tmp_path: Path) -> None:
    """A drive the emergency stop ends is the operator's doing, not the robot's failure: a leg
    stopped twice (its two tries) still goes on after release and resume, and costs no experiment."""
    sched, fake, _ = lab(tmp_path)
    reason = "emergency stop by operator: test"
    drives: list[int] = []

    def script(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Drive):
            drives.append(1)
            if len(drives) <= 2:
                sched.safety(True, reason)
                return Outcome(False, f"stopped: {reason} (cancelled: the base was stopped)")
        return None

    fake.script = script
    thread, out = in_thread(lambda: run(sched, 2))
    for stop in (1, 2):
        until(lambda stop=stop: len(drives) == stop and sched.mode == "estopped")
        sched.safety(False, "")
        assert sched.resume()[0]
    thread.join(10)
    assert len(drives) > 2 and not any(s.failure for s in out[0].samples)


def test_a_drive_the_stop_ended_is_tried_again_only_after_release_and_resume(tmp_path: Path) -> None:
    """The navigator's 'stopped: <the stop>' can arrive before the lab manager hears the stop: the
    leg's next try must wait at the gate, not go at once to the stopped robot (Mode.heard_stop)."""
    sched, fake, _ = lab(tmp_path)
    reason = "emergency stop by operator: test"
    drives: list[float] = []

    def script(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Drive):
            drives.append(time.monotonic())
            if len(drives) == 1:
                threading.Timer(0.3, lambda: sched.safety(True, reason)).start()  # heard later than the robot
                return Outcome(False, f"stopped: {reason} (cancelled: the base was stopped)")
        return None

    fake.script = script
    thread, out = in_thread(lambda: run(sched, 2))
    until(lambda: sched.mode == "estopped")
    time.sleep(0.3)
    assert len(drives) == 1  # nothing was tried again while the lab manager had not heard the stop
    sched.safety(False, "")
    until(lambda: sched.mode == "paused")
    resumed = time.monotonic()
    assert sched.resume()[0]
    thread.join(10)
    assert len(drives) > 1 and drives[1] > resumed
    assert not any(s.failure for s in out[0].samples)  # the stop cost the batch no experiment


def test_a_cancelled_batch_ends_and_still_brings_its_rack_home(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path)
    running, _, fake.script = blocking("liquid_dispenser")
    watcher = Watcher()
    thread, out = in_thread(lambda: run(sched, 2, watcher=watcher))
    assert running.wait(10)
    watcher.is_cancel_requested = True
    thread.join(10)
    done = out[0]
    assert not done.result.success and all(s.failure for s in done.samples)
    assert fake.world["rack_1"] == "rack_storage/slot1" and free(sched)
    assert fake.processes() == PHOTO[:2]


# ------------------------------------------------------------------ a scheduler taking over after a crash
def recorded(tmp_path: Path, accepted: bool) -> tuple[Scheduler, FakeLab, Log, Run]:
    """A scheduler starting where its predecessor died: rack_1 in the photoreactor, illuminating
    (the order recorded, accepted or not), two samples dispensed."""
    sched, fake, log = lab(tmp_path)
    before = Run("camp/b001#aaaaaa", "camp/b001", "photocatalysis", samples(2))
    before.carrier, before.home, before.location, before.held, before.step = \
        "rack_1", "rack_storage/slot1", "photoreactor/rack", "photoreactor", 2
    before.station_goal, before.station_goal_accepted = ("photoreactor", "ab" * 16), accepted
    sched.journal.store().save_lab_batch(before.key, before.batch_id, before.state())
    fake.put("rack_1", "photoreactor/rack")
    return sched, fake, log, before


def test_a_batch_in_flight_is_taken_on_again_and_its_station_asked_for_the_result(tmp_path: Path) -> None:
    sched, fake, log, before = recorded(tmp_path, accepted=True)
    fake.followed = lambda order, call: Outcome(True, reports=[SampleReport(s[0], True) for s in order.samples])
    sched.start()
    assert sched.recovered.wait(10)
    # the planner re-sends the batch: its goal gets the adopted batch's result, nothing runs twice
    done = sched.run_batch("camp/b001", "photocatalysis", samples(2), Watcher())
    assert done.key == before.key and done.result is not None and done.result.success
    assert fake.processes() == ["gas_chromatograph"]
    assert log.said("photoreactor's result, asked for after the restart, merged")
    assert fake.world["rack_1"] == "rack_storage/slot1" and free(sched)


def test_a_station_hung_on_a_goal_from_before_the_restart_is_given_up_on_in_simulated_time(tmp_path: Path) -> None:
    sched, fake, log, _ = recorded(tmp_path, accepted=True)
    waited: list[float] = []

    def hung(order: Process, call: Call) -> Outcome:
        # the photoreactor never answers: only the simulated-time limit ends the wait (the wall
        # limit, as long in wall s, is never reached in this test)
        start = fake.now()
        while not (over := call.overdue()):
            assert not call.cancel() and fake.now() - start < 1e5
            fake.sleep(60.0)
        waited.append(fake.now() - start)
        return Outcome(False, f"no result after {over}: the goal was cancelled")

    fake.followed = hung
    fake.t = 500.0  # the clock has run (at 0 the limit counts from the next reading)
    sched.start()
    done = sched.run_batch("camp/b001", "photocatalysis", samples(2), Watcher())
    limit = sched.dispatch.station_limit("photoreactor", "illuminate", 2)
    assert limit < waited[0] <= limit + 60.0
    assert done.result is not None and not done.result.success
    assert all("simulated s" in s.failure for s in done.samples)
    assert fake.world["rack_1"] == "rack_storage/slot1" and free(sched)


def test_a_recorded_order_the_station_never_had_runs_again(tmp_path: Path) -> None:
    sched, fake, log, _ = recorded(tmp_path, accepted=False)
    sched.start()
    done = sched.run_batch("camp/b001", "photocatalysis", samples(2), Watcher())
    assert done.result is not None and done.result.success
    assert fake.processes() == ["photoreactor", "gas_chromatograph"]
    assert log.said("photoreactor never had goal")


def test_a_recorded_order_the_station_no_longer_knows_fails_its_samples(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "REPORT_WAIT", 0.5)
    sched, fake, _, _ = recorded(tmp_path, accepted=True)
    sched.station_state("photoreactor", True)  # restarted with no report of the goal
    sched.start()
    done = sched.run_batch("camp/b001", "photocatalysis", samples(2), Watcher())
    assert done.result is not None and not done.result.success and fake.processes() == []
    assert all("has no record of goal" in s.failure for s in done.samples)
    assert fake.world["rack_1"] == "rack_storage/slot1"


def test_a_rack_away_from_home_with_no_batch_is_brought_home_at_start_up(tmp_path: Path) -> None:
    sched, fake, log = lab(tmp_path)
    fake.put("rack_2", "robot1/deck1")  # left on the deck by a lab manager that died
    sched.start()
    until(lambda: fake.world["rack_2"].startswith("rack_storage/"))
    assert fake.world["rack_2"] == "rack_storage/slot2"  # the first free slot
    assert log.said("rack_2 is at robot1/deck1, away from home, with no batch")
    assert [o for o in fake.orders if isinstance(o, Transfer)] == \
        [Transfer("robot1", "rack_2", "robot1/deck1", "rack_storage/slot2")]


def test_a_rack_an_operator_moves_by_hand_is_no_stray_until_their_goals_are_quiet(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """Someone else's goal on the robot (an operator's `lab robot ...`; the node tells them from its
    own by goal id) leaves a carrier away from home where it is; once their goals have been quiet
    for OTHERS_QUIET it is a stray and goes home."""
    from lab.core.operations.scheduler import recovery

    monkeypatch.setattr(recovery, "OTHERS_QUIET", 1.0)
    sched, fake, log = lab(tmp_path)

    def slow_sleep(seconds: float, cancelled: Callable[[], bool] = lambda: False) -> None:
        time.sleep(0.01)  # the strays' retries in wall time: instant sleeps would spin
        with fake.lock:
            fake.t += seconds

    fake.sleep = slow_sleep  # type: ignore[method-assign]
    fake.put("rack_2", "robot1/deck1")  # the operator's transfer put it there
    sched.goals_under_way("/robot1/manipulate", 1, 1)
    sched.goals_under_way("/robot1/manipulate", 0, 0)  # and ended just now; their next goal follows
    ended = time.monotonic()
    sched.start()
    until(lambda: log.said("goals this lab manager did not send are on /robot1/manipulate"))
    assert fake.world["rack_2"] == "robot1/deck1"
    until(lambda: fake.world["rack_2"].startswith("rack_storage/"), timeout=15)
    assert time.monotonic() - ended > 0.9  # not before their goals had been quiet for OTHERS_QUIET
    assert log.said("rack_2 is at robot1/deck1, away from home, with no batch: bringing it to rack_storage/slot2")


def test_a_rack_that_could_not_go_home_is_tried_again_and_the_next_batch_gets_the_station(tmp_path: Path) -> None:
    sched, fake, log = lab(tmp_path)
    refusing = threading.Event()
    refusing.set()

    def no_way_home(order: Order, call: Call) -> Outcome | None:
        if refusing.is_set() and isinstance(order, Transfer) and order.source.startswith("gas_chromatograph/"):
            return Outcome(False, "gas_chromatograph: refinement failed: no image from the wrist camera")
        return None

    fake.script = no_way_home
    first = run(sched, 2)
    assert fake.world["rack_1"].startswith("gas_chromatograph/")
    assert first.result is not None and "rack_1 left at gas_chromatograph/" in first.result.message
    refusing.clear()  # the robot docks again: the retry takes the rack home without any batch asking
    until(lambda: fake.world["rack_1"].startswith("rack_storage/"))
    assert log.said("rack_1 is at gas_chromatograph/rack, away from home, with no batch")
    second = run(sched, 2, batch_id="camp/b002")
    assert second.result is not None and second.result.success, second.result
    until(lambda: free(sched))


def test_a_carrier_no_workflow_uses_is_left_where_it_is_and_said_once(tmp_path: Path) -> None:
    """A lab manager whose workflows file has no workflow for trays (test_parking's has one for
    racks) found trays with no home at every recovery pass: an error each time ('no free place
    at its home'), retried for ever. Such a carrier is not its to move: said once, left there."""
    sched, fake, log = lab(tmp_path, only_workflows=("photocatalysis",))
    fake.put("tray_1", "printer/tray")
    sched.start()
    done = run(sched, 2)
    assert done.result is not None and done.result.success, done.result
    until(lambda: log.said("tray_1 is at printer/tray: no workflow uses a tray, so it has no home: left where it is"))
    sched.recovery.strays_later()
    time.sleep(0.3)
    assert fake.world["tray_1"] == "printer/tray"
    assert sum("tray_1" in line for line in log.lines) == 1, [line for line in log.lines if "tray_1" in line]
    assert not log.said("no free place at its home")


def test_batches_wait_for_the_start_up_recovery(tmp_path: Path) -> None:
    sched, fake, _, _ = recorded(tmp_path, accepted=True)
    fake.followed = lambda order, call: Outcome(True, reports=[SampleReport(s[0], True) for s in order.samples])
    sched.goals_under_way("/robot1/manipulate", 1)  # the predecessor's transfer still under way
    sched.start()
    thread, out = in_thread(lambda: sched.run_batch("camp/b002", "photocatalysis", samples(2, "f"), Watcher()))
    time.sleep(0.3)
    assert not sched.recovered.is_set() and fake.orders == []
    sched.goals_under_way("/robot1/manipulate", 0)
    thread.join(10)
    assert out[0].result.success  # (on rack_2, or on rack_1 once the adopted batch has brought it home)
    assert "gas_chromatograph" in fake.processes()  # the adopted batch went on too


# ------------------------------------------------------------------ robots the network lost
def _cut_off(sched: Scheduler, robot: str, back_after: float | None) -> None:
    """What the node tells the scheduler when DDS liveliness of the robot's presence is lost, and
    (after `back_after` wall s) regained."""
    sched.presence(robot, False)
    if back_after is not None:
        threading.Timer(back_after, sched.presence, args=(robot, True)).start()


def test_legs_failed_while_the_robot_was_cut_off_are_not_tries_and_wait_for_it(tmp_path: Path) -> None:
    """Three drives fail because the robot's host is cut off (more than a leg's two tries): each is
    tried again once the robot is back, and the batch is measured in full."""
    sched, fake, log = lab(tmp_path)
    cuts = {"n": 0}

    def script(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Drive) and cuts["n"] < 3:
            cuts["n"] += 1
            _cut_off(sched, "robot1", back_after=0.2)
            return Outcome(False, "the action server went away during the goal", lost=True)
        return None

    fake.script = script
    done = run(sched, 2)
    assert done.result is not None and done.result.success, done.result
    assert [s.failure for s in done.samples] == ["", ""] and fake.processes() == PHOTO
    assert log.said("robot1 is offline") and log.said("robot1 is back")
    assert log.said("went offline meanwhile: not counted as a try")
    assert sched.view.offline == {} and free(sched)


def test_a_drive_failing_with_the_robot_present_still_counts(tmp_path: Path) -> None:
    """Mutation guard for the above: the same failures with the robot never cut off fail the batch."""
    sched, fake, _ = lab(tmp_path)
    fake.script = lambda o, c: Outcome(False, "blocked") if isinstance(o, Drive) else None
    done = run(sched, 2)
    assert done.result is not None and not done.result.success
    assert "robot1 could not reach" in done.samples[0].failure


NO_CONTACT_REFUSAL = ("robot1: photoreactor: refused: no contact with the safety node (its host or this one cut "
                      "off from the network, or it died): nothing moves until it is heard again")


def test_refusals_for_want_of_the_safety_nodes_contact_after_a_heal_are_not_tries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a network cut heals, the lab manager can hear robot1 before robot1 hears the safety
    node. Three such refusals (more than a leg's two tries)
    are waited out, and the batch is measured in full."""
    import lab.core.operations.scheduler.fleet as fleet

    monkeypatch.setattr(fleet, "CONTACT_RETRY", 0.05)
    sched, fake, log = lab(tmp_path)
    refused = {"n": 0}

    def script(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Drive) and refused["n"] < 3:
            refused["n"] += 1
            return Outcome(False, NO_CONTACT_REFUSAL)
        return None

    fake.script = script
    done = run(sched, 2)
    assert refused["n"] == 3
    assert done.result is not None and done.result.success, done.result
    assert [s.failure for s in done.samples] == ["", ""] and fake.processes() == PHOTO
    assert log.said("cannot hear the safety node yet (the network's failure): not counted as a try")
    assert sum("cannot hear the safety node yet" in line for line in log.lines) == 1  # said once per leg
    assert free(sched)


def test_a_robot_that_never_hears_the_safety_node_again_fails_its_leg_after_offline_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation guard for the above, and its limit: refusals that go on past `offline_wait` count
    as tries, and the batch fails with the robot's reason."""
    import lab.core.operations.scheduler.fleet as fleet

    monkeypatch.setattr(fleet, "CONTACT_RETRY", 0.05)
    sched, fake, _ = lab(tmp_path, offline_wait=0.3)
    fake.script = lambda o, c: Outcome(False, NO_CONTACT_REFUSAL) if isinstance(o, Drive) else None
    started = time.monotonic()
    done = run(sched, 2)
    assert done.result is not None and not done.result.success
    assert "robot1 could not reach" in done.samples[0].failure and "no contact with the safety node" in \
        done.samples[0].failure
    assert time.monotonic() - started >= 0.3


def test_a_robot_that_stays_offline_hands_its_transport_to_another(tmp_path: Path) -> None:
    """robot1's host is cut off during its first drive and never comes back: after `offline_wait`
    the rack (still in storage) goes with robot2, and robot1 gets no order after it was lost."""
    sched, fake, log = lab(tmp_path, robots=("robot1", "robot2"), offline_wait=0.3)
    lost_at: list[int] = []

    def script(order: Order, call: Call) -> Outcome | None:
        if getattr(order, "robot", "") == "robot1" and not lost_at:
            lost_at.append(len(fake.orders))
            _cut_off(sched, "robot1", back_after=None)
            return Outcome(False, "the action server went away during the goal", lost=True)
        return None

    fake.script = script
    done = run(sched, 2)
    assert done.result is not None and done.result.success, (done.result, log.lines[-5:])
    after = fake.orders[lost_at[0]:]
    assert after and all(getattr(o, "robot", "robot2") == "robot2" for o in after)
    assert log.said("goes with another robot") and sched.view.offline_since("robot1").endswith("UTC")
    assert free(sched)


def test_a_rack_left_on_a_robot_that_stays_offline_fails_its_batch_with_the_reason(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path, robots=("robot1", "robot2"), offline_wait=0.3)

    def script(order: Order, call: Call) -> Outcome | None:
        if isinstance(order, Drive) and fake.world["rack_1"] == "robot1/deck1" and not sched.view.offline:
            _cut_off(sched, "robot1", back_after=None)
            return Outcome(False, "the action server went away during the goal", lost=True)
        return None

    fake.script = script
    done = run(sched, 2)
    assert done.result is not None and not done.result.success
    assert "rack_1 is on robot1, robot1 offline since" in done.samples[0].failure
    assert "not back within 0.3 s" in done.samples[0].failure


def test_a_station_offline_is_not_chosen(tmp_path: Path) -> None:
    sched, fake, _ = lab(tmp_path, extra={"gc_2": "gas_chromatograph"})
    sched.presence("gas_chromatograph", False)
    done = run(sched, 2)
    assert done.result is not None and done.result.success
    assert fake.processes() == PHOTO[:3] + ["gc_2"]


def test_goals_are_someone_elses_only_when_neither_sent_nor_inherited_nor_inside_our_own() -> None:
    """GoalOwners, what the lab manager's robot-action status callbacks ask."""
    from lab.core.operations.scheduler.view import GoalOwners

    owners, ours = GoalOwners(), {b"drive"}
    sent = ours.__contains__
    assert owners.others("/robot1/manipulate", [b"left"], sent) == 0  # in the first status: a predecessor's
    assert owners.others("/robot1/navigate_to_station", [], sent) == 0
    assert owners.others("/robot1/manipulate", [b"left", b"hand"], sent) == 1  # an operator's goal
    assert owners.others("/robot1/manipulate", [], sent) == 0
    assert owners.others("/robot1/navigate_to_station", [b"drive"], sent) == 0  # our drive ...
    assert owners.others("/robot1/manipulate", [b"inspect"], sent) == 0  # ... its navigator moves the arm
    assert owners.others("/robot2/manipulate", [], sent) == 0
    assert owners.others("/robot2/manipulate", [b"other"], sent) == 1  # another robot: not inside our drive
    assert owners.others("/robot1/navigate_to_station", [], sent) == 0  # our drive ended
    assert owners.others("/robot1/manipulate", [b"inspect2"], sent) == 1
