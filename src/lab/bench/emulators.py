"""`lab bench emulators`: how well the emulators predict real measurements they did not see.

HER (Burger et al. 2020, 1109 vials): k-fold cross-validation, hyperparameters refitted on
each training fold (the honest figure) and kept from the full fit (what the unit test
checks, fast). Photopolymer (Jain et al. 2024, 67 formulations): leave-one-out per property
on the modelled scale. Crossed barrel: the emulator returns measured replicates, so its
error is the replicate scatter itself (reported as the pooled replicate sd).

    lab bench emulators [--folds 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from lab.bench import OUT, write_json


def main(argv: list[str] | None = None) -> int:
    from sklearn.gaussian_process import GaussianProcessRegressor

    from lab.core.stations.emulators import POLYMER_PROPERTIES, CrossedBarrelEmulator, HerEmulator, PhotopolymerEmulator

    parser = argparse.ArgumentParser(prog="lab bench emulators")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="skip the per-fold hyperparameter refit")
    parser.add_argument("--json", default=str(OUT / "emulators.json"))
    ns = parser.parse_args(argv)
    out: dict = {}
    her = HerEmulator.fitted()
    for refit in (False,) if ns.quick else (False, True):
        started = time.monotonic()
        cv = her.cross_validate(folds=ns.folds, refit=refit)
        key = "her_cv_refit" if refit else "her_cv_fixed_hyperparameters"
        out[key] = {"folds": cv.folds, "r2": round(cv.r2, 3), "rmse_umol_h": round(cv.rmse, 3), "n": cv.n,
                    "seconds": round(time.monotonic() - started, 1)}
        how = "hyperparameters refitted per fold" if refit else "full-fit hyperparameters"
        print(f"HER emulator, {cv.folds}-fold CV ({how}): "
              f"R2 {cv.r2:.3f}, RMSE {cv.rmse:.2f} umol/h over {cv.n} vials (range 0-{her.y.max():.1f})")
    out["her_noise_sd_umol_h"] = round(her.noise_sd, 3)
    poly = PhotopolymerEmulator.fitted()
    loo = {}
    for prop, (gp, _) in poly.models.items():
        x, y = gp.X_train_, gp.y_train_ if not gp.normalize_y else gp.y_train_ * gp._y_train_std + gp._y_train_mean
        pred = np.empty_like(y)
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            model = GaussianProcessRegressor(gp.kernel_, normalize_y=True, optimizer=None).fit(x[keep], y[keep])
            pred[i] = model.predict(x[i:i + 1])[0]
        r2 = 1 - float(np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))
        scale = "log10" if POLYMER_PROPERTIES[prop][1] else "linear"
        loo[prop] = {"r2": round(r2, 3), "n": len(y), "scale": scale}
        print(f"photopolymer {prop}: leave-one-out R2 {r2:.3f} on the {scale} scale (n={len(y)})")
    out["photopolymer_loo"] = loo
    barrel = CrossedBarrelEmulator.fitted()
    sds = [float(np.std(v, ddof=1)) for v in barrel.replicates.values() if len(v) > 1]
    pooled = math.sqrt(float(np.mean(np.square(sds))))
    out["crossed_barrel_replicate_sd"] = round(pooled, 3)
    print(f"crossed barrel: answers with measured replicates; pooled replicate sd {pooled:.3f} J "
          f"over {len(sds)} designs")
    write_json(out, ns.json, indent=1)
    print(f"written {ns.json}")
    return 0
