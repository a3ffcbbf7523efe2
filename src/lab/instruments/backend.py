"""The `sila` instrument backend: a station node drives an instrument's SiLA 2 server.

Chosen with the station's `backend: sila`; the server is found by `sila_address`/`sila_port`, or
by `sila_server_name` through SiLA discovery when no address is given. TLS always: the server's
certificate or its CA in `sila_ca`, else the system's trust store; no TLS only with
`sila_insecure: true`, asked for by name.

Each step of the station's process is one observable command (lab.instruments.features maps
steps to commands). Time: the step's nominal duration (station_processes.yaml) passes on the
lab's clock while the command runs, ending early when the instrument is done; an instrument
still running after that is waited for on the wall clock (the lab's clock held: the station is
computing, as far as the simulation can tell), up to the instrument's own estimate of its
remaining time x 1.5 plus `sila_grace` seconds. Its progress becomes the goal's feedback, a
cancel of the goal (or the e-stop) cancels the command (CancelController), a defined execution
error is a station fault carrying the instrument's message, a lost connection a fault with its
reason; the next step connects again. Every call to the server has `sila_call_timeout` wall
seconds to be answered (sila2 sets no gRPC deadline): past it the connection is dropped and the
step is a fault ("no answer within ...").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lab.backends.instruments import InstrumentBackend, StepCancelled, Wait
from lab.core.campaign.formulation import Formulation, MeasurementData
from lab.core.errors import StationFault
from lab.core.stations.station import StationCore, Step
from lab.instruments.features import feature, features_of, step_commands

ALIVE_PERIOD = 0.5   # wall s between checks that the server still answers, while a command runs
POLL = 0.005         # wall s between looks at a command's state past its nominal time (a local attribute)
SLICES = 20          # the nominal time passes in this many waits, so that an early finish ends it


class SilaInstrument(InstrumentBackend):
    """A station's instrument behind a SiLA 2 server."""

    def __init__(self, core: StationCore, params: dict[str, Any]) -> None:
        super().__init__(core, params)
        settings = params["params"]  # the station's StationParams: the sila_* defaults live there
        self.address, self.port = settings.sila_address, int(settings.sila_port)
        self.server_name, self.ca, self.insecure = settings.sila_server_name, settings.sila_ca, settings.sila_insecure
        self.grace, self.discovery_timeout = float(settings.sila_grace), float(settings.sila_discovery_timeout)
        self.call_timeout = float(settings.sila_call_timeout)
        self.log = params.get("logger")
        self.commands = step_commands(core.spec)
        self.client = None
        self._reset()

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}" if self.address else f"SiLA server '{self.server_name}'"

    def _reset(self) -> None:
        self.dispensed: dict[str, dict[str, float]] = {}
        self.measured: dict[str, tuple[dict, dict, dict, list]] = {}

    # ------------------------------------------------------------------ connection
    def connect(self) -> None:
        """Connect at start-up if the server is there; a server not up yet is connected to at the first step."""
        if not self.commands:
            return  # a kind that runs no process (rack storage, charger) has no instrument
        try:
            self._connected()
        except StationFault as exc:
            if self.log is not None:
                self.log.warning(f"{exc} (connecting again at the first step)")

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def _connected(self):
        """The client, connected now if it was not; StationFault saying why it cannot be."""
        if self.client is not None:
            return self.client
        from sila2.client import SilaClient

        import lab.instruments  # noqa: F401 (gRPC's log level, before its first channel)

        if not (self.address or self.server_name):
            raise StationFault(f"{self.core.name}: backend sila needs sila_address (and sila_port) or sila_server_name")
        roots = None
        if self.ca and not self.insecure:
            try:
                roots = Path(self.ca).expanduser().read_bytes()
            except OSError as exc:
                raise StationFault(f"{self.core.name}: cannot connect to the instrument at {self.where}: "
                                   f"sila_ca {self.ca}: {exc.strerror}") from None
        try:
            if self.address:
                client = SilaClient(self.address, self.port, root_certs=roots, insecure=self.insecure)
            else:
                client = SilaClient.discover(server_name=self.server_name, timeout=self.discovery_timeout,
                                             root_certs=roots, insecure=self.insecure)
        except Exception as exc:  # grpc, TLS and discovery errors: the reason is in the message
            raise StationFault(f"{self.core.name}: cannot connect to the instrument at {self.where}: "
                               f"{_reason(exc)}") from None
        try:
            implemented = set(self._call(client.SiLAService.ImplementedFeatures.get))
        except Exception as exc:
            client.close()
            raise StationFault(f"{self.core.name}: cannot connect to the instrument at {self.where}: "
                               f"{_reason(exc)}") from None
        missing = [name for name in features_of(self.core.spec)
                   if str(feature(name).fully_qualified_identifier) not in implemented]
        if missing:
            client.close()
            raise StationFault(f"{self.core.name}: the instrument at {self.where} lacks the feature(s) "
                               f"{', '.join(missing)} a {self.core.spec.kind} needs (docs/instruments.md)")
        self.client = client
        self._take_stocks("connecting")
        if self.log is not None:
            self.log.info(f"{self.core.name}: instrument connected at {self.where}")
        return client

    def _lost(self, exc: Exception, doing: str) -> StationFault:
        self.disconnect()
        return StationFault(f"{self.core.name}: lost the instrument at {self.where} during {doing}: {_reason(exc)}")

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), a call to the server, within `call_timeout` wall s: TimeoutError past it, the
        channel closed (which ends the call's gRPC wait, and with it the thread that waited).
        A thread per call: a call is ms on a lab network, and a call stuck in gRPC cannot be
        taken back from a pool's only worker."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # handed to the caller as it was raised
                box["error"] = exc

        thread = threading.Thread(target=run, daemon=True, name=f"sila-call-{self.core.name}")
        thread.start()
        thread.join(self.call_timeout)
        if thread.is_alive():
            self.disconnect()
            raise TimeoutError(f"no answer within {self.call_timeout:g} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _take_stocks(self, doing: str) -> None:
        """The station's record of its stocks follows the instrument's (it is what dispensed); a
        server that does not answer is lost during `doing`."""
        if "Dispensing" not in features_of(self.core.spec):
            return
        try:
            stocks = self._call(self.client.Dispensing.Stocks.get)
        except Exception as exc:
            raise self._lost(exc, f"{doing} (reading its stocks)") from None
        levels = {s.Name: min(float(s.Level), self.core.stocks[s.Name].capacity)
                  for s in stocks if s.Name in self.core.stocks}
        self.core.restore_stocks(levels)

    def refill(self, stock: str, amount: float) -> None:
        if "Dispensing" not in features_of(self.core.spec):
            return  # an instrument without stocks
        client = self._connected()
        for name in ([stock] if stock else list(self.core.stocks)):
            try:
                self._call(client.Dispensing.Refill, name, max(0.0, float(amount)))
            except Exception as exc:
                raise self._lost(exc, f"refilling {name}") from None

    # ------------------------------------------------------------------ steps
    def begin(self, samples: Sequence[Formulation]) -> None:
        self._reset()

    def execute(self, step: Step, samples: Sequence[Formulation], wait: Wait) -> None:
        client = self._connected()
        command = self.commands[step.name]
        call = getattr(getattr(client, command.feature), command.command)
        try:
            instance = self._call(call, *self._parameters(command.feature, step, samples))
        except Exception as exc:
            raise self._fault(exc, step) from None
        self._follow(step, instance, wait)
        try:
            responses = self._call(instance.get_responses)
        except Exception as exc:
            raise self._fault(exc, step) from None
        self._keep(command.feature, responses)
        if command.feature == "Dispensing":
            self._take_stocks(step.name)

    def _parameters(self, feature_name: str, step: Step, samples: Sequence[Formulation]) -> tuple:
        mine = self.core.spec.components
        if feature_name == "Dispensing":
            return ([(f.sample_id, [(c, float(v)) for c, v in f.amounts.items() if c in mine]) for f in samples],)
        if feature_name == "GasChromatography":
            return ([(f.sample_id, [(c, float(v)) for c, v in f.amounts.items()]) for f in samples],)
        if feature_name in ("Printing", "MaterialTesting"):
            return ([(f.sample_id, f.specimen_kind, [(c, float(v)) for c, v in f.amounts.items()]) for f in samples],)
        if feature_name == "Illumination":
            return (float(step.seconds),)
        return (step.name, float(step.seconds))

    def _follow(self, step: Step, instance, wait: Wait) -> None:
        """Until the command is done: the nominal time on the lab's clock, then the wall clock."""
        checked = time.monotonic()
        waited, piece = 0.0, step.seconds / SLICES
        while not instance.done and waited < step.seconds - 1e-9:
            chunk = min(piece, step.seconds - waited)
            if not wait(chunk):
                self._cancel(instance, step)
            waited += chunk
            checked = self._alive(checked, step)
        remaining = instance.estimated_remaining_time
        limit = time.monotonic() + self.grace + 1.5 * (remaining.total_seconds() if remaining else 0.0)
        while not instance.done:
            if not wait(0.0):
                self._cancel(instance, step)
            if time.monotonic() > limit:
                self._cancel(instance, step, cancelled=False)
                raise StationFault(f"{self.core.name}: the instrument at {self.where} did not finish {step.name} "
                                   f"within its own estimate x 1.5 + {self.grace:g} s")
            progress = getattr(self, "progress", None)
            if callable(progress) and instance.progress is not None:
                progress(float(instance.progress))
            checked = self._alive(checked, step)
            time.sleep(POLL)

    def _alive(self, checked: float, step: Step) -> float:
        if time.monotonic() - checked < ALIVE_PERIOD:
            return checked
        try:
            self._call(self.client.InstrumentStatus.State.get)
        except Exception as exc:
            raise self._lost(exc, step.name) from None
        return time.monotonic()

    def _cancel(self, instance, step: Step, cancelled: bool = True) -> None:
        """Ask the instrument to stop the command and wait (briefly) until it has."""
        try:
            self._call(self.client.CancelController.CancelCommand, str(instance.execution_uuid))
            deadline = time.monotonic() + self.grace
            while not instance.done and time.monotonic() < deadline:
                time.sleep(POLL)
        except Exception as exc:
            if self.log is not None:
                self.log.warning(f"{self.core.name}: cancelling {step.name} on {self.where}: {_reason(exc)}")
        if cancelled:
            raise StepCancelled(step.name)

    def _fault(self, exc: Exception, step: Step) -> Exception:
        from sila2.framework import DefinedExecutionError, SilaConnectionError, ValidationError

        if isinstance(exc, DefinedExecutionError):
            if exc.identifier == "Cancelled":
                return StepCancelled(step.name)
            return StationFault(f"{self.core.name}: {step.name}: {exc.identifier}: {exc.message}")
        if isinstance(exc, ValidationError):
            return StationFault(f"{self.core.name}: {step.name}: the instrument refused the parameters: {exc.message}")
        if isinstance(exc, SilaConnectionError | TimeoutError):  # TimeoutError: _call's limit
            return self._lost(exc, step.name)
        return StationFault(f"{self.core.name}: {step.name}: the instrument at {self.where} failed: {_reason(exc)}")

    def _keep(self, feature_name: str, responses) -> None:
        if feature_name == "Dispensing":
            for sample in responses.AsDispensed:
                self.dispensed[sample.SampleId] = {a.Component: float(a.Amount) for a in sample.Amounts}
        elif feature_name == "Printing":
            for specimen in responses.Printed:
                printed = {q.Name: float(q.Value) for q in specimen.Design}
                self.dispensed.setdefault(specimen.SampleId, {}).update(printed)
        elif feature_name in ("GasChromatography", "MaterialTesting"):
            for result in responses.Results:
                values = {m.Name: float(m.Value) for m in result.Values}
                sd = {m.Name: float(m.Uncertainty) for m in result.Values}
                units = {m.Name: m.Unit for m in result.Values}
                curves = [{"x_label": c.XLabel, "x_unit": c.XUnit, "y_label": c.YLabel, "y_unit": c.YUnit,
                           "x": [float(v) for v in c.X], "y": [float(v) for v in c.Y]}
                          for c in getattr(result, "Curves", [])]
                self.measured[result.SampleId] = (values, sd, units, curves)

    def results(self, samples: Sequence[Formulation]) -> list[MeasurementData]:
        out = []
        for f in samples:
            values, sd, units, curves = self.measured.get(f.sample_id, ({}, {}, {}, []))
            out.append(MeasurementData(sample_id=f.sample_id, valid=True, station=self.core.name,
                                       as_dispensed=dict(self.dispensed.get(f.sample_id, {})), values=dict(values),
                                       uncertainties=dict(sd), units=dict(units), curves=list(curves)))
        return out


def _reason(exc: Exception) -> str:
    """A gRPC or SiLA error's own words, without the stack of wrappers around them."""
    exc = getattr(exc, "exception", None) or exc  # sila2's SilaConnectionError wraps the gRPC error
    details = getattr(exc, "details", None)
    if callable(details):
        try:
            return f"{exc.code().name}: {details()}"
        except Exception:
            pass
    return str(getattr(exc, "message", "") or exc) or type(exc).__name__
