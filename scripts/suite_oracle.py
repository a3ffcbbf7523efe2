#!/usr/bin/env python3
"""Diagnostic: how far could better GP hyperparameters take the planner on `lab bench suite`'s
small pools? Each trial runs the planner (batch 1, 2 random starts, the suite's own loop and
draws) with the GP's hyperparameters fixed at a fit to the whole trial pool, every candidate's
measured value included (an oracle no real campaign has: 5 restarts, the planner's kernel and
bounds), and prints the experiments to Top% 0.8 per trial; compare with a suite JSON by
`scripts/suite_compare.py` (the output has the suite's layout for that).

    python scripts/suite_oracle.py SETS TRIALS OUT.json [PLANNER_OPTIONS]
    e.g.   python scripts/suite_oracle.py crossed_barrel_150s,opv_degradation_150s 10 /tmp/o.json warp_y=0

The oracle fit sees the values the planner's model sees (`warp_y` transformed when it is on).
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor

import lab.bench.suite as suite
from lab.bench.pool import first_reach, load_pool
from lab.bench.strategies import ResearchPlanner, yeo_johnson
from lab.core.campaign.planner import start_kernel
from lab.paths import data_path

SUITE_PLANNER = suite._planner
WARP_DEFAULT = inspect.signature(ResearchPlanner).parameters["warp_y"].default


def trial(task: tuple[str, int, dict]) -> tuple[str, int, int | None, str]:
    set_name, seed, options = task
    pool_set = next(p for p in suite.POOLS if p.name == set_name)
    _, x, y = load_pool(data_path(pool_set.file), pool_set.objective, None)
    keep = suite.subset(pool_set, y, seed)
    x, y = x[keep], y[keep]
    unit = (x - x.min(axis=0)) / np.maximum(x.max(axis=0) - x.min(axis=0), 1e-12)
    loss = -y if pool_set.maximize else y
    warp = int(options.get("warp_y", WARP_DEFAULT))
    seen = yeo_johnson(loss, warp == 2) if warp else loss
    start = start_kernel(x.shape[1])  # the planner's own, with its default bounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oracle = GaussianProcessRegressor(start, normalize_y=True, n_restarts_optimizer=5,
                                          random_state=0).fit(unit, seen).kernel_

    class Oracle(ResearchPlanner):
        def _model(self, x, y, kernel=None, slot=""):  # type: ignore[no-untyped-def]
            return super()._model(x, y, oracle if kernel is None else kernel, slot)

    def planner(names, values, init, seed_, pool, mixture, opts):  # type: ignore[no-untyped-def]
        space, base = SUITE_PLANNER(names, values, init, seed_, pool, mixture, opts)
        return space, Oracle(space, base.objectives, initial_random=init, seed=seed_, **opts)

    suite._planner = planner
    curve = suite.pool_trial((pool_set, "planner", 1, 2, seed, options))[4]
    return set_name, seed, first_reach(curve, 0.8), str(oracle)


def main() -> None:
    sets, trials, out = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
    options = {k: float(v) if "." in v else int(v)
               for k, v in (kv.split("=") for kv in (sys.argv[4].split(",") if len(sys.argv) > 4 else []) if kv)}
    per_trial: dict[str, list] = {s: [None] * trials for s in sets}
    with ProcessPoolExecutor(2) as pool:
        for name, seed, reached, kernel in pool.map(trial, [(s, t, options) for s in sets for t in range(trials)]):
            per_trial[name][seed] = reached
            print(name, seed, reached, kernel, flush=True)
    budget = {p.name: p.budget for p in suite.POOLS}
    json.dump({"pools": {f"{s}/batch1": {"budget": budget[s], "planner": {"to_0.8": {"per_trial": v}}}
                         for s, v in per_trial.items()}}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
