#!/usr/bin/env python3
"""Probe planner variants on the photocatalysis emulator: best-so-far (emulator mean, µmol/h)
after 48, 96, 160 and 320 experiments per seed, through lab.bench.campaign.run_loop with the
campaign runner's BatchPlanner patched. What BENCHMARKS.md's 10 seeds x 320 comparison of the
length-scale bound and the alternatives not adopted came from (2026-11-25).

    python scripts/planner_variants.py VARIANT SEEDS BUDGET     e.g.  base 0,1,2 320

VARIANT: base (the planner as it is); cold (hyperparameters refitted from scratch with 2
restarts at every fit); eps (2 random points in every batch); lsbX (length scales at most X on
the unit cube, e.g. lsb20 for the bound before 2026-11-25); show (base, printing the fitted
kernel every 48 observations).
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

import lab.core.campaign as campaign_module
from lab.bench.campaign import run_loop
from lab.core.emulators import HerEmulator
from lab.core.planner import BatchPlanner
from lab.core.space import campaign_path, load_campaign


def main() -> None:
    variant, seeds, budget = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], int(sys.argv[3])
    her = HerEmulator.fitted()
    config = load_campaign(campaign_path("photocatalysis"))

    class Variant(BatchPlanner):
        def _model(self, x, y, kernel=None, slot=""):
            if variant == "cold" and kernel is None:
                self._last_kernel.pop(slot, None)
                self._fitted_at.pop(slot, None)
                self.restarts = 2
            if variant.startswith("lsb") and kernel is None and slot not in self._last_kernel:
                bound = float(variant[3:])
                self._last_kernel[slot] = (ConstantKernel(1.0, (1e-2, 1e2))
                                           * Matern(np.full(x.shape[1], 0.3), (0.05, bound), nu=2.5)
                                           + WhiteKernel(0.05, (1e-4, 1.0)))
            gp = super()._model(x, y, kernel, slot)
            if kernel is None and variant == "show" and len(y) % 48 < 16:
                print(len(y), gp.kernel_, file=sys.stderr)
            return gp

        def propose(self, observed, pending, n):
            if variant == "eps" and n > 4:
                out = super().propose(observed, pending, n - 2)
                exclude = {self.space.key(p) for p in [o.point for o in observed] + list(pending) + out}
                return out + self._random(2, exclude)
            return super().propose(observed, pending, n)

    campaign_module.BatchPlanner = Variant  # type: ignore[misc]
    for seed in seeds:
        points = run_loop(config, budget, seed, lambda p, rng: {"hydrogen_evolution_rate": her.measure(p, rng)[0]})
        best = np.maximum.accumulate(her.predict(np.array([her.vector(p) for p in points]))[0])
        print(variant, seed, " ".join(f"{best[i - 1]:.2f}" for i in (48, 96, 160, 320) if i <= len(best)), flush=True)


if __name__ == "__main__":
    main()
