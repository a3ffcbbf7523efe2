"""`lab bench cost`: time and peak memory of proposing one batch of 16 (`--batch`) in the
10-variable photocatalysis space with 50, 200, 700 and 1500 observations (measured vials drawn
from the emulator), and scikit-optimize's default `Optimizer.ask(n_points=16)` beside it (no
constraint: skopt cannot express the 5 mL one), at the sizes it finishes in reasonable time.

    lab bench cost [--sizes 50,200,700,1500] [--skopt-sizes 50,200] [--batch 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np

from lab.bench import OUT, write_json


def main(argv: list[str] | None = None) -> int:
    from lab.core.campaign.planner import BatchPlanner, Observation
    from lab.core.campaign.space import campaign_path, load_campaign
    from lab.core.stations.emulators import HerEmulator

    parser = argparse.ArgumentParser(prog="lab bench cost")
    parser.add_argument("--sizes", default="50,200,700,1500")
    parser.add_argument("--skopt-sizes", default="50,200")
    # smaller batches for a quick check (the unit test): skopt's ask takes about 0.75 s a point
    parser.add_argument("--batch", type=int, default=16, help="points per batch (default 16, the paper's rack)")
    parser.add_argument("--json", default=str(OUT / "cost.json"))
    ns = parser.parse_args(argv)
    if ns.batch < 1:
        parser.error(f"--batch {ns.batch}: a batch has at least one point")
    config = load_campaign(campaign_path("photocatalysis"))
    her = HerEmulator.fitted()
    rng = np.random.default_rng(0)
    out: dict = {"ours": {}, "skopt_default_ask": {}}
    for n in [int(v) for v in ns.sizes.split(",") if v]:
        observed = [Observation(p, {"hydrogen_evolution_rate": her.measure(p, rng)[0]})
                    for p in config.space.sample(n, rng)]
        planner = BatchPlanner(config.space, config.objectives, initial_random=16, seed=0)
        tracemalloc.start()
        started = time.monotonic()
        batch = planner.propose(observed, [], ns.batch)
        cold = time.monotonic() - started
        started = time.monotonic()
        planner.propose(observed, batch, ns.batch)
        warm = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        out["ours"][n] = {"first_s": round(cold, 2), f"next_with_{ns.batch}_pending_s": round(warm, 2),
                          "peak_python_mb": round(peak, 1)}
        print(f"ours, {n:5d} observations: {cold:.2f} s (first batch), {warm:.2f} s (next, {ns.batch} pending), "
              f"peak {peak:.0f} MB (Python allocations)", flush=True)
    from skopt import Optimizer

    dims = [(d.low, d.high) for d in config.space.dimensions]
    for n in [int(v) for v in ns.skopt_sizes.split(",") if v]:
        points = config.space.sample(n, rng)
        xs = [[p[name] for name in config.space.names] for p in points]
        ys = [-her.measure(p, rng)[0] for p in points]
        opt = Optimizer(dims, base_estimator="GP", random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.tell(xs, ys)
            started = time.monotonic()
            opt.ask(n_points=ns.batch)
        took = time.monotonic() - started
        out["skopt_default_ask"][n] = {"s": round(took, 2)}
        print(f"skopt Optimizer(base_estimator='GP').ask(n_points={ns.batch}), {n:5d} observations: "
              f"{took:.2f} s", flush=True)
    write_json(out, ns.json, indent=1)
    print(f"written {ns.json}")
    return 0
