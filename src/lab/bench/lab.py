"""`lab bench lab`: the photocatalysis campaign through every node, over DDS, in the embedded lab.

Brings the whole lab up (as `lab bringup` does), runs the campaign with the paper's station
timings, and reports the simulated lab time, experiments per simulated day (the real robot:
688 in 8 days, about 86 a day; Burger et al. 2020), station utilisation, the throughput bound
the busiest resource sets, and the wall time. An operator (as the lab's technician did) refills
a dispenser when one of its stocks falls below 30 % of its capacity; the refills are counted.

    lab bench lab [--experiments 688] [--robots 1] [--speed 2000] [--batch 16] [--in-flight N] [--seed 0] [--json OUT]

Each run records its commit and date, and says how far it moved from the committed run with the
same settings (benchmarks/lab*.json): experiments a simulated day, the fraction of the
bottleneck's bound, robot1's busy share, simulated days, wall time (issue 37, item 5).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from lab.bench import write_json

PAPER_PER_DAY = 688 / 8.0


def utilisation(db: Path, campaign_id: str) -> tuple[dict[str, float], dict[str, float], float]:
    """(busy seconds per resource, busy fraction per resource, horizon) from the intervals table."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute('select resource, start, "end" from intervals where campaign_id = ?',
                            (campaign_id,)).fetchall()
    if not rows:
        return {}, {}, 0.0
    busy: dict[str, float] = defaultdict(float)
    start, end = min(r[1] for r in rows), max(r[2] for r in rows)
    for resource, a, b in rows:
        busy[resource] += max(0.0, b - a)
    horizon = max(end - start, 1e-9)
    return dict(busy), {k: v / horizon for k, v in busy.items()}, horizon


class Operator:
    """The technician of an 8-day campaign: refills a dispenser's stocks (all of them, to capacity)
    when one falls below `low` of its capacity, as the station's status shows them. Runs its own
    node and executor thread; `refills` counts what it did."""

    def __init__(self, stations: list[str], low: float = 0.3) -> None:
        import threading

        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        from lab.ros.qos import LATCHED
        from lab_interfaces.msg import StationStatus
        from lab_interfaces.srv import RefillStock

        self.low, self.refills = low, 0
        self.node = Node("lab_bench_operator")
        self._clients = {s: self.node.create_client(RefillStock, f"/stations/{s}/refill_stock") for s in stations}
        self._pending: set[str] = set()
        self._request = RefillStock.Request
        for station in stations:
            self.node.create_subscription(StationStatus, f"/stations/{station}/status",
                                          lambda m, s=station: self._status(s, m), LATCHED)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _status(self, station: str, msg) -> None:
        low = [n for n, level, cap in zip(msg.stock_names, msg.stock_levels, msg.stock_capacities, strict=False)
               if cap > 0 and level < self.low * cap]
        if not low or station in self._pending or not self._clients[station].service_is_ready():
            return
        self._pending.add(station)
        self.refills += 1
        self.node.get_logger().info(f"refilling {station} (low: {', '.join(low)})")
        future = self._clients[station].call_async(self._request(stock="", amount=0.0))
        future.add_done_callback(lambda _: self._pending.discard(station))

    def stop(self) -> None:
        self._executor.shutdown()
        self._thread.join(timeout=5.0)
        self.node.destroy_node()


def throughput_bounds(busy: dict[str, float], robots: int, experiments: int) -> dict[str, float]:
    """Experiments per day each resource could sustain at the busy time per experiment it had:
    one per station, one for the robots as a pool (any robot carries any rack)."""
    if experiments <= 0:
        return {}
    bounds = {name: 86400.0 * experiments / t for name, t in busy.items() if not name.startswith("robot") and t > 0}
    robot_time = sum(t for name, t in busy.items() if name.startswith("robot"))
    if robot_time > 0:
        bounds["robots"] = 86400.0 * experiments * robots / robot_time
    return bounds


#: the figures a run is compared on: (key, label, how to show it)
COMPARED = (("experiments_per_day", "experiments a simulated day", "{:.0f}"),
            ("fraction_of_bound", "of the bottleneck's bound", "{:.1%}"),
            ("robot1_busy", "robot1 busy", "{:.1%}"),
            ("sim_days", "simulated days", "{:.2f}"),
            ("wall_s", "wall s", "{:.0f}"))


