"""`lab bringup`: the node table's nodes as separate processes, where ROS 2 launch is absent.

Starts every node of config/nodes.yaml (expanded by lab.core.config.nodetable, exactly as
launch/bringup.launch.py does) with the same `--ros-args` launch_ros would pass, prefixes each
line of their output with the node's name, and stops them all on Ctrl-C or SIGTERM.

Supervision: a node that dies is started again, after 1, 2, 4 ... s (doubling, at most 30 s),
up to `restarts` times within `RESTART_WINDOW` (the launch file does the same with launch's
respawn, respawn_delay and respawn_max_retries); each death and restart is logged with the
exit code. A required node that dies more often than that stops the lab (saying so); an
optional one is left stopped. Every child runs in its own process group and is killed if
bringup itself dies (PR_SET_PDEATHSIG), so nothing is left behind.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from lab import paths
from lab.core.config.nodetable import NodeSpec, expand, ros_arguments
from lab.core.errors import ConfigError

_PR_SET_PDEATHSIG = 1
#: s over which a node's restarts are counted: one that ran this long since its last restart
#: starts counting afresh
RESTART_WINDOW = 600.0
RESTARTS = 3
_COLOURS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def command_for(spec: NodeSpec) -> list[str]:
    """The command line for one node (what `ros2 run <package> <executable>` would run)."""
    if spec.package == "lab":
        try:
            exe = paths.executable(spec.executable)
        except (ImportError, LookupError, ValueError):
            exe = None
        if exe is not None and exe.is_file():
            program = [str(exe)]
        else:  # not colcon-installed (a bare checkout): the same main() through the interpreter
            module = node_module(spec.executable)
            program = [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]
    else:
        found = shutil.which(spec.executable)
        if found is None:
            raise FileNotFoundError(spec.executable)
        program = [found]
    return program + list(spec.arguments) + ros_arguments(spec)


#: executables whose main is not in lab.nodes (setup.py's entry points say the same): the console
#: is an application of the operator's commander (lab.app), above the nodes' layer
MODULES = {"console": "lab.console.server", "instrument": "lab.instruments.server"}


def node_module(executable: str) -> str:
    return MODULES.get(executable, f"lab.nodes.{executable}")


def _node_module_exists(spec: NodeSpec) -> bool:
    return importlib.util.find_spec(node_module(spec.executable)) is not None


class Bringup:
    """Starts and supervises the nodes; `run()` returns the exit status for the shell."""

    def __init__(self, specs: Sequence[NodeSpec], out: IO[str] | None = None, colour: bool | None = None,
                 restarts: int = RESTARTS):
        self.specs = list(specs)
        self.restarts = restarts
        self._deaths: dict[str, list[float]] = {}    # node -> monotonic times it died (window)
        self._due: dict[str, float] = {}             # node -> monotonic time of its restart
        self.out = out or sys.stdout
        self.colour = self.out.isatty() if colour is None else colour
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervising = threading.Lock()
        self._threads: list[threading.Thread] = []

    def say(self, text: str) -> None:
        with self._lock:
            self.out.write(f"[bringup] {text}\n")
            self.out.flush()

    def _pump(self, name: str, stream: IO[bytes], colour: int) -> None:
        prefix = f"\033[{colour}m[{name}]\033[0m " if self.colour else f"[{name}] "
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self.out.write(prefix + line + "\n")
                self.out.flush()
        stream.close()

    def start(self) -> None:
        for i, spec in enumerate(self.specs):
            try:
                self._spawn(i, spec)
            except FileNotFoundError:
                if spec.required:
                    raise
                self.say(f"{spec.full_name}: '{spec.executable}' is not installed; skipped (optional)")

    def _spawn(self, i: int, spec: NodeSpec, again: bool = False) -> None:
        proc = subprocess.Popen(
            command_for(spec), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent, env={**os.environ, **spec.env} if spec.env else None,
        )
        self.procs[spec.full_name] = proc
        assert proc.stdout is not None
        t = threading.Thread(target=self._pump, args=(spec.full_name, proc.stdout, _COLOURS[i % len(_COLOURS)]),
                             daemon=True)
        t.start()
        self._threads.append(t)
        self.say(f"{'restarted' if again else 'started'} {spec.full_name} (pid {proc.pid}): "
                 f"{spec.package} {spec.executable}")

    def dead(self) -> list[str]:
        """Nodes not running now (dead, waiting to restart, or given up)."""
        return [s.full_name for s in self.specs
                if (p := self.procs.get(s.full_name)) is None or p.poll() is not None]

    def deaths(self) -> dict[str, int]:
        """How many times each node that died has died (within the restart window)."""
        return {name: len(times) for name, times in self._deaths.items() if times}

    def supervise_in_background(self, period: float = 0.2) -> None:
        """Supervise from a thread until stop() (for a session that runs its own main loop)."""
        def loop() -> None:
            while not self._stopping.wait(period):
                self.supervise()

        thread = threading.Thread(target=loop, daemon=True, name="supervisor")
        thread.start()
        self._threads.append(thread)

    def supervise(self) -> list[str]:
        """One look at the nodes: schedule a restart for each that died, start those due.
        Returns the required nodes that died more often than allowed (the lab must stop)."""
        with self._supervising:  # stop() waits for a pass under way: nothing starts after it
            return self._supervise()

    def _supervise(self) -> list[str]:
        now = time.monotonic()
        give_up = []
        for i, spec in enumerate(self.specs):
            name = spec.full_name
            proc = self.procs.get(name)
            if proc is None or self._stopping.is_set():
                continue
            if name in self._due:
                if now >= self._due[name]:
                    del self._due[name]
                    self._spawn(i, spec, again=True)
                continue
            if proc.poll() is None:
                continue
            deaths = [t for t in self._deaths.get(name, []) if now - t < RESTART_WINDOW] + [now]
            self._deaths[name] = deaths
            if len(deaths) > self.restarts:
                what = "stopping the lab" if spec.required else "left stopped (optional)"
                self.say(f"{name} exited unexpectedly (exit code {proc.returncode}), {len(deaths)} times in "
                         f"{RESTART_WINDOW / 60:g} min; {what}")
                self.procs.pop(name)
                if spec.required:
                    give_up.append(name)
                continue
            delay = min(30.0, 2.0 ** (len(deaths) - 1))
            self._due[name] = now + delay
            self.say(f"{name} exited unexpectedly (exit code {proc.returncode}); restarting it in {delay:g} s "
                     f"(restart {len(deaths)} of {self.restarts} in {RESTART_WINDOW / 60:g} min)")
        return give_up

    def stop(self, grace: float = 10.0) -> None:
        """SIGINT every node (rclpy shuts down cleanly on it), then SIGTERM, then SIGKILL."""
        with self._supervising:
            self._stopping.set()
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            alive = [(n, p) for n, p in self.procs.items() if p.poll() is None]
            if not alive:
                break
            for _name, proc in alive:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(p.poll() is None for _n, p in alive):
                time.sleep(0.05)
            if sig != signal.SIGINT:
                for name, proc in alive:
                    if proc.poll() is not None:
                        self.say(f"{name} needed {signal.Signals(sig).name} to stop")
        for proc in self.procs.values():
            # a node's own children (its process group) go too
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        for t in self._threads:
            t.join(timeout=2.0)

    def run(self, duration: float | None = None) -> int:
        interrupted = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            interrupted.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            self.start()
            self.say(f"{len(self.procs)} nodes up; Ctrl-C stops them all")
            started = time.monotonic()
            while not interrupted.is_set():
                if self.supervise():
                    status = 1
                    break
                if duration is not None and time.monotonic() - started >= duration:
                    break
                interrupted.wait(0.2)
            if interrupted.is_set():
                self.say("stopping all nodes")
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        self.say("all nodes stopped")
        return status


def plan(given: Mapping[str, str], config_dir: Path | None = None, table: str = "nodes.yaml") -> list[NodeSpec]:
    """Expand and check everything that can be checked before a node starts."""
    config_dir = config_dir or paths.share_dir() / "config"
    specs = expand(config_dir, given, table)
    if not specs:
        raise ConfigError(f"host:={given.get('host', '')} runs no node of this lab with these arguments "
                          f"(deployment {given.get('deployment', 'single')}): nothing to start")
    missing = [s for s in specs if s.package == "lab" and not _node_module_exists(s)]
    if missing:
        raise ConfigError(
            f"{config_dir / table}: names executable(s) "
            f"{', '.join(sorted({s.executable for s in missing}))} that package lab does not have"
        )
    return specs


def parse_cli_arguments(items: Sequence[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ConfigError(f"bringup argument {item!r}: write name:=value, as for ros2 launch")
        if name in given:  # ros2 launch keeps the last silently; a lab started with the other is worse
            raise ConfigError(f"bringup argument {name} given twice ({name}:={given[name]}, {item}): give it once")
        given[name] = value
    return given


def main(items: Sequence[str], duration: float | None = None, table: str = "nodes.yaml",
         restarts: int = RESTARTS) -> int:
    try:
        specs = plan(parse_cli_arguments(items), table=table)
    except ConfigError as exc:
        print(f"lab bringup: {exc}", file=sys.stderr)
        return 2
    return Bringup(specs, restarts=restarts).run(duration=duration)
