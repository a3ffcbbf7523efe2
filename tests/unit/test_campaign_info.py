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


def test_the_progress_line_estimates_wall_time_from_the_pace_it_has_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from lab.app.session import Pace

    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    pace = Pace()
    assert pace.left(0, 32) == "left: estimating"  # 0 of 32 with 32 running: no pace yet
    now[0] = 130.0
    assert pace.left(0, 32) == "left: estimating"
    now[0] = 160.0
    assert pace.left(16, 32) == "left ~60 s wall"  # 16 in 60 wall s: 16 more take 60 s
