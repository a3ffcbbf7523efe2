"""The campaign record: SQLite (WAL), one row per experiment written as it happens.

Every proposal is stored before it is sent to the lab and every result as soon as it
returns, each in its own transaction, so a planner killed at any moment loses nothing that
was measured: a resumed campaign re-runs only the experiments that were still running.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core.errors import InvalidGoal

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, workflow TEXT NOT NULL, config TEXT NOT NULL,
    budget INTEGER NOT NULL, batch_size INTEGER NOT NULL, seed INTEGER NOT NULL,
    created REAL NOT NULL, status TEXT NOT NULL DEFAULT 'running');
CREATE TABLE IF NOT EXISTS experiments (
    campaign_id TEXT NOT NULL, idx INTEGER NOT NULL, batch_id TEXT, sample_id TEXT NOT NULL,
    state TEXT NOT NULL,   -- 'proposed' (awaits approval) | 'queued' | 'running' | 'done' | 'failed' | 'dropped'
    is_control INTEGER NOT NULL DEFAULT 0, point TEXT NOT NULL,
    vals TEXT, uncertainties TEXT, units TEXT, failure_reason TEXT, as_dispensed TEXT, curves TEXT,
    station TEXT, proposed REAL NOT NULL, finished REAL,
    failure_kind TEXT,               -- a failure's: 'equipment' | 'chemistry' (lab.core.campaign.formulation)
    attempts INTEGER NOT NULL DEFAULT 1,  -- times the experiment was made (an equipment failure makes it again)
    earlier TEXT,                    -- the earlier attempts: JSON [{"sample_id", "reason"}]
    PRIMARY KEY (campaign_id, idx));
CREATE TABLE IF NOT EXISTS intervals (
    campaign_id TEXT NOT NULL, resource TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL, what TEXT);
CREATE TABLE IF NOT EXISTS lab_batches (   -- the lab manager's batches in flight (lab.core.operations.scheduler)
    key TEXT PRIMARY KEY, batch_id TEXT NOT NULL, state TEXT NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS experiments_batch ON experiments (campaign_id, batch_id);
CREATE TABLE IF NOT EXISTS audit (   -- every command the lab was given, where it was carried out (issue 34)
    time REAL NOT NULL, who TEXT NOT NULL, via TEXT NOT NULL, command TEXT NOT NULL, params TEXT NOT NULL,
    outcome TEXT NOT NULL, ok INTEGER NOT NULL);
"""
#: columns added since the first schema, with their definitions: added to an older database as it opens
ADDED_COLUMNS = {"experiments": {"failure_kind": "TEXT", "attempts": "INTEGER NOT NULL DEFAULT 1", "earlier": "TEXT",
                                 # who chose its point: '' the planner, else the person who edited it at approval
                                 "chosen_by": "TEXT"},
                 # wall time (epoch s) a planner running the campaign last said it was (CampaignStore.touch)
                 "campaigns": {"active": "REAL",
                               # who sent the goal that started it (RunCampaign.requested_by)
                               "started_by": "TEXT",
                               # goals following it whose client is in the graph, as of `active`
                               "following": "INTEGER"}}


@dataclass(frozen=True)
class CampaignInfo:
    id: str
    name: str
    workflow: str
    config: dict[str, Any]
    budget: int
    batch_size: int
    seed: int
    created: float
    status: str
    started_by: str = ""
    following: int | None = None  # goals following it with their client present (None: not said)
    active: float | None = None   # when (epoch s) a planner running it last said so


@dataclass
class ExperimentRecord:
    campaign_id: str
    index: int
    batch_id: str
    sample_id: str
    state: str
    is_control: bool
    point: dict[str, float]
    values: dict[str, float]
    uncertainties: dict[str, float]
    units: dict[str, str]
    failure_reason: str
    as_dispensed: dict[str, float]
    curves: list[dict[str, Any]]
    station: str
    proposed: float
    finished: float | None
    failure_kind: str = ""
    attempts: int = 1
    earlier: list[dict[str, str]] = field(default_factory=list)  # the earlier attempts' sample ids and reasons
    chosen_by: str = ""  # who chose its point: '' the planner, else who edited it at approval

    def earlier_attempts(self) -> list[str]:
        """The earlier attempts as people read them: '<sample id>: <why it failed>'."""
        return [f"{e['sample_id']}: {e['reason']}" for e in self.earlier]


#: tries of opening a store when SQLite answers 'locked' or a concurrent first open added a column
#: first (OperationalError)
OPEN_TRIES = 4


class CampaignStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
        # several processes may open a new store at once (the planner, the console, two notice
        # channels): switching it to WAL can answer 'locked' at once, without the busy timeout,
        # and two may add the same new column; both are tried again (lost audit rows, found by
        # a test that recorded two notices together)
        for attempt in range(OPEN_TRIES):
            try:
                self._prepare()
                break
            except sqlite3.OperationalError:
                if attempt + 1 == OPEN_TRIES:
                    self.db.close()
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _prepare(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        for table, columns in ADDED_COLUMNS.items():
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for name, definition in columns.items():
                if name not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")

    @classmethod
    @contextmanager
    def open(cls, path: Path) -> Iterator[CampaignStore]:
        store = cls(path)
        try:
            yield store
        finally:
            store.close()

    def __enter__(self) -> CampaignStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # ------------------------------------------------------------------ campaigns
    def create_campaign(self, campaign_id: str, name: str, workflow: str, config: dict[str, Any], budget: int,
                        batch_size: int, seed: int, started_by: str = "") -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO campaigns (id, name, workflow, config, budget, batch_size, seed, created, "
                       "started_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (campaign_id, name, workflow, json.dumps(config), budget, batch_size, seed, time.time(),
                        started_by))

    def campaign_info(self, campaign_id: str) -> CampaignInfo:
        with self._lock:
            row = self.db.execute("SELECT id, name, workflow, config, budget, batch_size, seed, created, status, "
                                  "COALESCE(started_by, ''), following, active FROM campaigns WHERE id = ?",
                                  (campaign_id,)).fetchone()
        if row is None:
            known = [c.id for c in self.list_campaigns()[-5:]]
            raise InvalidGoal(f"no campaign '{campaign_id}' in {self.path}" +
                              (f" (latest: {', '.join(known)})" if known else " (it holds none)"))
        return CampaignInfo(row[0], row[1], row[2], json.loads(row[3]), *row[4:])

    def list_campaigns(self) -> list[CampaignInfo]:
        with self._lock:
            ids = [r[0] for r in self.db.execute("SELECT id FROM campaigns ORDER BY created")]
        return [self.campaign_info(i) for i in ids]

    def set_status(self, campaign_id: str, status: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE campaigns SET status = ? WHERE id = ?", (status, campaign_id))

    def cancel_left(self, campaign_id: str, quiet: float) -> str:
        """Mark a campaign left 'running' with no planner as cancelled (resumable), in one
        conditional UPDATE: only while it is 'running' and no planner has said it runs it for
        `quiet` s (a planner says so every few s, `touch`). '' when it was marked, else why not."""
        with self.transaction() as db:
            row = db.execute("SELECT status, COALESCE(active, created) FROM campaigns WHERE id = ?",
                             (campaign_id,)).fetchone()
            if row is None:
                return f"no campaign {campaign_id} in this database"
            if row[0] != "running":
                return f"campaign {campaign_id} is {row[0]}, not running"
            ago = time.time() - float(row[1])
            if ago < quiet:
                return (f"a planner ran campaign {campaign_id} {ago:.0f} s ago: it may be running still "
                        "(is the lab up where this shell reaches it?)")
            db.execute("UPDATE campaigns SET status = 'cancelled' WHERE id = ? AND status = 'running'", (campaign_id,))
            return ""

    def touch(self, campaign_id: str, following: int | None = None) -> None:
        """The planner running the campaign is alive now (it says so every few s): a planner
        restarted soon after finds the campaign it was running (`left_running`). `following`:
        how many goals follow it with their client still there (0: it runs on unwatched)."""
        with self.transaction() as db:
            db.execute("UPDATE campaigns SET active = ?, following = ? WHERE id = ?",
                       (time.time(), following, campaign_id))

    def left_running(self) -> list[tuple[str, float]]:
        """Campaigns still 'running' in the record, none running now (a planner's process died with
        them, or the lab was shut down under them): (id, when a planner last ran it, epoch s), the
        most recently active first."""
        with self._lock:
            rows = self.db.execute("SELECT id, COALESCE(active, created) AS at FROM campaigns WHERE status = 'running' "
                                   "ORDER BY at DESC").fetchall()
        return [(str(i), float(at)) for i, at in rows]

    # ------------------------------------------------------------------ audit trail
    def record_command(self, who: str, via: str, command: str, params: dict[str, Any], outcome: str,
                       ok: bool) -> None:
        """One command the lab was given: who (as the way it came says: the kernel's word on the
        e-stop's fast path, a goal's requested_by, or 'not said'), by which way, with what, and what came
        of it. Rows are only ever added."""
        with self.transaction() as db:
            db.execute("INSERT INTO audit (time, who, via, command, params, outcome, ok) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (time.time(), who, via, command, json.dumps(params, sort_keys=True), outcome, int(ok)))

    def commands(self, limit: int = 0) -> list[tuple[float, str, str, str, dict[str, Any], str, bool]]:
        """The audit trail, oldest first (the last `limit` rows, 0 = all)."""
        with self._lock:
            rows = self.db.execute("SELECT time, who, via, command, params, outcome, ok FROM audit ORDER BY rowid"
                                   ).fetchall()
        rows = rows[-limit:] if limit else rows
        return [(t, w, v, c, json.loads(p), o, bool(k)) for t, w, v, c, p, o, k in rows]

    # ------------------------------------------------------------------ experiments
    def add_experiments(self, campaign_id: str, batch_id: str, rows: Sequence[tuple[int, str, bool, dict]],
                        state: str = "running") -> None:
        """rows: (index, sample_id, is_control, point), stored in batch_id as `state` ('running', or
        'proposed' when the batch awaits approval)."""
        now = time.time()
        with self.transaction() as db:
            db.executemany("INSERT INTO experiments (campaign_id, idx, batch_id, sample_id, state, is_control, point, "
                           "proposed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(campaign_id, i, batch_id, sid, state, int(ctrl), json.dumps(p), now)
                            for i, sid, ctrl, p in rows])

    def approve_batch(self, campaign_id: str, batch_id: str, by: str, points: dict[int, dict], dropped: Sequence[int]
                      ) -> int:
        """The batch awaiting approval decided, in one transaction: `dropped` experiments leave the
        campaign (they use none of its budget), `points` replace the planner's (chosen_by `by`), the
        rest run as proposed. Returns how many were awaiting (0: decided already, nothing changed)."""
        with self.transaction() as db:
            waiting = [i for (i,) in db.execute("SELECT idx FROM experiments WHERE campaign_id = ? AND batch_id = ? "
                                                "AND state = 'proposed'", (campaign_id, batch_id))]
            for i in waiting:
                if i in dropped:
                    db.execute("UPDATE experiments SET state = 'dropped', chosen_by = ? WHERE campaign_id = ? "
                               "AND idx = ?", (by, campaign_id, i))
                elif i in points:
                    db.execute("UPDATE experiments SET state = 'running', point = ?, chosen_by = ? "
                               "WHERE campaign_id = ? AND idx = ?", (json.dumps(points[i]), by, campaign_id, i))
                else:
                    db.execute("UPDATE experiments SET state = 'running' WHERE campaign_id = ? AND idx = ?",
                               (campaign_id, i))
            return len(waiting)

    def requeue_running(self, campaign_id: str) -> int:
        """Experiments left running by a dead planner go back to the queue; returns how many."""
        with self.transaction() as db:
            return db.execute("UPDATE experiments SET state = 'queued', batch_id = NULL "
                              "WHERE campaign_id = ? AND state = 'running'", (campaign_id,)).rowcount

    def assign_batch(self, campaign_id: str, batch_id: str, indices: Sequence[int]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE experiments SET state = 'running', batch_id = ? WHERE campaign_id = ? AND idx = ?",
                           [(batch_id, campaign_id, i) for i in indices])

    def finish(self, campaign_id: str, index: int, valid: bool, values: dict, uncertainties: dict, units: dict,
               failure_reason: str, as_dispensed: dict, curves: list, station: str, failure_kind: str = "") -> bool:
        """Record one experiment's outcome; False (and nothing changes) if it was already recorded."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE experiments SET state = ?, vals = ?, uncertainties = ?, units = ?, failure_reason = ?, "
                "as_dispensed = ?, curves = ?, station = ?, finished = ?, failure_kind = ? "
                "WHERE campaign_id = ? AND idx = ? AND state IN ('running', 'queued')",
                ("done" if valid else "failed", json.dumps(values), json.dumps(uncertainties), json.dumps(units),
                 failure_reason, json.dumps(as_dispensed), json.dumps(curves), station, time.time(),
                 "" if valid else failure_kind, campaign_id, index))
            return cur.rowcount == 1

    def make_again(self, campaign_id: str, index: int, sample_id: str, reason: str) -> bool:
        """The running experiment `index` failed by the equipment: queued again as a new attempt on
        fresh sample `sample_id`, the failed attempt kept in `earlier`. False (nothing changes) if
        it is not running (its result was already recorded)."""
        with self.transaction() as db:
            row = db.execute("SELECT sample_id, earlier FROM experiments WHERE campaign_id = ? AND idx = ? "
                             "AND state = 'running'", (campaign_id, index)).fetchone()
            if row is None:
                return False
            earlier = [*json.loads(row[1] or "[]"), {"sample_id": row[0], "reason": reason}]
            db.execute("UPDATE experiments SET state = 'queued', batch_id = NULL, sample_id = ?, "
                       "attempts = attempts + 1, earlier = ? WHERE campaign_id = ? AND idx = ?",
                       (sample_id, json.dumps(earlier), campaign_id, index))
            return True

    def experiments(self, campaign_id: str, batch_id: str | None = None) -> list[ExperimentRecord]:
        query = ("SELECT campaign_id, idx, batch_id, sample_id, state, is_control, point, vals, uncertainties, units, "
                 "failure_reason, as_dispensed, curves, station, proposed, finished, failure_kind, attempts, earlier, "
                 "chosen_by "
                 "FROM experiments "
                 "WHERE campaign_id = ?")
        args: tuple = (campaign_id,)
        if batch_id is not None:
            query += " AND batch_id = ?"
            args += (batch_id,)
        with self._lock:
            rows = self.db.execute(query + " ORDER BY idx", args).fetchall()
        return [ExperimentRecord(r[0], r[1], r[2] or "", r[3], r[4], bool(r[5]), json.loads(r[6]),
                                 json.loads(r[7] or "{}"), json.loads(r[8] or "{}"), json.loads(r[9] or "{}"),
                                 r[10] or "", json.loads(r[11] or "{}"), json.loads(r[12] or "[]"), r[13] or "",
                                 r[14], r[15], r[16] or "", int(r[17] or 1), json.loads(r[18] or "[]"), r[19] or "")
                for r in rows]

    def count_finished(self, campaign_id: str) -> int:
        """Experiments done or failed (without reading them: the planner asks this in its loop)."""
        with self._lock:
            row = self.db.execute("SELECT COUNT(*) FROM experiments WHERE campaign_id = ? "
                                  "AND state IN ('done', 'failed')", (campaign_id,)).fetchone()
        return int(row[0])

    def count_states(self, campaign_id: str) -> dict[str, int]:
        """How many of the campaign's experiments are in each state (queued, running, done, failed)."""
        with self._lock:
            rows = self.db.execute("SELECT state, COUNT(*) FROM experiments WHERE campaign_id = ? GROUP BY state",
                                   (campaign_id,)).fetchall()
        return {str(state): int(n) for state, n in rows}

    # ------------------------------------------------------------------ the lab manager's batches
    def save_lab_batch(self, key: str, batch_id: str, state: dict[str, Any]) -> None:
        """A batch in flight as the lab manager last recorded it (replaces the previous record)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO lab_batches VALUES (?, ?, ?, ?)",
                       (key, batch_id, json.dumps(state), time.time()))

    def lab_batches(self) -> dict[str, dict[str, Any]]:
        """Every batch the lab manager has recorded and not yet answered, by key, oldest first."""
        with self._lock:
            rows = self.db.execute("SELECT key, state FROM lab_batches ORDER BY updated").fetchall()
        return {str(k): json.loads(v) for k, v in rows}

    def lab_batch_ages(self) -> dict[str, float]:
        """Seconds since each recorded batch was last updated, by key."""
        with self._lock:
            rows = self.db.execute("SELECT key, updated FROM lab_batches").fetchall()
        now = time.time()
        return {str(k): now - float(t) for k, t in rows}

    def drop_lab_batch(self, key: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM lab_batches WHERE key = ?", (key,))

    # ------------------------------------------------------------------ time
    def add_interval(self, campaign_id: str, resource: str, start: float, end: float, what: str = "") -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO intervals VALUES (?, ?, ?, ?, ?)", (campaign_id, resource, start, end, what))

    def intervals(self, campaign_id: str) -> list[tuple[str, float, float, str]]:
        with self._lock:
            rows = self.db.execute("SELECT resource, start, end, what FROM intervals WHERE campaign_id = ? "
                                   "ORDER BY start", (campaign_id,)).fetchall()
        return [(str(r[0]), float(r[1]), float(r[2]), str(r[3] or "")) for r in rows]


def record_command(path: Path, who: str, via: str, command: str, params: dict[str, Any], outcome: str, ok: bool,
                   log: Any = None) -> None:
    """Add one command to the audit trail of the store at `path`; a store that cannot be written is
    logged (`log`: a node's logger) and never stops the command."""
    try:
        with CampaignStore.open(path) as store:
            store.record_command(who, via, command, params, outcome, ok)
    except (OSError, sqlite3.Error) as exc:
        if log is not None:
            log.error(f"audit trail {path}: {command} by {who} not recorded ({exc})")
