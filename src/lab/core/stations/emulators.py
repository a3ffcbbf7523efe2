"""Emulated instruments: models fitted to real measured data, so a simulated campaign faces
the response surface real chemistry and real printing produced (data/README.md has the
provenance of every file).

- HerEmulator: hydrogen evolution rate (umol/h) of a photocatalysis vial, Burger et al.,
  Nature 583, 237 (2020); a Gaussian process (ARD Matern 5/2 + white noise, scikit-learn)
  fitted to the 1109 measured vials. Its hyperparameters are fitted once and cached on disk
  (keyed by the data file's hash), so later starts only factorise.
- CrossedBarrelEmulator: toughness of a 3D-printed crossed-barrel structure, Gongora et al.,
  Sci. Adv. 6, eaaz1708 (2020): the measured replicates of the 600-design grid themselves
  (a printed design is snapped to the printer's grid; one of its measured replicates is the
  answer).
- PhotopolymerEmulator: Young's modulus, peak stress, peak strain and hardness of an
  IDA/IBOA/PEGDA photopolymer, Jain et al. (2024): one Gaussian process per property on the
  composition simplex (log scale for the properties spanning decades).

The force-displacement and stress-strain curves the mechanical tester reports are synthetic
shapes scaled to the emulated values (the data sets hold no curves).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lab.core.errors import ConfigError, InvalidGoal
from lab.paths import data_path

if TYPE_CHECKING:
    from sklearn.gaussian_process import GaussianProcessRegressor

HER_FILE = "burger2020_her_extended.csv"
BARREL_FILE = "bear2020_crossed_barrel.csv"
POLYMER_FILE = "jain2024_photopolymer.csv"

# The ten inputs of the photocatalysis search, in the data file's column order, with the
# bounds of the robot's own optimiser configuration (data/README.md).
HER_COMPONENTS: tuple[str, ...] = (
    "AcidRed871_0gL", "L-Cysteine-100gL", "MethyleneB_250mgL", "NaCl-3M", "NaOH-1M", "P10-MIX1",
    "PVP-1wt", "RhodamineB1_0gL", "SDS-1wt", "Sodiumsilicate-1wt")
HER_BOUNDS: dict[str, tuple[float, float]] = {c: (0.0, 5.0) for c in HER_COMPONENTS}
HER_BOUNDS["P10-MIX1"] = (1.0, 5.1)
HER_BOUNDS["L-Cysteine-100gL"] = (0.25, 5.0)
HER_OBJECTIVE = "hydrogen_evolution_rate"


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the emulator's data: {exc}") from None


def _cache_dir() -> Path:
    base = os.environ.get("LAB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lab")
    return Path(base) / "emulators"


def _kernel(dims: int) -> Any:
    # scikit-learn is imported only when a model is built: a station node that never measures
    # (dispensers, storage) starts without it
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    return (ConstantKernel(1.0, (1e-3, 1e3)) * Matern(length_scale=np.ones(dims), length_scale_bounds=(1e-2, 1e3),
                                                      nu=2.5)
            + WhiteKernel(0.1, (1e-6, 1e1)))


@dataclass(frozen=True)
class CrossValidation:
    folds: int
    r2: float
    rmse: float
    n: int


class HerEmulator:
    """Hydrogen evolution rate of a vial from its as-dispensed composition."""

    objective = HER_OBJECTIVE
    unit = "umol/h"

    def __init__(self, x: np.ndarray, y: np.ndarray, theta: np.ndarray | None = None) -> None:
        self.x_raw, self.y = x, y
        self.lows = np.array([HER_BOUNDS[c][0] for c in HER_COMPONENTS])
        self.spans = np.array([HER_BOUNDS[c][1] - HER_BOUNDS[c][0] for c in HER_COMPONENTS])
        from sklearn.gaussian_process import GaussianProcessRegressor

        kernel = _kernel(len(HER_COMPONENTS))
        if theta is not None:
            kernel = kernel.clone_with_theta(theta)
        self.gp = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None if theta is not None else
                                           "fmin_l_bfgs_b", random_state=0)
        self.gp.fit(self._scale(x), y)
        self.theta = self.gp.kernel_.theta
        params = self.gp.kernel_.get_params()
        # measurement noise (sd, umol/h): the white-noise level in the data's units
        self.noise_sd = float(math.sqrt(params["k2__noise_level"]) * self.gp._y_train_std)

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - self.lows) / self.spans

    @staticmethod
    def load_data(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        rows = _read_csv(path or data_path(HER_FILE))
        x = np.array([[float(r[c]) for c in HER_COMPONENTS] for r in rows])
        y = np.array([float(r["Target"]) for r in rows])
        return x, y

    @classmethod
    @functools.cache
    def fitted(cls) -> HerEmulator:
        """The emulator fitted to the full data set; hyperparameters cached on disk."""
        path = data_path(HER_FILE)
        digest = hashlib.sha256(path.read_bytes() + repr(_kernel(len(HER_COMPONENTS))).encode()).hexdigest()[:16]
        cache = _cache_dir() / f"her-{digest}.json"
        x, y = cls.load_data(path)
        if cache.is_file():
            try:
                return cls(x, y, np.array(json.loads(cache.read_text())["theta"]))
            except (ValueError, KeyError):
                pass  # a damaged cache is refitted
        started = time.monotonic()
        emulator = cls(x, y)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"theta": emulator.theta.tolist(), "fit_seconds": time.monotonic() - started}))
        tmp.replace(cache)
        return emulator

    def vector(self, amounts: Mapping[str, float]) -> np.ndarray:
        missing = [c for c in amounts if c not in HER_COMPONENTS]
        if missing:
            raise InvalidGoal(f"unknown component(s) {', '.join(missing)}; known: {', '.join(HER_COMPONENTS)}")
        return np.array([float(amounts.get(c, 0.0)) for c in HER_COMPONENTS])

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of the rate (umol/h) at rows of `xs` (HER_COMPONENTS order)."""
        mean, sd = self.gp.predict(self._scale(np.atleast_2d(xs)), return_std=True)
        return np.maximum(mean, 0.0), sd

    def measure(self, amounts: Mapping[str, float], rng: np.random.Generator) -> tuple[float, float]:
        """One measured rate and its uncertainty: the model's mean plus measurement noise."""
        mean, _ = self.predict(self.vector(amounts)[None, :])
        return max(0.0, float(mean[0] + rng.normal(0.0, self.noise_sd))), self.noise_sd

    def cross_validate(self, folds: int = 5, seed: int = 0, refit: bool = False) -> CrossValidation:
        """k-fold predictive R^2 and RMSE on held-out vials.

        refit=False keeps the full-data hyperparameters and refits only the posterior (fast;
        the hyperparameters have seen every vial); refit=True fits them per fold too.
        """
        order = np.random.default_rng(seed).permutation(len(self.y))
        predictions = np.empty_like(self.y)
        for k in range(folds):
            test = order[k::folds]
            train = np.setdiff1d(order, test)
            model = HerEmulator(self.x_raw[train], self.y[train], None if refit else self.theta)
            predictions[test] = model.predict(self.x_raw[test])[0]
        residual = self.y - predictions
        r2 = 1.0 - float(np.sum(residual ** 2) / np.sum((self.y - self.y.mean()) ** 2))
        return CrossValidation(folds, r2, float(np.sqrt(np.mean(residual ** 2))), len(self.y))


