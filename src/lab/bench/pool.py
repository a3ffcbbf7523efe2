"""`lab bench planner`: pool-based sample efficiency on measured data (Liang et al., npj
Comput. Mater. 7, 188 (2021) protocol), with the planner the campaigns use (BatchPlanner).

    lab bench planner [--data FILE.csv] [--objective COLUMN] [--maximize|--minimize] [--inputs A,B,...]
                      [--trials 50] [--batch 1] [--init 2] [--budget N] [--seed 0] [--json OUT] [--plot OUT]

Rows with identical inputs are one candidate whose value is the mean of its distinct values.
Each trial starts from `--init` random candidates and proposes `--batch` per cycle among the
candidates not yet measured, until every candidate of the top 5 % (ceil(0.05 N)) is found,
the budget is spent or the pool is used up. Random sampling runs the same trials. Reports
Top%(i), experiments to reach Top% 0.5 / 0.8 / 1.0 (median, 5th, 95th percentile), EF(i) =
Top%(i) / (i / N) and its maximum, AF(a) = random's experiments / the planner's at a = 0.5
and 0.8, time per trial and peak memory. Defaults: the crossed-barrel data (BEAR, 600
designs, toughness maximised), where Liang et al.'s GP (ARD, LCB) needed a median of 23, 34
and 51 experiments for Top% 0.5, 0.8 and 1.0.
"""

from __future__ import annotations

import argparse
import csv
import math
import resource
import time
from collections.abc import Hashable, Iterable
from pathlib import Path

import numpy as np

from lab.bench import OUT, plot_curves, write_json
from lab.core.campaign.objective import Objective
from lab.core.campaign.planner import BatchPlanner, Observation
from lab.core.campaign.space import Dimension, Space
from lab.paths import data_path

LIANG2021_CROSSED_BARREL = {"0.5": 23, "0.8": 34, "1.0": 51}
LEVELS = (0.5, 0.8, 1.0)


