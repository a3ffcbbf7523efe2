#!/usr/bin/env python3
"""Paired comparison of two `lab bench suite` results (the same seeds): per pool set, experiments
to a Top% level for each trial of method A (file A) and method B (file B), their medians, how
many trials each needed fewer for, and the geometric mean ratio A/B with a 90 % bootstrap
interval over trials (below 1: A needs fewer). Trials that never got there count as the budget + 1.
Runs of further seeds join with '+' (A.json+A2.json:METHOD: the trials one after the other, so
both sides must list their files in the same seed order).

    python scripts/suite_compare.py A.json[+A2.json...][:METHOD] B.json[...][:METHOD] [LEVEL]     (METHOD: planner)
"""

from __future__ import annotations

import json
import sys

import numpy as np


def reach(path_method: str, level: str) -> dict[str, np.ndarray]:
    paths, _, method = path_method.partition(":")
    out: dict[str, list[float]] = {}
    for path in paths.split("+"):
        data = json.load(open(path))
        for name, entry in data["pools"].items():
            if method or "planner" in entry:
                r = entry[method or "planner"][f"to_{level}"]
                if "per_trial" in r:
                    out.setdefault(name, []).extend(v if v is not None else entry["budget"] + 1
                                                    for v in r["per_trial"])
    return {name: np.array(v, float) for name, v in out.items()}


def main() -> None:
    a_arg, b_arg = sys.argv[1], sys.argv[2]
    level = sys.argv[3] if len(sys.argv) > 3 else "0.8"
    a, b = reach(a_arg, level), reach(b_arg, level)
    rng = np.random.default_rng(0)
    print(f"experiments to Top% {level}: A = {a_arg}, B = {b_arg}")
    print(f"{'set':34s} {'trials':>6s} {'median A':>9s} {'median B':>9s} {'A<B':>4s} {'A>B':>4s}  A/B [90 %]")
    logs = []
    for name in sorted(set(a) & set(b)):
        n = min(len(a[name]), len(b[name]))
        x, y = a[name][:n], b[name][:n]
        lr = np.log(x / y)
        logs.append(lr.mean())
        boot = np.exp(np.percentile([rng.choice(lr, n).mean() for _ in range(4000)], [5, 95]))
        print(f"{name:34s} {n:6d} {np.median(x):9.1f} {np.median(y):9.1f} {int((x < y).sum()):4d} "
              f"{int((x > y).sum()):4d}  {np.exp(lr.mean()):.2f} [{boot[0]:.2f}-{boot[1]:.2f}]")
    if logs:
        print(f"{'geometric mean over sets':34s} {'':6s} {'':9s} {'':9s} {'':4s} {'':4s}  {np.exp(np.mean(logs)):.2f}")


if __name__ == "__main__":
    main()
