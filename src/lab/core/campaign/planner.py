"""The batch Bayesian planner: scikit-optimize's Gaussian process and expected improvement
over feasible candidates of the campaign's space.

- The model: a Gaussian process, Matern 5/2 with one length scale per dimension (ARD, within
  `length_scale_min`-`length_scale_max` on the unit cube, see below) plus white noise
  (scikit-learn's GaussianProcessRegressor, which skopt's GP models build on; its own predict
  solves with the Cholesky factor, ~20x faster at 700 points than skopt's
  subclass, which forms the inverse), on the space scaled to the unit cube; objectives to
  maximise are negated (skopt minimises), `log_objectives` modelled on log10.
- The acquisition: skopt.acquisition.gaussian_ei, evaluated on candidates drawn from the
  space (its pool when it has one; otherwise `candidates` random feasible grid points, a
  sparser copy of each where the space has mixtures (sum constraints), and neighbours of the
  best points so far), excluding points already measured or pending.
- A batch: kriging believer. Each pick is added to the data at the model's mean, which
  leaves the posterior mean unchanged and lowers its variance by an exact rank-one update
  before the next pick; points still running in the lab (`pending`) are added the same way
  first, so two batches in flight do not propose the same region twice.
- Several objectives: ParEGO (Knowles 2006): each pick scalarises the normalised objectives
  with an augmented Chebyshev function under fresh random weights.
- EI's xi by where the candidates come from (issue 36; BENCHMARKS.md has the figures).
  A space that is a finite pool, scored whole (the measured pools of `lab bench suite`; the
  crossed-barrel campaign, whose space is the BEAR pool, within its spread either way): EI's xi
  0.01 (in standard deviations of the values), the textbook loop's; on five pools it took as few
  experiments as xi 0.1 or fewer, at batch 1 and at batch 16. Candidates the planner generates
  (the campaigns' grids: random points, sparser mixtures, and most of them grid neighbours of
  the best points so far): xi 0.1; xi 0.01 was worse on the photocatalysis campaign, and a
  guess at why (not verified) is that with most candidates beside the incumbent a small xi
  keeps every pick there. Length scales are at most 2 on the unit cube for both, so that a fit
  cannot switch a variable off altogether (with 20 the fits of two photocatalysis seeds in ten
  called NaCl and NaOH irrelevant early and never proposed the mixtures that matter; on the
  pools the textbook's 100 helped one and cost two). An `xi` given to the planner holds for both.
- Before `initial_random` valid observations the batch is random (space-filling start).
- Directions measured on `lab bench suite` and not adopted (a forest mixture, sampled
  hyperparameters, priors on the length scales, a warped objective, gp_hedge, an active-search
  acquisition) are strategies beside the benchmarks (lab.bench.strategies), built on this
  class's hooks (`_values`, `_posteriors`, `_acquisition`, `optimizer`); BENCHMARKS.md has
  their figures.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lab.core.campaign.objective import Objective
from lab.core.campaign.space import Point, Space

# scikit-learn, SciPy and scikit-optimize are imported where a model is first fitted, not with the
# module: they take ~1.7 CPU s to import, every planner process (and every restart of one) paid
# it, and a campaign's first batches are drawn at random (initial_random) without them
if TYPE_CHECKING:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import Kernel


@dataclass(frozen=True)
class Observation:
    point: Point
    values: Mapping[str, float]


def start_kernel(dims: int, length_scale_min: float = 0.05, length_scale_max: float = 2.0,
                 noise_min: float = 1e-4) -> Kernel:
    """The GP's kernel before its first fit: a constant times Matern 5/2 with one length scale
    per input (on the unit cube, within the bounds) plus white noise."""
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    return (ConstantKernel(1.0, (1e-2, 1e2))
            * Matern(np.full(dims, max(0.3, length_scale_min)), (length_scale_min, length_scale_max), nu=2.5)
            + WhiteKernel(0.05, (noise_min, 1.0)))


#: EI's xi (standard deviations of the values) on a space that is a finite pool, scored whole,
#: and on candidates the planner generates (the module's docstring says why they differ)
POOL_XI, GENERATED_XI = 0.01, 0.1


class BatchPlanner:
    def __init__(self, space: Space, objectives: Sequence[Objective], log_objectives: Sequence[str] = (),
                 initial_random: int = 8, candidates: int = 500, xi: float | None = None, seed: int = 0,
                 local: int = 3000, top: int = 10, restarts: int = 2,
                 fit_subset: int = 250, refit_growth: float = 1.1, sparse: float = 0.7,
                 length_scale_max: float = 2.0, length_scale_min: float = 0.05, restarts_below: int = 150,
                 noise_min: float = 1e-4) -> None:
        self.space, self.objectives = space, list(objectives)
        self.logs = set(log_objectives)
        self.initial_random = initial_random
        self.n_candidates = candidates
        self.local, self.top, self.restarts, self.fit_subset = local, top, restarts, fit_subset
        self.refit_growth = refit_growth
        self.restarts_below = restarts_below  # above it a fit starts only from the last one's hyperparameters
        self.sparse = sparse
        self.xi = xi if xi is not None else POOL_XI if space.pool is not None else GENERATED_XI
        self.length_scale_min, self.length_scale_max = length_scale_min, length_scale_max
        self.noise_min = noise_min
        self.rng = np.random.default_rng(seed)
        self._last_kernel: dict[str, object] = {}  # warm starts for the hyperparameter fits
        self._fitted_at: dict[str, int] = {}       # observations at the last hyperparameter fit
        #: how the hyperparameters are fitted (scikit-learn's optimizer argument): maximum
        #: likelihood by L-BFGS-B; the research strategies swap in a prior (lab.bench.strategies)
        self.optimizer: object = "fmin_l_bfgs_b"

    # ------------------------------------------------------------------ data
    def _targets(self, observed: Sequence[Observation]) -> tuple[list[Point], np.ndarray]:
        """Points with every objective measured, and their values to minimise (n x objectives)."""
        points, rows = [], []
        for obs in observed:
            if not all(o.name in obs.values and math.isfinite(obs.values[o.name]) for o in self.objectives):
                continue
            row = []
            for o in self.objectives:
                v = float(obs.values[o.name])
                if o.name in self.logs:
                    v = math.log10(max(v, 1e-9))
                row.append(-v if o.maximize else v)
            points.append(obs.point)
            rows.append(row)
        return points, np.array(rows, dtype=float).reshape(len(rows), len(self.objectives))

    def _candidates(self, best: Sequence[Point], exclude: set[tuple[float, ...]]) -> list[Point]:
        if self.space.pool is not None:
            pool = self.space.pool
        else:
            base = self.space.sample(self.n_candidates, self.rng)
            pool = base + self._sparse(base) + self._neighbours(best)
        return self._unseen(pool, set(exclude))

    def _sparse(self, points: Sequence[Point]) -> list[Point]:
        """A sparser copy of each point: every member of a sum constraint (an ingredient of a
        mixture) dropped to its lower bound with probability `sparse`, so that mixtures of a
        few ingredients are proposed as often as full ones (uniform draws on a simplex almost
        never leave most ingredients out). Nothing for a space without sum constraints."""
        members = [n for c in self.space.constraints for n in c.names]
        if not members or self.sparse <= 0:
            return []
        lows = {n: self.space.dim(n).low for n in members}
        out = []
        for p in points:
            q = dict(p)
            for n in members:
                if self.rng.random() < self.sparse:
                    q[n] = lows[n]
            if q != p and all(c.holds(q) for c in self.space.constraints):
                out.append(q)
        return out

    def _unseen(self, points: Sequence[Point], seen: set[tuple[float, ...]], limit: int | None = None) -> list[Point]:
        """The points whose grid key is not in `seen` (which grows), in order, at most `limit`."""
        out: list[Point] = []
        for p in points:
            k = self.space.key(p)
            if k not in seen:
                seen.add(k)
                out.append(p)
                if len(out) == limit:
                    break
        return out

    def _neighbours(self, best: Sequence[Point]) -> list[Point]:
        """Grid neighbours of the best points (one or two dimensions moved a step or two)."""
        out = []
        for p in best:
            for _ in range(self.local // max(1, len(best))):
                q = dict(p)
                for d in self.rng.choice(len(self.space.dimensions), size=int(self.rng.integers(1, 3)), replace=False):
                    dim = self.space.dimensions[int(d)]
                    i = dim.values.index(dim.snap(q[dim.name])) + int(self.rng.choice([-2, -1, 1, 2]))
                    q[dim.name] = dim.values[min(max(i, 0), len(dim.values) - 1)]
                if all(c.holds(q) for c in self.space.constraints):
                    out.append(q)
        return out

    # ------------------------------------------------------------------ model
    def _refit_due(self, slot: str, n: int) -> bool:
        """Whether n observations call for fitting `slot` again (never fitted, or grown by refit_growth)."""
        fitted_at = self._fitted_at.get(slot, 0)
        return not fitted_at or n >= self.refit_growth * fitted_at

    def _model(self, x: np.ndarray, y: np.ndarray, kernel: object = None, slot: str = "") -> GaussianProcessRegressor:
        """A GP on (x, y): hyperparameters fitted unless `kernel` is given (then used as is).

        The fit (the cubic cost) happens only once the observations have grown by
        `refit_growth` since the last one, starts from the last fit's hyperparameters (`slot`
        names which), and above `fit_subset` observations uses a random subset of that size;
        the posterior then uses every observation."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor

        if kernel is not None:
            gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, optimizer=None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                return gp.fit(x, y)
        start = self._last_kernel.get(slot)
        if start is not None and not self._refit_due(slot, len(y)):
            return self._model(x, y, start)  # hyperparameters kept until the data grow by refit_growth
        if start is None:
            start = start_kernel(x.shape[1], self.length_scale_min, self.length_scale_max, self.noise_min)
        subset = np.arange(len(y))
        if len(y) > self.fit_subset:
            subset = np.random.default_rng(len(y)).choice(len(y), self.fit_subset, replace=False)
        gp = GaussianProcessRegressor(kernel=start, normalize_y=True, random_state=0, optimizer=self.optimizer,
                                      n_restarts_optimizer=self.restarts if len(y) <= self.restarts_below else 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(x[subset], y[subset])
        self._last_kernel[slot] = gp.kernel_
        self._fitted_at[slot] = len(y)
        if len(subset) < len(y):
            return self._model(x, y, gp.kernel_)
        return gp

    # ------------------------------------------------------------------ proposing
    def propose(self, observed: Sequence[Observation], pending: Sequence[Point], n: int) -> list[Point]:
        """n new feasible points, none already measured or pending, best expected first."""
        if n <= 0:
            return []
        points, targets = self._targets(observed)
        exclude = {self.space.key(p) for p in [o.point for o in observed] + list(pending)}
        if len(points) < max(2, self.initial_random):
            return self._random(n, exclude)
        order = np.argsort(targets.sum(axis=1))[: self.top]
        candidates = self._candidates([points[i] for i in order], exclude)
        if len(candidates) <= n:
            return candidates
        xc = self.space.to_unit(candidates)
        x = self.space.to_unit(points)
        xp = self.space.to_unit(list(pending)) if pending else np.zeros((0, x.shape[1]))
        if len(self.objectives) == 1:
            return [candidates[i] for i in self._believer(x, self._values(targets[:, 0]), xp, xc, n)]
        return self._parego(x, targets, xp, xc, candidates, n)

    def _random(self, n: int, exclude: set[tuple[float, ...]]) -> list[Point]:
        return self._unseen(self.space.sample(max(4 * n, 64), self.rng), exclude, limit=n)

    def _values(self, y: np.ndarray) -> np.ndarray:
        """The values (to minimise) the model of one objective is fitted to."""
        return y

    def _posteriors(self, x: np.ndarray, y: np.ndarray) -> list[GaussianProcessRegressor]:
        """The GP(s) to average the acquisition over: the fitted one (type-II maximum likelihood)."""
        return [self._model(x, y)]

    def _acquisition(self, x: np.ndarray, y: np.ndarray, xc: np.ndarray,
                     gps: list[GaussianProcessRegressor]) -> Acquisition:
        """How one batch's picks are scored: expected improvement over the best value so far."""
        return ExpectedImprovement(xc, incumbent(y, gps[0]), self.xi)

    def _believer(self, x: np.ndarray, y: np.ndarray, xp: np.ndarray, xc: np.ndarray, n: int) -> list[int]:
        """Kriging believer by rank-one posterior updates, the acquisition averaged over the
        posteriors of `_posteriors`."""
        gps = self._posteriors(x, y)
        acquisition = self._acquisition(x, y, xc, gps)
        states = [Believer(gp, xc, xp) for gp in gps]
        chosen: list[int] = []
        for _ in range(n):
            scores = acquisition.scores(states)
            scores[:, chosen] = -np.inf
            i = acquisition.choose(np.argmax(scores, axis=1))
            chosen.append(i)
            for state in states:
                state.pick(i)
        return chosen

    def _parego(self, x: np.ndarray, targets: np.ndarray, xp: np.ndarray, xc: np.ndarray,
                candidates: list[Point], n: int) -> list[Point]:
        # believed values for pending points, one model per objective
        models = [self._model(x, targets[:, k], slot=f"objective{k}") for k in range(targets.shape[1])]
        if len(xp):
            believed = np.column_stack([m.predict(xp) for m in models])
            x, targets = np.vstack([x, xp]), np.vstack([targets, believed])
        from skopt.acquisition import gaussian_ei

        chosen: list[int] = []
        available = np.ones(len(xc), dtype=bool)
        for _ in range(n):
            lo, hi = targets.min(axis=0), targets.max(axis=0)
            norm = (targets - lo) / np.where(hi > lo, hi - lo, 1.0)
            w = self.rng.dirichlet(np.ones(targets.shape[1]))
            scalar = np.max(w * norm, axis=1) + 0.05 * np.sum(w * norm, axis=1)
            gp = self._model(x, scalar, slot="scalarised")
            ei = gaussian_ei(xc, gp, y_opt=float(np.min(scalar)), xi=self.xi)
            ei[~available] = -np.inf
            i = int(np.argmax(ei))
            chosen.append(i)
            available[i] = False
            believed_row = np.array([float(m.predict(xc[i:i + 1])[0]) for m in models])
            x, targets = np.vstack([x, xc[i:i + 1]]), np.vstack([targets, believed_row])
        return [candidates[i] for i in chosen]


def incumbent(y: np.ndarray, gp: GaussianProcessRegressor) -> float:
    """The best value so far (minimised) in the GP's normalised units, EI's incumbent."""
    scale = float(np.atleast_1d(gp._y_train_std)[0])
    return float((np.min(y) - gp._y_train_mean) / scale) if scale else float(np.min(y))


class Acquisition:
    """Scores the candidates of one batch's next pick (a row per nominating acquisition) and
    chooses among the rows' best."""

    def scores(self, states: Sequence[Believer]) -> np.ndarray:
        raise NotImplementedError

    def choose(self, nominees: np.ndarray) -> int:
        return int(nominees[0])


class ExpectedImprovement(Acquisition):
    def __init__(self, xc: np.ndarray, y_opt: float, xi: float) -> None:
        self.xc, self.y_opt, self.xi = xc, y_opt, xi

    def scores(self, states: Sequence[Believer]) -> np.ndarray:
        from skopt.acquisition import gaussian_ei

        scores = np.zeros((1, len(self.xc)))
        for state in states:
            # xi in sd of y
            scores[0] += gaussian_ei(self.xc, Posterior(state.mean, state.var), y_opt=self.y_opt, xi=self.xi)
        return scores


class Posterior:
    """Candidates' posterior (mean, variance) as a model skopt's acquisition functions read;
    `predict` must be called with the candidate array the arrays were computed for."""

    def __init__(self, mean: np.ndarray, var: np.ndarray) -> None:
        self.mean, self.var = mean, var

    def predict(self, x: np.ndarray, return_std: bool = False) -> object:
        if len(x) != len(self.mean):
            raise ValueError("Posterior answers only for its candidates")
        return (self.mean, np.sqrt(self.var)) if return_std else self.mean


class Believer:
    """One GP's posterior at the candidates through a kriging-believer batch.

    Adding an observation at the posterior mean leaves the mean unchanged and lowers the
    variance by c(x)^2 / v*, c the posterior covariance with the new point: exact, and it
    avoids refitting the GP for each pick (16 picks at 700 observations: ~0.3 s, not ~5 s).
    Points still pending in the lab are added first, the same way."""

    def __init__(self, gp: GaussianProcessRegressor, xc: np.ndarray, xp: np.ndarray) -> None:
        from scipy.linalg import solve_triangular

        self.kernel, self.xc = gp.kernel_, xc
        train = gp.X_train_
        self.v_c = solve_triangular(gp.L_, self.kernel(train, xc), lower=True)      # n x candidates
        self.mean = (self.kernel(xc, train) @ gp.alpha_).ravel()                      # normalised units
        self.var = np.maximum(self.kernel.diag(xc) - np.einsum("ij,ij->j", self.v_c, self.v_c), 1e-12)
        self.updates: list[np.ndarray] = []                                           # u_j over candidates
        for z in xp:
            v_z = solve_triangular(gp.L_, self.kernel(train, z[None, :]), lower=True)[:, 0]
            cov_c = self.kernel(xc, z[None, :])[:, 0] - self.v_c.T @ v_z
            var_z = float(self.kernel.diag(z[None, :])[0] - v_z @ v_z)
            # covariances of z with the earlier pending points are not tracked (treated as
            # independent); candidates near them still lose their variance
            self._add([0.0] * len(self.updates), cov_c, var_z)

    def _add(self, u_point: list[float], cov_c: np.ndarray, var_point: float) -> None:
        cov = cov_c - sum(u * up for u, up in zip(self.updates, u_point, strict=True)) if self.updates else cov_c
        v = var_point - sum(up * up for up in u_point)
        if v > 1e-12:
            u = cov / math.sqrt(v)
            self.updates.append(u)
            self.var = np.maximum(self.var - u * u, 1e-12)

    def pick(self, i: int) -> None:
        """Candidate i joins the data at its mean."""
        cov_c = self.kernel(self.xc, self.xc[i:i + 1])[:, 0] - self.v_c.T @ self.v_c[:, i]
        u_i = [float(u[i]) for u in self.updates]
        self._add(u_i, cov_c, float(self.var[i] + sum(v * v for v in u_i)))
