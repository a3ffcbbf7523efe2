"""The closed loop without ROS: propose a batch, record its results, learn, until the budget.

CampaignRunner keeps every proposal and result in the CampaignStore the moment it exists.
`next_batch` first re-issues queued experiments (those a dead planner left running, after
`resume`, and those the equipment failed, made again on fresh samples), then asks the
BatchPlanner for new points, accounting for points still in the lab; controls (the campaign
file's `controls`) fill their places in each batch. The budget counts experiments, controls
included: each ends measured, failed by its chemistry (the station measured it and found it
invalid: a result), or failed by the equipment on every one of its attempts.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lab.core.campaign.formulation import EQUIPMENT, MeasurementData
from lab.core.campaign.pareto import hypervolume, pareto_mask
from lab.core.campaign.planner import BatchPlanner, Observation
from lab.core.campaign.space import CampaignConfig, Point, parse_campaign
from lab.core.campaign.store import CampaignStore, ExperimentRecord
from lab.core.errors import InvalidGoal


@dataclass(frozen=True)
class Experiment:
    index: int
    point: Point
    is_control: bool
    sample_id: str


@dataclass(frozen=True)
class Batch:
    batch_id: str
    experiments: list[Experiment]
    awaiting: bool = False   # proposed, waiting for a supervisor's approval (CampaignConfig.approval)


@dataclass(frozen=True)
class Progress:
    done: int
    failed: int
    running: int
    budget: int
    best_value: float | None
    hypervolume: float | None
    best_summary: str
    made_again: int = 0  # attempts made again after the equipment (or an emergency stop) failed them
    awaiting: int = 0    # experiments proposed and waiting for approval


def check_goal(config: CampaignConfig, budget: int, batch_size: int = 0, seed: int = 0,
               capacity: int | None = None) -> int:
    """The batch size a campaign of `config` runs with; InvalidGoal saying why for a budget, batch
    size or seed that cannot run (the planner on a goal, the console on its form). `capacity`:
    samples the workflow's carrier holds (None: not checked here)."""
    if budget < 1:
        raise InvalidGoal(f"budget must be at least 1 experiment, not {budget}")
    if config.max_budget and budget > config.max_budget:
        raise InvalidGoal(f"budget {budget} is above campaign {config.name}'s max_budget of {config.max_budget} "
                          "experiments; raise max_budget in its campaign file to ask for more")
    if seed < 0:
        raise InvalidGoal(f"seed must be 0 or more, not {seed}")
    batch_size = batch_size or config.batch_size
    if batch_size < 1:
        raise InvalidGoal(f"batch_size must be at least 1, not {batch_size}")
    if capacity is not None and batch_size > capacity:
        raise InvalidGoal(f"batch_size {batch_size} does not fit one carrier of workflow {config.workflow} "
                          f"(it holds {capacity})")
    if budget < batch_size:
        raise InvalidGoal(f"budget {budget} is below one batch ({batch_size}); lower the batch size or raise "
                          "the budget")
    if config.controls and batch_size <= config.controls.per_batch:
        raise InvalidGoal(f"batch_size {batch_size} leaves no room beside the {config.controls.per_batch} "
                          "controls of each batch")
    return batch_size


