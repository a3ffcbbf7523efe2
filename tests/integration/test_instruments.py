"""Instruments over SiLA 2 (lab.instruments): the emulators served as SiLA 2 servers, a generic
SiLA 2 client (sila2's dynamic client) against them, and the station's `sila` backend driving
them: results, validation errors that change nothing, defined errors as faults, cancel, a wrong
certificate refused, a server killed mid-step and back."""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from notices import free_port
from procs import process, wait_for

from lab.backends.instruments import StepCancelled
from lab.core.campaign.formulation import Formulation
from lab.core.errors import StationFault
from lab.core.stations.station import StationCore, Step, load_kinds

KINDS = load_kinds()
SCALE = 4000.0  # device seconds per wall second: the paper's hour of light in 0.9 s


def serve(kind: str, scale: float = SCALE):
    from lab.instruments.server import Device, build, start

    device = Device(kind, KINDS[kind], time_scale=scale)
    server = build(device)
    port = free_port()
    cert = start(server, "127.0.0.1", port)
    return device, server, port, cert


@pytest.fixture
def served(tmp_path: Path):
    running = []

    def make(kind: str, scale: float = SCALE):
        device, server, port, cert = serve(kind, scale)
        running.append(server)
        pem = tmp_path / f"{kind}-{port}.pem"
        pem.write_bytes(cert)
        return device, port, pem

    yield make
    for server in running:
        server.stop(grace_period=0.5)


class Settings:
    def __init__(self, port: int, ca: Path, **extra) -> None:
        self.sila_address, self.sila_port, self.sila_ca = "127.0.0.1", port, str(ca)
        self.sila_server_name, self.sila_insecure, self.sila_grace, self.sila_discovery_timeout = "", False, 5.0, 2.0
        self.sila_call_timeout = 10.0
        self.__dict__.update(extra)


def backend(kind: str, port: int, ca: Path, **extra):
    from lab.instruments.backend import SilaInstrument

    core = StationCore(kind, KINDS[kind], seed=1)
    return SilaInstrument(core, {"params": Settings(port, ca, **extra)}), core


def wall_wait(scale: float = SCALE, cancel: threading.Event | None = None):
    """The station's wait(seconds) on the wall clock at `scale` (no ROS): False once `cancel` is set."""
    def wait(seconds: float) -> bool:
        end = time.monotonic() + seconds / scale
        while time.monotonic() < end:
            if cancel is not None and cancel.is_set():
                return False
            time.sleep(0.002)
        return not (cancel is not None and cancel.is_set())
    return wait


def photocatalysis_sample(sample_id: str, cysteine: float = 1.0) -> Formulation:
    return Formulation(sample_id, {"P10-MIX1": 3.0, "L-Cysteine-100gL": cysteine, "NaOH-1M": 0.5})


def test_a_generic_sila_client_lists_the_features_and_runs_commands(served) -> None:
    from sila2.client import SilaClient

    device, port, pem = served("liquid_dispenser", scale=20.0)  # 45 s of dosing: 2.2 s, time to subscribe
    client = SilaClient("127.0.0.1", port, root_certs=pem.read_bytes())
    implemented = client.SiLAService.ImplementedFeatures.get()
    assert {f"org.mobilechemist/instruments/{n}/v1" for n in
            ("InstrumentStatus", "CancelController", "Dispensing", "ProcessStep")} <= set(implemented), implemented
    assert client.InstrumentStatus.Steps.get() == ["dispense_liquids", "cap", "purge"]
    instance = client.Dispensing.Dispense([("v1", [("L-Cysteine-100gL", 1.0), ("NaOH-1M", 0.5)])])
    done = []
    subscription = instance.subscribe_to_intermediate_responses()
    subscription.add_callback(lambda sample: done.append(sample))
    wait_for(lambda: instance.done, 10, what="Dispense done")
    as_dispensed = {a.Component: a.Amount for a in instance.get_responses().AsDispensed[0].Amounts}
    assert as_dispensed["L-Cysteine-100gL"] == pytest.approx(1.0, abs=0.05) and as_dispensed["NaOH-1M"] > 0.4
    wait_for(lambda: [r.SampleDone for r in done] == ["v1"], 5, what="the sample's intermediate response")
    stock = {s.Name: s.Level for s in client.Dispensing.Stocks.get()}
    assert stock["L-Cysteine-100gL"] == pytest.approx(250.0 - as_dispensed["L-Cysteine-100gL"])
    client.close()


