"""Each benchmark script runs on a tiny setting and writes its JSON (the figures themselves
come from the full runs quoted in BENCHMARKS.md, never from tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab.bench import main as bench


@pytest.mark.parametrize("name,args", [
    ("cost", ["--sizes", "30", "--skopt-sizes", "10", "--batch", "2"]),
    ("planner", ["--trials", "1", "--budget", "12"]),
    ("suite", ["--trials", "1", "--budget", "8", "--batches", "1,4", "--only", "opv_degradation,mixture5",
               "--workers", "1"]),
    ("campaign", ["--seeds", "1", "--her-budget", "32", "--barrel-budget", "16", "--polymer-budget", "8",
                  "--skopt-seeds", "1", "--skopt-budget", "16"]),
    ("emulators", ["--folds", "2", "--quick"]),
])
def test_bench_runs_on_a_tiny_setting(name, args, tmp_path):
    out = tmp_path / "out.json"
    extra = ["--plot", str(tmp_path / "out.png")] if name in ("planner", "campaign") else []
    extra += ["--plots", str(tmp_path / "plots")] if name == "suite" else []
    assert bench([name, *args, "--json", str(out), *extra]) == 0
    result = json.loads(out.read_text())
    if name == "cost":
        assert result["ours"]["30"]["first_s"] > 0 and result["skopt_default_ask"]["10"]["s"] > 0
    elif name == "planner":
        for label in ("planner", "random"):
            curve = result[label]["top_pct_mean"]
            assert len(curve) == 12 and all(0 <= a <= b <= 1 for a, b in zip(curve, curve[1:], strict=False))
    elif name == "suite":
        for batch in (1, 4):
            entry = result["pools"][f"opv_degradation/batch{batch}"]
            assert set(entry) == {"budget", "planner", "gp_ei", "forest_ei", "random"}
            curve = entry["gp_ei"]["top_pct_mean"]
            assert len(curve) == 8 and all(0 <= a <= b <= 1 for a, b in zip(curve, curve[1:], strict=False))
        regret = result["synthetic"]["mixture5"]["planner"]["regret_median"]
        assert len(regret) == 8 and all(r >= 0 for r in regret) and regret == sorted(regret, reverse=True)
        assert len(list((tmp_path / "plots").glob("*.png"))) == 3
    elif name == "campaign":
        assert set(result["photocatalysis"]["checkpoints"]) == {"16"}
        assert result["photocatalysis"]["checkpoints"]["16"]["skopt_median"] > 0
        assert len(result["photocatalysis"]["curves"]["skopt_defaults"]) == 16
        assert result["photopolymer"]["hv_guided_median"] > 0
    else:
        assert result["her_cv_fixed_hyperparameters"]["r2"] > 0.75


def test_unknown_bench_is_refused(capsys):
    assert bench(["nonsense"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_the_lab_bench_bound_counts_the_robots_as_one_pool() -> None:
    from lab.bench.lab import throughput_bounds

    busy = {"gas_chromatograph": 3840.0 * 4, "photoreactor": 3600.0 * 4, "robot1": 20000.0, "robot2": 10000.0}
    bounds = throughput_bounds(busy, robots=2, experiments=64)
    assert bounds["gas_chromatograph"] == pytest.approx(86400 * 64 / 15360.0)   # 360/day
    assert bounds["robots"] == pytest.approx(86400 * 64 * 2 / 30000.0)          # 369/day
    assert min(bounds, key=lambda k: bounds[k]) == "gas_chromatograph"
    assert throughput_bounds(busy, robots=1, experiments=64)["robots"] < bounds["gas_chromatograph"]
    assert throughput_bounds({}, robots=1, experiments=0) == {}


def test_repair_puts_any_box_point_on_the_grid_and_in_the_vial() -> None:
    import numpy as np

    from lab.bench.campaign import repair
    from lab.core.campaign.space import campaign_path, load_campaign

    space = load_campaign(campaign_path("photocatalysis")).space
    rng = np.random.default_rng(3)
    liquids = space.constraints[0].names
    overfull = 0
    for _ in range(300):
        box = {d.name: float(rng.uniform(d.low, d.high)) for d in space.dimensions}
        overfull += sum(box[n] for n in liquids) > 5.0
        point = repair(space, box)
        space.validate(point)                   # on the grid, in bounds, the vial not overfilled
        assert repair(space, point) == point    # a valid point is left as it is
    assert overfull > 250                       # the box is mostly outside the vial: repair was exercised


def test_a_small_pool_is_a_fresh_draw_per_trial_and_can_be_measured_whole() -> None:
    """The suite's small pools: a trial draws its candidates and may measure all of them, so the
    whole top 5 % of the draw is found by the budget; the planner's forest mixture runs."""
    from lab.bench.suite import PoolSet, pool_trial

    small = PoolSet("opv_20", "olympus_photo_wf3.csv", "degradation", False, 20, 20)
    for method, options in (("planner", {"trees": 10}), ("random", {})):
        name, _, _, _, curve, _ = pool_trial((small, method, 1, 2, 0, options))
        assert name == "opv_20" and len(curve) == 20 and curve[-1] == 1.0


