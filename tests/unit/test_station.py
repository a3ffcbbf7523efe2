"""Station kinds: bounds, stocks, dispensing error, emulated measurements from real data."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lab.core.campaign.formulation import Formulation
from lab.core.errors import ConfigError, InvalidGoal
from lab.core.stations.emulators import HER_COMPONENTS, CrossedBarrelEmulator, HerEmulator, PhotopolymerEmulator
from lab.core.stations.station import StationCore, interruption, load_kinds, parse_kinds, untouched

KINDS = load_kinds()


def vial(i: int, **amounts: float) -> Formulation:
    return Formulation(f"s{i}", dict(amounts), specimen_kind="vial")


def test_every_station_kind_in_stations_yaml_has_a_spec():
    import yaml

    from lab.paths import config_path

    stations = yaml.safe_load(config_path("stations.yaml").read_text())["stations"]
    assert {s["kind"] for s in stations.values()} <= set(KINDS)


def test_photoreactor_follows_the_paper():
    core = StationCore("photoreactor", KINDS["photoreactor"])
    steps = core.plan("", [vial(i) for i in range(16)])
    assert [(s.name, s.seconds) for s in steps] == [("illuminate", 3600.0)]


def test_per_sample_steps_scale_with_the_rack():
    core = StationCore("gc", KINDS["gas_chromatograph"])
    one = sum(s.seconds for s in core.plan("", [vial(0)]))
    assert sum(s.seconds for s in core.plan("", [vial(i) for i in range(16)])) == pytest.approx(16 * one)


@pytest.mark.parametrize("amounts,words", [
    ({"NaCl-3M": 5.5, "L-Cysteine-100gL": 1.0}, "NaCl-3M 5.5 mL is outside [0, 5]"),
    ({"NaCl-3M": 3.0, "L-Cysteine-100gL": 3.0}, "above the 5 the vial holds"),
    ({"L-Cysteine-100gL": 0.1}, "L-Cysteine-100gL 0.1 mL is outside"),
])
def test_liquid_dispenser_refuses_out_of_bounds_and_changes_nothing(amounts, words):
    core = StationCore("ld", KINDS["liquid_dispenser"])
    levels = {k: s.level for k, s in core.stocks.items()}
    with pytest.raises(InvalidGoal, match=words.replace("[", r"\[").replace("]", r"\]")):
        core.plan("", [vial(0, **{"L-Cysteine-100gL": 1.0}), vial(1, **amounts)])
    assert {k: s.level for k, s in core.stocks.items()} == levels


def test_unknown_component_wrong_unit_and_too_many_samples_are_refused_and_change_nothing():
    lab_components = {c for k in KINDS.values() for c in k.components}
    core = StationCore("ld", KINDS["liquid_dispenser"], capacity=16, lab_components=lab_components)
    levels = {k: s.level for k, s in core.stocks.items()}
    good = {"L-Cysteine-100gL": 1.0, "P10-MIX1": 2.0}  # a solid for the solid dispenser is no stranger
    assert core.plan("", [vial(0, **good)])
    with pytest.raises(InvalidGoal, match="unknown component.s. Unobtainium"):
        core.plan("", [vial(0, **good, Unobtainium=1.0)])
    litres = Formulation("s1", {"L-Cysteine-100gL": 1.0}, units={"L-Cysteine-100gL": "L"}, specimen_kind="vial")
    with pytest.raises(InvalidGoal, match="L-Cysteine-100gL is given in L; this station dispenses it in mL"):
        core.plan("", [litres])
    with pytest.raises(InvalidGoal, match="17 samples do not fit one carrier .it holds 16."):
        core.plan("", [vial(i, **good) for i in range(17)])
    assert {k: s.level for k, s in core.stocks.items()} == levels


def test_unknown_process_and_stock_shortage_are_refused():
    core = StationCore("sd", KINDS["solid_dispenser"])
    with pytest.raises(InvalidGoal, match="no process 'bake'"):
        core.plan("bake", [vial(0, **{"P10-MIX1": 2.0})])
    core.stocks["P10-MIX1"].level = 3.0
    with pytest.raises(InvalidGoal, match="stock P10-MIX1 is low"):
        core.plan("", [vial(0, **{"P10-MIX1": 2.0}), vial(1, **{"P10-MIX1": 2.0})])
    core.refill("P10-MIX1", 0)
    assert core.stocks["P10-MIX1"].level == core.stocks["P10-MIX1"].capacity
    with pytest.raises(InvalidGoal, match="no stock 'water'"):
        core.refill("water", 1.0)
    core.stocks["P10-MIX1"].level = 3.0
    for amount in (float("nan"), float("inf")):
        with pytest.raises(InvalidGoal, match=f"refill amount {amount} is not a finite number"):
            core.refill("P10-MIX1", amount)
    assert core.stocks["P10-MIX1"].level == 3.0  # refused: nothing changed


def test_dispensing_is_imperfect_but_close_and_draws_the_stock():
    core = StationCore("sd", KINDS["solid_dispenser"], seed=3)
    samples = [vial(i, **{"P10-MIX1": 2.0}) for i in range(200)]
    out = core.dispense(samples)
    got = np.array([out[s.sample_id]["P10-MIX1"] for s in samples])
    assert 0.005 < got.std() < 0.06 and abs(got.mean() - 2.0) < 0.01
    assert core.stocks["P10-MIX1"].level == pytest.approx(2000.0 - got.sum())


def test_stock_levels_are_taken_back_all_or_nothing():
    core = StationCore("ld", KINDS["liquid_dispenser"], seed=1)
    core.dispense([vial(0, **{"NaCl-3M": 2.0, "NaOH-1M": 1.0})])
    saved = core.stock_levels()
    fresh = StationCore("ld", KINDS["liquid_dispenser"], seed=1)
    fresh.restore_stocks(saved)
    assert fresh.stock_levels() == saved and saved["NaCl-3M"] < 250.0
    full = StationCore("ld", KINDS["liquid_dispenser"], seed=1).stock_levels()
    for bad, words in (({"NaCl-3M": 1.0, "Gold": 3.0}, "no stock 'Gold'"),
                       ({"NaCl-3M": 1.0, "NaOH-1M": 251.0}, "[0, 250]"),
                       ({"NaCl-3M": -1.0}, "[0, 250]"), ({"NaCl-3M": "x"}, "not a number"),
                       ({"NaCl-3M": float("nan")}, "not a number"), ({"NaCl-3M": True}, "not a number")):
        other = StationCore("ld", KINDS["liquid_dispenser"], seed=1)
        with pytest.raises(InvalidGoal, match=re.escape(words)):
            other.restore_stocks(bad)
        assert other.stock_levels() == full, bad


def test_an_interrupted_process_is_reported_from_its_record():
    record = {"goal": "0123456789abcdef" * 2, "rack": "rack_1", "process": "illuminate", "step": "illuminate",
              "progress": 0.4, "samples": ["a", "b", "c"]}
    goal, text = interruption(record)
    assert goal == record["goal"]
    assert text == ("illuminate on rack_1 was interrupted by a restart of the station at illuminate (40% done): "
                    "its 3 samples cannot be measured")
    assert not untouched(record)  # a record from before the key: counted as touched
    fresh = {**record, "progress": 0.0, "touched": False}
    assert untouched(fresh) and interruption(fresh)[1] == (
        "illuminate on rack_1 was interrupted by a restart of the station before it acted on its 3 samples: "
        "they can run it again")
    assert not untouched({**fresh, "touched": True})
    for bad in ({**record, "goal": "xyz"}, {k: v for k, v in record.items() if k != "rack"},
                {**record, "progress": "half"}, {**record, "samples": 3}, ["not", "a", "record"]):
        with pytest.raises(InvalidGoal):
            interruption(bad)


def test_malformed_processes_file_names_the_key():
    with pytest.raises(ConfigError, match=r"kinds.x.processes.p\[0\].seconds"):
        parse_kinds({"kinds": {"x": {"default": "p", "processes": {"p": [{"name": "a", "seconds": "ten"}]}}}}, "f")
    with pytest.raises(ConfigError, match="default"):
        parse_kinds({"kinds": {"x": {"default": "q", "processes": {"p": [{"name": "a", "seconds": 1}]}}}}, "f")


def test_her_emulator_predicts_held_out_vials():
    """5-fold CV on the 1109 real vials (posterior refitted per fold, hyperparameters from the
    full fit; BENCHMARKS.md has the per-fold-refit figure). Measured: R^2 0.86."""
    cv = HerEmulator.fitted().cross_validate(folds=5)
    assert cv.r2 > 0.75, cv


def test_her_emulator_ranks_the_papers_best_region_above_the_control():
    her = HerEmulator.fitted()
    best = her.x_raw[int(np.argmax(her.y))]
    control = her.vector({"P10-MIX1": 5.0, "L-Cysteine-100gL": 0.5})
    mean, _ = her.predict(np.vstack([best, control]))
    assert mean[0] > 3 * mean[1]


def test_gc_measures_from_the_emulator_with_noise():
    core = StationCore("gc", KINDS["gas_chromatograph"], seed=1)
    amounts = dict(zip(HER_COMPONENTS, HerEmulator.fitted().x_raw[0], strict=True))
    results = core.results([Formulation(f"s{i}", amounts) for i in range(30)], {})
    values = [m.values["hydrogen_evolution_rate"] for m in results]
    expected = float(HerEmulator.fitted().predict(HerEmulator.fitted().x_raw[:1])[0][0])
    assert np.std(values) > 0 and abs(np.mean(values) - expected) < 2.0
    assert results[0].units["hydrogen_evolution_rate"] == "umol/h"


def test_crossed_barrel_answers_with_measured_replicates():
    barrel = CrossedBarrelEmulator.fitted()
    assert len(barrel.replicates) == 600
    rng = np.random.default_rng(0)
    design = {"n": 8, "theta": 101.0, "r": 1.72, "t": 1.1}  # the measured design (8, 100, 1.7, 1.05)
    values = {barrel.measure(design, rng)[0] for _ in range(30)}
    assert len(values) > 1 and values <= set(barrel.replicates[(8, 100.0, 1.7, 1.05)])
    unmeasured = barrel.grid_point({"n": 8, "theta": 100, "r": 2.0, "t": 1.05})
    assert unmeasured not in barrel.replicates and barrel.snap(dict(zip("n theta r t".split(), unmeasured,
                                                                           strict=True))) in barrel.replicates


def test_printer_and_tester_on_a_tray():
    printer = StationCore("printer", KINDS["printer"])
    tester = StationCore("tester", KINDS["mechanical_tester"], seed=2)
    specimens = [Formulation("p1", {"IDA": 0.2, "IBOA": 0.5, "PEGDA": 0.3}, specimen_kind="photopolymer"),
                 Formulation("b1", {"n": 6, "theta": 0, "r": 1.5, "t": 0.7}, specimen_kind="crossed_barrel")]
    printer.plan("", specimens)
    printed = printer.results(specimens, {})
    assert printed[1].as_dispensed == {"n": 6, "theta": 0.0, "r": 1.5, "t": 0.7}
    measured = tester.results(specimens, {})
    assert set(measured[0].values) == {"Young_Mod", "Peak_Stress", "Peak_Strain", "Hardness"}
    assert measured[1].values["toughness"] > 0 and measured[1].curves
    with pytest.raises(InvalidGoal, match="sum to 1"):
        printer.plan("", [Formulation("p2", {"IDA": 0.5, "IBOA": 0.5, "PEGDA": 0.5}, specimen_kind="photopolymer")])
    with pytest.raises(InvalidGoal, match="theta 250 is outside"):
        printer.plan("", [Formulation("b2", {"n": 6, "theta": 250, "r": 1.5, "t": 0.7},
                                      specimen_kind="crossed_barrel")])


def test_photopolymer_emulator_reproduces_the_trade_off():
    poly = PhotopolymerEmulator.fitted()
    soft = poly.mean({"IDA": 0.8, "IBOA": 0.2, "PEGDA": 0.0})
    stiff = poly.mean({"IDA": 0.0, "IBOA": 0.6, "PEGDA": 0.4})
    assert stiff["Young_Mod"] > 50 * soft["Young_Mod"] and soft["Peak_Strain"] > stiff["Peak_Strain"]


def test_same_seed_same_measurements():
    amounts = dict(zip(HER_COMPONENTS, HerEmulator.fitted().x_raw[3], strict=True))
    runs = [StationCore("gc", KINDS["gas_chromatograph"], seed=7).results([Formulation("a", amounts)], {})
            for _ in range(2)]
    assert runs[0][0].values == runs[1][0].values
    other = StationCore("gc", KINDS["gas_chromatograph"], seed=8).results([Formulation("a", amounts)], {})
    assert other[0].values != runs[0][0].values


def test_expected_durations_come_from_the_process_steps() -> None:
    """What a goal's limit is derived from: a process's steps for the samples (per-sample steps
    multiplied), a batch's processes plus a carrier move per step and one home."""
    from lab.core.stations.station import batch_seconds, expected_seconds

    kinds = load_kinds()
    solid = kinds["solid_dispenser"]
    rack = [Formulation(f"v{i}", {"P10-MIX1": 2.0}, units={"P10-MIX1": "mg"}, specimen_kind="vial")
            for i in range(8)]
    planned = sum(step.seconds for step in StationCore("solid_dispenser", solid).plan("", rack))
    assert expected_seconds(solid, "", 8) == 90.0 * 8 == planned
    assert expected_seconds(kinds["rack_storage"], "", 8) == 0.0
    assert expected_seconds(solid, "no_such_process", 8) == 0.0
    steps = [("solid_dispenser", ""), ("photoreactor", "")]
    assert batch_seconds(steps, kinds, 8, 600.0) == \
        expected_seconds(solid, "", 8) + expected_seconds(kinds["photoreactor"], "", 8) + 3 * 600.0
