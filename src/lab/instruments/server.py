"""Today's station emulators served as SiLA 2 servers: `lab instrument serve KIND`.

An emulated instrument (`Device`) is the station emulator (lab.core.stations.station.StationCore:
bounds, stocks, dispensing error, the measurements fitted to real data) behind the features its
kind needs (lab.instruments.features). It runs its steps on the wall clock divided by
`time_scale` (the simulation's speed when the bringup starts it, 1 for a bench-top dry run), so
a 60-minute illumination takes 2.4 s at 1500x; progress, the estimated remaining time (wall
seconds, as SiLA means it) and one intermediate response per finished sample are sent while it
runs. One command at a time, as one instrument does.

TLS always, unless --insecure is asked for by name: with the given certificate and key, or a
self-signed one generated at start-up (its certificate written where --cert-out says, for the
station to trust).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from lab.core.campaign.formulation import Formulation
from lab.core.errors import InvalidGoal, LabError
from lab.core.stations.station import KindSpec, StationCore
from lab.instruments.features import FEATURES, feature, features_of, step_commands

SERVER_TYPE = "MobileChemistInstrument"
VENDOR_URL = "https://github.com/mobile-robotic-chemist/lab"


class _Expected(logging.Filter):
    """sila2's command managers log every command that ends in an error (a cancel, a refused
    parameter, a defined fault) with its stack, under a logger named per command: the client is
    told; the server's log keeps the unexpected (Device.run logs those itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("observable-command-manager")


