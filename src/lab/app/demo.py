"""`lab demo` (what `make demo` runs): the whole lab in the embedded simulation, one campaign.

Brings up every node of the node table as separate processes (their output goes to
runs/demo-<time>/nodes.log), runs a photocatalysis campaign through the planner, lab manager,
robot and stations over DDS with a progress line, writes the campaign's report, and shuts
everything down, also on Ctrl-C or when a node dies.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from lab.app.session import lab_session, run_campaign_with_progress
from lab.bringup.processes import plan
from lab.core.errors import ConfigError


def main(budget: int = 64, batch: int = 16, seed: int = 1, speed: float = 400.0, robots: int = 1,
         campaign: str = "photocatalysis", instruments: str = "default") -> int:
    run_dir = Path("runs") / ("demo-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        specs = plan({"sim": "embedded", "robots": str(robots), "speed": str(speed), "record": "true",
                      "console": "false", "instruments": instruments})
    except ConfigError as exc:
        print(f"lab demo: {exc}", file=sys.stderr)
        return 2
    log_path = run_dir / "nodes.log"
    print(f"lab demo: starting {len(specs)} nodes (their output: {log_path})")
    from lab.app.campaign_info import campaign_report

    status = 1
    with lab_session(specs, log_path, "lab_demo") as (lab, cmd):
        # stations keep their stock levels across runs (runs/stations/): a demo starts from full bottles
        for spec in specs:
            if spec.executable == "station":
                deadline = time.monotonic() + 60.0  # nodes (and instruments:=sila's servers) starting
                ok, why = False, "not asked"
                while not ok and time.monotonic() < deadline:
                    try:
                        ok, why = cmd.refill_stock(spec.name, timeout=max(1.0, deadline - time.monotonic()))
                    except TimeoutError as exc:
                        ok, why = False, str(exc)
                        break
                    if not ok and "cannot connect to the instrument" in why:
                        time.sleep(1.0)  # its SiLA server is not up yet
                    elif not ok:
                        break
                if not ok:
                    print(f"lab demo: could not refill {spec.name}: {why}", file=sys.stderr)
                    return 1
        started = time.monotonic()
        print(f"lab demo: campaign '{campaign}', {budget} experiments in batches of {batch}, "
              f"simulation at {speed:g}x real time")
        try:
            code, result = run_campaign_with_progress(cmd, campaign, budget, batch, seed)
        except TimeoutError as exc:
            dead = lab.dead()
            print(f"lab demo: {exc}" + (f"; node(s) died: {', '.join(dead)}" if dead else ""), file=sys.stderr)
            return 1
        print(f"lab demo: wall time {time.monotonic() - started:.0f} s")
        if code == 0 and result is not None:
            status = campaign_report(Path(result.database), result.campaign_id, run_dir / "report")
        else:
            status = code
    if status == 0:
        print(f"lab demo: done; report: {run_dir / 'report' / 'index.html'}")
    return status
