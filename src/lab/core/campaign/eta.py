"""How long a campaign has left, from the steps still to run (issue 32, item 5).

The figure is in simulated s: what the lab's stations and carriers will take. A client turns it
into wall time with the speed it sees the lab's clock run at (lab.app.session.Pace); the planner
cannot, since the lab's speed is the clock's business, not its own.

The model is a pipeline. A batch goes through its workflow's steps, each a station's process
(config/station_processes.yaml, the same figures a batch's time-out is built from) with a carrier
move before it and one home after. Batches in flight share the stations, so a new batch finishes
one "stride" after the one before it: the slower of the longest step (the bottleneck station,
which takes one batch at a time) and the whole chain shared among the batches allowed in flight;
batches already in flight are done one bottleneck step apart at least.
Once batches have finished, their mean simulated duration replaces the chain's expected figure:
the carrier moves' `leg_seconds` is a generous bound (for time-outs), and a finished batch
says what the moves, queues and waits really cost in this lab.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchTimes:
    """What one batch of a workflow should take: each step's process (simulated s) and a carrier move."""

    steps: Sequence[float]
    leg_seconds: float

    @property
    def chain(self) -> float:
        return float(sum(self.steps)) + self.leg_seconds * (len(self.steps) + 1)


def seconds_left(times: BatchTimes, batches_in_flight: int, batch_size: int, to_start: int,
                 running_elapsed: Sequence[float], finished_durations: Sequence[float] = (),
                 since_last_finish: float | None = None) -> float:
    """Simulated s until the campaign's last batch is done.

    `to_start`: experiments not yet in a batch (the budget less those measured, failed for good or
    in flight); `running_elapsed`: simulated s each batch in flight has been running, the oldest
    first; `finished_durations`: simulated s each finished batch took; `since_last_finish`:
    simulated s since the last one finished (None: none has)."""
    chain = (sum(finished_durations) / len(finished_durations)) if finished_durations else times.chain
    bottleneck = max(times.steps, default=0.0)
    # Little's law: with the in-flight limit reached, a batch finishes every chain / limit
    stride = max(bottleneck, chain / max(1, batches_in_flight))
    # batches in flight queue behind each other at the bottleneck station: each is done at least
    # one bottleneck step after the one before it (two started together are not done together)
    remaining: list[float] = []
    for elapsed in running_elapsed:
        left = max(0.0, chain - elapsed)
        if remaining:
            left = max(left, remaining[-1] + bottleneck)
        elif since_last_finish is not None:
            left = max(left, bottleneck - since_last_finish)
        remaining.append(left)
    new = math.ceil(max(0, to_start) / max(1, batch_size))
    if new == 0:
        return max(remaining, default=0.0)
    # the first new batch starts when a slot frees (at once if one is free now)
    first_slot = 0.0 if len(remaining) < batches_in_flight else min(remaining)
    return max(first_slot + (new - 1) * stride + chain, max(remaining, default=0.0) + new * bottleneck)
