"""The system tests' helpers, in one module: bring up part or all of the lab as separate processes
(`lab`), find a node's process, collect output, spin a commander until a condition holds, watch
the simulation's ground truth (`Probe`)."""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from procs import alive, children_of, process, wait_for

ROOT = Path(__file__).resolve().parents[2]
LAB = [sys.executable, "-m", "lab.app.cli"]
MOVERS_AND_STATIONS = {"navigator", "arm", "station"}


def table(tmp_path: Path, keep: set[str], overrides: dict[str, dict] | None = None) -> Path:
    """A copy of config/nodes.yaml with only the nodes named in keep (by executable). The safety
    node comes with any mover or station: they do nothing until they have heard its state
    (lab.ros.safety.SafetyMonitor until_heard), as in every real bringup."""
    doc = yaml.safe_load((ROOT / "config" / "nodes.yaml").read_text())
    if keep & MOVERS_AND_STATIONS:
        keep = keep | {"safety"}
    nodes = []
    for node in doc["nodes"]:
        if node["executable"] in keep:
            node = dict(node)
            node["params"] = [str(ROOT / "config" / p) for p in node.get("params", [])]
            node.setdefault("set", {}).update((overrides or {}).get(node["executable"], {}))
            nodes.append(node)
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump({"nodes": nodes}))
    return path


def node_pid(out: Output, name: str) -> int:
    """The process of node `name` under the bringup whose output is `out` (its `-r __node:=name`)."""
    return next(p for p in children_of(out.proc.pid)
                if f"__node:={name}" in Path(f"/proc/{p}/cmdline").read_text(errors="replace").split("\0"))


#: the bring-ups' whole output, as files (Output with a log) -> when the bring-up ended (None: it
#: runs): a failed test keeps those running or ended during it (tests/conftest.py,
#: runs/test-artefacts/bringup/). A failure's message shows the last lines
#: only, and the line that says whose hold stopped a lockstep clock ("where the clock's wall time
#: went", every 30 s) was not among them when the end-to-end campaign's clock stood still (d878cbd)
LOGS: dict[Path, float | None] = {}


class Output:
    """Collects a process's output in a thread (so its pipe never fills); with `log`, also into that
    file, each line after the wall seconds since the start."""

    def __init__(self, proc, log: Path | None = None) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.log = log
        self._began = time.monotonic()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc) -> None:
        sink = self.log.open("a", buffering=1) if self.log is not None else None
        try:
            for line in proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if sink is not None:
                    sink.write(f"[+{time.monotonic() - self._began:8.3f}] {line}")
        finally:
            if sink is not None:
                sink.close()

    def text(self, last: int = 200) -> str:
        return "\n".join(self.lines[-last:])


#: the stations the photocatalysis workflow visits (config/workflows.yaml), and its rack's home
PHOTOCATALYSIS = ("rack_storage", "solid_dispenser", "liquid_dispenser", "photoreactor", "gas_chromatograph")


def station_host(tmp_path: Path, stations: tuple[str, ...]) -> list[str]:
    """Bringup arguments for a lab whose other stations are on a host that is not started (the
    product's deployments, docs/deployment.md: `host:=` starts one host's nodes): a test that uses
    a few stations does not pay for the rest's start-up and their share of the DDS traffic (about
    2.5 CPU s each a minute at the suite's speeds: a tenth of a campaign module's CPU)."""
    from lab.core.config.nodetable import load_deployment
    from lab.core.robot.world import load_stations

    known = set(load_stations(ROOT / "config" / "stations.yaml").stations)
    others = sorted(known - set(stations))
    assert set(stations) <= known, f"no such stations in config/stations.yaml: {sorted(set(stations) - known)}"
    deployment = tmp_path / "deployment.yaml"
    # the shipped three-host lab's server (config/deployments/lab3.yaml), the robots, the kept stations
    server = load_deployment(ROOT / "config", "lab3", []).hosts["server"]
    here = [*server, "/robot*", "/instruments/*", *(f"/stations/{s}" for s in stations)]
    deployment.write_text(yaml.safe_dump({"dds": "local", "hosts": {
        "lab": here, "elsewhere": [f"/stations/{s}" for s in others] or ["/nothing_here"]}}))
    return [f"deployment:={deployment}", "host:=lab"]


