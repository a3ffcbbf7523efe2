"""`lab`: the operator's command.

    lab bringup [name:=value ...]      start the lab's nodes (where `ros2 launch` is absent)
    lab demo                           bring the lab up and run the demo campaign
    lab campaign run|list|status|resume|report ...
    lab estop | pause | resume
    lab bench planner|campaign|lab|emulators ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lab.core.nodetable import ARGUMENTS


def _bringup(ns: argparse.Namespace) -> int:
    from lab import bringup

    return bringup.main(ns.arguments, duration=ns.duration, table=ns.table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="The mobile robotic chemist's operator command.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bringup", help="start the lab's nodes as processes (like ros2 launch lab bringup.launch.py)",
                       description="Arguments as for ros2 launch: " + "; ".join(
                           f"{a.name} (default {a.default}): {a.description}" for a in ARGUMENTS.values()))
    p.add_argument("arguments", nargs="*", metavar="name:=value")
    p.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    p.add_argument("--table", default="nodes.yaml", help="node table under config/ (default nodes.yaml)")
    p.set_defaults(func=_bringup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    return int(ns.func(ns) or 0)


if __name__ == "__main__":
    sys.exit(main())
