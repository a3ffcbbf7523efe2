"""The lab calls a human (issue 34, item 6): an e-stop, a station in fault or offline, a robot
stopped with a reason, a stock running low, a campaign ended, sent to a webhook (JSON POST with a
Slack-compatible body) and by e-mail (SMTP with STARTTLS and login).

One file sets the channels (the console's notify_file parameter):

    webhook:
      url: https://hooks.slack.com/services/...     # or any endpoint that takes a JSON POST
    email:
      host: smtp.example.org
      port: 587
      user: lab-robot
      password_file: /etc/lab/smtp_password          # the password is never in this file
      from: lab-robot@example.org
      to: [chemist@example.org]
      cafile: ""                                     # a CA of your own ('' = the system's)
    kinds: [estop, station, robot, stock, campaign]  # which events call (default: all of these)
    retries: 4                                       # attempts after the first, 1 s, 2 s, 4 s ... apart

Each channel sends from a thread of its own through a queue: a channel that is down delays
neither the lab nor the other channel. Each notice sent or given up is recorded in the campaign
store's audit trail (via 'notify:webhook' / 'notify:email'); a failure is logged and never stops
the lab.
"""

from __future__ import annotations

import json
import queue
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

from lab.core import yamlfile
from lab.core.errors import ConfigError

KINDS = ("estop", "station", "robot", "stock", "campaign")
#: wall s one attempt may take (a connection, a TLS handshake, an answer)
ATTEMPT_TIMEOUT = 10.0


def load(path: Path) -> dict[str, Any]:
    """The notify file, checked; ConfigError naming the file and key."""
    try:
        doc = yamlfile.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"webhook", "email", "kinds", "retries"}:
        raise ConfigError(f"{path}: keys are webhook, email, kinds, retries")
    hook = doc.get("webhook")
    if hook is not None and (not isinstance(hook, dict) or not str(hook.get("url", "")).startswith(("http://",
                                                                                                     "https://"))):
        raise ConfigError(f"{path}: webhook.url: an http:// or https:// address")
    mail = doc.get("email")
    if mail is not None:
        need = {"host", "from", "to"}
        if not isinstance(mail, dict) or need - set(mail):
            raise ConfigError(f"{path}: email: needs host, from and to")
        if "password" in mail:
            raise ConfigError(f"{path}: email.password: not in this file; password_file names a file holding it")
        if isinstance(mail["to"], str):
            mail["to"] = [mail["to"]]
    kinds = doc.get("kinds", list(KINDS))
    if not isinstance(kinds, list) or set(kinds) - set(KINDS):
        raise ConfigError(f"{path}: kinds: a list of {', '.join(KINDS)}")
    retries = doc.get("retries", 4)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ConfigError(f"{path}: retries: a whole number from 0 to 10")
    return {"webhook": hook, "email": mail, "kinds": kinds, "retries": retries}


class Channel:
    """One way of calling: a queue and the thread that empties it, trying each notice again after
    1, 2, 4 ... s up to `retries` times."""

    def __init__(self, name: str, send: Any, retries: int, record: Any, backoff: float = 1.0) -> None:
        self.name, self._send, self.retries, self._record, self.backoff = name, send, retries, record, backoff
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"notify-{name}", daemon=True)
        self._thread.start()

    def put(self, notice: dict[str, Any]) -> None:
        self._queue.put(notice)

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (notice := self._queue.get()) is not None:
            error = ""
            for attempt in range(self.retries + 1):
                try:
                    self._send(notice)
                    self._record(self.name, notice, f"sent (attempt {attempt + 1})", True)
                    break
                except (OSError, smtplib.SMTPException, urllib.error.URLError, ValueError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    if attempt < self.retries:
                        time.sleep(self.backoff * 2 ** attempt)
            else:
                self._record(self.name, notice, f"not sent after {self.retries + 1} attempts: {error}", False)


class Notifier:
    def __init__(self, settings: dict[str, Any], database: Path, log: Any = None, backoff: float = 1.0) -> None:
        self.settings, self.database, self.log = settings, database, log
        self.lab = socket.gethostname()
        self.channels: list[Channel] = []
        if settings.get("webhook"):
            self.channels.append(Channel("webhook", self._post, settings["retries"], self._record, backoff))
        if settings.get("email"):
            self.channels.append(Channel("email", self._mail, settings["retries"], self._record, backoff))

    @classmethod
    def from_file(cls, path: Path, database: Path, log: Any = None) -> Notifier:
        return cls(load(path), database, log)

    def on_event(self, event: Any) -> None:
        """A lab event (lab.console.lab_link.Event): queued for every channel when it calls a human: an
        error (the e-stop, a station in fault or offline, a robot stopped), a stock running low, a
        campaign's end. What is back to normal (a release, a station back) calls nobody."""
        if event.kind not in self.settings["kinds"]:
            return
        if event.level != "error" and event.kind not in ("stock", "campaign"):
            return
        notice = {"text": f"[lab {self.lab}] {event.text}", "kind": event.kind, "level": event.level,
                  "key": event.key, "time": event.time, "lab": self.lab}
        for channel in self.channels:
            channel.put(notice)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def _record(self, channel: str, notice: dict[str, Any], outcome: str, ok: bool) -> None:
        from lab.core.campaign.store import record_command

        if not ok and self.log is not None:
            self.log.error(f"notice by {channel} not sent: {notice['text']}: {outcome}")
        record_command(self.database, "the lab", f"notify:{channel}", "notice", {"text": notice["text"]}, outcome, ok,
                       self.log)

    def _post(self, notice: dict[str, Any]) -> None:
        request = urllib.request.Request(self.settings["webhook"]["url"], data=json.dumps(notice).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=ATTEMPT_TIMEOUT) as response:
            if not 200 <= response.status < 300:
                raise ValueError(f"HTTP {response.status}")

    def _mail(self, notice: dict[str, Any]) -> None:
        mail = self.settings["email"]
        message = EmailMessage()
        message["Subject"] = notice["text"][:120]
        message["From"], message["To"] = mail["from"], ", ".join(mail["to"])
        message.set_content(f"{notice['text']}\n\nkind: {notice['kind']}\nwhen: "
                            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(notice['time']))}\n")
        context = ssl.create_default_context(cafile=mail.get("cafile") or None)
        with smtplib.SMTP(mail["host"], int(mail.get("port", 587)), timeout=ATTEMPT_TIMEOUT) as smtp:
            smtp.starttls(context=context)  # never in clear: a server without STARTTLS raises here
            if mail.get("user"):
                smtp.login(mail["user"], Path(mail["password_file"]).read_text().strip())
            smtp.send_message(message)
