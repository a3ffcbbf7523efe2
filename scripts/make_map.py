#!/usr/bin/env python3
"""Write maps/lab.pgm and maps/lab.yaml (Nav2 map_server) from worlds/lab.sdf + config/stations.yaml:
the same occupancy grid the embedded navigator plans on, uninflated (Nav2 inflates it itself).

    python scripts/make_map.py            # rewrite maps/
    python scripts/make_map.py --check    # exit 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lab.core.robot.gridnav import OccupancyGrid  # noqa: E402
from lab.core.robot.world import LabWorld  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    ns = parser.parse_args()
    world = LabWorld.load(ROOT / "worlds" / "lab.sdf", ROOT / "config" / "stations.yaml")
    grid = OccupancyGrid.from_world(world, resolution=0.05)
    files = {ROOT / "maps" / "lab.pgm": grid.to_pgm(), ROOT / "maps" / "lab.yaml": grid.map_yaml("lab.pgm").encode()}
    if ns.check:
        stale = [str(p.relative_to(ROOT)) for p, data in files.items() if not p.is_file() or p.read_bytes() != data]
        print("maps/ is up to date" if not stale else f"stale: {', '.join(stale)} (run scripts/make_map.py)")
        return 1 if stale else 0
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote maps/lab.pgm ({grid.occupied.shape[1]}x{grid.occupied.shape[0]}) and maps/lab.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
