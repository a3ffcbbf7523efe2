#!/usr/bin/env python3
"""Does the textbook GP-EI loop pick what the planner picks, given the same data?

Runs one planner trial on a `lab bench suite` pool (batch 1, 2 random starts, the planner's
defaults) and every EVERY steps asks the textbook loop (lab.bench.references.gp_ei) for its
next pick on the planner's observations so far; prints both picks' ranks in the pool (0: the
best), how many of the top 5 % had been found, and the log marginal likelihood of each
loop's fitted GP on those observations (the planner's as it holds it; the textbook's fitted
afresh), so that a difference of model fit can be told from a difference of choice.

    python scripts/pool_agreement.py POOL SEED [EVERY]        e.g. opv_degradation 6 5
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor

from lab.bench import references, suite
from lab.core.campaign.planner import Observation


def textbook_fit(x: np.ndarray, loss: np.ndarray) -> float:
    """The log marginal likelihood of the textbook loop's GP (references.gp_ei's kernel) on (x, loss)."""
    kernel = references.textbook_kernel(x.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return float(GaussianProcessRegressor(kernel, normalize_y=True).fit(x, loss).log_marginal_likelihood_value_)


def main() -> None:
    name, seed = sys.argv[1], int(sys.argv[2])
    every = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    pool_set = next(p for p in suite.POOLS if p.name == name)
    if pool_set.subset:
        raise SystemExit(f"{name} is a per-trial draw; use a whole pool")
    names, x, y = suite.load_pool(suite.data_path(pool_set.file), pool_set.objective, None)
    unit = (x - x.min(axis=0)) / np.maximum(x.max(axis=0) - x.min(axis=0), 1e-12)
    loss = -y if pool_set.maximize else y
    n, k = len(y), math.ceil(0.05 * len(y))
    top = set(np.argsort(loss)[:k].tolist())
    rank = np.argsort(np.argsort(loss))
    chosen = [int(i) for i in np.random.default_rng(seed).choice(n, size=2, replace=False)]
    space, planner = suite._planner(names, [tuple(sorted(set(x[:, j]))) for j in range(x.shape[1])], 2, seed, x,
                                    False, {})
    index = {space.key(dict(zip(names, map(float, row), strict=True))): i for i, row in enumerate(x)}
    same = asked = 0
    while len(chosen) < min(pool_set.budget, n) and sum(i in top for i in chosen) < k:
        observed = [Observation(dict(zip(names, map(float, x[i]), strict=True)), {"y": float(loss[i])})
                    for i in chosen]
        pick = index[space.key(planner.propose(observed, [], 1)[0])]
        if len(chosen) % every == 0 and len(chosen) >= 20:
            open_ = np.setdiff1d(np.arange(n), chosen)
            rng = np.random.default_rng(len(chosen))
            other = int(open_[references.gp_ei(unit[chosen], loss[chosen], unit[open_], 1, rng)[0]])
            asked += 1
            same += other == pick
            held = planner._model(unit[chosen], loss[chosen], planner._last_kernel[""]).log_marginal_likelihood_value_
            print(f"n={len(chosen):4d} found {sum(i in top for i in chosen):3d}/{k}  planner picks rank "
                  f"{rank[pick]:4d}, textbook {rank[other]:4d}{'  (same)' if other == pick else ''}  "
                  f"log-likelihood planner {held:9.2f} textbook {textbook_fit(unit[chosen], loss[chosen]):9.2f}",
                  flush=True)
        chosen.append(pick)
    print(f"the same pick at {same} of {asked} steps; Top% 0.8 after "
          f"{next((j + 1 for j in range(len(chosen)) if sum(i in top for i in chosen[:j + 1]) >= 0.8 * k), None)}")


if __name__ == "__main__":
    main()
