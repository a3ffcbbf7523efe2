"""`lab bench hosts`: the lab on one host and on three, side by side.

Each layout runs in Linux network namespaces on this machine (lab.bench.netns; root only):

    one host     deployment single: every node in one namespace (Fast DDS's default transports,
                 shared memory included, as on one real computer)
    three hosts  deployment lab3 (server, stations, robot1), one namespace each on a bridge,
                 UDP only (what separate computers have)

For each: the round trip of an action across the server and the stations (a RunStation goal
sent from the server host that the station refuses at once: goal, acceptance, result; median
and 99th percentile of `--round-trips`), and the wall time of a photocatalysis campaign
(`--budget`, `--batch`, the same seed). On three hosts the campaign runs with robot1's host cut
off for `--cut` wall s while it works; the bench reports the time from the link coming back to
the lab manager's first new robot step. A client process on the server host does the DDS side
(`lab bench hosts --client`, internal) and talks to this process over its stdin/stdout.

    lab bench hosts [--round-trips 100] [--budget 32] [--batch 16] [--speed 1500] [--cut 30] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.bench import print_figures, write_json

LAYOUTS = {"one host": ("single", ("lab",)), "three hosts": ("lab3", ("server", "stations", "robot1"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench hosts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=100)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=1500.0)
    parser.add_argument("--cut", type=float, default=30.0, help="wall s robot1's host is cut off (three hosts)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.client:
        return _client(ns)
    from lab.bench.netns import unavailable

    why = unavailable()
    if why:
        print(f"lab bench hosts: {why}", file=sys.stderr)
        return 2
    figures: dict[str, Any] = {"round_trips": ns.round_trips, "budget": ns.budget, "batch": ns.batch,
                               "speed": ns.speed, "cut_s": ns.cut, "layouts": {}}
    for name, (deployment, hosts) in LAYOUTS.items():
        print(f"{name}: bringing the lab up ({deployment})", flush=True)
        figures["layouts"][name] = _layout(ns, deployment, hosts, cut=ns.cut if len(hosts) > 1 else 0.0)
        print_figures({name: figures["layouts"][name]})
    write_json(figures, ns.json)
    return 0 if all(f.get("measured") == ns.budget for f in figures["layouts"].values()) else 1


def _layout(ns: argparse.Namespace, deployment: str, hosts: tuple[str, ...], cut: float) -> dict[str, Any]:
    from lab.bench.netns import network

    args = [f"deployment:={deployment}", "robots:=1", f"speed:={ns.speed:g}"]
    with tempfile.TemporaryDirectory(prefix="bench-hosts-") as tmp, network(hosts) as net:
        env = net.host_env()
        if len(hosts) == 1:
            env.pop("FASTDDS_BUILTIN_TRANSPORTS")  # one computer: shared memory as usual
        procs = []
        try:
            for host in hosts:
                (Path(tmp) / host).mkdir()
                procs.append(subprocess.Popen(
                    net.command(host, [sys.executable, "-m", "lab.app.cli", "bringup", *args]
                                + ([f"host:={host}"] if len(hosts) > 1 else [])),
                    cwd=Path(tmp) / host, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
            server = hosts[0]
            client = subprocess.Popen(
                net.command(server, [sys.executable, "-m", "lab.app.cli", "bench", "hosts", "--client",
                                     "--round-trips", str(ns.round_trips), "--budget", str(ns.budget),
                                     "--batch", str(ns.batch), "--seed", str(ns.seed)]),
                cwd=Path(tmp) / server, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert client.stdin is not None and client.stdout is not None
            result: dict[str, Any] = {}
            for line in client.stdout:
                kind, _, text = line.strip().partition(" ")
                if kind == "CUT" and cut > 0:  # a robot1 step is under way: cut its host off
                    net.cut("robot1")
                    time.sleep(cut)
                    net.heal("robot1")
                    client.stdin.write(f"HEALED {time.monotonic()}\n")
                    client.stdin.flush()
                elif kind == "CUT":
                    client.stdin.write("HEALED 0\n")
                    client.stdin.flush()
                elif kind == "RESULT":
                    result = json.loads(text)
                elif kind:
                    print(f"  {line.rstrip()}", flush=True)
            client.wait()
            return result
        finally:
            for proc in procs:
                proc.send_signal(2)
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()


#: wall s between every node's action being up and the first round trip
SETTLE = 5.0


def _client(ns: argparse.Namespace) -> int:
    """On the server host: round trips, then the campaign; CUT / HEALED with the parent."""
    import threading

    import rclpy

    from lab.app.commander import LabCommander, TaskResult
    from lab.ros.actions import send_goal
    from lab_interfaces.action import RunCampaign, RunStation
    from lab_interfaces.msg import LabStatus

    rclpy.init()
    cmd = LabCommander("bench_hosts_client")
    try:
        # every host's nodes up: the planner's and a station's action servers answer
        deadline = time.monotonic() + 180
        client = cmd._client(RunStation, "/stations/charger/run_station")
        planner = cmd._client(RunCampaign, "/planner/run_campaign")
        while not (client.server_is_ready() and planner.server_is_ready()) and time.monotonic() < deadline:
            cmd.spin_for(0.2)
        # the lab up and settled: measured while 17 Python processes were still importing and
        # starting, the round trip's p99 was theirs (367 ms one host, 630 ms three; 2026-12-04)
        cmd.spin_for(SETTLE)
        times = []
        for _ in range(ns.round_trips):
            t0 = time.monotonic()
            sent = send_goal(client, RunStation.Goal(rack_id="bench", process="no_such_process"), pause=cmd.spin_for)
            result = sent.handle.get_result_async()
            while not result.done():
                cmd.spin_for(0.001)
            times.append(time.monotonic() - t0)
        times.sort()
        print(f"round trips: median {statistics.median(times) * 1e3:.1f} ms over {len(times)}", flush=True)
        steps: list[tuple[float, list[str]]] = []
        cmd.create_subscription(LabStatus, "/lab_status", lambda m: steps.append(
            (time.monotonic(), [s for s in m.active_steps if s.startswith("robot1:")])), 10)
        healed: list[float] = []

        def wait_heal() -> None:
            for line in sys.stdin:
                if line.startswith("HEALED "):
                    healed.append(float(line.split()[1]))
                    return

        started = time.monotonic()
        task = cmd.run_campaign("photocatalysis", budget=ns.budget, batch_size=ns.batch, seed=ns.seed,
                                server_timeout=120.0)
        asked = False
        while not cmd.is_task_complete(task, wait=0.1):
            if not asked and any(s for _, s in steps):
                asked = True
                print("CUT", flush=True)
                threading.Thread(target=wait_heal, daemon=True).start()
        wall = time.monotonic() - started
        outcome = cmd.get_result(task)
        done = task.result
        after = [t for t, s in steps if s and healed and healed[0] > 0 and t > healed[0]]
        figures = {
            "action_round_trip_ms_median": round(statistics.median(times) * 1e3, 2),
            "action_round_trip_ms_p99": round(times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3, 2),
            "campaign_wall_s": round(wall, 1),
            "measured": int(done.experiments_done) if done else 0,
            "failed": int(done.experiments_failed) if done else 0,
            "outcome": outcome.name,
            "heal_to_first_step_s": round(after[0] - healed[0], 2) if after else None,
        }
        print("RESULT " + json.dumps(figures), flush=True)
        return 0 if outcome is TaskResult.SUCCEEDED else 1
    finally:
        cmd.destroy_node()
        rclpy.try_shutdown()