def test_out_of_range_parameters_are_sila_validation_errors_with_the_reason_and_change_nothing(served) -> None:
    from sila2.client import SilaClient
    from sila2.framework import ValidationError

    device, port, pem = served("liquid_dispenser")
    client = SilaClient("127.0.0.1", port, root_certs=pem.read_bytes())
    before = client.Dispensing.Stocks.get()
    for amounts, reason in (([("L-Cysteine-100gL", 7.0)], "L-Cysteine-100gL 7 mL is outside [0.25, 5] mL"),
                            ([("L-Cysteine-100gL", 1.0), ("Unobtainium", 1.0)], "unknown component(s) Unobtainium"),
                            ([("L-Cysteine-100gL", 3.0), ("NaOH-1M", 3.0)], "above the 5 the vial holds")):
        instance = client.Dispensing.Dispense([("v1", amounts)])
        wait_for(lambda instance=instance: instance.done, 10, what="the refused command's end")
        with pytest.raises(ValidationError) as refused:
            instance.get_responses()
        assert reason in refused.value.message
        assert str(refused.value.parameter_fully_qualified_identifier.fully_qualified_identifier).endswith(
            "Command/Dispense/Parameter/Samples")
    with pytest.raises(ValidationError, match=r"Constraint violated: MinimalInclusive\(0.0\) \(-1.0\)"):
        client.Dispensing.Dispense([("v1", [("NaOH-1M", -1.0)])])  # the FDL's own constraint
    step = client.ProcessStep.RunStep("fly", 1.0)
    wait_for(lambda: step.done, 10, what="RunStep's end")
    with pytest.raises(ValidationError, match="runs no step 'fly'"):
        step.get_responses()
    assert client.Dispensing.Stocks.get() == before
    assert client.InstrumentStatus.State.get() == "Idle"
    client.close()


def test_the_sila_backend_runs_a_rack_through_every_kind_and_reports_what_the_instruments_said(served) -> None:
    rack = [photocatalysis_sample("a", 1.0), photocatalysis_sample("b", 2.0)]
    dispensed = {}
    for kind in ("solid_dispenser", "liquid_dispenser", "photoreactor", "gas_chromatograph"):
        _, port, pem = served(kind)
        instrument, core = backend(kind, port, pem)
        instrument.connect()
        steps = core.plan("", rack)
        fractions = []
        instrument.progress = fractions.append
        instrument.begin(rack)
        for step in steps:
            instrument.execute(step, rack, wall_wait())
        results = instrument.results(rack)
        assert [m.sample_id for m in results] == ["a", "b"] and all(m.valid for m in results)
        if core.spec.components:
            dispensed.update({c: results[1].as_dispensed[c] for c in core.spec.components})
            assert core.stock_levels() != {c: s.capacity for c, s in core.stocks.items()}, "stocks followed"
        if kind == "gas_chromatograph":
            assert results[0].values["hydrogen_evolution_rate"] != results[1].values["hydrogen_evolution_rate"]
            assert results[0].units["hydrogen_evolution_rate"] == "umol/h"
        instrument.disconnect()
    assert dispensed["L-Cysteine-100gL"] == pytest.approx(2.0, abs=0.05)
    assert dispensed["P10-MIX1"] == pytest.approx(3, abs=0.1)
    specimen = [Formulation("s1", {"n": 8, "theta": 50.0, "r": 2.0, "t": 1.05}, specimen_kind="crossed_barrel")]
    _, port, pem = served("mechanical_tester")
    instrument, core = backend("mechanical_tester", port, pem)
    instrument.begin(specimen)
    for step in core.plan("", specimen):
        instrument.execute(step, specimen, wall_wait())
    tested = instrument.results(specimen)[0]
    assert tested.values["toughness"] > 0 and tested.curves[0]["y_unit"] == "N" and len(tested.curves[0]["x"]) == 40


def test_defined_errors_are_faults_with_the_instruments_message_and_a_cancel_stops_the_command(served) -> None:
    device, port, pem = served("photoreactor", scale=20.0)
    instrument, core = backend("photoreactor", port, pem)
    device.fail_next = 1
    with pytest.raises(StationFault, match=r"illuminate: LampFault: photoreactor: emulated LampFault half-way"):
        instrument.execute(Step("illuminate", 60.0), [], wall_wait(20.0))
    assert device.state == "Fault" and "LampFault" in device.fault
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    began = time.monotonic()
    with pytest.raises(StepCancelled):
        instrument.execute(Step("illuminate", 3600.0), [], wall_wait(20.0, cancel))
    assert time.monotonic() - began < 5.0, "the cancel stopped the 180 s (wall) illumination"
    assert device.state == "Idle" and not device.lamp and not device.cancels


def test_a_wrong_certificate_is_refused(served, tmp_path: Path) -> None:
    _, port, pem = served("sonicator")
    _, _, other = served("post_cure_oven")
    instrument, _ = backend("sonicator", port, other)
    with pytest.raises(StationFault, match=r"sonicator: cannot connect to the instrument at 127.0.0.1:\d+: .*"):
        instrument._connected()
    missing, _ = backend("sonicator", port, tmp_path / "nowhere.pem")
    with pytest.raises(StationFault, match="cannot connect to the instrument at .*: sila_ca .*nowhere.pem: No such"):
        missing._connected()
    wrong_kind, _ = backend("photoreactor", port, pem)  # a sonicator's server where a photoreactor's is expected
    with pytest.raises(StationFault, match="lacks the feature.s. Illumination a photoreactor needs"):
        wrong_kind._connected()
    right, _ = backend("sonicator", port, pem)
    assert right._connected() is not None


