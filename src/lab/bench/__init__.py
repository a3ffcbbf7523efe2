"""`lab bench NAME [options]`: the benchmarks (BENCHMARKS.md quotes their committed results).

    planner     the planner against random search on the emulators of the real data
    emulators   cross-validated accuracy of the emulators fitted to the real data
    plumbing    action round trips over DDS
    transport   station-to-station transport cycles, whole node graph up
    lab         a photocatalysis campaign through every node over DDS
    all         planner, emulators, plumbing (the quick ones)
"""

from __future__ import annotations

import importlib
import sys

BENCHES = ("planner", "emulators", "plumbing", "transport", "lab")


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        return max(main([n, *rest]) for n in ("planner", "emulators", "plumbing"))
    if name not in BENCHES:
        print(f"lab bench: unknown benchmark '{name}' (choose from {', '.join(BENCHES)}, all)", file=sys.stderr)
        return 2
    module = importlib.import_module(f"lab.bench.{name}")
    return int(module.main(rest) or 0)
