#!/usr/bin/env python3
"""The crossed-barrel campaign loop (`lab bench campaign`'s, batches of 8 on the BEAR pool, the
emulator's noisy measurements) per seed with the pool's xi (planner.POOL_XI) set, for issue 36's check that
the rule leaves that campaign within its spread: Top% of the pool's top 5 % (30 designs) found
after 48, 96 and 120 experiments, one row per seed, as JSON.

    python scripts/barrel_campaign_seeds.py XI FIRST_SEED END_SEED      e.g.  0.01 0 20
"""

from __future__ import annotations

import json
import sys

import lab.core.campaign.planner as planner_module
from lab.bench.campaign import barrel_curves

CHECKPOINTS = (48, 96, 120)


def main() -> None:
    xi = float(sys.argv[1])
    planner_module.POOL_XI = xi  # the crossed-barrel campaign's space is a pool
    guided, _random, _top = barrel_curves(range(int(sys.argv[2]), int(sys.argv[3])), max(CHECKPOINTS))
    rows = [[round(100 * float(curve[n - 1]), 1) for n in CHECKPOINTS] for curve in guided]
    print(json.dumps({"xi": xi, "checkpoints": list(CHECKPOINTS), "per_seed": rows}))


if __name__ == "__main__":
    main()