def _server_process(kind: str, port: int, pem: Path):
    return process([sys.executable, "-c", "import sys; from lab.instruments.server import main; sys.exit(main())",
                    kind, "--port", str(port), "--cert-out", str(pem), "--time-scale", "20"])


def test_a_server_killed_mid_step_is_a_fault_with_its_reason_and_the_station_reconnects_when_it_is_back(
        tmp_path: Path) -> None:
    port, pem = free_port(), tmp_path / "photoreactor.pem"
    instrument, _ = backend("photoreactor", port, pem)
    with _server_process("photoreactor", port, pem) as proc:
        wait_for(lambda: pem.exists(), 30, what="the server's certificate")
        instrument.connect()
        threading.Timer(1.0, lambda: proc.send_signal(signal.SIGKILL)).start()
        with pytest.raises(StationFault, match=r"photoreactor: lost the instrument at 127.0.0.1:\d+ during "
                                               r"illuminate: UNAVAILABLE"):
            instrument.execute(Step("illuminate", 3600.0), [], wall_wait(20.0))
        proc.wait(5)
    with pytest.raises(StationFault, match="cannot connect to the instrument"):
        instrument.execute(Step("illuminate", 20.0), [], wall_wait(20.0))  # still down: a fault, not a hang
    pem.unlink()
    with _server_process("photoreactor", port, pem):
        wait_for(lambda: pem.exists(), 30, what="the restarted server's certificate")
        instrument.execute(Step("illuminate", 20.0), [], wall_wait(20.0))  # a new certificate, read again


def test_a_server_that_stops_answering_mid_step_is_a_fault_within_the_call_limit_not_a_hang(tmp_path: Path) -> None:
    """A server that keeps its connection and never answers (here: SIGSTOPped; a wedged instrument
    PC does the same): gRPC would wait for ever, and the station holds the lab's clock through
    its steps, so the whole lab would stand still. Every call has `sila_call_timeout`."""
    port, pem = free_port(), tmp_path / "photoreactor.pem"
    instrument, _ = backend("photoreactor", port, pem, sila_call_timeout=1.5)
    with _server_process("photoreactor", port, pem) as proc:
        wait_for(lambda: pem.exists(), 30, what="the server's certificate")
        instrument.connect()
        threading.Timer(1.0, lambda: proc.send_signal(signal.SIGSTOP)).start()
        outcome: list[BaseException | None] = []

        def step() -> None:  # in a thread: without the limit the test would hang, not fail
            try:
                # 400 simulated s at 20x: the server is looked at after each twentieth (1 wall s)
                instrument.execute(Step("illuminate", 400.0), [], wall_wait(20.0))
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        runner = threading.Thread(target=step, daemon=True)
        runner.start()
        try:
            runner.join(1.0 + 1.0 + 1.5 + 2.0)  # the stop, the next look, the limit, slack
            assert outcome, "the step still waits on a server that does not answer"
            assert isinstance(outcome[0], StationFault), outcome
            assert re.fullmatch(r"photoreactor: lost the instrument at 127.0.0.1:\d+ during illuminate: "
                                r"no answer within 1.5 s", str(outcome[0])), outcome
        finally:
            proc.send_signal(signal.SIGCONT)
        # answering again: connected anew, and told what the instrument is doing (the abandoned
        # illumination runs on in it: the next step is the station's fault recovery's to try)
        with pytest.raises(StationFault, match="photoreactor is busy with another command"):
            instrument.execute(Step("illuminate", 20.0), [], wall_wait(20.0))


def test_a_station_finds_its_server_by_name_through_sila_discovery(tmp_path: Path) -> None:
    import uuid

    from lab.instruments.server import Device, build, start

    name = f"Sonicator-{uuid.uuid4().hex[:8]}"  # another test run's servers announce themselves too
    server = build(Device("sonicator", KINDS["sonicator"], time_scale=SCALE), name)
    pem = tmp_path / "sonicator.pem"
    pem.write_bytes(start(server, "127.0.0.1", free_port(), discovery=True))
    try:
        instrument, _ = backend("sonicator", 0, pem, sila_address="", sila_server_name=name)
        assert instrument.where == f"SiLA server '{name}'"
        instrument.execute(Step("sonicate", 600.0), [], wall_wait())
        nobody, _ = backend("sonicator", 0, pem, sila_address="", sila_server_name=name + "-absent",
                            sila_discovery_timeout=1.0)
        with pytest.raises(StationFault, match=f"cannot connect to the instrument at SiLA server '{name}-absent'"):
            nobody._connected()
    finally:
        server.stop(grace_period=0.5)
