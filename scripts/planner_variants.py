#!/usr/bin/env python3
"""Probe planner variants on the photocatalysis emulator: best-so-far (emulator mean, µmol/h)
after 48, 96, 100, 160 and 320 experiments per seed, and the experiment at which 20.37 (the
real robot's level after 400) was first reached (-1: not within the budget), through
lab.bench.campaign.run_loop with the campaign runner's BatchPlanner patched. What BENCHMARKS.md's
comparisons of planner variants came from (2026-11-25: 10 seeds x 320; 2026-11-26: 20 seeds x 160).

    python scripts/planner_variants.py VARIANT SEEDS BUDGET     e.g.  base 0,1,2 320
                                                                     v+xi=0.01+moves=1 0,1,2 160

VARIANT is a name, optionally followed by +option=value parts.
Names: base (the planner as it is); cold (hyperparameters refitted from scratch with 2 restarts
at every fit); eps (2 random points in every batch); lsbX (length scales at most X on the unit
cube, e.g. lsb20 for the bound before 2026-11-25); show (base, printing the fitted kernel every
48 observations); any other name: base plus its options.
Options: xi=X, candidates=N, local=N, top=N, sparse=P (BatchPlanner's own); lsmin=X / lsmax=X
(length-scale bounds); prior=1 (MAP fit: log-normal prior on each length scale, location
sqrt(2) + ln(d)/2, scale sqrt(3), after Hvarfner et al., ICML 2024); warp_y=0/1/2 (the
objective before the fit: as measured, Yeo-Johnson-transformed as HEBO does (what `yj=1` was
until 2026-11-30), one-sided); hedge=1 (gp_hedge portfolio); xw=S (mixture volumes warped
log(1 + u/e) / log(1 + 1/e), e = S grid steps: the first step of an ingredient counts most);
lin=A (ridge trend, penalty A, with the GP on its residuals); et=L (extra-trees forest, leaves of
at least L, instead of the GP; a batch by refitting on believed values); moves=1 (neighbours of
the best points also by dropping 1-2 ingredients or redrawing 1-2 variables anywhere).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import scipy.optimize
from scipy.linalg import solve_triangular
from sklearn.gaussian_process import GaussianProcessRegressor
from skopt.acquisition import gaussian_ei
from skopt.learning import ExtraTreesRegressor

import lab.core.campaign.closed_loop as campaign_module
import lab.core.campaign.planner as planner_module
from lab.bench.campaign import run_loop
from lab.bench.strategies import ResearchPlanner
from lab.core.campaign.planner import BatchPlanner, Posterior
from lab.core.campaign.space import campaign_path, load_campaign
from lab.core.stations.emulators import HerEmulator

PLANNER_OPTIONS = {"xi": float, "candidates": int, "local": int, "top": int, "sparse": float, "trees": int,
                   "hyper_samples": int, "warp_y": int, "hedge": int,
                   "level": float}


class WarpedSpace:
    """The space, with to_unit warping the mixture volumes (members of a sum constraint whose
    lower bound is 0) by log(1 + u/e) / log(1 + 1/e), e = `steps` grid steps on the unit scale."""

    def __init__(self, space, steps: float) -> None:
        self._space = space
        members = {n for c in space.constraints for n in c.names}
        self._eps = {i: steps * (d.values[1] - d.values[0]) / (d.high - d.low)
                     for i, d in enumerate(space.dimensions) if d.name in members and d.low == 0}

    def __getattr__(self, key):
        return getattr(self._space, key)

    def to_unit(self, points):
        u = self._space.to_unit(points)
        for i, e in self._eps.items():
            u[:, i] = np.log1p(u[:, i] / e) / np.log1p(1 / e)
        return u


def prior_gp(sigma: float = math.sqrt(3.0)) -> type[GaussianProcessRegressor]:
    """A GaussianProcessRegressor whose hyperparameter fit maximises the marginal likelihood plus
    a log-normal prior on each length scale (location sqrt(2) + ln(d)/2, scale sigma)."""

    class PriorGP(GaussianProcessRegressor):
        def __init__(self, kernel=None, **kw):
            if kw.get("optimizer", "fmin_l_bfgs_b") == "fmin_l_bfgs_b":
                d = len(np.atleast_1d(kernel.k1.k2.length_scale))  # ConstantKernel * Matern + White
                mu = math.sqrt(2) + math.log(d) / 2

                def optimizer(obj_func, theta0, bounds):
                    def f(theta):
                        value, grad = obj_func(theta, eval_gradient=True)
                        ls = theta[1:1 + d]  # log length scales
                        grad = grad.copy()
                        grad[1:1 + d] += (ls - mu) / sigma ** 2
                        return value + float(np.sum((ls - mu) ** 2)) / (2 * sigma ** 2), grad
                    r = scipy.optimize.minimize(f, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
                    return r.x, r.fun
                kw["optimizer"] = optimizer
            super().__init__(kernel=kernel, **kw)

    return PriorGP


def variant_class(variant: str) -> type[BatchPlanner]:
    name, *parts = variant.split("+")
    opts = dict(p.split("=", 1) for p in parts)
    if name.startswith("lsb"):
        opts["lsmax"] = name[3:]
    if "prior" in opts:
        planner_module.GaussianProcessRegressor = prior_gp()  # type: ignore[misc]

    class Variant(ResearchPlanner):
        def __init__(self, *args, **kwargs):
            for key, kind in PLANNER_OPTIONS.items():
                if key in opts:
                    kwargs[key] = kind(opts[key])
            for key, arg in (("lsmin", "length_scale_min"), ("lsmax", "length_scale_max")):
                if key in opts:
                    kwargs[arg] = float(opts[key])
            super().__init__(*args, **kwargs)

        def _model(self, x, y, kernel=None, slot=""):
            if name == "cold" and kernel is None:
                self._last_kernel.pop(slot, None)
                self._fitted_at.pop(slot, None)
                self.restarts = 2
            gp = super()._model(x, y, kernel, slot)
            if kernel is None and name == "show" and len(y) % 48 < 16:
                print(len(y), gp.kernel_, file=sys.stderr)
            return gp

        def propose(self, observed, pending, n):
            if "xw" in opts and not isinstance(self.space, WarpedSpace):
                self.space = WarpedSpace(self.space, float(opts["xw"]))  # type: ignore[assignment]
            if name == "eps" and n > 4:
                out = super().propose(observed, pending, n - 2)
                exclude = {self.space.key(p) for p in [o.point for o in observed] + list(pending) + out}
                return out + self._random(2, exclude)
            return super().propose(observed, pending, n)

        def _neighbours(self, best):
            if "moves" not in opts:
                return super()._neighbours(best)
            dims = self.space.dimensions
            members = [n for c in self.space.constraints for n in c.names]
            out = []
            for p in best:
                for _ in range(self.local // max(1, len(best))):
                    q = dict(p)
                    kind = self.rng.random()
                    if kind < 0.5 or (kind < 0.75 and not members):  # one or two grid steps
                        for d in self.rng.choice(len(dims), size=int(self.rng.integers(1, 3)), replace=False):
                            dim = dims[int(d)]
                            i = dim.values.index(dim.snap(q[dim.name])) + int(self.rng.choice([-2, -1, 1, 2]))
                            q[dim.name] = dim.values[min(max(i, 0), len(dim.values) - 1)]
                    elif kind < 0.75:  # drop ingredients
                        for m in self.rng.choice(members, size=int(self.rng.integers(1, 3)), replace=False):
                            q[str(m)] = self.space.dim(str(m)).low
                    else:  # redraw variables anywhere
                        for d in self.rng.choice(len(dims), size=int(self.rng.integers(1, 3)), replace=False):
                            dim = dims[int(d)]
                            q[dim.name] = dim.values[int(self.rng.integers(len(dim.values)))]
                    if all(c.holds(q) for c in self.space.constraints):
                        out.append(q)
            return out

        def _believer(self, x, y, xp, xc, n):
            if "et" in opts:
                return self._trees(x, y, xp, xc, n, int(opts["et"]))
            if "lin" in opts:
                return self._trend_believer(x, y, xp, xc, n, float(opts["lin"]))
            return super()._believer(x, y, xp, xc, n)

        def _trees(self, x, y, xp, xc, n, leaf):
            def forest(xs, ys, seed):
                return ExtraTreesRegressor(n_estimators=100, min_samples_leaf=leaf, random_state=seed).fit(xs, ys)
            xs, ys = x, y.copy()
            if len(xp):
                xs, ys = np.vstack([x, xp]), np.concatenate([y, forest(x, y, 0).predict(xp)])
            chosen: list[int] = []
            for _ in range(n):
                model = forest(xs, ys, len(chosen))
                ei = gaussian_ei(xc, model, y_opt=float(np.min(y)), xi=self.xi * float(np.std(y)))
                ei[chosen] = -np.inf
                i = int(np.argmax(ei))
                chosen.append(i)
                xs, ys = np.vstack([xs, xc[i:i + 1]]), np.append(ys, model.predict(xc[i:i + 1]))
            return chosen

        def _trend_believer(self, x, y, xp, xc, n, penalty):
            """The planner's believer with a ridge trend as the GP's mean (GP on the residuals)."""
            xm, ym = x.mean(axis=0), y.mean()
            beta = np.linalg.solve((x - xm).T @ (x - xm) + penalty * np.eye(x.shape[1]), (x - xm).T @ (y - ym))
            gp = self._model(x, y - (ym + (x - xm) @ beta))
            kernel, train = gp.kernel_, gp.X_train_
            scale = float(np.atleast_1d(gp._y_train_std)[0])
            v_c = solve_triangular(gp.L_, kernel(train, xc), lower=True)
            mean = (kernel(xc, train) @ gp.alpha_).ravel() + (ym + (xc - xm) @ beta - gp._y_train_mean) / scale
            var = np.maximum(kernel.diag(xc) - np.einsum("ij,ij->j", v_c, v_c), 1e-12)
            updates: list[np.ndarray] = []

            def add(u_point, cov_c, var_point):
                nonlocal var
                cov = cov_c - sum(u * up for u, up in zip(updates, u_point, strict=True)) if updates else cov_c
                v = var_point - sum(up * up for up in u_point)
                if v > 1e-12:
                    updates.append(cov / math.sqrt(v))
                    var = np.maximum(var - updates[-1] ** 2, 1e-12)

            for z in xp:
                v_z = solve_triangular(gp.L_, kernel(train, z[None, :]), lower=True)[:, 0]
                add([0.0] * len(updates), kernel(xc, z[None, :])[:, 0] - v_c.T @ v_z,
                    float(kernel.diag(z[None, :])[0] - v_z @ v_z))
            y_opt = float((np.min(y) - gp._y_train_mean) / scale)
            model, chosen = Posterior(mean, var), []
            for _ in range(n):
                ei = gaussian_ei(xc, model, y_opt=y_opt, xi=self.xi)
                ei[chosen] = -np.inf
                i = int(np.argmax(ei))
                chosen.append(i)
                add([float(u[i]) for u in updates], kernel(xc, xc[i:i + 1])[:, 0] - v_c.T @ v_c[:, i],
                    float(var[i] + sum(float(u[i]) ** 2 for u in updates)))
                model.var = var
            return chosen

    return Variant


def main() -> None:
    variant, seeds, budget = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], int(sys.argv[3])
    her = HerEmulator.fitted()
    config = load_campaign(campaign_path("photocatalysis"))
    campaign_module.BatchPlanner = variant_class(variant)  # type: ignore[misc]
    for seed in seeds:
        points = run_loop(config, budget, seed, lambda p, rng: {"hydrogen_evolution_rate": her.measure(p, rng)[0]})
        best = np.maximum.accumulate(her.predict(np.array([her.vector(p) for p in points]))[0])
        hit = next((i + 1 for i, v in enumerate(best) if v >= 20.37), -1)
        print(variant, seed, " ".join(f"{best[i - 1]:.2f}" for i in (48, 96, 100, 160, 320) if i <= len(best)),
              "hit", hit, flush=True)


if __name__ == "__main__":
    main()
