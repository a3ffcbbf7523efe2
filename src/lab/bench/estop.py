"""`lab bench estop`: how fast the emergency stop stops a driving robot.

Brings up the safety node, the simulation, a navigator and an arm (embedded lab, one robot),
and repeats: send a navigation goal across the lab, wait a random moment of the drive, stop
the lab the way `lab estop` does (lab.app.estop.fast_path: its Unix socket to the safety node;
the figures in BENCHMARKS.md were measured over the UDP datagram it replaced),
and time, in wall and simulated seconds, how long from that call until the simulation's ground
truth shows the base at rest; then check that a new navigation goal is refused, release, and
go on. Run at each speed asked for.

    lab bench estop [--stops 20] [--speeds 1,200] [--json OUT]

With `--campaign`, the whole lab instead (every node of `lab bringup`, the planner running a
photocatalysis campaign): each stop falls after a random 0.5-3 s of running, at a random
moment (0-0.3 s; at once above 20x) of the robot's next motion (within 30 s; else when
nothing moves). Two times are taken: until the simulation's controllers applied the stop
(their log line, epoch-stamped, against the call's time) and until the simulation reports
base and arm halted (on `bumper`, as a real base reports what stopped it) with two joint
states after it alike (an upper bound: it includes the report's way back). While the lab
stands stopped any motion or any station turning busy counts as a step started while
stopped (it must be 0); then the release, `lab resume`, and a random stretch of running.

    lab bench estop --campaign [--stops 50] [--speeds 1,2000] [--json OUT]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from lab.bench import print_figures, write_json


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench estop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stops", type=int, default=20, help="e-stops per speed")
    parser.add_argument("--speeds", default="1,200", help="simulation speeds (simulated s per wall s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--campaign", action="store_true", help="stop a running campaign of the whole lab")
    ns = parser.parse_args(argv)
    speeds = [float(s) for s in ns.speeds.split(",") if s]
    if ns.campaign:
        return _campaign(ns, speeds)

    from nav_msgs.msg import Odometry

    from lab.app.cli import _set_sim_speed
    from lab.app.commander import TaskResult
    from lab.app.estop import fast_path
    from lab.app.session import lab_session
    from lab.bringup.processes import plan

    rng = random.Random(ns.seed)
    run_dir = Path("runs") / ("bench-estop-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    specs = [s for s in plan({"sim": "embedded", "robots": "1", "record": "false", "console": "false"})
             if s.executable in ("safety", "sim", "navigator", "arm")]
    specs = [replace(s, parameters={**s.parameters, "refine": False}) if s.executable == "navigator" else s
             for s in specs]
    figures: dict[str, object] = {"stops_per_speed": ns.stops}
    state = {"speed": 0.0, "stamp": 0.0}

    def truth(msg) -> None:
        t = msg.twist.twist
        state["speed"] = abs(t.linear.x) + abs(t.linear.y) + abs(t.angular.z)
        state["stamp"] = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9

    with lab_session(specs, run_dir / "nodes.log", "estop_bench") as (_lab, cmd):
        cmd.create_subscription(Odometry, "/robot1/ground_truth", truth, 10)
        up = time.monotonic() + 60
        while fast_path(True, "", None) is None:  # the safety node may still be starting
            if time.monotonic() > up:
                print("lab bench estop: no safety node answers on this host", file=sys.stderr)
                return 1
        for speed in speeds:
            _set_sim_speed(cmd, speed)
            walls, sims, refused = [], [], 0
            targets = ["gas_chromatograph", "rack_storage"]
            for k in range(ns.stops):
                task = cmd.navigate_to_station("robot1", targets[k % 2])
                deadline = time.monotonic() + 60
                while not (task.feedback is not None and task.feedback.phase == "driving" and state["speed"] > 0):
                    if cmd.is_task_complete(task, wait=0.005) or time.monotonic() > deadline:
                        break
                if state["speed"] == 0:
                    cmd.wait(task, timeout=120)  # arrived before it could be stopped: try the next drive
                    continue
                end = time.monotonic() + rng.uniform(0.0, 0.5)
                while time.monotonic() < end:
                    cmd.spin_for(0.005)
                sim0, wall0 = state["stamp"], time.monotonic()
                answer = fast_path(False, f"bench stop {k}", None, wait=5.0)
                if answer is None or not answer.get("success"):
                    print(f"lab bench estop: the stop was not answered: {answer}", file=sys.stderr)
                    return 1
                while state["speed"] > 0 and time.monotonic() < wall0 + 30:
                    cmd.spin_for(0.002)
                walls.append(time.monotonic() - wall0)
                sims.append(max(0.0, state["stamp"] - sim0))
                cmd.wait(task, timeout=60)
                refused += cmd.wait(cmd.navigate_to_station("robot1", targets[k % 2]), timeout=60) is TaskResult.FAILED
                if fast_path(True, "", None, wait=5.0) is None:
                    print("lab bench estop: the release was not answered", file=sys.stderr)
                    return 1
                cmd.spin_for(0.2)
            key = f"speed_{speed:g}"
            if walls:
                figures[f"{key}_stops"] = len(walls)
                figures[f"{key}_wall_median_ms"] = 1000 * statistics.median(walls)
                figures[f"{key}_wall_p99_ms"] = 1000 * _quantile(walls, 0.99)
                figures[f"{key}_wall_max_ms"] = 1000 * max(walls)
                figures[f"{key}_sim_median_s"] = statistics.median(sims)
                figures[f"{key}_sim_max_s"] = max(sims)
                figures[f"{key}_new_goals_refused"] = refused
            print(f"speed {speed:g}: {len(walls)} stops, wall median {1000 * statistics.median(walls):.1f} ms, "
                  f"max {1000 * max(walls):.1f} ms; new goals refused {refused}/{len(walls)}" if walls else
                  f"speed {speed:g}: no drive could be stopped")
    print_figures({k: v for k, v in figures.items()}, 28)
    write_json(figures, ns.json)
    return 0


class _Watch:
    """What the simulation and the stations show: base speed, arm joints, stations turning busy."""

    def __init__(self, cmd, stations: list[str]) -> None:
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        from lab.ros.qos import LATCHED
        from lab_interfaces.msg import StationStatus, WorldState

        self.busy_value = StationStatus.BUSY
        self.base_speed, self.stamp = 0.0, 0.0
        self.joints: list[tuple[float, ...]] = []  # the last two joint-state messages
        self.joint_count = 0
        self.busy: dict[str, bool] = {}
        self.became_busy = 0
        self.last_busy = ""
        cmd.create_subscription(Odometry, "/robot1/ground_truth", self._truth, 10)
        cmd.create_subscription(JointState, "/robot1/joint_states", self._joints, 10)
        self.bumper = ""
        cmd.create_subscription(String, "/robot1/bumper", lambda m: setattr(self, "bumper", m.data), 10)
        for station in stations:
            cmd.create_subscription(StationStatus, f"/stations/{station}/status",
                                    lambda m, s=station: self._station(s, m), LATCHED)
        self.world: dict[str, str] = {}
        cmd.create_subscription(WorldState, "/world_state", lambda m: setattr(self, "world", dict(
            zip(m.objects, m.locations, strict=False))), LATCHED)

    def _truth(self, msg) -> None:
        t = msg.twist.twist
        self.base_speed = abs(t.linear.x) + abs(t.linear.y) + abs(t.angular.z)
        self.stamp = max(self.stamp, msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    def _joints(self, msg) -> None:
        self.joints = [*self.joints[-1:], tuple(msg.position)]
        self.stamp = max(self.stamp, msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        self.joint_count += 1

    def _station(self, station: str, msg) -> None:
        busy = msg.state == self.busy_value
        if busy and not self.busy.get(station, False):
            self.became_busy += 1
            self.last_busy = f"{station} busy since {msg.stamp.sec + msg.stamp.nanosec * 1e-9:.3f}: {msg.message}"
        self.busy[station] = busy

    def arm_moving(self) -> bool:
        return len(self.joints) == 2 and max((abs(a - b) for a, b in zip(*self.joints, strict=False)),
                                             default=0.0) > 1e-9

    def moving(self) -> bool:
        return self.base_speed > 0 or self.arm_moving()


def _campaign(ns: argparse.Namespace, speeds: list[float]) -> int:
    from lab.app.cli import _set_sim_speed
    from lab.app.estop import fast_path
    from lab.app.session import lab_session
    from lab.bringup.processes import plan
    from lab.core.robot.world import load_stations
    from lab.paths import share_dir

    rng = random.Random(ns.seed)
    run_dir = Path("runs") / ("bench-estop-campaign-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    specs = plan({"sim": "embedded", "robots": "1", "record": "false", "console": "false"})
    stations = list(load_stations(share_dir() / "config" / "stations.yaml").stations)
    figures: dict[str, object] = {"mode": "campaign", "stops_per_speed": ns.stops}
    # stop label -> (speed, epoch s of the fast-path call, newest simulated stamp of a moving robot or None)
    called: dict[str, tuple[float, float, float | None]] = {}
    with lab_session(specs, run_dir / "nodes.log", "estop_bench") as (_lab, cmd):
        watch = _Watch(cmd, stations)
        up = time.monotonic() + 60
        while fast_path(True, "", None) is None:
            if time.monotonic() > up:
                print("lab bench estop: no safety node answers on this host", file=sys.stderr)
                return 1
        end = time.monotonic() + 60
        while not watch.world and time.monotonic() < end:
            cmd.spin_for(0.1)
        first_world = dict(watch.world)  # where every carrier starts: its home
        # a campaign that outlasts the stops (the most photocatalysis.yaml allows); cancelled at the end
        task = cmd.run_campaign("photocatalysis", budget=2000, batch_size=16, seed=ns.seed)
        for speed in speeds:
            _set_sim_speed(cmd, speed)
            walls, started_while_stopped, still = [], 0, 0
            for k in range(ns.stops):
                end = time.monotonic() + rng.uniform(0.5, 3.0)  # the lab runs a random while,
                while time.monotonic() < end:
                    cmd.spin_for(0.01)
                end = time.monotonic() + 30.0  # then until something moves (stations' processes are long),
                while not watch.moving() and time.monotonic() < end:
                    cmd.spin_for(0.005)
                # and a random moment of that motion (above 20x a motion lasts only ms of wall time:
                # the stop goes at once)
                end = time.monotonic() + (rng.uniform(0.0, 0.3) if speed <= 20 else 0.0)
                while time.monotonic() < end:
                    cmd.spin_for(0.005)
                if cmd.is_task_complete(task, wait=0.0):
                    print(f"lab bench estop: the campaign ended: {task.result}", file=sys.stderr)
                    return 1
                label = f"bench stop {speed:g}x/{k}"
                was_moving, sim0, wall0 = watch.moving(), watch.stamp, time.monotonic()
                called[label] = (speed, time.time(), sim0 if was_moving else None)
                answer = fast_path(False, label, None, wait=5.0)
                if answer is None or not answer.get("success"):
                    print(f"lab bench estop: the stop was not answered: {answer}", file=sys.stderr)
                    return 1
                # at rest: the simulation's controllers say they halted for this stop (on `bumper`,
                # as a real base reports what stopped it), and two joint states after that agree
                while not watch.bumper.endswith(label) and time.monotonic() < wall0 + 30:
                    cmd.spin_for(0.002)
                seen = watch.joint_count
                while (watch.moving() or watch.joint_count < seen + 2) and time.monotonic() < wall0 + 30:
                    cmd.spin_for(0.002)
                if time.monotonic() >= wall0 + 30:
                    print(f"speed {speed:g}: stop {k + 1}: not seen at rest in 30 s: bumper '{watch.bumper}', base "
                          f"speed {watch.base_speed:g}, arm moving {watch.arm_moving()}, "
                          f"{watch.joint_count - seen} joint states since the halt", file=sys.stderr)
                if was_moving:
                    walls.append(time.monotonic() - wall0)
                else:
                    still += 1
                busy_before = watch.became_busy
                hold = time.monotonic() + rng.uniform(0.3, 1.0)  # the lab stands stopped: nothing may start
                moved = 0
                while time.monotonic() < hold:
                    cmd.spin_for(0.005)
                    moved += watch.moving()
                started = moved + watch.became_busy - busy_before
                if started:
                    print(f"speed {speed:g}: stop {k + 1}: STARTED WHILE STOPPED: moving in {moved} polls "
                          f"(base {watch.base_speed:g}); stations turned busy {watch.became_busy - busy_before} "
                          f"({watch.last_busy}); stop sent at sim {sim0:.3f}", file=sys.stderr)
                started_while_stopped += started
                if fast_path(True, "", None, wait=5.0) is None:
                    print("lab bench estop: the release was not answered", file=sys.stderr)
                    return 1
                resumed = time.monotonic() + 10
                while not cmd.resume()[0] and time.monotonic() < resumed:  # it may not have seen the release
                    cmd.spin_for(0.05)
                print(f"speed {speed:g}: stop {k + 1}/{ns.stops}" +
                      (f": at rest after {1000 * walls[-1]:.0f} ms wall" if was_moving else ": nothing was moving"),
                      file=sys.stderr)
            key = f"speed_{speed:g}"
            figures[f"{key}_stops"] = ns.stops
            figures[f"{key}_stops_while_moving"] = len(walls)
            figures[f"{key}_stops_while_still"] = still
            figures[f"{key}_started_while_stopped"] = started_while_stopped
            if walls:
                figures[f"{key}_wall_median_ms"] = 1000 * statistics.median(walls)
                figures[f"{key}_wall_p99_ms"] = 1000 * _quantile(walls, 0.99)
                figures[f"{key}_wall_max_ms"] = 1000 * max(walls)
        cmd.cancel(task, timeout=120)
        # after the campaign's cancel every carrier must come home, whatever the stops did
        homes = {c: loc.partition("/")[0] for c, loc in first_world.items() if "/" not in c}
        left = {c: watch.world.get(c, "?") for c in homes}
        end = time.monotonic() + 120
        while time.monotonic() < end:
            left = {c: watch.world.get(c, "?") for c, home in homes.items()
                    if watch.world.get(c, "?").partition("/")[0] != home}
            if not left:
                break
            cmd.spin_for(0.1)
        figures["carriers_not_home_after_cancel"] = len(left)
        if left:
            print(f"lab bench estop: carriers not home 120 s after the cancel: {left}", file=sys.stderr)
    # when the simulation's controllers applied each stop (the sim logs it, epoch-stamped, the
    # moment base and arm are halted): the stop's own latency, without the report path above
    applied: dict[float, list[float]] = {}
    # and the simulated time a moving robot ran on after the call: from the newest stamp of its
    # state (ground truth or joint states, each sent every tick while it moves) to the halt's
    sims: dict[float, list[float]] = {}
    pattern = re.compile(r"^\[/sim\] \[\w+\] \[(\d+\.\d+)\] .*: (bench stop \S+): every base and arm stopped"
                         r" \(at (\d+\.\d+) simulated s\)")
    for line in (run_dir / "nodes.log").read_text(errors="replace").splitlines():
        match = pattern.match(line)
        if match and match.group(2) in called:
            speed, at, sim0 = called[match.group(2)]
            applied.setdefault(speed, []).append(float(match.group(1)) - at)
            if sim0 is not None:
                sims.setdefault(speed, []).append(max(0.0, float(match.group(3)) - sim0))
    for speed, delays in sorted(applied.items()):
        key = f"speed_{speed:g}"
        figures[f"{key}_applied_count"] = len(delays)
        figures[f"{key}_applied_median_ms"] = 1000 * statistics.median(delays)
        figures[f"{key}_applied_p99_ms"] = 1000 * _quantile(delays, 0.99)
        figures[f"{key}_applied_max_ms"] = 1000 * max(delays)
    for speed, ran in sorted(sims.items()):
        key = f"speed_{speed:g}"
        figures[f"{key}_sim_median_s"] = statistics.median(ran)
        figures[f"{key}_sim_p99_s"] = _quantile(ran, 0.99)
        figures[f"{key}_sim_max_s"] = max(ran)
    print_figures(figures, 34)
    write_json(figures, ns.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
