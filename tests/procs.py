"""Child processes for system tests: started in their own process group, always reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def children_of(pid: int) -> list[int]:
    """Every live descendant of pid (from /proc), to prove nothing is left behind."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parents[int(entry)] = int(fields[1])
            except (OSError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def alive(pids: Sequence[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(pid)
        except OSError:
            pass
    return out


def _terminate_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by SIGKILL (`lab bringup` then
    stops its nodes), so a killed test run leaves no process behind."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    # Ctrl-C as from a terminal: a suite started as a background job of a non-interactive shell
    # ignores SIGINT, the children inherit that, and Python then installs no KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def process(cmd: Sequence[str], **kwargs) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(list(cmd), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_terminate_with_parent, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate, timeout: float, period: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    raise TimeoutError(f"{what} not reached within {timeout} s")
