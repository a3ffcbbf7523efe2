"""State that must outlive its process, in small JSON files written atomically.

A process killed while writing must leave either the old file or the new one, never half of
one: the text goes to a temporary file in the same folder, is flushed to disk, and replaces
the old file with os.replace (atomic on POSIX within one file system).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lab.core.errors import ConfigError, InvalidGoal

T = TypeVar("T")

#: one rule for what the lab writes (runs/: the store, recordings, state, logs, reports): the
#: operator's user reads and writes, its group reads, nobody else (issue 33). Every lab process
#: sets the umask at start (lab.ros.main.run, lab.app.cli.main: the bringup's nodes inherit it);
#: files made with a mode of their own (mkstemp's 0600) are given FILE_MODE.
UMASK = 0o027
FILE_MODE = 0o640


def apply_umask() -> None:
    os.umask(UMASK)


def write_json(path: Path, data: Any, sync: bool = True) -> None:
    """Replace `path` with `data` as JSON, atomically (the folder is created if missing). `sync`:
    flushed to the disk before the replace (survives a power cut, costs a few ms); without it a
    killed process still loses nothing written (the kernel has it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any | None:
    """What `write_json` wrote; None when there is no file; ConfigError (with the path) when
    it is not JSON."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a saved state ({exc})") from None


def set_aside(path: Path) -> Path:
    """Rename a saved state that cannot be used out of the way (kept for a post-mortem, no longer
    read at start-up); returns where it went."""
    aside = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}")
    path.replace(aside)
    return aside


def take_back(path: Path, use: Callable[[Any], T]) -> tuple[T | None, str]:
    """`use(state)` on what `write_json` left at `path`: (what it returns, ""); (None, "") when there
    is no file; (None, why) when the file cannot be used (not JSON, or `use` raised ConfigError or
    InvalidGoal): then it has been set aside, and `why` says why and where it went."""
    try:
        state = read_json(path)
        return (None, "") if state is None else (use(state), "")
    except (ConfigError, InvalidGoal) as exc:
        return None, f"the saved state {path} cannot be used ({exc}): set aside as {set_aside(path)}"
