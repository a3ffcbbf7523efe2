"""`lab bench instruments`: what driving the instruments over SiLA 2 costs.

1. Round trips: one step run by the station's backend, start to result, with no time to wait
   out (the device runs at a time scale of 1e9), over SiLA 2 with TLS against the in-process
   backend: an empty step (ProcessStep.RunStep) and a rack of 16 vials dosed
   (Dispensing.Dispense, as-dispensed amounts back). Median and p99, ms.
2. A campaign of `--experiments` photocatalysis experiments through the whole node graph, with
   instruments:=sila and with the in-process emulators, one after the other in the same run:
   wall time and experiments measured.

    lab bench instruments [--calls 300] [--experiments 64] [--batch 16] [--speed 2000] [--json OUT]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from lab.bench import free_port, print_figures, write_json
from lab.bench.plumbing import percentile


class _Settings:
    def __init__(self, port: int, ca: Path) -> None:
        self.sila_address, self.sila_port, self.sila_ca, self.sila_server_name = "127.0.0.1", port, str(ca), ""
        self.sila_insecure, self.sila_grace, self.sila_discovery_timeout = False, 30.0, 10.0


def round_trips(calls: int, folder: Path) -> dict[str, float]:
    from lab.backends.instruments import SimulatedInstrument
    from lab.core.campaign.formulation import Formulation
    from lab.core.stations.station import StationCore, Step, load_kinds
    from lab.instruments.backend import SilaInstrument
    from lab.instruments.server import Device, build, start

    kind = load_kinds()["liquid_dispenser"]
    rack = [Formulation(f"v{i}", {"L-Cysteine-100gL": 1.0, "NaOH-1M": 0.5}) for i in range(16)]
    port = free_port()
    server = build(Device("liquid_dispenser", kind, time_scale=1e9))
    pem = folder / "liquid_dispenser.pem"
    pem.parent.mkdir(parents=True, exist_ok=True)
    pem.write_bytes(start(server, "127.0.0.1", port))
    figures: dict[str, float] = {}
    try:
        backends = {"sila": SilaInstrument(StationCore("liquid_dispenser", kind, seed=1),
                                           {"params": _Settings(port, pem)}),
                    "in_process": SimulatedInstrument(StationCore("liquid_dispenser", kind, seed=1), {})}
        for name, backend in backends.items():
            backend.connect()
            cases = (("step", Step("cap", 0.0), []), ("dispense16", Step("dispense_liquids", 0.0), rack))
            for label, step, samples in cases:
                times = []
                for i in range(calls + 10):
                    backend.begin(samples)
                    began = time.perf_counter()
                    backend.execute(step, samples, lambda _s: True)
                    if samples:
                        assert len(backend.results(samples)) == 16
                    if i >= 10:  # the first calls build channels and caches
                        times.append(1000.0 * (time.perf_counter() - began))
                    if label == "dispense16" and i % 5 == 4:
                        backend.core.refill("", 0.0)
                        backend.refill("", 0.0)
                figures[f"{name}_{label}_median_ms"] = percentile(times, 50)
                figures[f"{name}_{label}_p99_ms"] = percentile(times, 99)
            backend.disconnect()
    finally:
        server.stop(grace_period=1.0)
    return figures


def campaign(instruments: str, experiments: int, batch: int, speed: float, run_dir: Path) -> tuple[float, int, int]:
    """(wall s, measured, failed) of a campaign through the whole lab with these instruments."""
    import os

    from lab.app.session import lab_session, run_campaign_with_progress
    from lab.bringup.processes import plan

    home = Path.cwd()
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(run_dir)  # the state files and served certificates are this run's own
    try:
        specs = plan({"sim": "embedded", "robots": "1", "speed": str(speed), "record": "false",
                      "console": "false", "instruments": instruments})
        with lab_session(specs, Path("nodes.log"), "lab_bench") as (_lab, cmd):
            began = time.monotonic()
            code, result = run_campaign_with_progress(cmd, "photocatalysis", experiments, batch, 1)
            wall = time.monotonic() - began
    finally:
        os.chdir(home)
    if code != 0 or result is None:
        raise SystemExit(f"lab bench instruments: the campaign with instruments:={instruments} did not complete "
                         f"(see {run_dir / 'nodes.log'})")
    return wall, int(result.experiments_done), int(result.experiments_failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab bench instruments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--experiments", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--speed", type=float, default=2000.0)
    parser.add_argument("--json", type=Path, default=None)
    ns = parser.parse_args(argv)
    run_dir = (Path("runs") / ("bench-instruments-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))).resolve()
    figures: dict = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "calls": ns.calls}
    figures.update(round_trips(ns.calls, run_dir / "round_trips"))
    print_figures(figures, width=30)
    if ns.experiments > 0:
        figures.update(experiments=ns.experiments, batch=ns.batch, speed=ns.speed)
        for instruments in ("sila", "default"):
            wall, done, failed = campaign(instruments, ns.experiments, ns.batch, ns.speed, run_dir / instruments)
            figures[f"campaign_{instruments}_wall_s"] = wall
            figures[f"campaign_{instruments}_measured"], figures[f"campaign_{instruments}_failed"] = done, failed
        print_figures(figures, width=30)
    write_json(figures, ns.json)
    return 0
