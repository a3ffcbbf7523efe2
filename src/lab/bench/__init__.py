"""`lab bench NAME [options]`: the benchmarks (BENCHMARKS.md quotes their committed results).

    planner     pool-based sample efficiency on measured data (Liang et al. 2021): Top%, EF, AF
    suite       the planner beside reference methods (GP-EI, forest EI, random) on three real pools
                and four noisy synthetic functions: one table, one plot per set
    campaign    the campaign loop against random search on the emulators (photocatalysis vs the real robot)
    cost        time and memory of proposing a batch of 16 as observations grow (and skopt's ask)
    emulators   cross-validated accuracy of the emulators fitted to the real data
    plumbing    action round trips over DDS
    transport   station-to-station transport cycles, whole node graph up
    lab         a photocatalysis campaign through every node over DDS
    estop       how fast the emergency stop stops a driving robot (wall and simulated time)
    faults      a campaign during which every kind of node is SIGKILLed once: nothing lost, nothing twice
    hosts       the lab on one host and on three (network namespaces, root): round trips, campaign,
                recovery after robot1's host is cut off
    console     the console's page: a change in the lab to the page showing it; its e-stop button to rest
    robot-time  where the robot's simulated time goes in a recorded campaign: moving, arm, neither
    load        each node's CPU and a station's round trip beside a bare echo server, during a campaign
    instruments a step's round trip over SiLA 2 (TLS) against in-process; a campaign with instruments:=sila and without
    all         emulators, cost, planner, campaign, plumbing (not transport and lab: long)
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

BENCHES = ("planner", "suite", "campaign", "cost", "emulators", "plumbing", "transport", "lab", "estop", "faults",
           "hosts", "console", "robot-time", "instruments", "load")
MODULES = {"planner": "pool", "robot-time": "robot_time"}
#: where a bench writes unless its --json/--plot name a path: a run from the checkout never
#: overwrites the committed figures in benchmarks/ (those are written by naming them)
OUT = Path("runs/bench")


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        return max(main([n, *rest]) for n in ("emulators", "cost", "planner", "campaign", "plumbing"))
    if name not in BENCHES:
        print(f"lab bench: unknown benchmark '{name}' (choose from {', '.join(BENCHES)}, all)", file=sys.stderr)
        return 2
    # SIGTERM as an exception, so that a bench's `finally` stops the nodes it brought up (with the
    # default handler the bench dies at once and its node processes outlive it)
    signal.signal(signal.SIGTERM, _terminated)
    module = importlib.import_module(f"lab.bench.{MODULES.get(name, name)}")
    return int(module.main(rest) or 0)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_json(figures: Any, path: Path | str | None, indent: int = 2) -> None:
    """A bench's figures as JSON (what BENCHMARKS.md quotes), when a path is given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(figures, indent=indent) + "\n")


def plot_curves(path: Path, curves: dict[str, Any], title: str, ylabel: str, xlabel: str = "experiments",
                logx: bool = False, logy: bool = False, size: tuple[float, float] = (6.0, 3.8)) -> None:
    """One line per labelled curve (values at x = 1, 2, ...), written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_figures(figures: dict[str, Any], width: int = 24) -> None:
    """One line a figure: name, value (3 decimals for floats)."""
    for key, value in figures.items():
        print(f"{key:>{width}}: {value:.3f}" if isinstance(value, float) else f"{key:>{width}}: {value}")