def load_pool(path: Path, objective: str, inputs: list[str] | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or objective not in rows[0]:
        raise SystemExit(f"lab bench planner: {path} has no column '{objective}'")
    names = inputs or [c for c in rows[0] if c not in (objective, "n_replicates")]
    groups: dict[tuple[float, ...], set[float]] = {}
    for row in rows:
        try:
            key = tuple(float(row[n]) for n in names)
            value = float(row[objective])
        except (KeyError, ValueError):
            continue  # an empty or non-numeric cell: not a measured experiment
        groups.setdefault(key, set()).add(value)
    x = np.array(list(groups))
    y = np.array([float(np.mean(sorted(v))) for v in groups.values()])
    return names, x, y


def top_share(keys: Iterable[Hashable], top: set) -> np.ndarray:
    """Top%(i): the share of `top` found among the first i keys (each counted once)."""
    found: set = set()
    out = []
    for k in keys:
        if k in top:
            found.add(k)
        out.append(len(found) / len(top))
    return np.array(out)


def first_reach(curve: np.ndarray, level: float) -> int | None:
    hit = np.nonzero(curve >= level - 1e-12)[0]
    return int(hit[0]) + 1 if len(hit) else None


def run_trial(names: list[str], x: np.ndarray, y: np.ndarray, top: set[int], maximize: bool, init: int,
              batch: int, budget: int, seed: int, guided: bool) -> np.ndarray:
    """Top%(i) for i = 1..budget (held at its last value once the top is complete)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if not guided:
        order = rng.permutation(n)[:budget]
        found = top_share((int(i) for i in order), top)
        return np.pad(found, (0, budget - len(found)), mode="edge")
    dims = [Dimension(name, tuple(sorted(set(float(v) for v in x[:, k])))) for k, name in enumerate(names)]
    pool = [dict(zip(names, map(float, row), strict=True)) for row in x]
    space = Space(dims, pool=pool)
    index = {space.key(p): i for i, p in enumerate(pool)}
    planner = BatchPlanner(space, [Objective("y", maximize)], initial_random=init, seed=seed, restarts=0)
    observed: list[Observation] = []
    chosen: list[int] = []
    found: set[int] = set()
    while len(chosen) < budget and len(found) < len(top) and len(chosen) < n:
        step = init if not chosen else batch
        for p in planner.propose(observed, [], min(step, budget - len(chosen))):
            i = index[space.key(p)]
            chosen.append(i)
            observed.append(Observation(p, {"y": float(y[i])}))
            if i in top:
                found.add(i)
    curve = top_share(chosen, top)
    return np.pad(curve, (0, budget - len(curve)), mode="edge")


def summarise(curves: np.ndarray, n: int) -> dict:
    out: dict = {"top_pct_mean": curves.mean(axis=0).round(4).tolist()}
    for level in LEVELS:
        reached = [first_reach(c, level) for c in curves]
        values = [r for r in reached if r is not None]
        out[f"to_{level}"] = ({"median": float(np.median(values)), "p5": float(np.percentile(values, 5)),
                               "p95": float(np.percentile(values, 95)), "reached": len(values), "trials": len(curves)}
                              if values else {"reached": 0, "trials": len(curves)})
    i = np.arange(1, curves.shape[1] + 1)
    ef = curves.mean(axis=0) / (i / n)
    out["ef_max"] = float(ef.max())
    out["ef_at_max"] = int(np.argmax(ef)) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench planner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(data_path("bear2020_crossed_barrel_pool.csv")))
    parser.add_argument("--objective", default="toughness")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--maximize", dest="maximize", action="store_true", default=True)
    direction.add_argument("--minimize", dest="maximize", action="store_false")
    parser.add_argument("--inputs", default="")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--init", type=int, default=2)
    parser.add_argument("--budget", type=int, default=0, help="0: the whole pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(OUT / "planner_pool.json"))
    parser.add_argument("--plot", default=str(OUT / "planner_pool.png"))
    ns = parser.parse_args(argv)
    names, x, y = load_pool(Path(ns.data), ns.objective, [s for s in ns.inputs.split(",") if s] or None)
    n = len(y)
    k = math.ceil(0.05 * n)
    top = set(np.argsort(-y if ns.maximize else y)[:k].tolist())
    budget = ns.budget or n
    print(f"{Path(ns.data).name}: {n} candidates, {len(names)} inputs ({', '.join(names)}), top 5% = {k}; "
          f"{ns.trials} trials, init {ns.init}, batch {ns.batch}")
    results: dict = {"data": Path(ns.data).name, "objective": ns.objective, "maximize": ns.maximize,
                     "candidates": n, "top": k, "trials": ns.trials, "init": ns.init, "batch": ns.batch}
    for label, guided in (("planner", True), ("random", False)):
        curves, times = [], []
        for t in range(ns.trials):
            started = time.monotonic()
            curves.append(run_trial(names, x, y, top, ns.maximize, ns.init, ns.batch, budget, ns.seed + t, guided))
            times.append(time.monotonic() - started)
            if guided:
                reached = first_reach(curves[-1], 0.8)
                print(f"  trial {t + 1}/{ns.trials}: Top% 0.8 after {reached} experiments ({times[-1]:.1f} s)",
                      flush=True)
        results[label] = summarise(np.array(curves), n)
        results[label]["seconds_per_trial"] = round(float(np.mean(times)), 2)
    for a in (0.5, 0.8):
        p, r = results["planner"][f"to_{a}"], results["random"][f"to_{a}"]
        results[f"af_{a}"] = round(r["median"] / p["median"], 2) if "median" in p and "median" in r else None
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if Path(ns.data).name == "bear2020_crossed_barrel_pool.csv":
        results["liang2021_gp_ard_lcb"] = LIANG2021_CROSSED_BARREL
    for label in ("planner", "random"):
        parts = [f"Top% {a}: median {results[label][f'to_{a}'].get('median', 'never')}" +
                 (f" [{results[label][f'to_{a}']['p5']:.0f}-{results[label][f'to_{a}']['p95']:.0f}]"
                  if "median" in results[label][f"to_{a}"] else "") for a in LEVELS]
        print(f"{label:8s} " + "; ".join(parts) + f"; EF max {results[label]['ef_max']:.1f}")
    print(f"AF(0.5) {results['af_0.5']}, AF(0.8) {results['af_0.8']}; {results['planner']['seconds_per_trial']} s "
          f"per planner trial; peak RSS {results['peak_rss_mb']} MB")
    write_json(results, ns.json, indent=1)
    _plot(results, Path(ns.plot))
    p8 = results["planner"]["to_0.8"]
    anchor = f" (Liang et al. 2021 GP: {LIANG2021_CROSSED_BARREL['0.8']})" if "liang2021_gp_ard_lcb" in results else ""
    print(f"cycles to Top% 0.8: planner median {p8.get('median', 'never')}, random median "
          f"{results['random']['to_0.8'].get('median', 'never')}{anchor}")
    return 0


def _plot(results: dict, path: Path) -> None:
    plot_curves(path, {label: results[label]["top_pct_mean"] for label in ("planner", "random")},
                f"{results['data']}: {results['objective']}", "Top% (share of the top 5 % found)", logx=True,
                size=(6.5, 4))
