"""Instrument backends: the driver under a station node (after PyLabRobot's split of a
device's frontend from its backends).

The station node owns what is the same for every instrument of a kind: the goal, its checks
against the station's bounds and stocks (lab.core.stations.station), the steps and their order,
feedback, cancel, status. A backend carries out one step on the samples and reports what
was dispensed or measured. `SimulatedInstrument` (the default) waits each step's duration
in simulated time and answers from the emulators fitted to real data. A real instrument is
a subclass of `InstrumentBackend` registered in lab.backends.base._BACKENDS['instrument']
and chosen with the station's `backend` parameter:

    class QuantosDriver(InstrumentBackend):
        def connect(self): self.device = open_serial(self.params['port'])
        def execute(self, step, samples, wait):
            for s in samples:                    # one vial at a time
                self.device.dose('P10-MIX1', s.amounts['P10-MIX1'])
                if not wait(0.0):                # lets the node see a cancel between vials
                    raise StepCancelled(step.name)
        def results(self, samples):
            return [MeasurementData(s.sample_id, True, as_dispensed={'P10-MIX1': self.device.last_mass(i)})
                    for i, s in enumerate(samples)]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from lab.core.campaign.formulation import Formulation, MeasurementData
from lab.core.errors import LabError, StationFault
from lab.core.stations.station import StationCore, Step


class StepCancelled(LabError):
    """The goal was cancelled during a step."""


#: wait(seconds) lets `seconds` of the lab's clock pass; False when the goal was cancelled
Wait = Callable[[float], bool]


class InstrumentBackend(ABC):
    """The hardware side of one station. Methods run on the station's goal thread."""

    def __init__(self, core: StationCore, params: dict[str, Any]) -> None:
        self.core, self.params = core, params

    def connect(self) -> None:
        """Open the device (called once at node start); raise BackendUnavailable if absent."""
        return None

    def disconnect(self) -> None:
        """Close the device (node shutdown)."""
        return None

    def begin(self, samples: Sequence[Formulation]) -> None:
        """A process starts on these samples (the checks have passed)."""
        return None

    def refill(self, stock: str, amount: float) -> None:
        """A stock was refilled (the station's ~/refill_stock; "" = every stock); an instrument
        that keeps its own account of its stocks is told."""
        return None

    #: set by the station before each step: progress(fraction of the step) updates the goal's
    #: feedback, for a backend that learns its progress from the instrument
    progress: Callable[[float], None] | None = None

    @abstractmethod
    def execute(self, step: Step, samples: Sequence[Formulation], wait: Wait) -> None:
        """Carry out `step` on the samples; block until done. Raise StepCancelled when wait()
        returns False, StationFault when the instrument fails."""

    @abstractmethod
    def results(self, samples: Sequence[Formulation]) -> list[MeasurementData]:
        """Per sample, in order: as-dispensed amounts and measured values."""


class SimulatedInstrument(InstrumentBackend):
    """Waits each step out in simulated time; dispenses with error; measures from emulators.

    Fault injection (parameters, also settable at run time): `fault_probability` per step,
    and `fail_next` (the next N steps fail), so tests and operators can see faults handled.
    """

    def __init__(self, core: StationCore, params: dict[str, Any]) -> None:
        super().__init__(core, params)
        self.dispensed: dict[str, dict[str, float]] = {}

    def begin(self, samples: Sequence[Formulation]) -> None:
        self.dispensed = {}

    def execute(self, step: Step, samples: Sequence[Formulation], wait: Wait) -> None:
        fault = self.params.get("take_fault")
        if callable(fault) and fault(step):
            # fail part-way through the step, as a jammed instrument would
            if not wait(step.seconds * float(self.core.rng.uniform(0.1, 0.9))):
                raise StepCancelled(step.name)
            raise StationFault(f"{self.core.name}: simulated instrument fault during {step.name}")
        if not wait(step.seconds):
            raise StepCancelled(step.name)
        if step.name == self.core.spec.dispense_step:
            self.dispensed = self.core.dispense(samples)

    def results(self, samples: Sequence[Formulation]) -> list[MeasurementData]:
        return self.core.results(samples, self.dispensed)
