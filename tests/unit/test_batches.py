"""The lab manager's record of batches in flight: which batch a goal asks for, the record in the
campaign database, and a batch's state surviving a round trip through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ros_available

from lab.core.campaign.store import CampaignStore
from lab.core.errors import InvalidGoal
from lab.core.operations.batches import same_batch


def test_a_goal_asks_for_a_batch_by_its_id_or_by_the_same_samples_of_the_same_campaign() -> None:
    samples = ["e0008", "e0009", "e0010"]
    assert same_batch("camp-1/b003", samples, "camp-1/b003", [])
    assert same_batch("camp-1/b003", samples, "camp-1/b005", list(reversed(samples)))  # resumed: new batch id
    assert not same_batch("camp-1/b003", samples, "camp-2/b003x", samples)   # another campaign
    assert not same_batch("camp-1/b003", samples, "camp-1/b005", samples[:2])  # other samples
    assert not same_batch("batch-1", ["v0"], "batch-2", ["v0"])  # no campaign: ids alone
    assert not same_batch("", ["v0"], "", ["v0"])
    assert not same_batch("camp-1/b003", samples, "camp-1/b004", [])


def test_the_record_keeps_the_last_state_of_each_batch_until_dropped(tmp_path: Path) -> None:
    with CampaignStore.open(tmp_path / "c.db") as store:
        store.save_lab_batch("b1#aa", "b1", {"step": 0})
        store.save_lab_batch("b2#bb", "b2", {"step": 1})
        store.save_lab_batch("b1#aa", "b1", {"step": 2})
    with CampaignStore.open(tmp_path / "c.db") as store:  # another process, later
        assert store.lab_batches() == {"b1#aa": {"step": 2}, "b2#bb": {"step": 1}}
        ages = store.lab_batch_ages()
        assert set(ages) == {"b1#aa", "b2#bb"} and all(0.0 <= age < 60.0 for age in ages.values())
        store.drop_lab_batch("b1#aa")
        assert list(store.lab_batches()) == ["b2#bb"]


def test_a_batch_in_flight_comes_back_from_its_record_as_it_was() -> None:
    from lab.core.campaign.formulation import MeasurementData
    from lab.core.operations.scheduler import Result, Run, Sample

    data = MeasurementData("e0001", True, {"h2": 3.5}, {"h2": 0.2}, {"h2": "umol/h"}, station="gas_chromatograph",
                           curves=[{"x_label": "t", "x_unit": "s", "y_label": "F", "y_unit": "N",
                                    "x": [0.0], "y": [1.0]}])
    measured = Sample("e0001", "vial", {"P10": (2.0, "mg"), "water": (5.0, "mL")}, {"P10": (2.04, "mg")}, data)
    failed = Sample("e0002", "", {}, failure="photoreactor: lamp failed")
    run = Run("camp/b001#abc", "camp/b001", "photocatalysis", [measured, failed])
    run.carrier, run.home, run.location, run.held, run.step = \
        "rack_2", "rack_storage/slot2", "photoreactor/slot1", "photoreactor", 2
    run.station_goal = ("photoreactor", "00ff" * 8)
    back = Run.from_state(run.key, json.loads(json.dumps(run.state())))  # the record is JSON in the store
    assert back.state() == run.state()
    assert (back.carrier, back.step, back.station_goal) == ("rack_2", 2, ("photoreactor", "00ff" * 8))
    one, two = back.samples
    assert one.amounts() == {"P10": (2.04, "mg"), "water": (5.0, "mL")} and one.measurement == data
    assert two.failure == "photoreactor: lamp failed" and two.measurement is None
    run.result = Result(True, "1 of 2 samples measured", 3600.0)
    assert Run.from_state(run.key, run.state()).result == run.result
    with pytest.raises((KeyError, TypeError, ValueError)):
        Run.from_state("x", {"batch_id": "x", "workflow": "w", "samples": [{"id": "a"}]})


@pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")
def test_the_node_keeps_a_measurement_in_the_record_as_the_station_sent_it() -> None:
    from lab.ros.conversions import batch_line, requested_sample, sample_report
    from lab_interfaces.msg import Curve, Formulation, Measurement

    sent = Measurement(sample_id="e0001", valid=True, objectives=["h2"], values=[3.5], uncertainties=[0.2],
                       units=["umol/h"], station="photoreactor",
                       curves=[Curve(x_label="t", x_unit="s", y_label="F", y_unit="N", x=[0.0, 1.0], y=[0.0, 2.0])],
                       as_dispensed=Formulation(components=["P10"], amounts=[2.04], units=["mg"]))
    sample = requested_sample(Formulation(sample_id="e0001", specimen_kind="vial", components=["P10", "water"],
                                          amounts=[2.0, 5.0], units=["mg", "mL"]))
    seen = sample_report(sent)
    assert seen.dispensed == {"P10": (2.04, "mg")} and seen.measurement is not None
    sample.dispensed.update(seen.dispensed)
    sample.measurement = seen.measurement
    line = batch_line(sample)  # the batch result's line: as dispensed, requested where not dispensed
    line.as_dispensed.sample_id = sent.as_dispensed.sample_id = ""
    # what the station measured reaches the planner as it sent it (as dispensed: the batch's view)
    for field in ("sample_id", "valid", "objectives", "values", "uncertainties", "units", "station", "curves"):
        assert getattr(line, field) == getattr(sent, field), field
    assert list(line.as_dispensed.components) == ["P10", "water"]
    assert list(line.as_dispensed.amounts) == [2.04, 5.0] and line.as_dispensed.specimen_kind == "vial"
    sample.failure = "gc: failed"
    assert not batch_line(sample).valid and batch_line(sample).failure_reason == "gc: failed"
    with pytest.raises(InvalidGoal, match="2 components but 1 amounts"):
        requested_sample(Formulation(sample_id="e9", components=["P10", "water"], amounts=[2.0]))


def test_a_step_runs_where_its_carrier_is_held_else_is_reserved_rerouted_or_tried_again() -> None:
    from lab.core.operations.batches import ACQUIRE, AGAIN, HELD, station_choice

    two = ["gc_1", "gc_2"]
    # a batch taken on again after a restart, its rack already in gc_2 (reserved): runs there
    assert station_choice(two, set(), None, "gc_2", in_held_slot=True) == (HELD, ("gc_2",))
    # held, but the carrier is not in its slot (the record a step behind): reserved as usual
    assert station_choice(two, set(), None, "gc_2", in_held_slot=False) == (ACQUIRE, ("gc_1", "gc_2"))
    # held station of another kind (the carrier comes from the dispenser): any of the kind
    assert station_choice(two, set(), None, "liquid_dispenser", in_held_slot=True) == (ACQUIRE, ("gc_1", "gc_2"))
    # gc_1 failed: rerouted to gc_2; both failed: gc_2 again (the last one tried)
    assert station_choice(two, {"gc_1"}, "gc_1", "gc_1", in_held_slot=True) == (ACQUIRE, ("gc_2",))
    assert station_choice(two, {"gc_1", "gc_2"}, "gc_2", "gc_2", in_held_slot=True) == (AGAIN, ("gc_2",))
    # a lone station of its kind: the retry is on it again
    assert station_choice(["photoreactor"], {"photoreactor"}, "photoreactor", "photoreactor",
                          in_held_slot=True) == (AGAIN, ("photoreactor",))


def test_a_recorded_station_goal_is_run_again_failed_with_the_reason_or_merged() -> None:
    from lab.core.operations.batches import ANSWERED, NO_RECORD, RERUN, SPOILED, recorded_goal_outcome

    # the lab manager died between recording the goal and the station accepting it
    assert recorded_goal_outcome(accepted=False, unknown=True, interrupted="") == RERUN
    # the station was restarted mid-process and reports it
    assert recorded_goal_outcome(accepted=True, unknown=True, interrupted="illuminate ... interrupted") == SPOILED
    # ... before it had acted on the samples: the step runs again on them
    assert recorded_goal_outcome(accepted=True, unknown=True, interrupted="illuminate ... before it acted",
                                 untouched=True) == RERUN
    # the restart happened while the successor asked (the goal lost, not unknown)
    assert recorded_goal_outcome(accepted=True, unknown=False, interrupted="illuminate ... interrupted") == SPOILED
    # accepted, and the station knows nothing of it: failed, the reason says so
    assert recorded_goal_outcome(accepted=True, unknown=True, interrupted="") == NO_RECORD
    # answered (a result to merge, or a failure with its message)
    assert recorded_goal_outcome(accepted=True, unknown=False, interrupted="") == ANSWERED
    assert recorded_goal_outcome(accepted=False, unknown=False, interrupted="") == ANSWERED  # acceptance unrecorded
