"""`lab bench load`: what the lab's nodes cost the machine, and where a round trip's tail comes from.

The whole node graph is brought up (`lab bringup`, embedded simulation) at `--speed`, a
photocatalysis campaign runs (unless `--idle`), and a bare RunStation echo server
(`lab bench plumbing`'s) runs beside it. Then, alternately, `--round-trips` goals go to a station
(the charger refuses an unknown process at once: goal, acceptance, result) and to the echo
server, from one client: the same machine load, the same client, so the station's own share of
a tail is the difference (issue 37: found before anything was changed). Meanwhile each node's
CPU is read from /proc: a node that wakes for every message of a fast topic shows here.

    lab bench load [--speed 1] [--round-trips 300] [--idle] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.bench import print_figures, write_json
from lab.bench.plumbing import echo_server, percentile

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU s of a process so far (/proc/PID/stat; 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15 of proc(5)


def shares(pids: dict[str, int], since: dict[str, float], wall: float) -> dict[str, float]:
    """Each node's CPU since `since` as % of one core over `wall` s, largest first."""
    used = {name: 100.0 * (cpu_seconds(pid) - since[name]) / wall for name, pid in pids.items()}
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--round-trips", type=int, default=300, help="to each server")
    parser.add_argument("--idle", action="store_true", help="no campaign: the lab stands idle")
    parser.add_argument("--json", type=Path, default=None)
    ns = parser.parse_args(argv)

    from lab.app.session import lab_session
    from lab.bringup.processes import plan
    from lab.ros.actions import send_goal
    from lab_interfaces.action import RunStation

    run_dir = Path("runs") / ("bench-load-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    specs = plan({"sim": "embedded", "robots": "1", "speed": f"{ns.speed:g}", "record": "false", "console": "false"})
    with echo_server(), lab_session(specs, run_dir / "nodes.log", "bench_load") as (lab, cmd):
        servers = {"station": cmd._client(RunStation, "/stations/charger/run_station"),
                   "bare": cmd._client(RunStation, "/plumbing_echo")}
        deadline = time.monotonic() + 180
        while not all(c.server_is_ready() for c in servers.values()):
            if time.monotonic() > deadline:
                print("lab bench load: the charger's or the echo server's action did not come up", file=sys.stderr)
                return 1
            cmd.spin_for(0.2)
        cmd.spin_for(5.0)  # discovery settles
        task = None
        if not ns.idle:
            task = cmd.run_campaign("photocatalysis", budget=64, batch_size=16, seed=1, server_timeout=120.0)
            cmd.spin_for(10.0)  # the robot under way
        pids = {name.lstrip("/"): proc.pid for name, proc in lab.procs.items()}
        since, wall0 = {name: cpu_seconds(pid) for name, pid in pids.items()}, time.monotonic()
        times: dict[str, dict[str, list[float]]] = {s: {"accept": [], "result": [], "total": []} for s in servers}
        for k in range(2 * ns.round_trips):
            name = ("station", "bare")[k % 2]
            t0 = time.monotonic()
            sent = send_goal(servers[name], RunStation.Goal(rack_id="bench", process="no_such_process"),
                             pause=cmd.spin_for)
            t1 = time.monotonic()
            result = sent.handle.get_result_async()
            while not result.done():
                cmd.spin_for(0.001)
            t2 = time.monotonic()
            for key, value in (("accept", t1 - t0), ("result", t2 - t1), ("total", t2 - t0)):
                times[name][key].append(value)
        cpu = shares(pids, since, time.monotonic() - wall0)
        if task is not None and cmd.is_task_complete(task, wait=0.0):
            print("lab bench load: the campaign ended during the round trips: its load was not there "
                  "throughout", file=sys.stderr)
        elif task is not None:
            # cancelled, not left running in runs/campaigns.db: a planner started in this folder within
            # its take_up_within (600 s) would take it up and refuse the next bench's campaign (seen
            # 2026-12-04: `lab bench lab` right after this bench was refused "one campaign at a time")
            cmd.cancel(task, timeout=120)
    figures: dict[str, Any] = {"speed": ns.speed, "campaign": not ns.idle, "round_trips": ns.round_trips}
    for name, kinds in times.items():
        for key, values in kinds.items():
            for q in (50, 90, 99):
                figures[f"{name}_{key}_p{q}_ms"] = round(1000 * percentile(values, q), 1)
            figures[f"{name}_{key}_max_ms"] = round(1000 * max(values), 1)
    figures["cpu_total_percent"] = round(sum(cpu.values()), 1)
    figures.update({f"cpu_{name.replace('/', '_')}_percent": round(share, 1) for name, share in cpu.items()})
    print_figures(figures, 40)
    write_json(figures, ns.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