def committed_figure(figures: dict, folder: Path) -> tuple[Path, dict] | None:
    """The committed run (benchmarks/lab*.json) with the same settings as `figures`: experiments,
    robots, batches in flight, speed, batch size; None when there is none."""
    import json

    def settings(d: dict) -> tuple:
        return (d.get("experiments"), d.get("robots"), d.get("batches_in_flight"), d.get("speed_requested"),
                d.get("batch", 16))

    for path in sorted(folder.glob("lab*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if settings(doc) == settings(figures):
            return path, doc
    return None


def movement(figures: dict, before: dict) -> list[str]:
    """How far each compared figure moved from `before` (a committed run), one line each."""
    lines = []
    for key, label, shown in COMPARED:
        old, new = _figure(before, key), _figure(figures, key)
        if old is None or new is None:
            continue
        change = f"{(new - old) / old:+.1%}" if old else "n/a"
        lines.append(f"  {label:>28}: {shown.format(old)} -> {shown.format(new)} ({change})")
    return lines


def _figure(doc: dict, key: str) -> float | None:
    if key == "robot1_busy":
        value = (doc.get("utilisation") or {}).get("robot1")
    else:
        value = doc.get(key)
    return float(value) if isinstance(value, int | float) else None


def _commit() -> str:
    """The checkout's commit (and '+' when it has changes), '' outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+" if head and dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=688)
    parser.add_argument("--robots", type=int, default=1)
    parser.add_argument("--speed", type=float, default=2000.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-flight", type=int, default=None,
                        help="batches the planner keeps running at once (default: config/params/planner.yaml)")
    parser.add_argument("--max-step", type=float, default=None,
                        help="the sim's simulated s per tick at most (config/params/sim.yaml: 20, i.e. 2000x at "
                             "100 Hz); raise it with --speed above 2000")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--compare", type=Path, default=Path("benchmarks"),
                        help="folder of committed runs: the one with the same settings is compared with")
    ns = parser.parse_args(argv)

    from lab.app.session import lab_session, run_campaign_with_progress
    from lab.bringup.processes import plan

    run_dir = Path("runs") / ("bench-lab-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    specs = plan({"sim": "embedded", "robots": str(ns.robots), "speed": str(ns.speed),
                  "record": "false", "console": "false"})
    if ns.in_flight is not None:
        specs = [replace(s, parameters={**s.parameters, "batches_in_flight": ns.in_flight})
                 if s.executable == "planner" else s for s in specs]
    if ns.max_step is not None:  # the sim's cap on a tick's simulated s (20 by default: 2000x at 100 Hz)
        specs = [replace(s, parameters={**s.parameters, "max_step": ns.max_step}) if s.executable == "sim" else s
                 for s in specs]
    with lab_session(specs, run_dir / "nodes.log", "lab_bench") as (lab, cmd):
        operator = Operator(["solid_dispenser", "liquid_dispenser"])
        wall0 = time.monotonic()
        try:
            code, result = run_campaign_with_progress(cmd, "photocatalysis", ns.experiments, ns.batch, ns.seed)
        finally:
            operator.stop()
        wall = time.monotonic() - wall0
        deaths = lab.deaths()
    # a node that died makes every figure suspect (a sim that could not start failed all 64 of a
    # run, which then read as the lab's throughput): say which, and fail the bench
    died = ", ".join(f"{name} x{n}" for name, n in sorted(deaths.items()))
    if died:
        print(f"lab bench lab: nodes died during the run: {died} (see {run_dir / 'nodes.log'})", file=sys.stderr)
    if code != 0 or result is None:
        print(f"lab bench lab: the campaign did not complete (see {run_dir / 'nodes.log'})", file=sys.stderr)
        return 1
    db = Path(result.database)
    busy, fraction, horizon = utilisation(db, result.campaign_id)
    days = horizon / 86400.0
    per_day = result.experiments_done / days if days else 0.0
    bounds = throughput_bounds(busy, ns.robots, result.experiments_done)
    bottleneck = min(bounds, key=lambda k: bounds[k]) if bounds else ""
    bound = bounds.get(bottleneck, 0.0)
    figures = {
        "experiments": result.experiments_done, "failed": result.experiments_failed, "robots": ns.robots,
        "speed_requested": ns.speed, "batches_in_flight": ns.in_flight, "sim_days": days,
        "experiments_per_day": per_day,
        "paper_experiments_per_day": PAPER_PER_DAY, "bottleneck": bottleneck, "bottleneck_bound_per_day": bound,
        "fraction_of_bound": per_day / bound if bound else 0.0, "wall_s": wall, "operator_refills": operator.refills,
        "speed_achieved": horizon / wall if wall else 0.0, "utilisation": fraction,
        "best": result.best_measurements[0].values[0] if result.best_measurements else None,
        "campaign_id": result.campaign_id, "database": str(db), "batch": ns.batch,
        "max_step": ns.max_step, "commit": _commit(), "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "nodes_died": deaths,
    }
    print(f"simulated lab time {days:.2f} days for {result.experiments_done} experiments "
          f"({per_day:.0f}/day; the robot in the paper: {PAPER_PER_DAY:.0f}/day)")
    for name, share in sorted(fraction.items(), key=lambda kv: -kv[1]):
        print(f"  {name:>20}: busy {share:6.1%}")
    print(f"bottleneck {bottleneck}: bound {bound:.0f}/day; achieved {figures['fraction_of_bound']:.0%} of it")
    print(f"wall time {wall:.0f} s ({figures['speed_achieved']:.0f}x real time on average); "
          f"the operator refilled a dispenser {operator.refills} times")
    committed = committed_figure(figures, ns.compare)
    if committed is None:
        print(f"no committed run in {ns.compare}/lab*.json with these settings to compare with")
    else:
        path, before = committed
        print(f"against {path} ({before.get('commit') or 'commit not recorded'}, {before.get('date') or 'undated'}):")
        print("\n".join(movement(figures, before)))
    write_json(figures, ns.json)
    print(f"{ns.robots} robot(s): {per_day:.0f} experiments/simulated day, {wall / 60:.1f} min wall")
    if result.experiments_failed or died:
        print(f"lab bench lab: {result.experiments_failed} experiment(s) failed"
              + (f", nodes died ({died})" if died else "") + f": see {run_dir / 'nodes.log'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