BARREL_GRID: dict[str, tuple[float, ...]] = {
    "n": (6, 8, 10, 12),
    "theta": tuple(float(v) for v in range(0, 201, 25)),
    "r": tuple(round(1.5 + 0.1 * i, 1) for i in range(11)),
    "t": (0.7, 1.05, 1.4),
}


class CrossedBarrelEmulator:
    """Toughness of a crossed-barrel design: one of its measured replicates."""

    objective = "toughness"
    unit = "J"

    def __init__(self, path: Path | None = None) -> None:
        self.replicates: dict[tuple[float, ...], list[float]] = {}
        for row in _read_csv(path or data_path(BARREL_FILE)):
            key = self.grid_point({k: float(row[k]) for k in BARREL_GRID})
            self.replicates.setdefault(key, []).append(float(row["toughness"]))

    @classmethod
    @functools.cache
    def fitted(cls) -> CrossedBarrelEmulator:
        return cls()

    @staticmethod
    def grid_point(design: Mapping[str, float]) -> tuple[float, ...]:
        """The printable design nearest to `design` (the printer's grid)."""
        missing = [k for k in BARREL_GRID if k not in design]
        if missing:
            raise InvalidGoal(f"crossed barrel design lacks {', '.join(missing)}")
        out = []
        for k, grid in BARREL_GRID.items():
            value = float(design[k])
            out.append(min(grid, key=lambda g: abs(g - value)))
        return tuple(out)

    def snap(self, design: Mapping[str, float]) -> tuple[float, ...]:
        """The measured design nearest to `design` (the data hold 600 of the grid's 1188
        designs; distances in units of each parameter's range)."""
        point = self.grid_point(design)
        if point in self.replicates or not self.replicates:
            return point
        spans = [max(g) - min(g) for g in BARREL_GRID.values()]
        return min(self.replicates, key=lambda k: sum(((a - b) / s) ** 2 for a, b, s in zip(k, point, spans,
                                                                                            strict=True)))

    def measure(self, design: Mapping[str, float], rng: np.random.Generator) -> tuple[float, float]:
        values = self.replicates[self.snap(design)]
        return float(values[int(rng.integers(len(values)))]), float(np.std(values))

    def mean(self, design: Mapping[str, float]) -> float:
        return float(np.mean(self.replicates[self.snap(design)]))


