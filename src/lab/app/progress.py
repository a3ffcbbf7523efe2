"""A one-line progress display for long operator commands (no dependency, works in logs too)."""

from __future__ import annotations

import sys
import time
from typing import IO


def format_duration(seconds: float) -> str:
    if seconds != seconds or seconds < 0:  # NaN or negative: unknown
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def bar(done: int, total: int, width: int = 24) -> str:
    total = max(total, 1)
    filled = min(width, int(width * done / total))
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


class ProgressLine:
    """Rewrites one line on a terminal; prints a line at most every `period` s elsewhere."""

    def __init__(self, out: IO[str] | None = None, period: float = 5.0) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.period = period
        self._last = 0.0
        self._last_text = ""

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.out.write("\r\033[K" + text)
            self.out.flush()
        elif force or (text != self._last_text and now - self._last >= self.period):
            self.out.write(text + "\n")
            self.out.flush()
            self._last = now
        self._last_text = text

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
        elif self._last_text:
            self.out.write(self._last_text + "\n")
        self.out.flush()
