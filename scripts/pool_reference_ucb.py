#!/usr/bin/env python3
"""A plain GP-UCB loop on the crossed-barrel pool, written without any of lab.core.campaign.planner:
the reference that tells whether a gap to Liang et al. 2021's figures is the planner's or the
protocol's. scikit-learn GP (ARD Matern 5/2 + noise, refitted every step), UCB with kappa 1.96,
2 random starts, one experiment per cycle; prints experiments to Top% 0.8 per seed.

    python scripts/pool_reference_ucb.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lab.bench.pool import load_pool  # noqa: E402


def main() -> int:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    ns = parser.parse_args()
    warnings.filterwarnings("ignore")
    _, x, y = load_pool(ROOT / "data" / "bear2020_crossed_barrel_pool.csv", "toughness", None)
    unit = (x - x.min(0)) / (x.max(0) - x.min(0))
    top = set(np.argsort(-y)[: int(np.ceil(0.05 * len(y)))].tolist())
    needed = []
    for seed in range(ns.seeds):
        chosen = [int(i) for i in np.random.default_rng(seed).choice(len(y), 2, replace=False)]
        while len(top & set(chosen)) < 0.8 * len(top):
            kernel = ConstantKernel() * Matern(np.ones(x.shape[1]), nu=2.5) + WhiteKernel()
            gp = GaussianProcessRegressor(kernel, normalize_y=True).fit(unit[chosen], y[chosen])
            mean, sd = gp.predict(unit, return_std=True)
            score = mean + 1.96 * sd
            score[chosen] = -np.inf
            chosen.append(int(np.argmax(score)))
        needed.append(len(chosen))
        print(f"seed {seed}: Top% 0.8 after {len(chosen)} experiments", flush=True)
    print(f"plain GP-UCB: median {np.median(needed):.0f} experiments to Top% 0.8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
