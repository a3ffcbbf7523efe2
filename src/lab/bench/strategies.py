"""Planner strategies measured on the benchmarks and not adopted: the product planner
(lab.core.campaign.planner.BatchPlanner) holds only what was adopted; these run beside the
benchmarks (`lab bench suite --planner trees=100`, scripts/planner_variants.py) with the
figures BENCHMARKS.md quotes.

`ResearchPlanner` adds, each off by default (with every option off it is BatchPlanner):
- `trees` > 0: EI under an equal mixture of the GP and an extra-trees forest (Liang et al.
  2021's other strong surrogate);
- `hyper_samples` > 0: EI averaged over that many draws of the GP's hyperparameters (slice
  sampling, Snoek, Larochelle & Adams 2012) instead of the maximum-likelihood fit, while at
  most `sample_below` observations (one objective; ParEGO keeps the fit);
- `warp_y`: the values standardised and Yeo-Johnson transformed before the fit (HEBO,
  Cowen-Rivers et al. 2022), 1 with the maximum-likelihood exponent, 2 "one-sided" with the
  exponent at most 1 (only a long tail of bad values compressed); one objective;
- `hedge`: skopt's gp_hedge portfolio (EI, PI and LCB with `kappa`, drawn by the softmax of
  `eta` times their gains; Hoffman, Brochu & de Freitas 2011); the gains are not persisted;
- `level` > 0: the probability of beating the `level` quantile of the values so far instead of
  EI (active-search-like: many good candidates rather than one better one). Not meant to be
  combined with `hedge` (hedge's PI would take the level as its incumbent): refused.
- `ls_prior`: the hyperparameters fitted by maximum a posteriori under a prior on the length
  scales (and, with `noise_prior` 1, on the noise) instead of by maximum likelihood within hard
  bounds: 1 the dimension-scaled log-normal of Hvarfner, Hellsten & Nardi (ICML 2024),
  LogNormal(sqrt(2) + ln(d) / 2, sqrt(3)), BoTorch's default since 0.12
  (botorch/models/utils/gpytorch_modules.py, get_covar_module_with_dim_scaled_prior); 2 the
  Gamma(3, 6) BoTorch used before (get_matern_kernel_with_gamma_prior). `noise_prior` 1:
  LogNormal(-4, 1) on the noise variance (the same paper). As in GPyTorch the prior's density
  is that of the length scale itself, added to the log marginal likelihood; the optimisation
  runs on the log-hyperparameters within the kernel's bounds (give length_scale_min/max).
- `fresh_fits` 1: every proposal fits the hyperparameters afresh from the start kernel, as the
  textbook loop does (BatchPlanner warm-starts each fit from the last one's and keeps them until
  the data grow by `refit_growth`); 2: the refit schedule kept, each refit from the start kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.gaussian_process import GaussianProcessRegressor
from skopt.acquisition import gaussian_ei, gaussian_lcb, gaussian_pi

from lab.core.campaign.objective import Objective
from lab.core.campaign.planner import Acquisition, BatchPlanner, Believer, Posterior, incumbent, start_kernel
from lab.core.campaign.space import Space

#: the options ResearchPlanner adds to BatchPlanner's
OPTIONS = ("trees", "hyper_samples", "sample_below", "warp_y", "hedge", "kappa", "eta", "level", "ls_prior",
           "noise_prior", "fresh_fits")


def planner(space: Space, objectives: Sequence[Objective], **options: Any) -> BatchPlanner:
    """The product planner, or ResearchPlanner when a research option is asked for."""
    if any(k in OPTIONS for k in options):
        return ResearchPlanner(space, objectives, **options)
    return BatchPlanner(space, objectives, **options)


class ResearchPlanner(BatchPlanner):
    def __init__(self, space: Space, objectives: Sequence[Objective], *args: Any, trees: int = 0,
                 hyper_samples: int = 0, sample_below: int = 150, warp_y: int = 0, hedge: int = 0,
                 kappa: float = 1.96, eta: float = 1.0, level: float = 0.0, ls_prior: int = 0,
                 noise_prior: int = 0, fresh_fits: int = 0, **kwargs: Any) -> None:
        super().__init__(space, objectives, *args, **kwargs)
        if ls_prior or noise_prior:
            self.optimizer = MapFit(len(space.dimensions), int(ls_prior), int(noise_prior))
        if hedge and level > 0:
            raise ValueError("hedge and level do not combine: hedge's PI would take the level as its incumbent")
        self.trees = trees
        self.fresh_fits = int(fresh_fits)
        self.hyper_samples, self.sample_below = hyper_samples, sample_below
        self.warp_y = int(warp_y)  # 1: Yeo-Johnson, 2: one-sided
        self.hedge, self.kappa, self.eta = bool(hedge), kappa, eta
        self.level = level
        self.gains = np.zeros(3)                   # hedge: EI, PI, LCB's gains so far
        self._nominees: list[np.ndarray] = []      # hedge: each acquisition's picks (unit cube) of the last batch

    def _values(self, y: np.ndarray) -> np.ndarray:
        return yeo_johnson(y, self.warp_y == 2) if self.warp_y else y

    def _model(self, x: np.ndarray, y: np.ndarray, kernel: object = None, slot: str = "") -> GaussianProcessRegressor:
        if self.fresh_fits == 1 and kernel is None:  # no warm start and no held hyperparameters
            self._last_kernel.pop(slot, None)
            self._fitted_at.pop(slot, None)
        elif self.fresh_fits == 2 and kernel is None and self._refit_due(slot, len(y)):
            self._last_kernel.pop(slot, None)  # held as scheduled; a due refit starts afresh
        return super()._model(x, y, kernel, slot)

    def _posteriors(self, x: np.ndarray, y: np.ndarray) -> list[GaussianProcessRegressor]:
        """With `hyper_samples` and at most `sample_below` observations: that many draws of the
        hyperparameters from their posterior (log marginal likelihood under a flat prior on the
        log-hyperparameters within their bounds), by slice sampling started at the fit."""
        gp = self._model(x, y)
        if not self.hyper_samples or len(y) > self.sample_below:
            return [gp]
        kernel = gp.kernel_
        bounds = kernel.bounds
        thetas = slice_sample(lambda t: float(gp.log_marginal_likelihood(t)), kernel.theta, bounds[:, 0],
                               bounds[:, 1], self.hyper_samples, self.rng)
        return [self._model(x, y, kernel.clone_with_theta(t)) for t in thetas]

    def _acquisition(self, x: np.ndarray, y: np.ndarray, xc: np.ndarray,
                     gps: list[GaussianProcessRegressor]) -> Acquisition:
        gp = gps[0]
        forest = self._forest(x, y, xc, gp) if self.trees else None
        scale = float(np.atleast_1d(gp._y_train_std)[0])
        y_opt = incumbent(y, gp)
        if self.level > 0:  # the threshold: that quantile of the values so far (minimised), standardised
            y_opt = float((np.quantile(y, self.level) - gp._y_train_mean) / (scale or 1.0))
        if self.hedge and self._nominees:  # each acquisition gains minus the model's mean at its picks
            predicted = (gp.predict(np.vstack(self._nominees)) - gp._y_train_mean) / (scale or 1.0)
            self.gains -= predicted.reshape(-1, 3).sum(axis=0)
        self._nominees = []
        return _Mixed(self, xc, y_opt, forest)

    def _forest(self, x: np.ndarray, y: np.ndarray, xc: np.ndarray,
                gp: GaussianProcessRegressor) -> tuple[np.ndarray, np.ndarray]:
        """An extra-trees forest's mean and variance over its trees at the candidates, in the
        GP's normalised units."""
        from sklearn.ensemble import ExtraTreesRegressor

        z = (y - gp._y_train_mean) / float(np.atleast_1d(gp._y_train_std)[0])
        forest = ExtraTreesRegressor(n_estimators=self.trees, random_state=int(self.rng.integers(2**31))).fit(x, z)
        per_tree = np.stack([t.predict(xc) for t in forest.estimators_])
        return per_tree.mean(axis=0), per_tree.var(axis=0)


