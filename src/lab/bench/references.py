"""Reference methods the planner is measured against (`lab bench suite`), each on a code path of
its own: nothing here is shared with lab.core.campaign.planner, so a bug in one cannot flatter both.

Every method answers the same question: given the measured points (unit cube, n x d), their
values (to MINIMISE) and the candidates still open (m x d), which `k` candidates next (indices,
best first). They fit their model afresh at every call (no state between calls).

- `random`: k candidates at random.
- `gp_ei` (the "textbook" loop): scikit-learn GaussianProcessRegressor, a constant
  times Matern 5/2 with one length scale per input in (0.01, 100), plus white noise,
  hyperparameters refitted at every call, expected improvement with xi 0.01 on standardised
  values; a batch by kriging believer (each pick added at its predicted mean, the kernel kept).
- `forest_ei`: extra-trees regression (Liang et al. 2021's other strong surrogate, there a
  random forest), mean and spread over the trees, expected improvement with xi 0.01; a batch by
  believer (the forest refitted with each pick at its predicted mean).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.stats import norm
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

Method = Callable[[np.ndarray, np.ndarray, np.ndarray, int, np.random.Generator], list[int]]


def random_choice(x: np.ndarray, y: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    return [int(i) for i in rng.choice(len(candidates), size=min(k, len(candidates)), replace=False)]


def _ei(mean: np.ndarray, sd: np.ndarray, best: float, xi: float) -> np.ndarray:
    """Expected improvement below `best` (minimising)."""
    sd = np.maximum(sd, 1e-12)
    gain = best - mean - xi
    z = gain / sd
    return gain * norm.cdf(z) + sd * norm.pdf(z)


def _standardise(y: np.ndarray) -> np.ndarray:
    sd = float(np.std(y))
    return (y - float(np.mean(y))) / (sd if sd > 0 else 1.0)


def textbook_kernel(dims: int):
    """gp_ei's kernel before its fit: a constant times Matern 5/2 (length scales 0.01-100) plus white noise."""
    return (ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.ones(dims), (0.01, 100.0), nu=2.5)
            + WhiteKernel(1e-2, (1e-6, 1.0)))


def gp_ei(x: np.ndarray, y: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator,
          xi: float = 0.01) -> list[int]:
    z = _standardise(y)
    gp = GaussianProcessRegressor(textbook_kernel(x.shape[1]), normalize_y=False, random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x, z)
    fitted = gp.kernel_
    chosen: list[int] = []
    xs, zs = x, z
    best = float(np.min(z))
    for _ in range(min(k, len(candidates))):
        if chosen:  # believer: the last pick at its mean, the fitted kernel kept
            believed = float(gp.predict(candidates[chosen[-1]:chosen[-1] + 1])[0])
            xs, zs = np.vstack([xs, candidates[chosen[-1]]]), np.append(zs, believed)
            gp = GaussianProcessRegressor(fitted, normalize_y=False, optimizer=None).fit(xs, zs)
        mean, sd = gp.predict(candidates, return_std=True)
        ei = _ei(mean, sd, best, xi)
        ei[chosen] = -np.inf
        chosen.append(int(np.argmax(ei)))
    return chosen


def forest_ei(x: np.ndarray, y: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator,
              xi: float = 0.01, trees: int = 100) -> list[int]:
    z = _standardise(y)
    seed = int(rng.integers(2**31))
    chosen: list[int] = []
    xs, zs = x, z
    best = float(np.min(z))
    for _ in range(min(k, len(candidates))):
        forest = ExtraTreesRegressor(n_estimators=trees, min_samples_leaf=1, random_state=seed).fit(xs, zs)
        per_tree = np.stack([t.predict(candidates) for t in forest.estimators_])
        mean, sd = per_tree.mean(axis=0), per_tree.std(axis=0)
        ei = _ei(mean, sd, best, xi)
        ei[chosen] = -np.inf
        i = int(np.argmax(ei))
        chosen.append(i)
        xs, zs = np.vstack([xs, candidates[i]]), np.append(zs, mean[i])  # believer
    return chosen


REFERENCES: dict[str, Method] = {"random": random_choice, "gp_ei": gp_ei, "forest_ei": forest_ei}