def test_a_skewed_small_pool_favours_good_candidates() -> None:
    """The suite's skewed small pools draw good candidates more often than a plain draw does
    (their median is better on every seed), and the planner runs on them to the whole top 5 %."""
    from lab.bench.pool import load_pool
    from lab.bench.suite import POOLS, PoolSet, pool_trial, subset
    from lab.paths import data_path

    sets = {p.name: p for p in POOLS}
    skewed, plain = sets["opv_degradation_150s"], sets["opv_degradation_150"]
    assert skewed.skew > 0 and skewed.subset == plain.subset == 150 and not plain.skew
    _, _, y = load_pool(data_path(skewed.file), skewed.objective, None)   # minimised
    for seed in range(5):
        a, b = subset(skewed, y, seed), subset(plain, y, seed)
        assert len(set(a.tolist())) == len(set(b.tolist())) == 150
        assert np.median(y[a]) < np.median(y[b]), seed
    tiny = PoolSet("opv_20s", skewed.file, skewed.objective, skewed.maximize, 20, 20, skewed.skew)
    name, _, _, _, curve, _ = pool_trial((tiny, "planner", 4, 2, 0, {}))
    assert name == "opv_20s" and curve[-1] == 1.0


def test_no_bench_writes_into_the_committed_benchmarks_unless_told() -> None:
    """A bench run from the checkout with its defaults must not overwrite benchmarks/ (the
    committed figures): every default output lies under lab.bench.OUT."""
    import re
    from pathlib import Path

    from lab.bench import OUT

    src = Path(__file__).resolve().parents[2] / "src" / "lab" / "bench"
    defaults = [m for f in src.glob("*.py") for m in re.findall(r'add_argument\("--(?:json|plot|plots)"[^)]*\)',
                                                               f.read_text())]
    assert defaults and OUT.parts[0] == "runs"
    assert not [d for d in defaults if "benchmarks" in d], defaults


def test_bench_lab_finds_the_committed_run_with_the_same_settings_and_says_how_far_it_moved(tmp_path):
    import json

    from lab.bench.lab import committed_figure, movement

    before = {"experiments": 688, "robots": 1, "batches_in_flight": 4, "speed_requested": 2000.0,
              "experiments_per_day": 315.0, "fraction_of_bound": 0.876, "utilisation": {"robot1": 0.285},
              "sim_days": 2.18, "wall_s": 634.0, "commit": "48acb9a"}
    (tmp_path / "lab_inflight4.json").write_text(json.dumps(before))
    (tmp_path / "lab_robots2.json").write_text(json.dumps({**before, "robots": 2}))
    now = {**before, "batch": 16, "experiments_per_day": 271.0, "fraction_of_bound": 0.78,
           "utilisation": {"robot1": 0.657}, "sim_days": 2.54, "wall_s": 666.0}
    path, found = committed_figure(now, tmp_path)
    assert path.name == "lab_inflight4.json" and found["commit"] == "48acb9a"
    lines = movement(now, found)
    assert "315 -> 271 (-14.0%)" in lines[0] and "28.5% -> 65.7% (+130.5%)" in lines[2], lines
    assert committed_figure({**now, "robots": 3}, tmp_path) is None
