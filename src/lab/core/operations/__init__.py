"""Running the lab: the scheduler (batches on robots and stations), workflows, reservations
(resources), the start gate (pause and stop), the emergency stop's fast path (safety), and
which batch a goal asks for (batches)."""
