"""The lab calls a human (lab.console.notify) against a local webhook endpoint and a local SMTP
server that wants STARTTLS and a login: what calls and what does not, each notice sent once and
recorded, a dead endpoint delays neither the lab nor the other channel, a malformed file is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from notices import Mailbox, free_port, serve_hook

from lab.console.lab_link import Event, status_changes
from lab.console.notify import Notifier, load
from lab.core.campaign.store import CampaignStore
from lab.core.errors import ConfigError


def _settings(tmp_path: Path, url: str, mailbox: Mailbox | None = None, retries: int = 2) -> dict:
    doc: dict = {"webhook": {"url": url}, "retries": retries}
    if mailbox is not None:
        (tmp_path / "pw").write_text("mail-secret\n")
        doc["email"] = {"host": "127.0.0.1", "port": mailbox.port, "user": "lab", "password_file": str(tmp_path / "pw"),
                        "from": "lab@localhost", "to": "chemist@localhost", "cafile": str(mailbox.cert)}
    path = tmp_path / "notify.yaml"
    path.write_text(json.dumps(doc))
    return load(path)


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within time"
        time.sleep(0.02)


def test_an_estop_and_a_station_fault_each_arrive_once_by_webhook_and_email(tmp_path: Path) -> None:
    server, received = serve_hook()
    mailbox = Mailbox(tmp_path)
    db = tmp_path / "campaigns.db"
    notifier = Notifier(_settings(tmp_path, f"http://127.0.0.1:{server.server_port}/", mailbox), db)
    try:
        for event in (Event(time.time(), "estop", "EMERGENCY STOP by ada: spill", "error", "estop"),
                      Event(time.time(), "estop", "e-stop released by sue", "warning", "estop"),      # calls nobody
                      Event(time.time(), "mode", "lab paused (was running)", "info", "mode"),          # nor this
                      Event(time.time(), "station", "photoreactor fault: lamp", "error", "station:photoreactor"),
                      Event(time.time(), "station", "photoreactor back (idle)", "warning", "station:photoreactor")):
            notifier.on_event(event)
        _wait(lambda: len(received) == 2 and len(mailbox.messages) == 2)
        time.sleep(0.5)
        assert [n["kind"] for n in received] == ["estop", "station"] and len(mailbox.messages) == 2
        assert received[0]["text"].endswith("EMERGENCY STOP by ada: spill")  # Slack's body: a text field
        assert "Subject: [lab " in mailbox.messages[1] and "photoreactor fault: lamp" in mailbox.messages[1]
        assert mailbox.logins == [b"lab", b"lab"]
        with CampaignStore.open(db) as store:
            _wait(lambda: len(store.commands()) == 4)
            trail = store.commands()
        assert sorted(via for _, _, via, *_ in trail) == ["notify:email"] * 2 + ["notify:webhook"] * 2
        assert all(ok for *_, ok in trail)
    finally:
        notifier.close()
        mailbox.controller.stop()
        server.shutdown()


def test_a_dead_endpoint_delays_neither_the_lab_nor_the_other_channel(tmp_path: Path) -> None:
    mailbox = Mailbox(tmp_path)
    db = tmp_path / "campaigns.db"
    dead = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    notifier = Notifier(_settings(tmp_path, dead, mailbox, retries=2), db, backoff=0.2)
    try:
        started = time.monotonic()
        notifier.on_event(Event(time.time(), "estop", "EMERGENCY STOP by ada", "error", "estop"))
        assert time.monotonic() - started < 0.05  # queued, not sent on the caller's thread
        _wait(lambda: len(mailbox.messages) == 1, 5.0)
        with CampaignStore.open(db) as store:
            # Both records: the mailbox holds the message before the SMTP session ends and the email
            # channel records it, so under load the webhook's give-up can be written first.
            _wait(lambda: {via for _, _, via, *_ in store.commands()} == {"notify:email", "notify:webhook"}, 10.0)
            trail = {via: (outcome, ok) for _, _, via, _, _, outcome, ok in store.commands()}
        assert trail["notify:email"][1] and not trail["notify:webhook"][1]
        assert "not sent after 3 attempts" in trail["notify:webhook"][0], trail
    finally:
        notifier.close()
        mailbox.controller.stop()


def test_a_malformed_notify_file_is_refused_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "notify.yaml"
    for doc, key in (({"webhook": {"url": "ftp://x"}}, "webhook.url"),
                     ({"email": {"host": "h", "from": "a@b", "to": "c@d", "password": "x"}}, "email.password"),
                     ({"email": {"host": "h"}}, "email: needs"),
                     ({"kinds": ["estop", "everything"]}, "kinds"),
                     ({"retries": 99}, "retries"),
                     ({"slack": {}}, "keys are")):
        path.write_text(json.dumps(doc))
        with pytest.raises(ConfigError, match=key):
            load(path)


def test_status_changes_name_faults_low_stocks_and_stopped_robots_once() -> None:
    def status(state: str, level: float, robot: str = "idle") -> dict:
        return {"mode": "running", "stations": [{"name": "solid_dispenser", "state": state, "message": "jammed",
                                                 "stocks": [{"name": "P10", "level": level, "capacity": 10.0,
                                                             "unit": "g"}]}],
                "robots": [{"name": "robot1", "state": robot, "message": "bumper"}]}

    assert status_changes(None, status("idle", 9.0)) == []
    changes = status_changes(status("idle", 9.0), status("fault", 1.0, "stopped"))
    assert [(kind, key) for kind, key, _, _ in changes] == [
        ("station", "station:solid_dispenser"), ("stock", "stock:solid_dispenser/P10"), ("robot", "robot:robot1")]
    assert status_changes(status("fault", 1.0, "stopped"), status("fault", 0.5, "stopped")) == []  # said once
