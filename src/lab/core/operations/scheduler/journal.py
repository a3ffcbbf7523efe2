"""What the scheduler writes to the campaign database: the record of each batch in flight
(so that a scheduler started after a crash takes it on) and the busy intervals of robots and
stations (the campaign's utilisation plot). A write that fails is said loudly and never stops
the lab."""

from __future__ import annotations

import threading
from pathlib import Path

from lab.core.campaign.store import CampaignStore
from lab.core.operations.scheduler.batch import Run
from lab.core.operations.scheduler.orders import Log


class Journal:
    def __init__(self, database: str, log: Log) -> None:
        self._path, self._log = Path(database), log
        self._store: CampaignStore | None = None  # opened when first needed
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def store(self) -> CampaignStore:
        with self._lock:
            if self._store is None:
                self._store = CampaignStore(self._path)
            return self._store

    def save(self, run: Run) -> None:
        """Record the batch's progress (which step, where its carrier is, what each sample has
        received, the station order under way, its result)."""
        try:
            self.store().save_lab_batch(run.key, run.batch_id, run.state())
        except Exception as exc:  # a full disk must not stop the lab; it is said loudly
            self._log.error(f"{run.key}: could not record the batch's progress: {exc}", throttle_duration_sec=60.0)

    def drop(self, key: str) -> None:
        try:
            self.store().drop_lab_batch(key)
        except Exception as exc:
            self._log.error(f"{key}: could not drop the batch's record: {exc}")

    def busy(self, batch_id: str, resource: str, start: float, end: float, what: str) -> None:
        """A busy interval of a robot or station (campaign id = batch id before '/')."""
        campaign_id, sep, _ = batch_id.partition("#")[0].rpartition("/")
        if not sep:
            return
        try:
            store = self.store()
            with self._lock:
                store.add_interval(campaign_id, resource, start, end, what)
        except Exception as exc:
            self._log.warning(f"could not record the interval of {resource}: {exc}")