@contextmanager
def lab(tmp_path: Path, args: list[str], keep: set[str] | None = None,
        overrides: dict[str, dict] | None = None, stations: tuple[str, ...] | None = None) -> Iterator[Output]:
    """`lab bringup` in tmp_path (its database and recordings land there); stopped with Ctrl-C.
    Without the console unless asked for (console:=true): its port is one per machine. With
    `stations`, only those station nodes run (station_host)."""
    if not any(a.startswith("console:=") for a in args):
        args = [*args, "console:=false"]
    if stations is not None:
        args = [*args, *station_host(tmp_path, stations)]
    cmd = LAB + ["bringup", *args]
    if keep is not None:
        cmd += ["--table", str(table(tmp_path, keep, overrides))]
    log = tmp_path / "bringup.log"
    with process(cmd, cwd=tmp_path) as proc:
        out = Output(proc, log)
        LOGS[log] = None
        try:
            yield out
        finally:
            LOGS[log] = time.monotonic()
            kids = children_of(proc.pid)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except Exception:
                pass
            deadline = time.monotonic() + 10
            while alive(kids) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert alive(kids) == [], f"left behind: {alive(kids)}\n{out.text()}"


class Probe:
    """A robot's ground truth (pose, speed) and the world state, watched from the test."""

    def __init__(self, cmd, robot: str = "robot1", world: bool = True) -> None:
        from nav_msgs.msg import Odometry

        from lab.ros.qos import LATCHED
        from lab_interfaces.msg import WorldState

        self.truth: tuple[float, float, float] | None = None  # x, y, yaw
        self.speed = 0.0
        self.world: dict[str, str] = {}
        cmd.create_subscription(Odometry, f"/{robot}/ground_truth", self._truth, 10)
        if world:
            cmd.create_subscription(WorldState, "/world_state", self._world, LATCHED)

    def _truth(self, msg) -> None:
        from lab.ros.conversions import quaternion_to_yaw

        q = msg.pose.pose.orientation
        self.truth = (msg.pose.pose.position.x, msg.pose.pose.position.y, quaternion_to_yaw(q.x, q.y, q.z, q.w))
        t = msg.twist.twist
        self.speed = abs(t.linear.x) + abs(t.linear.y) + abs(t.angular.z)

    def _world(self, msg) -> None:
        self.world = dict(zip(msg.objects, msg.locations, strict=False))


def spin_until(cmd, predicate, timeout: float, what: str = "condition"):
    """Spin the commander (its own executor: entities are never created while another thread spins)."""
    def check():
        cmd.spin_for(0.01)
        return predicate()

    return wait_for(check, timeout, period=0.0, what=what)


def spin_for(cmd, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cmd.spin_for(0.01)


def set_param(cmd, node: str, name: str, value: int | float) -> None:
    """Set one integer or double parameter of a running node, checked accepted."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = cmd.create_client(SetParameters, f"{node}/set_parameters")
    spin_until(cmd, client.service_is_ready, 30, what=f"{node}/set_parameters")
    typed = (ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value) if isinstance(value, int)
             else ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=typed)]))
    spin_until(cmd, future.done, 30, what=f"{node} setting {name}")
    assert future.result().results[0].successful, future.result().results[0].reason
    cmd.destroy_client(client)


def wait_result(cmd, task, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while not cmd.is_task_complete(task, wait=0.02):
        assert time.monotonic() < deadline, "no result in time"
    return cmd.get_result(task), task.result


def measured(db: Path, campaign_id: str) -> list[dict]:
    """The campaign's experiments as the store holds them (one dict per row)."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("select * from experiments where campaign_id = ?", (campaign_id,))]


def run(cmd, name: str, budget: int, batch: int, seed: int = 1, timeout: float = 300.0, **kw):
    # the planner's action server may still be starting with the lab: the whole lab's start-up
    # took ~30 s on 2 cores (18 processes importing rclpy, numpy, scikit-learn), more under load
    task = cmd.run_campaign(name, budget=budget, batch_size=batch, seed=seed, server_timeout=120.0, **kw)
    deadline = time.monotonic() + timeout
    while not cmd.is_task_complete(task, wait=0.1):
        assert time.monotonic() < deadline, f"campaign {name} did not finish in {timeout} s"
    return cmd.get_result(task), task.result, task
