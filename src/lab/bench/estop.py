"""`lab bench estop`: how fast the emergency stop stops a driving robot.

Brings up the safety node, the simulation, a navigator and an arm (embedded lab, one robot),
and repeats: send a navigation goal across the lab, wait a random moment of the drive, stop
the lab the way `lab estop` does (lab.estop.fast_path: one UDP datagram to the safety node),
and time, in wall and simulated seconds, how long from that call until the simulation's ground
truth shows the base at rest; then check that a new navigation goal is refused, release, and
go on. Run at each speed asked for.

    lab bench estop [--stops 20] [--speeds 1,200] [--json OUT]

Not measured here (issue 14 asks for them too): e-stops during a whole campaign (lab manager,
planner, stations) and the arm's joint velocities.
"""

from __future__ import annotations

import argparse
import random
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
    ns = parser.parse_args(argv)
    speeds = [float(s) for s in ns.speeds.split(",") if s]

    from nav_msgs.msg import Odometry

    from lab.bringup import plan
    from lab.cli import _set_sim_speed
    from lab.commander import TaskResult
    from lab.estop import fast_path
    from lab.session import lab_session

    rng = random.Random(ns.seed)
    run_dir = Path("runs") / ("bench-estop-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    specs = [s for s in plan({"sim": "embedded", "robots": "1", "record": "false"})
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


if __name__ == "__main__":
    sys.exit(main())