def quiet_sila_logs() -> None:
    """sila2 logs every request and every response's repr at INFO: a rack's curves each step."""
    # sila2's servicers log under the feature's identifier, and log every error they pass on with
    # its stack (a validation error, a cancel): the client gets these; Device.run logs the unexpected
    for name in ("sila2", *FEATURES, "SiLAService"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def defined_error(feature_name: str, identifier: str, message: str) -> Exception:
    from sila2.framework import DefinedExecutionError

    return DefinedExecutionError(feature(feature_name).defined_execution_errors[identifier], message)


def validation_error(feature_name: str, command: str, parameter: str, message: str) -> Exception:
    """A SiLA validation error naming the parameter (the client sees the reason; nothing was done)."""
    from sila2.framework import ValidationError

    err = ValidationError(message)
    found = feature(feature_name)
    commands = {**found._observable_commands, **found._unobservable_commands}
    params = commands[command].parameters.fields
    err.parameter_fully_qualified_identifier = next(
        p.fully_qualified_identifier for p in params if p._identifier == parameter)
    return err


class Device:
    """One emulated instrument: its state, the commands running on it, and the emulator."""

    def __init__(self, name: str, spec: KindSpec, time_scale: float = 1.0, seed: int = 0) -> None:
        if not spec.processes:
            raise LabError(f"kind {spec.kind} runs no process: it has no instrument to serve")
        if time_scale <= 0:
            raise LabError(f"time scale {time_scale} must be above 0")
        self.name, self.spec, self.time_scale = name, spec, time_scale
        # a dispenser refuses a component it does not hold (the station sends it only its own)
        self.core = StationCore(name, spec, seed=seed or sum(map(ord, name)),
                                lab_components=set(spec.components) if spec.components else None)
        self.core.prepare()
        self.steps = step_commands(spec)
        self.state, self.fault, self.lamp = "Idle", "", False
        self.fail_next = 0  # fault injection: the next N commands fail part-way with their defined error
        self.cancels: dict[uuid.UUID, threading.Event] = {}
        self._busy = threading.Lock()

    def nominal(self, step: str, samples: int) -> float:
        """The step's duration in device seconds for this many samples (station_processes.yaml)."""
        for steps in self.spec.processes.values():
            for name, seconds, per_sample in steps:
                if name == step:
                    return seconds * (max(1, samples) if per_sample else 1)
        raise LabError(f"{self.name} has no step {step}")

    def run(self, instance, feature_name: str, fault: str, seconds: float,
            samples: Sequence[str] = (), act: Callable[[], Any] | None = None) -> Any:
        """Run one command for `seconds` of device time (wall time x time_scale): progress and the
        remaining time on the way, an intermediate response per sample as its share of the time
        passes; `act()` (the dispensing, the measuring) at the end. A cancel stops it between two
        updates (Cancelled); an injected fault stops it part-way (the feature's `fault` error)."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"{self.name} is busy with another command")
        cancel = threading.Event()
        self.cancels[instance.execution_uuid] = cancel
        try:
            self.state = "Busy"
            instance.begin_execution()
            wall = seconds / self.time_scale
            failing = self.fail_next > 0
            if failing:
                self.fail_next -= 1
            start, sent = time.monotonic(), 0
            while True:
                elapsed = time.monotonic() - start
                fraction = 1.0 if wall <= 0 else min(1.0, elapsed / wall)
                if failing and fraction >= 0.5:
                    raise defined_error(feature_name, fault, f"{self.name}: emulated {fault} half-way "
                                                             f"({seconds * fraction:.0f} s in)")
                instance.progress = fraction
                instance.estimated_remaining_time = timedelta(seconds=max(0.0, wall - elapsed))
                while samples and sent < len(samples) and fraction >= (sent + 1) / len(samples):
                    if hasattr(instance, "send_intermediate_response"):
                        instance.send_intermediate_response(samples[sent])
                    sent += 1
                if fraction >= 1.0:
                    break
                if cancel.wait(min(0.1, wall - elapsed)):
                    raise defined_error(feature_name, "Cancelled",
                                        f"{self.name}: cancelled {seconds * fraction:.0f} s in")
            result = act() if act is not None else None
            self.state = "Idle"
            return result
        except Exception as exc:
            from sila2.framework import DefinedExecutionError

            cancelled = isinstance(exc, DefinedExecutionError) and exc.identifier == "Cancelled"
            if not isinstance(exc, DefinedExecutionError):
                logging.getLogger("lab.instruments").exception(f"{self.name}: command failed")
            self.state = "Idle" if cancelled else "Fault"
            if not cancelled:
                self.fault = str(getattr(exc, "message", exc))
            raise
        finally:
            self.lamp = False
            self.cancels.pop(instance.execution_uuid, None)
            self._busy.release()


def _formulations(items: Sequence[Any], amounts_of: Callable[[Any], Sequence[Any]], name_of: Callable[[Any], str],
                  kind_of: Callable[[Any], str] = lambda _: "") -> list[Formulation]:
    return [Formulation(sample_id=item.SampleId, amounts={name_of(a): float(a[1]) for a in amounts_of(item)},
                        specimen_kind=kind_of(item)) for item in items]


def _measured(values: dict[str, float], uncertainties: dict[str, float], units: dict[str, str]) -> list[tuple]:
    return [(name, float(value), float(uncertainties.get(name, 0.0)), units.get(name, ""))
            for name, value in values.items()]


def _implementations(device: Device, server) -> dict[str, Any]:
    """One implementation object per feature the kind needs (sila2 calls methods named after the
    feature's commands and properties: `Command(..., metadata, [instance])`, `get_Property`)."""
    from sila2.server import FeatureImplementationBase

    def checked(command_feature: str, command: str, parameter: str, formulations: list[Formulation]) -> None:
        try:
            device.core.check_samples(formulations)
        except InvalidGoal as exc:
            raise validation_error(command_feature, command, parameter, str(exc)) from None

    class InstrumentStatus(FeatureImplementationBase):
        def get_State(self, *, metadata):
            return device.state

        def get_Fault(self, *, metadata):
            return device.fault

        def get_Steps(self, *, metadata):
            return list(device.steps)

    class CancelController(FeatureImplementationBase):
        def CancelCommand(self, CommandExecutionUUID, *, metadata):
            event = device.cancels.get(uuid.UUID(CommandExecutionUUID))
            if event is None:
                raise defined_error("CancelController", "UnknownExecution",
                                    f"no command {CommandExecutionUUID} is running on {device.name}")
            event.set()

    class Dispensing(FeatureImplementationBase):
        def Dispense(self, Samples, *, metadata, instance):
            formulations = _formulations(Samples, lambda s: s.Amounts, lambda a: a.Component)
            checked("Dispensing", "Dispense", "Samples", formulations)
            try:
                device.core.check_stocks(formulations)
            except InvalidGoal as exc:
                raise defined_error("Dispensing", "StockExhausted", str(exc)) from None
            seconds = device.nominal(device.spec.dispense_step, len(formulations))

            def dose():
                done = device.core.dispense(formulations)
                return [(f.sample_id, [(c, v) for c, v in done[f.sample_id].items()]) for f in formulations]

            return device.run(instance, "Dispensing", "DispenseFault", seconds,
                              [f.sample_id for f in formulations], dose)

        def Refill(self, Stock, Amount, *, metadata):
            try:
                device.core.refill(Stock, Amount)
            except InvalidGoal as exc:
                raise validation_error("Dispensing", "Refill", "Stock", str(exc)) from None

        def get_Components(self, *, metadata):
            return [(c, low, high, unit) for c, (low, high, unit) in device.spec.components.items()]

        def get_MaximumTotal(self, *, metadata):
            return float(device.spec.max_total or 0.0)

        def get_Stocks(self, *, metadata):
            return [(s.name, float(s.level), float(s.capacity), s.unit) for s in device.core.stocks.values()]

    class Illumination(FeatureImplementationBase):
        def Illuminate(self, Duration, *, metadata, instance):
            device.lamp = True
            return device.run(instance, "Illumination", "LampFault", Duration)

        def get_LampOn(self, *, metadata):
            return device.lamp

    class ProcessStep(FeatureImplementationBase):
        def RunStep(self, Step, Duration, *, metadata, instance):
            if Step not in device.steps or device.steps[Step].feature != "ProcessStep":
                runs = [s for s, c in device.steps.items() if c.feature == "ProcessStep"]
                raise validation_error("ProcessStep", "RunStep", "Step",
                                       f"{device.name} runs no step {Step!r} (it runs {', '.join(runs)})")
            return device.run(instance, "ProcessStep", "StepFault", Duration)

    class GasChromatography(FeatureImplementationBase):
        def MeasureHeadspace(self, Samples, *, metadata, instance):
            formulations = _formulations(Samples, lambda s: s.Contents, lambda q: q.Name)

            def measure():
                return [(m.sample_id, _measured(m.values, m.uncertainties, m.units))
                        for m in device.core.results(formulations, {})]

            return device.run(instance, "GasChromatography", "InjectionFault",
                              device.nominal("headspace_gc", len(formulations)),
                              [f.sample_id for f in formulations], measure)

    def specimens(command_feature: str, command: str, items) -> list[Formulation]:
        formulations = _formulations(items, lambda s: s.Design, lambda q: q.Name, lambda s: s.Kind)
        try:
            device.core.check_samples(formulations)
        except InvalidGoal as exc:
            raise validation_error(command_feature, command, "Specimens", str(exc)) from None
        return formulations

    class Printing(FeatureImplementationBase):
        def Print(self, Specimens, *, metadata, instance):
            formulations = specimens("Printing", "Print", Specimens)

            def printed():
                return [(f.sample_id, f.specimen_kind, list(device.core.printed(f).items())) for f in formulations]

            return device.run(instance, "Printing", "PrintFault", device.nominal("print", len(formulations)),
                              [f.sample_id for f in formulations], printed)

    class MaterialTesting(FeatureImplementationBase):
        def Test(self, Specimens, *, metadata, instance):
            formulations = specimens("MaterialTesting", "Test", Specimens)

            def test():
                out = []
                for m in device.core.results(formulations, {}):
                    curves = [(f"{c['y_label']} against {c['x_label']}", c["x_label"], c["x_unit"], c["y_label"],
                               c["y_unit"], list(c["x"]), list(c["y"])) for c in m.curves]
                    out.append((m.sample_id, _measured(m.values, m.uncertainties, m.units), curves))
                return out

            return device.run(instance, "MaterialTesting", "TestFault",
                              device.nominal("compress_or_pull", len(formulations)),
                              [f.sample_id for f in formulations], test)

    classes = {cls.__name__: cls for cls in (InstrumentStatus, CancelController, Dispensing, Illumination,
                                             ProcessStep, GasChromatography, Printing, MaterialTesting)}
    return {name: classes[name](server) for name in features_of(device.spec)}


def build(device: Device, server_name: str = ""):
    """A SiLA server (not started) serving `device`."""
    from sila2.server import SilaServer

    quiet_sila_logs()
    server = SilaServer(server_name=server_name or device.name, server_type=SERVER_TYPE,
                        server_description=f"{device.spec.kind} emulator of the mobile robotic chemist "
                                           f"(answers from data: lab.core.stations)",
                        server_version="1.0", server_vendor_url=VENDOR_URL)
    for name, implementation in _implementations(device, server).items():
        server.set_feature_implementation(feature(name), implementation)
    return server


def certificate(server, address: str) -> tuple[bytes, bytes]:
    """A self-signed key and certificate for this server (its UUID in the certificate, as SiLA asks)."""
    from sila2.server.encryption import generate_self_signed_certificate

    return generate_self_signed_certificate(server.server_uuid, address)


def start(server, address: str, port: int, *, key: bytes | None = None, cert: bytes | None = None,
          insecure: bool = False, discovery: bool = False) -> bytes | None:
    """Start `server`; returns the certificate it serves (None when insecure)."""
    if insecure:
        server.start_insecure(address, port, enable_discovery=discovery)
        return None
    if key is None or cert is None:
        key, cert = certificate(server, address)
    server.start(address, port, private_key=key, cert_chain=cert, enable_discovery=discovery)
    return cert


def main(argv: list[str] | None = None) -> int:
    """`lab instrument serve KIND` (and the bringup's `instrument` executable, which launch_ros
    hands `--ros-args`: they are not this server's and are dropped)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--ros-args" in argv:
        argv = argv[:argv.index("--ros-args")]
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="lab instrument serve",
                                     description="Serve a station kind's emulated instrument over SiLA 2.")
    parser.add_argument("kind", help="a station kind of config/station_processes.yaml (photoreactor, ...)")
    parser.add_argument("--name", default="", help="the SiLA server name (default: the kind)")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50052)
    parser.add_argument("--cert", type=Path, help="PEM certificate chain (with --key); default: self-signed")
    parser.add_argument("--key", type=Path, help="PEM private key")
    parser.add_argument("--cert-out", type=Path, help="write the served certificate here (for clients to trust)")
    parser.add_argument("--insecure", action="store_true", help="no TLS (only on a trusted network)")
    parser.add_argument("--discovery", action="store_true", help="announce the server by SiLA discovery (mDNS)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="device seconds per wall second (the simulation's speed)")
    parser.add_argument("--processes-file", type=Path, help="default: config/station_processes.yaml")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from lab.core.stations.station import load_kinds

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Expected())
    try:
        kinds = load_kinds(args.processes_file)
        if args.kind not in kinds:
            raise LabError(f"unknown kind {args.kind!r} (kinds: {', '.join(kinds)})")
        if bool(args.cert) != bool(args.key):
            raise LabError("--cert and --key go together")
        device = Device(args.name or args.kind, kinds[args.kind], args.time_scale, args.seed)
        server = build(device, args.name or args.kind)
        cert = start(server, args.address, args.port, insecure=args.insecure, discovery=args.discovery,
                     key=args.key.read_bytes() if args.key else None,
                     cert=args.cert.read_bytes() if args.cert else None)
    except (LabError, OSError, RuntimeError) as exc:
        print(f"lab instrument serve: {exc}", file=sys.stderr)
        return 2
    if cert is not None and args.cert_out:
        args.cert_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.cert_out.with_suffix(".tmp")
        tmp.write_bytes(cert)
        tmp.replace(args.cert_out)  # whole or absent: a station reading it never sees half a certificate
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"{device.name}: {args.kind} over SiLA 2 on {args.address}:{args.port} "
          f"({'insecure' if cert is None else 'TLS'}), features: {', '.join(features_of(device.spec))}", flush=True)
    stop.wait()
    server.stop(grace_period=1.0)
    return 0
