#!/usr/bin/env python3
"""Where a machine's CPU goes while something runs (the suite, a bench): every PERIOD s it reads
/proc/<pid>/stat of every process and charges the CPU time each used since the last look to a
name: a ROS node's `__node:=` name, else a `python -m` module, else the executable. Processes
that start and end between two looks are missed (their parents' children counters are not read):
the figure is a lower bound, good for ranking.

Every PROBE s it also times a fixed loop by its own CPU time (not wall time: the other processes'
load does not count): the machine's speed that minute. The same suite's time has varied by half
between runs on this 2-core VM (388-620 s of pytest), and whether the machine or the code varied
is what the probe tells.

    python scripts/cpu_by_process.py OUT.json [PERIOD]     # until SIGINT/SIGTERM, then writes OUT.json
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PROBE = 10.0          # s between probes
PROBE_LOOP = 2_000_000


def probe() -> float:
    """CPU s this process takes for a fixed loop of additions."""
    began = time.process_time()
    total = 0
    for i in range(PROBE_LOOP):
        total += i
    return time.process_time() - began


def name_of(pid: str) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    for a in argv:
        if a.startswith("__node:="):
            return "node " + a.split("=", 1)[1]
    if "-m" in argv[:-1]:
        return "python -m " + argv[argv.index("-m") + 1]
    for a in argv[1:3]:
        if a.endswith(".py") or "pytest" in a or "xdist" in a:
            return Path(argv[0]).name + " " + Path(a).name
    return Path(argv[0]).name if argv and argv[0] else "?"


def cpu_of(pid: str) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def main() -> None:
    out, period = Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    seen: dict[str, tuple[str, float]] = {}
    total: dict[str, float] = {}
    instances: dict[str, set[str]] = {}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    me = str(os.getpid())
    began = time.monotonic()
    probes: list[float] = []
    probed = 0.0
    while not stop:
        if time.monotonic() - probed >= PROBE:
            probed = time.monotonic()
            probes.append(round(probe(), 4))
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me:
                continue
            cpu = cpu_of(pid)
            if cpu is None:
                continue
            name, before = seen.get(pid, (None, 0.0))
            if name is None:
                name = name_of(pid)
                instances.setdefault(name, set()).add(pid)
            total[name] = total.get(name, 0.0) + cpu - before
            seen[pid] = (name, cpu)
        time.sleep(period)
    ranked = sorted(total.items(), key=lambda kv: -kv[1])
    probes_sorted = sorted(probes) or [0.0]
    out.write_text(json.dumps({"wall": time.monotonic() - began, "cpu": sum(total.values()),
                               "probe_cpu_s": {"min": probes_sorted[0], "median": probes_sorted[len(probes) // 2],
                                               "max": probes_sorted[-1], "all": probes},
                               "by_name": [{"name": n, "cpu": round(c, 1), "processes": len(instances[n])}
                                           for n, c in ranked]}, indent=1))


if __name__ == "__main__":
    main()
