"""`lab bench campaign`: the campaign loop (CampaignRunner + BatchPlanner) against random
search, on the emulators of the real data, without ROS (the loop the planner node runs).

- photocatalysis (Burger et al. 2020): best formulation found (emulator mean, umol/h)
  after N experiments, controls included, median and range over seeds; the real robot's
  best-so-far (measured values) for orientation.
- crossed barrel (BEAR data, pool of 600 measured designs): Liang et al. (npj Comput.
  Mater. 2021)'s Top% (share of the top-5 % designs found) and enhancement factor against
  random sampling of the pool.
- photopolymer: hypervolume (Peak_Stress x Peak_Strain, emulator means) after N experiments.

    lab bench campaign [--seeds 5] [--her-budget 160] [--skopt-seeds 0] [--skopt-budget 96]
                       [--json OUT] [--plot OUT]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from lab.bench import OUT, write_json
from lab.bench.pool import top_share
from lab.core.campaign.closed_loop import CampaignRunner
from lab.core.campaign.formulation import MeasurementData
from lab.core.campaign.space import CampaignConfig, Point, campaign_path, load_campaign
from lab.core.campaign.store import CampaignStore


def run_loop(config: CampaignConfig, budget: int, seed: int,
             measure: Callable[[Point, np.random.Generator], dict[str, float]]) -> list[Point]:
    """Every point the campaign measured, in order."""
    rng = np.random.default_rng(seed + 1000)
    with tempfile.TemporaryDirectory() as tmp, CampaignStore.open(Path(tmp) / "bench.db") as store:
        runner = CampaignRunner.start(store, config, budget=budget, seed=seed)
        while (batch := runner.next_batch()) is not None:
            runner.record(batch.batch_id, [MeasurementData(e.sample_id, True, measure(e.point, rng))
                                           for e in batch.experiments])
        return [r.point for r in runner.records()]


def repair(space, point: Point) -> Point:
    """A point of the box made a point of the campaign's space: every value snapped to its
    grid, and the parts of an over-full sum constraint scaled down (then floored to the grid)
    until the constraint holds. What a planner that ignores the grid and the vial must be
    given before the robot can dispense its proposals."""
    out = {d.name: d.snap(float(point[d.name])) for d in space.dimensions}
    for c in space.constraints:
        if c.max is None:
            continue
        total = sum(out[n] for n in c.names)
        if total <= c.max + 1e-9:
            continue
        factor = c.max / total
        for n in c.names:
            grid = space.dim(n).values
            out[n] = max([v for v in grid if v <= out[n] * factor + 1e-9], default=grid[0])
        while sum(out[n] for n in c.names) > c.max + 1e-9:  # the lower bounds can still overfill
            name = max(c.names, key=lambda n: out[n] - space.dim(n).low)
            grid = space.dim(name).values
            out[name] = grid[max(0, grid.index(out[name]) - 1)]
    return out


def run_skopt_defaults(config: CampaignConfig, budget: int, seed: int, batch: int,
                       measure: Callable[[Point, np.random.Generator], float]) -> list[Point]:
    """scikit-optimize as it comes: Optimizer(base_estimator="GP") on the box of the space
    (gp_hedge, 10 random starts, constant liar for ask(n_points)), proposals repaired onto the
    grid and into the vial (repair()), batches of `batch` without controls; maximises."""
    from skopt import Optimizer
    from skopt.space import Real

    names = config.space.names
    opt = Optimizer([Real(config.space.dim(n).low, config.space.dim(n).high, name=n) for n in names],
                    base_estimator="GP", random_state=seed)
    rng = np.random.default_rng(seed + 2000)
    points: list[Point] = []
    while len(points) < budget:
        asked = opt.ask(n_points=min(batch, budget - len(points)))
        made = [repair(config.space, dict(zip(names, x, strict=True))) for x in asked]
        opt.tell([[p[n] for n in names] for p in made], [-measure(p, rng) for p in made])
        points += made
    return points


def _running_max(values: list[float]) -> np.ndarray:
    return np.maximum.accumulate(np.array(values))


def bench_her(seeds: int, budget: int, skopt_seeds: int = 0, skopt_budget: int = 96) -> dict:
    from lab.analysis.report import BURGER2020_BEST_SO_FAR
    from lab.core.stations.emulators import HerEmulator

    config = load_campaign(campaign_path("photocatalysis"))
    her = HerEmulator.fitted()
    truth = lambda points: [float(v) for v in her.predict(np.array([her.vector(p) for p in points]))[0]]  # noqa: E731
    guided, random = [], []
    started = time.monotonic()
    for seed in range(seeds):
        points = run_loop(config, budget, seed, lambda p, rng: {"hydrogen_evolution_rate": her.measure(p, rng)[0]})
        guided.append(_running_max(truth(points)))
        random.append(_running_max(truth(config.space.sample(budget, np.random.default_rng(seed + 500)))))
        print(f"  photocatalysis seed {seed}: best {guided[-1][-1]:.2f} guided, {random[-1][-1]:.2f} random "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    skopt: list[np.ndarray] = []
    for seed in range(skopt_seeds):
        points = run_skopt_defaults(config, skopt_budget, seed, 16, lambda p, rng: her.measure(p, rng)[0])
        skopt.append(_running_max(truth(points)))
        print(f"  photocatalysis seed {seed}: best {skopt[-1][-1]:.2f} scikit-optimize defaults after {skopt_budget} "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    checkpoints = [n for n in (16, 48, 96, 160, 320, 688) if n <= budget]
    out = {"budget": budget, "seeds": seeds, "skopt_seeds": skopt_seeds, "skopt_budget": skopt_budget,
           "checkpoints": {}, "curves": {
        "guided": np.median(guided, axis=0).tolist(), "random": np.median(random, axis=0).tolist(),
        "skopt_defaults": np.median(skopt, axis=0).tolist() if skopt else []},
        "real_robot_measured": BURGER2020_BEST_SO_FAR, "emulator_max_over_data": float(her.predict(her.x_raw)[0].max())}
    thresholds = {}
    for _, value in BURGER2020_BEST_SO_FAR[1:4]:
        reach = {}
        for label, curves in (("guided", guided), ("random", random), ("skopt_defaults", skopt)):
            if not curves:
                continue
            hits = [int(np.argmax(c >= value)) + 1 if c[-1] >= value else None for c in curves]
            got = [h for h in hits if h is not None]
            reach[label] = {"median": float(np.median(got)) if len(got) * 2 > len(hits) else None,
                            "reached": len(got), "seeds": len(hits)}
        thresholds[str(value)] = reach
        print(f"experiments to reach {value} umol/h (the real robot's level): "
              + ", ".join(f"{k} median {v['median']} ({v['reached']}/{v['seeds']} seeds reach it)"
                          for k, v in reach.items()))
    out["experiments_to_real_robot_levels"] = thresholds
    for n in checkpoints:
        g = [float(c[n - 1]) for c in guided]
        r = [float(c[n - 1]) for c in random]
        out["checkpoints"][n] = {"guided_median": round(float(np.median(g)), 2), "guided_min": round(min(g), 2),
                                 "guided_max": round(max(g), 2), "random_median": round(float(np.median(r)), 2),
                                 "random_min": round(min(r), 2), "random_max": round(max(r), 2)}
        print(f"photocatalysis after {n:4d}: guided median {np.median(g):5.2f} [{min(g):.2f}, {max(g):.2f}]  "
              f"random median {np.median(r):5.2f} [{min(r):.2f}, {max(r):.2f}] umol/h")
        if skopt and n <= skopt_budget:
            k = [float(c[n - 1]) for c in skopt]
            out["checkpoints"][n].update(skopt_median=round(float(np.median(k)), 2), skopt_min=round(min(k), 2),
                                         skopt_max=round(max(k), 2))
            print(f"{'':>26}scikit-optimize defaults median {np.median(k):5.2f} [{min(k):.2f}, {max(k):.2f}]")
    return out


def barrel_curves(seeds: Iterable[int], budget: int = 120) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """The crossed-barrel campaign loop (the BEAR pool, the emulator's noisy measurements) and
    random sampling, per seed: Top%(i), the share of the pool's top 5 % found among the first i
    experiments; and how many designs that top holds."""
    from lab.core.stations.emulators import CrossedBarrelEmulator

    config = load_campaign(campaign_path("crossed_barrel"))
    barrel = CrossedBarrelEmulator.fitted()
    pool = config.space.pool or []
    means = {config.space.key(p): barrel.mean(p) for p in pool}
    top = set(sorted(means, key=means.__getitem__, reverse=True)[: max(1, round(0.05 * len(pool)))])

    guided, random = [], []
    for seed in seeds:
        points = run_loop(config, budget, seed, lambda p, rng: {"toughness": barrel.measure(p, rng)[0]})
        guided.append(top_share((config.space.key(p) for p in points), top))
        order = np.random.default_rng(seed + 500).permutation(len(pool))[:budget]
        random.append(top_share((config.space.key(pool[i]) for i in order), top))
    return guided, random, len(top)


def bench_barrel(seeds: int, budget: int = 120) -> dict:
    guided, random, top = barrel_curves(range(seeds), budget)
    g, r = np.mean(guided, axis=0), np.mean(random, axis=0)
    out = {"budget": budget, "seeds": seeds, "top_designs": top, "checkpoints": {}}
    for n in (24, 48, 96, 120):
        if n <= budget:
            ef = float(g[n - 1] / r[n - 1]) if r[n - 1] > 0 else float("inf")
            out["checkpoints"][n] = {"top_pct_guided": round(100 * float(g[n - 1]), 1),
                                     "top_pct_random": round(100 * float(r[n - 1]), 1), "enhancement": round(ef, 2)}
            print(f"crossed barrel after {n:3d}: Top% guided {100 * g[n - 1]:5.1f}, random {100 * r[n - 1]:5.1f}, "
                  f"EF {ef:.2f}")
    return out


def bench_polymer(seeds: int, budget: int = 24) -> dict:
    from lab.core.campaign.pareto import hypervolume
    from lab.core.stations.emulators import PhotopolymerEmulator

    config = load_campaign(campaign_path("photopolymer"))
    poly = PhotopolymerEmulator.fitted()
    names = [o.name for o in config.objectives]

    def hv(points: list[Point]) -> float:
        values = [poly.mean(p) for p in points]
        return hypervolume([tuple(v[n] for n in names) for v in values], config.reference)

    g = [hv(run_loop(config, budget, seed, lambda p, rng: {k: v for k, (v, _) in poly.measure(p, rng).items()}))
         for seed in range(seeds)]
    r = [hv(config.space.sample(budget, np.random.default_rng(seed + 500))) for seed in range(seeds)]
    print(f"photopolymer after {budget}: hypervolume guided median {np.median(g):.3g}, random {np.median(r):.3g} "
          "(MPa x mm/mm, emulator means)")
    return {"budget": budget, "seeds": seeds, "hv_guided_median": float(np.median(g)),
            "hv_random_median": float(np.median(r)), "hv_guided": g, "hv_random": r}


def _plot(her: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = np.arange(1, her["budget"] + 1)
    ax.plot(xs, her["curves"]["guided"], label="this planner (median over seeds)", lw=2)
    ax.plot(xs, her["curves"]["random"], label="random search (median)", lw=2)
    if her["curves"].get("skopt_defaults"):
        ks = np.arange(1, len(her["curves"]["skopt_defaults"]) + 1)
        ax.plot(ks, her["curves"]["skopt_defaults"], label="scikit-optimize defaults (median)", lw=2)
    rx, ry = zip(*her["real_robot_measured"], strict=True)
    ax.step(rx, ry, where="post", ls="--", color="C3", label="real robot, Burger et al. 2020 (measured)")
    ax.set_xlabel("experiments")
    ax.set_ylabel("best hydrogen evolution rate (umol/h)")
    ax.set_title("photocatalysis on the emulator of the real data")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench campaign")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--her-budget", type=int, default=160)
    parser.add_argument("--skopt-seeds", type=int, default=0,
                        help="also run scikit-optimize's defaults on photocatalysis, this many seeds")
    parser.add_argument("--skopt-budget", type=int, default=96)
    parser.add_argument("--barrel-budget", type=int, default=120)
    parser.add_argument("--polymer-budget", type=int, default=24)
    parser.add_argument("--json", default=str(OUT / "campaign.json"))
    parser.add_argument("--plot", default=str(OUT / "campaign_photocatalysis.png"))
    ns = parser.parse_args(argv)
    started = time.monotonic()
    results = {"photocatalysis": bench_her(ns.seeds, ns.her_budget, ns.skopt_seeds, ns.skopt_budget),
               "crossed_barrel": bench_barrel(ns.seeds, ns.barrel_budget),
               "photopolymer": bench_polymer(ns.seeds, ns.polymer_budget)}
    results["wall_s"] = round(time.monotonic() - started, 1)
    write_json(results, ns.json, indent=1)
    _plot(results["photocatalysis"], Path(ns.plot))
    print(f"written {ns.json} and {ns.plot} ({results['wall_s']:.0f} s)")
    return 0