class CampaignRunner:
    def __init__(self, store: CampaignStore, campaign_id: str, config: CampaignConfig, budget: int,
                 batch_size: int, seed: int) -> None:
        self.store, self.campaign_id, self.config = store, campaign_id, config
        self.budget, self.batch_size, self.seed = budget, batch_size, seed
        self.planner = BatchPlanner(config.space, config.objectives, config.log_objectives,
                                    initial_random=config.initial_random, seed=seed)
        records = store.experiments(campaign_id)
        self._batches = len({r.batch_id for r in records if r.batch_id})

    @classmethod
    def start(cls, store: CampaignStore, config: CampaignConfig, budget: int, batch_size: int = 0,
              seed: int = 0, capacity: int | None = None, started_by: str = "") -> CampaignRunner:
        """A new campaign, recorded in `store`; InvalidGoal (nothing recorded) for a budget,
        batch size or seed that cannot run. `capacity`: samples the workflow's carrier holds."""
        batch_size = check_goal(config, budget, batch_size, seed, capacity)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        campaign_id = f"{config.name}-{stamp}-{uuid.uuid4().hex[:4]}"
        store.create_campaign(campaign_id, config.name, config.workflow, config.source, budget, batch_size, seed,
                              started_by=started_by)
        return cls(store, campaign_id, config, budget, batch_size, seed)

    @classmethod
    def resume(cls, store: CampaignStore, campaign_id: str, config_dir: Path | None = None) -> CampaignRunner:
        """The campaign as recorded (its own copy of the campaign file); running experiments
        are queued again."""
        info = store.campaign_info(campaign_id)
        config = parse_campaign(info.config, f"campaign {campaign_id} (as recorded)")
        store.requeue_running(campaign_id)
        runner = cls(store, campaign_id, config, info.budget, info.batch_size, info.seed)
        # a campaign resumed after its last result was recorded is done, not running: left
        # 'running', every planner started within take_up_within took it up again, and a new
        # campaign's goal sent meanwhile was refused as "one campaign at a time" (CI at a7520f0)
        store.set_status(campaign_id, "done" if runner.done else "running")
        return runner

    # ------------------------------------------------------------------ state
    def records(self) -> list[ExperimentRecord]:
        return self.store.experiments(self.campaign_id)

    @property
    def done(self) -> bool:
        return self.store.count_finished(self.campaign_id) >= self.budget

    def progress(self) -> Progress:
        records = self.records()
        done = sum(1 for r in records if r.state == "done")
        failed = sum(1 for r in records if r.state == "failed")
        running = sum(1 for r in records if r.state in ("running", "queued"))
        awaiting = sum(1 for r in records if r.state == "proposed")
        again = sum(r.attempts - 1 for r in records)
        best = self.best(records)
        objectives = self.config.objectives
        if not best:
            return Progress(done, failed, running, self.budget, None, None, "no valid result yet", again, awaiting)
        if len(objectives) == 1:
            o = objectives[0]
            value = best[0][1][o.name]
            return Progress(done, failed, running, self.budget, value, None, f"best {o.name} {value:.4g} {o.unit}",
                            again, awaiting)
        hv = self.hypervolume(records)
        return Progress(done, failed, running, self.budget, None, hv,
                        f"{len(best)} on the Pareto front, hypervolume {hv:.4g}", again, awaiting)

    def _valid(self, records: Sequence[ExperimentRecord]) -> list[ExperimentRecord]:
        names = [o.name for o in self.config.objectives]
        return [r for r in records if r.state == "done" and all(
            n in r.values and math.isfinite(r.values[n]) for n in names)]

    def best(self, records: Sequence[ExperimentRecord] | None = None) -> list[tuple[Point, dict[str, float]]]:
        """Single objective: the best experiment; several: the Pareto set (at most 20)."""
        valid = self._valid(self.records() if records is None else records)
        if not valid:
            return []
        objectives = self.config.objectives
        signs = [1.0 if o.maximize else -1.0 for o in objectives]
        keyed = [tuple(s * r.values[o.name] for s, o in zip(signs, objectives, strict=True)) for r in valid]
        pick = lambda r: (r.point, {o.name: r.values[o.name] for o in objectives})  # noqa: E731
        if len(objectives) == 1:
            return [pick(max(zip(keyed, valid, strict=True), key=lambda kv: kv[0])[1])]
        front = [r for r, keep in zip(valid, pareto_mask(keyed), strict=True) if keep]
        return [pick(r) for r in front[:20]]

    def hypervolume(self, records: Sequence[ExperimentRecord] | None = None) -> float:
        valid = self._valid(self.records() if records is None else records)
        objectives = self.config.objectives
        signs = [1.0 if o.maximize else -1.0 for o in objectives]
        points = [tuple(s * r.values[o.name] for s, o in zip(signs, objectives, strict=True)) for r in valid]
        reference = [s * r for s, r in zip(signs, self.config.reference, strict=True)]
        return hypervolume(points, reference)

    # ------------------------------------------------------------------ the loop
    def next_batch(self) -> Batch | None:
        """The next batch to run, stored as running; None when the budget is used up or
        every remaining experiment is already running."""
        records = self.records()
        proposed = [r for r in records if r.state == "proposed"]
        if proposed:  # a batch still awaits approval (proposed before a restart): that one, again
            ours = [r for r in proposed if r.batch_id == proposed[0].batch_id]
            return Batch(ours[0].batch_id, [Experiment(r.index, r.point, r.is_control, r.sample_id) for r in ours],
                         awaiting=True)
        queued = [r for r in records if r.state == "queued"]
        self._batches += 1
        batch_id = f"{self.campaign_id}/b{self._batches:03d}"
        if queued:
            chosen = queued[: self.batch_size]
            self.store.assign_batch(self.campaign_id, batch_id, [r.index for r in chosen])
            return Batch(batch_id, [Experiment(r.index, r.point, r.is_control, r.sample_id) for r in chosen])
        left = self.budget - sum(1 for r in records if r.state != "dropped")
        if left <= 0:
            self._batches -= 1
            return None
        n = min(self.batch_size, left)
        controls = self.config.controls
        n_controls = min(controls.per_batch, n - 1) if controls and n > 1 else 0
        observed = [Observation(r.point, r.values) for r in self._valid(records)]
        pending = [r.point for r in records if r.state == "running"]
        points = self.planner.propose(observed, pending, n - n_controls)
        if not points:
            self._batches -= 1
            return None
        start = len(records)
        experiments = [Experiment(start + i, p, False, f"e{start + i:04d}") for i, p in enumerate(points)]
        if n_controls and controls is not None:
            experiments += [Experiment(start + len(points) + k, dict(controls.point), True,
                                       f"e{start + len(points) + k:04d}") for k in range(n_controls)]
        full = [Experiment(e.index, {d: float(e.point.get(d, 0.0)) for d in self.config.space.names}, e.is_control,
                           e.sample_id) for e in experiments]
        self.store.add_experiments(self.campaign_id, batch_id, [(e.index, e.sample_id, e.is_control, e.point)
                                                                for e in full],
                                   state="proposed" if self.config.approval else "running")
        return Batch(batch_id, full, awaiting=self.config.approval)

    def approved(self, batch: Batch) -> Batch | None:
        """A batch that awaited approval as it was decided (its experiments kept, with their points as
        approved), or None while it still awaits."""
        records = self.store.experiments(self.campaign_id, batch.batch_id)
        if any(r.state == "proposed" for r in records):
            return None
        return Batch(batch.batch_id, [Experiment(r.index, r.point, r.is_control, r.sample_id)
                                      for r in records if r.state == "running"])

    def cancel(self) -> None:
        """The campaign stopped by its operator: recorded as cancelled (a resume runs it on; its
        experiments in flight are queued again then)."""
        if not self.done:
            self.store.set_status(self.campaign_id, "cancelled")

    def record(self, batch_id: str, measurements: Sequence[MeasurementData]) -> int:
        """Store a batch's results (by sample id); idempotent. Returns how many were new.
        A sample of the batch with no measurement failed by the equipment. An experiment the
        equipment failed is queued again on a fresh sample while it has attempts left (the
        campaign's max_attempts); one that exhausts them fails with every attempt's reason."""
        by_id = {m.sample_id: m for m in measurements}
        new = 0
        for r in self.store.experiments(self.campaign_id, batch_id):
            m = by_id.get(r.sample_id) or MeasurementData.failed(r.sample_id, "no result returned for it")
            kind = "" if m.valid else (m.failure_kind or EQUIPMENT)
            if kind == EQUIPMENT and r.attempts < self.config.max_attempts:
                first = r.earlier[0]["sample_id"] if r.earlier else r.sample_id
                new += self.store.make_again(self.campaign_id, r.index, f"{first}-a{r.attempts + 1}", m.failure_reason)
                continue
            reason = m.failure_reason
            if kind and r.earlier:
                tries = [*r.earlier_attempts(), f"{r.sample_id}: {m.failure_reason}"]
                reason = f"failed {len(tries)} times: " + "; ".join(tries)
            new += self.store.finish(self.campaign_id, r.index, m.valid, m.values, m.uncertainties, m.units,
                                     reason, m.as_dispensed, m.curves, m.station, kind)
        if self.done:
            self.store.set_status(self.campaign_id, "done")
        return new
