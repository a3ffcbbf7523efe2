"""Campaign reports: the numbers behind the plots, and the files written."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lab.analysis.report import (
    BURGER2020_BEST_SO_FAR,
    ExperimentRow,
    Interval,
    Objective,
    best_so_far,
    pareto_mask,
    utilisation,
    write_report,
)

HER = Objective("hydrogen_evolution_rate", True, "umol/h")


def _rows(values: list[float | None]) -> list[ExperimentRow]:
    return [ExperimentRow(index=i, valid=v is not None, values={} if v is None else {HER.name: v},
                          formulation={"P10-MIX1": 5.0}, failure_reason="" if v is not None else "GC fault")
            for i, v in enumerate(values)]


def test_best_so_far_skips_failed_and_respects_direction() -> None:
    rows = _rows([None, 2.0, 1.0, None, 5.0, 3.0])
    best = best_so_far(rows, HER)
    assert math.isnan(best[0]) and best[1:] == [2.0, 2.0, 2.0, 5.0, 5.0]
    assert best_so_far(rows, Objective(HER.name, maximize=False))[1:] == [2.0, 1.0, 1.0, 1.0, 1.0]


def test_utilisation_merges_overlaps_and_clips() -> None:
    util = utilisation([Interval("gc", 0, 10), Interval("gc", 5, 20), Interval("gc", 90, 150),
                        Interval("robot1", 0, 50)], horizon=100)
    assert util == {"gc": pytest.approx(0.3), "robot1": pytest.approx(0.5)}
    with pytest.raises(ValueError):
        utilisation([], 0)


def test_pareto_mask() -> None:
    assert pareto_mask([(1, 5), (2, 4), (1, 4), (3, 1), (2, 4)]) == [True, True, False, True, True]


def test_report_files(tmp_path: Path) -> None:
    rows = _rows([1.0, None, 4.0, 2.5])
    rows.append(ExperimentRow(index=4, valid=True, values={HER.name: 3.0}, formulation={},
                              earlier=("e0004: photoreactor: interrupted by a restart",),
                              curves=[{"x": [0, 1, 2], "y": [0, 5, 3], "x_label": "strain", "x_unit": "",
                                       "y_label": "stress", "y_unit": "MPa"}]))
    page = write_report(tmp_path, "test campaign", "photocatalysis", [HER], rows,
                        [Interval("photoreactor_1", 0, 3600), Interval("robot1", 100, 200)], facts={"seed": "1"})
    text = page.read_text()
    for name in ("best_hydrogen_evolution_rate.png", "utilisation.png", "curves.png"):
        assert (tmp_path / name).stat().st_size > 5000
        assert name in text
    assert "#2: GC fault" in text and "5 (1 failed, 1 made again after equipment failures or emergency stops)" in text
    assert "#5 (measured on attempt 2): e0004: photoreactor: interrupted by a restart" in text
    assert BURGER2020_BEST_SO_FAR[-1] == (677, 21.05)


def test_report_multiobjective_has_pareto(tmp_path: Path) -> None:
    a, b = Objective("Young_Mod", True, "MPa"), Objective("Peak_Strain", True)
    rows = [ExperimentRow(i, True, {a.name: float(i), b.name: float(5 - i)}, {}) for i in range(6)]
    page = write_report(tmp_path, "mo", "photopolymer", [a, b], rows)
    assert (tmp_path / "pareto_Young_Mod_Peak_Strain.png").exists()
    assert "Pareto front" in page.read_text()
    with pytest.raises(ValueError):
        write_report(tmp_path, "none", "photopolymer", [], rows)
