"""Sign-in, sessions and CSRF for the console (issue 34, item 3).

- A session is a cookie holding {account name, CSRF token}, signed with the console's secret
  (itsdangerous, HMAC-SHA1 over a timestamped payload) and refused once older than
  `session_hours`; HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
  it), Secure when served over HTTPS. The account's role is read from the accounts file on every
  request, so a role changed or an account removed counts at once.
- Every state-changing request carries the session's CSRF token in the X-CSRF-Token header
  (the page reads it from /api/me); a request without it, or with another, is refused. Sign-in
  itself has no session yet: it must come from the console's own origin (Origin header).
- A failed sign-in is answered only after a delay that doubles with each failure for that name
  and for that address (1 s, 2 s, 4 s ... at most 30 s) and is forgotten after 15 minutes
  without failures: guessing costs time, a typo costs a second.
- The secret is made on first start (32 random bytes, a 0600 file beside the accounts), never
  committed, never sent; removing it signs everyone out.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

COOKIE = "lab_session"
CSRF_HEADER = "X-CSRF-Token"
FAIL_FORGET = 900.0
FAIL_MAX_DELAY = 30.0


def load_secret(path: Path) -> bytes:
    """The console's signing secret, made (0600) when there is none."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(32))
    return path.read_bytes()


class Sessions:
    def __init__(self, secret: bytes, hours: float) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="lab-console-session")
        self.max_age = int(hours * 3600)

    def issue(self, name: str) -> tuple[str, str]:
        """(cookie value, CSRF token) of a new session of `name`."""
        csrf = secrets.token_urlsafe(24)
        return self._serializer.dumps({"u": name, "c": csrf}), csrf

    def read(self, cookie: str | None) -> dict[str, Any] | None:
        """{'u': name, 'c': csrf} of a valid, unexpired session cookie; None otherwise."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except (SignatureExpired, BadSignature):
            return None
        return data if isinstance(data, dict) and {"u", "c"} <= set(data) else None


class Throttle:
    """Delays after failed sign-ins, per account name and per client address."""

    def __init__(self, base: float = 1.0) -> None:
        self.base = base
        self._fails: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def delay(self, *keys: str) -> float:
        """s to wait before answering a failed sign-in of these keys (and count the failure)."""
        now = time.monotonic()
        worst = 0
        with self._lock:
            for key in keys:
                count, last = self._fails.get(key, (0, now))
                count = 0 if now - last > FAIL_FORGET else count
                self._fails[key] = (count + 1, now)
                worst = max(worst, count + 1)
        return min(FAIL_MAX_DELAY, self.base * 2 ** (worst - 1))

    def failures(self, key: str) -> int:
        with self._lock:
            count, last = self._fails.get(key, (0, 0.0))
        return 0 if time.monotonic() - last > FAIL_FORGET else count

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._fails.pop(name, None)
