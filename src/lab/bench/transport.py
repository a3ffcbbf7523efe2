"""`lab bench transport`: station-to-station transport cycles with the whole node graph up.

Brings up every node of the table (embedded simulation) and repeats: drive to rack storage,
take a rack onto the deck, drive to the photoreactor, put it in, take it out, drive back,
put it home. Prints the wall time per move and the simulated-time speed factor achieved
(simulated seconds the moves took / wall seconds they took).

    lab bench transport [--cycles 5] [--speed 2000] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from lab.bench import print_figures, write_json

#: wall s after the lab manager's first status before the first move (its recovery looks then)
RECOVERY_SETTLE = 3.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench transport", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--speed", type=float, default=2000.0)
    parser.add_argument("--json", type=Path, default=None)
    ns = parser.parse_args(argv)

    from lab.app.commander import TaskResult
    from lab.app.session import lab_session
    from lab.bringup.processes import plan
    from lab_interfaces.msg import LabStatus

    run_dir = Path("runs") / ("bench-transport-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    specs = plan({"sim": "embedded", "robots": "1", "speed": str(ns.speed), "record": "false", "console": "false"})
    moves: list[tuple[str, float, float]] = []  # (what, wall s, simulated s)
    plan_ = [("nav", "rack_storage"), ("arm", "rack_storage/slot1", "robot1/deck1"),
             ("nav", "photoreactor"), ("arm", "robot1/deck1", "photoreactor/rack"),
             ("arm", "photoreactor/rack", "robot1/deck1"), ("nav", "rack_storage"),
             ("arm", "robot1/deck1", "rack_storage/slot1")]
    with lab_session(specs, run_dir / "nodes.log", "transport_bench") as (_lab, cmd):
        # the lab manager up and its start-up recovery over before the first move: it brings home
        # a carrier it finds away from home with no batch, and found rack_1 on the deck where this
        # bench had just put it (it then drove the robot off between the bench's goals; seen 2026-12-04)
        heard: list[float] = []
        cmd.create_subscription(LabStatus, "/lab_status", lambda _m: heard.append(time.monotonic()), 10)
        deadline = time.monotonic() + 120
        while not heard and time.monotonic() < deadline:
            cmd.spin_for(0.1)
        cmd.spin_for(RECOVERY_SETTLE)
        for cycle in range(ns.cycles):
            for step in plan_:
                t0 = time.monotonic()
                if step[0] == "nav":
                    task = cmd.navigate_to_station("robot1", step[1])
                    what = f"drive to {step[1]}"
                else:
                    task = cmd.manipulate("robot1", "transfer", step[1], step[2])
                    what = f"{step[1]} -> {step[2]}"
                if cmd.wait(task, timeout=300) is not TaskResult.SUCCEEDED:
                    print(f"lab bench transport: cycle {cycle + 1}: {what} failed: "
                          f"{getattr(task.result, 'message', '')}", file=sys.stderr)
                    return 1
                moves.append((what, time.monotonic() - t0, float(task.result.duration)))
            print(f"cycle {cycle + 1}/{ns.cycles}: {sum(m[1] for m in moves[-len(plan_):]):.2f} s wall")
    wall = sum(m[1] for m in moves)
    sim = sum(m[2] for m in moves)
    figures = {"cycles": ns.cycles, "moves": len(moves), "speed_requested": ns.speed,
               "speed_achieved": sim / wall if wall else 0.0,
               "wall_per_move_median_s": statistics.median(m[1] for m in moves),
               "sim_per_move_median_s": statistics.median(m[2] for m in moves),
               "drive_wall_median_s": statistics.median(m[1] for m in moves if m[0].startswith("drive")),
               "arm_wall_median_s": statistics.median(m[1] for m in moves if not m[0].startswith("drive"))}
    print_figures(figures, 24)
    write_json(figures, ns.json)
    print(f"transport: {figures['speed_achieved']:.0f}x real time achieved "
          f"({ns.speed:g}x asked), {figures['wall_per_move_median_s']:.2f} s wall per move (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