class _Mixed(Acquisition):
    """EI (or the level's PI), with the forest mixed in and the hedge's portfolio when asked for."""

    def __init__(self, planner: ResearchPlanner, xc: np.ndarray, y_opt: float,
                 forest: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.p, self.xc, self.y_opt, self.forest = planner, xc, y_opt, forest

    def scores(self, states: Sequence[Believer]) -> np.ndarray:
        p, xc, y_opt = self.p, self.xc, self.y_opt
        scores = np.zeros((3 if p.hedge else 1, len(xc)))
        for state in states:
            mean, var = state.mean, state.var
            if self.forest is not None:  # an equal mixture with the forest (mean, variance over its trees)
                m_f, v_f = self.forest
                mean, var = 0.5 * (mean + m_f), 0.5 * (var + v_f) + 0.25 * (mean - m_f) ** 2
            posterior = Posterior(mean, var)
            if p.level > 0:
                scores[0] += gaussian_pi(xc, posterior, y_opt=y_opt, xi=0.0)
            else:
                scores[0] += gaussian_ei(xc, posterior, y_opt=y_opt, xi=p.xi)
            if p.hedge:
                scores[1] += gaussian_pi(xc, posterior, y_opt=y_opt, xi=p.xi)
                scores[2] -= gaussian_lcb(xc, posterior, kappa=p.kappa)
        return scores

    def choose(self, nominees: np.ndarray) -> int:
        p = self.p
        if not p.hedge:
            return int(nominees[0])
        logits = p.eta * (p.gains - p.gains.max())  # softmax of the gains
        probs = np.exp(logits) / np.exp(logits).sum()
        i = int(nominees[int(p.rng.choice(3, p=probs))])
        p._nominees.append(self.xc[nominees])
        return i


def yeo_johnson(y: np.ndarray, one_sided: bool = False) -> np.ndarray:
    """y standardised, then Yeo-Johnson transformed with its maximum-likelihood exponent: a
    monotone map that makes skewed values closer to normal (HEBO, Cowen-Rivers et al. 2022).
    `one_sided`: the exponent at most 1, so that only a long tail of high (bad: y is minimised)
    values is compressed, never a long tail of good ones."""
    from scipy.stats import yeojohnson, yeojohnson_normmax

    sd = float(np.std(y))
    if len(y) < 3 or sd <= 0:
        return y
    z = (y - float(np.mean(y))) / sd
    lam = float(yeojohnson_normmax(z))
    return np.asarray(yeojohnson(z, min(lam, 1.0) if one_sided else lam), dtype=float)



def slice_sample(log_p: Callable[[np.ndarray], float], start: np.ndarray, low: np.ndarray, high: np.ndarray,
                  n: int, rng: np.random.Generator, thin: int = 2, width: float = 1.0) -> list[np.ndarray]:
    """n draws from exp(log_p) on the box [low, high], by slice sampling with hyperrectangles
    (Neal 2003, Ann. Stat. 31, sec. 5.1), every `thin`-th step kept, starting at `start` (a
    mode, so no burn-in beyond the first steps)."""
    x = np.clip(np.asarray(start, dtype=float), low, high)
    current = log_p(x)
    out: list[np.ndarray] = []
    for step in range(n * thin):
        level = current - rng.exponential()
        left = x - width * rng.random(len(x))  # a box of the width, placed at random around x,
        left, right = np.maximum(left, low), np.minimum(left + width, high)  # cut to the bounds
        for _ in range(200):
            trial = left + rng.random(len(x)) * (right - left)
            value = log_p(trial)
            if value >= level:
                x, current = trial, value
                break
            below = trial < x
            left = np.where(below, trial, left)
            right = np.where(below, right, trial)
        if step % thin == thin - 1:
            out.append(x.copy())
    return out


class MapFit:
    """scikit-learn's `optimizer` argument: the hyperparameters (log space, the kernel's bounds)
    that maximise the log marginal likelihood plus the log prior density of the length scales
    (`ls_prior` 1: dimension-scaled log-normal, 2: Gamma(3, 6)) and of the noise variance
    (`noise_prior` 1: LogNormal(-4, 1)); the module's docstring cites each."""

    def __init__(self, dims: int, ls_prior: int, noise_prior: int) -> None:
        offsets, at = {}, 0
        for h in start_kernel(dims).hyperparameters:  # the planner's kernel: where each parameter sits in theta
            offsets[h.name.rsplit("__", 1)[-1]] = slice(at, at + h.n_elements)
            at += h.n_elements
        self.lengths, self.noise = offsets["length_scale"], offsets["noise_level"]
        self.ls_prior, self.noise_prior = ls_prior, noise_prior
        self.mu = math.sqrt(2.0) + 0.5 * math.log(dims)

    def log_prior(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = 0.0, np.zeros_like(theta)
        t = theta[self.lengths]
        if self.ls_prior == 1:
            value += float(np.sum(-t - (t - self.mu) ** 2 / 6.0))  # sigma^2 = 3
            grad[self.lengths] = -1.0 - (t - self.mu) / 3.0
        elif self.ls_prior == 2:
            value += float(np.sum(2.0 * t - 6.0 * np.exp(t)))
            grad[self.lengths] = 2.0 - 6.0 * np.exp(t)
        if self.noise_prior == 1:
            t = theta[self.noise]
            value += float(np.sum(-t - (t + 4.0) ** 2 / 2.0))
            grad[self.noise] = -1.0 - (t + 4.0)
        return value, grad

    def __call__(self, obj_func: Callable, initial_theta: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, float]:
        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            loss, grad = obj_func(theta, eval_gradient=True)  # minus the log marginal likelihood
            prior, prior_grad = self.log_prior(theta)
            return float(loss) - prior, np.asarray(grad) - prior_grad

        result = minimize(objective, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds)
        return result.x, float(result.fun)
