#!/usr/bin/env python3
"""The crossed-barrel campaign loop (`lab bench campaign`'s, batches of 8 on the BEAR pool, the
emulator's noisy measurements) per seed with the pool regime's xi set, for issue 36's check that
the rule leaves that campaign within its spread: Top% of the pool's top 5 % (30 designs) found
after 48, 96 and 120 experiments, one row per seed, as JSON.

    python scripts/barrel_campaign_seeds.py XI FIRST_SEED END_SEED      e.g.  0.01 0 20
"""

from __future__ import annotations

import json
import sys

import lab.core.campaign.planner as planner_module
from lab.bench.campaign import run_loop, top_share
from lab.core.campaign.space import campaign_path, load_campaign
from lab.core.stations.emulators import CrossedBarrelEmulator


def main() -> None:
    xi = float(sys.argv[1])
    planner_module.POOL = planner_module.Regime("pool", xi, planner_module.POOL.length_scale_min,
                                                planner_module.POOL.length_scale_max)
    config = load_campaign(campaign_path("crossed_barrel"))
    barrel = CrossedBarrelEmulator.fitted()
    pool = config.space.pool or []
    means = {config.space.key(p): barrel.mean(p) for p in pool}
    top = set(sorted(means, key=means.__getitem__, reverse=True)[: max(1, round(0.05 * len(pool)))])
    rows = []
    for seed in range(int(sys.argv[2]), int(sys.argv[3])):
        points = run_loop(config, 120, seed, lambda p, rng: {"toughness": barrel.measure(p, rng)[0]})
        curve = top_share((config.space.key(p) for p in points), top)
        rows.append([round(100 * float(curve[n - 1]), 1) for n in (48, 96, 120)])
    print(json.dumps({"xi": xi, "checkpoints": [48, 96, 120], "per_seed": rows}))


if __name__ == "__main__":
    main()