POLYMER_COMPONENTS = ("IDA", "IBOA", "PEGDA")
# property -> (unit, modelled on a log10 scale)
POLYMER_PROPERTIES: dict[str, tuple[str, bool]] = {
    "Young_Mod": ("MPa", True), "Peak_Stress": ("MPa", True), "Peak_Strain": ("mm/mm", True),
    "Hardness": ("Shore A", False)}


class PhotopolymerEmulator:
    """Mechanical properties of a cured IDA/IBOA/PEGDA photopolymer."""

    def __init__(self, path: Path | None = None) -> None:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        rows = _read_csv(path or data_path(POLYMER_FILE))
        self.models: dict[str, tuple[GaussianProcessRegressor, float]] = {}
        for prop, (_, log) in POLYMER_PROPERTIES.items():
            xs, ys = [], []
            for row in rows:
                if not row.get(prop, "").strip():
                    continue
                value = float(row[prop])
                if log and value <= 0:
                    continue
                xs.append([float(row[c]) for c in POLYMER_COMPONENTS[:2]])
                ys.append(math.log10(value) if log else value)
            kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * Matern(length_scale=[0.3, 0.3], length_scale_bounds=(1e-2, 10),
                                                                nu=2.5) + WhiteKernel(0.01, (1e-6, 1.0)))
            gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0, n_restarts_optimizer=2)
            gp.fit(np.array(xs), np.array(ys))
            noise = math.sqrt(gp.kernel_.get_params()["k2__noise_level"]) * float(gp._y_train_std)
            self.models[prop] = (gp, noise)

    @classmethod
    @functools.cache
    def fitted(cls) -> PhotopolymerEmulator:
        return cls()

    @staticmethod
    def vector(composition: Mapping[str, float]) -> np.ndarray:
        values = [float(composition.get(c, 0.0)) for c in POLYMER_COMPONENTS]
        if any(v < -1e-9 for v in values) or abs(sum(values) - 1.0) > 0.02:
            raise InvalidGoal(f"monomer fractions {dict(zip(POLYMER_COMPONENTS, values, strict=True))} "
                              "must be >= 0 and sum to 1")
        return np.array(values[:2])

    def mean(self, composition: Mapping[str, float]) -> dict[str, float]:
        x = self.vector(composition)[None, :]
        out = {}
        for prop, (gp, _) in self.models.items():
            value = float(gp.predict(x)[0])
            out[prop] = 10 ** value if POLYMER_PROPERTIES[prop][1] else value
        return out

    def measure(self, composition: Mapping[str, float], rng: np.random.Generator) -> dict[str, tuple[float, float]]:
        """property -> (measured value, sd) for one specimen."""
        x = self.vector(composition)[None, :]
        out = {}
        for prop, (gp, noise) in self.models.items():
            value = float(gp.predict(x)[0]) + float(rng.normal(0.0, noise))
            if POLYMER_PROPERTIES[prop][1]:
                measured = 10 ** value
                out[prop] = (measured, measured * (10 ** noise - 1.0))
            else:
                out[prop] = (value, noise)
        return out


def force_curve(toughness: float, points: int = 40) -> dict[str, Any]:
    """A compression force-displacement curve whose area is `toughness` (J): a linear rise to
    the peak force at 2 mm, a plateau, failure at 8 mm (a synthetic shape, not data)."""
    x = np.linspace(0.0, 8.0, points)  # mm
    shape = np.where(x < 2.0, x / 2.0, 1.0 - 0.3 * (x - 2.0) / 6.0)
    area = float(np.sum((shape[1:] + shape[:-1]) / 2.0 * np.diff(x))) / 1000.0  # per newton of peak, in J
    peak = toughness / area
    return {"x_label": "displacement", "x_unit": "mm", "y_label": "force", "y_unit": "N",
            "x": x.tolist(), "y": (shape * peak).tolist()}


def stress_strain_curve(modulus: float, peak_stress: float, peak_strain: float, points: int = 40) -> dict[str, Any]:
    """A tensile stress-strain curve through the emulated modulus, peak stress and strain (synthetic)."""
    strain = np.linspace(0.0, max(peak_strain, 1e-4), points)
    stress = peak_stress * (1.0 - np.exp(-max(modulus, 1e-6) * strain / max(peak_stress, 1e-9)))
    return {"x_label": "strain", "x_unit": "mm/mm", "y_label": "stress", "y_unit": "MPa",
            "x": strain.tolist(), "y": stress.tolist()}

