"""`lab campaign list` and `lab campaign status` say what happened: measured and failed apart, a
cancelled campaign as cancelled (its experiments in flight are not 'running': they run again on
resume)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.app.campaign_info import campaign_status, list_campaigns
from lab.core.campaign.closed_loop import CampaignRunner
from lab.core.campaign.formulation import MeasurementData
from lab.core.campaign.space import campaign_path, load_campaign
from lab.core.campaign.store import CampaignStore

PHOTO = load_campaign(campaign_path("photocatalysis"))


def test_a_campaign_with_nothing_measured_and_a_cancelled_one_are_shown_as_they_are(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "campaigns.db"
    with CampaignStore.open(db) as store:
        failed = CampaignRunner.start(store, PHOTO, budget=16, batch_size=16, seed=1)
        batch = failed.next_batch()
        assert batch is not None
        failed.record(batch.batch_id, [MeasurementData.failed(e.sample_id, "photoreactor: restarted")
                                       for e in batch.experiments])
        again = failed.next_batch()  # the equipment's failures are made again once (max_attempts 2)
        assert again is not None and [e.sample_id for e in again.experiments] == \
            [f"{e.sample_id}-a2" for e in batch.experiments]
        failed.record(again.batch_id, [MeasurementData.failed(e.sample_id, "e-stop") for e in again.experiments])
        cancelled = CampaignRunner.start(store, PHOTO, budget=32, batch_size=16, seed=2)
        assert cancelled.next_batch() is not None
        cancelled.cancel()
    assert list_campaigns(db) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines[failed.campaign_id].split()[2:] == ["0", "measured", "16", "failed", "of", "16", "done"]
    assert lines[cancelled.campaign_id].split()[2:] == ["0", "measured", "0", "failed", "of", "32", "cancelled"]
    assert campaign_status(db, cancelled.campaign_id) == 0
    out = capsys.readouterr().out
    assert (f"{cancelled.campaign_id}: cancelled; 0 measured, 0 failed, 16 to run again on "
            f"`lab campaign resume {cancelled.campaign_id}`, of 32") in out, out
    assert "running" not in out
    assert campaign_status(db, failed.campaign_id) == 0
    out = capsys.readouterr().out
    assert f"{failed.campaign_id}: done; 0 measured, 16 failed, 16 made again, of 16;" in out, out
    assert "  experiment 0 (failed, attempt 2, e0000-a2): earlier e0000: photoreactor: restarted" in out, out


def test_the_progress_line_turns_the_simulated_time_left_into_wall_time_at_the_clock_s_speed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from lab.app.session import Pace

    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    pace = Pace(span=3.0)
    assert pace.left(0.0, 20000.0) == "left: estimating"  # the clock not yet seen to run
    now[0] = 101.0
    assert pace.left(500.0, 20000.0) == "left: estimating"  # seen for 1 s only
    now[0] = 104.0
    # 2000 simulated s in 4 wall s: 500x; 18000 simulated s left take 36 wall s
    assert pace.left(2000.0, 18000.0) == "left ~36 s wall (5.0 h simulated at 500x)"
    assert pace.left(2000.0, float("nan")) == "left: estimating"  # the planner has no figure
    now[0] = 110.0
    assert pace.left(2000.0, 18000.0) == "left ~90 s wall (5.0 h simulated at 200x)"  # the clock paused (an e-stop)
    now[0] = 111.0
    assert pace.left(10.0, 18000.0) == "left: estimating"  # a restarted planner counts from 0: seen afresh


def test_time_left_comes_from_the_steps_still_to_run() -> None:
    from lab.core.campaign.eta import BatchTimes, seconds_left

    # photocatalysis' four steps for 16 samples (config/station_processes.yaml), a move 100 s
    times = BatchTimes([1440.0, 1840.0, 3600.0, 3840.0], 100.0)
    chain = 10720.0 + 500.0
    gc = 3840.0  # the bottleneck: the gas chromatograph
    assert times.chain == chain
    # nothing started, 32 to run, 2 in flight: the second batch one stride (the bottleneck
    # against the chain shared by two: 5610 s) after the first
    assert seconds_left(times, 2, 16, 32, []) == chain + chain / 2
    # with 4 in flight the bottleneck sets the stride
    assert seconds_left(times, 4, 16, 48, []) == chain + 2 * gc
    # two started together: the second is done one bottleneck step after the first
    assert seconds_left(times, 2, 16, 0, [1000.0, 1000.0]) == chain - 1000.0 + gc
    # both in flight, 4000 and 1000 s in; 16 to start: it starts when the older one is done, and
    # is done a bottleneck step after the younger at least
    assert seconds_left(times, 2, 16, 16, [4000.0, 1000.0]) == max((chain - 4000.0) + chain, chain - 1000.0 + gc)
    # the last batch running: what is left of it; past its expected time: 0, not negative
    assert seconds_left(times, 2, 16, 0, [10000.0]) == chain - 10000.0
    assert seconds_left(times, 2, 16, 0, [20000.0]) == 0.0
    assert seconds_left(times, 2, 16, 0, []) == 0.0
    # ... unless the batch before it finished less than a bottleneck step ago: it is behind it
    assert seconds_left(times, 2, 16, 0, [20000.0], since_last_finish=840.0) == gc - 840.0
    # finished batches' mean duration replaces the expected chain (moves and queues as they are)
    assert seconds_left(times, 2, 16, 0, [1000.0], finished_durations=[9000.0, 11000.0]) == 9000.0
    # a part batch counts as a batch
    assert seconds_left(times, 2, 16, 1, []) == chain


def test_a_running_campaign_shows_who_started_it_and_whether_anyone_follows_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    db = tmp_path / "campaigns.db"
    with CampaignStore.open(db) as store:
        watched = CampaignRunner.start(store, PHOTO, budget=32, batch_size=16, seed=1, started_by="ada@lab1")
        store.touch(watched.campaign_id, following=1)
        orphan = CampaignRunner.start(store, PHOTO, budget=32, batch_size=16, seed=2, started_by="bob@lab2")
        store.touch(orphan.campaign_id, following=0)  # its client went away
        unsaid = CampaignRunner.start(store, PHOTO, budget=32, batch_size=16, seed=3)
        store.touch(unsaid.campaign_id)  # a planner that does not say (an older one)
        left = CampaignRunner.start(store, PHOTO, budget=32, batch_size=16, seed=4, started_by="cy@lab3")
        with store.transaction() as sql:  # its planner last said it ran it 10 min ago
            sql.execute("UPDATE campaigns SET active = ? WHERE id = ?", (time.time() - 600, left.campaign_id))
    assert list_campaigns(db) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines[watched.campaign_id].endswith("of 32   running, started by ada@lab1"), lines
    assert lines[orphan.campaign_id].endswith(
        f"running, started by bob@lab2; no client follows it (it runs on to its budget: "
        f"`lab campaign cancel {orphan.campaign_id}` stops it)"), lines
    assert lines[unsaid.campaign_id].endswith("of 32   running"), lines
    assert lines[left.campaign_id].endswith(
        f"running, started by cy@lab3; no planner has run it for 10 min: `lab campaign resume {left.campaign_id}` "
        f"continues it, `lab campaign cancel {left.campaign_id}` ends it")
    assert campaign_status(db, orphan.campaign_id) == 0
    assert "running, started by bob@lab2; no client follows it" in capsys.readouterr().out


def test_a_campaign_counts_as_followed_while_a_client_that_sent_a_goal_is_in_the_graph() -> None:
    """The planner's count behind 'no client follows it': a goal whose client node left the graph
    (its process killed: DDS drops it after the participant's lease) no longer counts; a goal that
    names no client (ros2 action send_goal) counts while it is active."""
    from types import SimpleNamespace

    pytest.importorskip("rclpy")
    from lab.nodes.planner import following

    def goal(client: str, active: bool = True) -> SimpleNamespace:
        return SimpleNamespace(is_active=active, request=SimpleNamespace(client_node=client))

    present = {"/lab_commander_12", "/planner"}
    assert following([goal("/lab_commander_12")], present) == 1
    assert following([goal("/lab_commander_99")], present) == 0  # its client gone
    assert following([goal("")], present) == 1
    assert following([goal("/lab_commander_12", active=False)], present) == 0
    assert following([goal("/lab_commander_99"), goal("/lab_commander_12")], present) == 1
    # a client not discovered yet: counts while its goal is young and its node was never seen;
    # once seen and gone, it does not
    young = goal("/lab_commander_77")
    assert following([young], present, seen=set(), young={id(young)}) == 1
    assert following([young], present, seen={"/lab_commander_77"}, young={id(young)}) == 0
    assert following([young], present, seen=set(), young=set()) == 0


def test_the_audit_trail_keeps_every_command_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.app.cli import main
    from lab.core.campaign.store import record_command

    db = tmp_path / "campaigns.db"
    record_command(db, "ada (uid 1000, pid 7, lab estop on lab1)", "fast path (lab estop)", "estop",
                   {"reason": "spill"}, "emergency stop by ada", True)
    record_command(db, "safety-officer (as said over DDS)", "DDS service /safety/release", "estop_release",
                   {"reason": ""}, "release is not offered over DDS", False)
    with CampaignStore.open(db) as store:
        rows = store.commands()
    assert [(r[1], r[3], r[6]) for r in rows] == [("ada (uid 1000, pid 7, lab estop on lab1)", "estop", True),
                                                   ("safety-officer (as said over DDS)", "estop_release", False)]
    assert main(["audit", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "ok       estop" in out[0] and "by ada (uid 1000" in out[0] and '{"reason": "spill"}' in out[0]
    assert "refused  estop_release" in out[1] and "via DDS service /safety/release" in out[1]
    # a store that cannot be written does not stop the command: it is logged
    logged: list[str] = []
    (tmp_path / "a_file").write_text("")
    record_command(tmp_path / "a_file" / "campaigns.db", "x", "y", "z", {}, "", True, SimpleLog(logged))
    assert logged and "not recorded" in logged[0]


class SimpleLog:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def error(self, text: str) -> None:
        self.into.append(text)


def test_an_operators_own_campaign_file_goes_into_the_campaigns_folder_checked(tmp_path: Path) -> None:
    """`lab campaign run --file`: a goal never carries a path (issue 33); the operator's file is
    checked as the planner checks it and put in its folder, or refused with the reason and nothing
    written."""
    from lab.app.campaign_info import install_campaign_file
    from lab.core.errors import LabError

    folder = tmp_path / "campaigns"
    mine = tmp_path / "my_screen.yaml"
    mine.write_text(campaign_path("photocatalysis").read_text())
    assert install_campaign_file(mine, folder) == "my_screen"
    assert (folder / "my_screen.yaml").read_bytes() == mine.read_bytes()
    assert install_campaign_file(mine, folder) == "my_screen"  # the same file again: fine
    mine.write_text(mine.read_text() + "\n# changed\n")
    with pytest.raises(LabError, match="has another my_screen.yaml"):
        install_campaign_file(mine, folder)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\n")
    with pytest.raises(LabError):
        install_campaign_file(broken, folder)
    assert not (folder / "broken.yaml").exists()
    odd = tmp_path / "my screen.yaml"
    odd.write_text(campaign_path("photocatalysis").read_text())
    with pytest.raises(LabError, match="is no campaign name"):
        install_campaign_file(odd, folder)
    with pytest.raises(LabError, match="no such file"):
        install_campaign_file(tmp_path / "absent.yaml", folder)


def test_commands_recorded_at_once_into_a_new_store_are_all_kept(tmp_path: Path) -> None:
    """Four writers opening a store that does not exist yet (the planner, the console, two notice
    channels): before the fix about half such rounds lost a row ('database is locked' while one
    switched the new file to WAL, or 'duplicate column name' from two adding the same column)."""
    import threading

    from lab.core.campaign.store import record_command

    errors: list[str] = []

    class Log:
        def error(self, text: str) -> None:
            errors.append(text)

    for round_ in range(10):
        db = tmp_path / f"round{round_}.db"
        writers = [threading.Thread(target=record_command, args=(db, f"w{k}", "test", "c", {}, "ok", True, Log()))
                   for k in range(4)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        with CampaignStore.open(db) as store:
            assert sorted(who for _, who, *_ in store.commands()) == ["w0", "w1", "w2", "w3"], errors
    assert errors == []


def test_lab_campaign_approve_edits_and_drops_as_the_console_does_and_is_audited(tmp_path, capsys) -> None:
    from dataclasses import replace

    from lab.app.cli import main
    from lab.core.campaign.closed_loop import CampaignRunner
    from lab.core.campaign.space import campaign_path, load_campaign
    from lab.core.campaign.store import CampaignStore

    config = load_campaign(campaign_path("photocatalysis"))
    config = replace(config, approval=True, source={**config.source, "approval": True})
    db = tmp_path / "campaigns.db"
    with CampaignStore.open(db) as store:
        runner = CampaignRunner.start(store, config, budget=8, batch_size=8, seed=1)
        batch = runner.next_batch()
        first, second = [e for e in batch.experiments if not e.is_control][:2]
    dim = config.space.dimensions[0]
    assert main(["campaign", "approve", runner.campaign_id, "--db", str(db),
                 "--set", f"{first.index}:{dim.name}={dim.high * 3}"]) == 1
    assert "is outside" in capsys.readouterr().err
    assert main(["campaign", "approve", runner.campaign_id, "--db", str(db), "--drop", str(second.index),
                 "--set", f"{first.index}:{dim.name}={dim.low}"]) == 0
    assert "1 dropped, 1 changed" in capsys.readouterr().out
    with CampaignStore.open(db) as store:
        record = next(r for r in store.experiments(runner.campaign_id) if r.index == first.index)
        trail = [(command, ok) for _, _, _, command, _, _, ok in store.commands()]
    assert record.point[dim.name] == dim.low and record.chosen_by and record.state == "running"
    assert trail == [("approve_batch", False), ("approve_batch", True)]


def test_a_campaign_left_running_is_cancelled_in_the_record_only_when_no_planner_runs_it(tmp_path: Path) -> None:
    """`lab campaign cancel` with no planner up (cancel_left_running): a campaign no planner has
    run for SILENT_AFTER s is marked cancelled, so the next planner does not take it up by itself;
    one a planner ran just now, one already ended and an unknown id are refused with the reason
    and nothing changed; each attempt is in the audit trail."""
    import time

    from lab.app.campaign_info import SILENT_AFTER, cancel_left_running

    db = tmp_path / "campaigns.db"
    with CampaignStore.open(db) as store:
        left = CampaignRunner.start(store, PHOTO, budget=32, batch_size=16, seed=4)
        live = CampaignRunner.start(store, PHOTO, budget=32, batch_size=16, seed=5)
        store.touch(live.campaign_id)  # its planner said so just now
        with store.transaction() as sql:
            sql.execute("UPDATE campaigns SET active = ? WHERE id = ?", (time.time() - 2 * SILENT_AFTER,
                                                                          left.campaign_id))
    ok, message = cancel_left_running(db, left.campaign_id, "ada@lab1")
    assert ok and "marked cancelled" in message and f"lab campaign resume {left.campaign_id}" in message
    ok, message = cancel_left_running(db, live.campaign_id, "ada@lab1")
    assert not ok and "a planner ran campaign" in message, message
    ok, message = cancel_left_running(db, left.campaign_id, "ada@lab1")
    assert not ok and "is cancelled, not running" in message, message
    ok, message = cancel_left_running(db, "photocatalysis-nope", "ada@lab1")
    assert not ok and "no campaign photocatalysis-nope" in message, message
    assert cancel_left_running(tmp_path / "none.db", left.campaign_id, "ada@lab1")[0] is False
    assert not (tmp_path / "none.db").exists()
    with CampaignStore.open(db) as store:
        assert store.campaign_info(left.campaign_id).status == "cancelled"
        assert store.campaign_info(live.campaign_id).status == "running"
        assert store.left_running()[0][0] == live.campaign_id and len(store.left_running()) == 1
        trail = [(who, command, ok) for _, who, _, command, _, _, ok in store.commands()]
    assert trail == [("ada@lab1", "cancel_campaign", True)] + [("ada@lab1", "cancel_campaign", False)] * 3
