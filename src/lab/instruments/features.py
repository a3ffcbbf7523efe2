"""The SiLA 2 features of the lab's instruments (FDL in features/*.sila.xml) and which feature and
command carries out which step of a station kind (config/station_processes.yaml).

A station kind's steps map onto commands this way (docs/instruments.md shows it as a table):
the kind's `dispense_step` is Dispensing.Dispense; the steps in STEP_COMMANDS are the measuring
or making commands named there; every other step (cap, purge, sonicate, slice, post_cure) is
ProcessStep.RunStep with the step's name and duration. Every server also implements
InstrumentStatus and CancelController.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sila2.framework import Feature

    from lab.core.stations.station import KindSpec

FDL_DIR = Path(__file__).with_name("features")
ALWAYS = ("InstrumentStatus", "CancelController")
FEATURES = (*ALWAYS, "Dispensing", "Illumination", "ProcessStep", "GasChromatography", "Printing", "MaterialTesting")

#: step name -> (feature, command); the kind's dispense_step is Dispensing.Dispense
STEP_COMMANDS: dict[str, tuple[str, str]] = {
    "illuminate": ("Illumination", "Illuminate"),
    "headspace_gc": ("GasChromatography", "MeasureHeadspace"),
    "print": ("Printing", "Print"),
    "compress_or_pull": ("MaterialTesting", "Test"),
}
DISPENSE = ("Dispensing", "Dispense")
GENERIC = ("ProcessStep", "RunStep")


@dataclass(frozen=True)
class StepCommand:
    step: str
    feature: str
    command: str


def step_commands(spec: KindSpec) -> dict[str, StepCommand]:
    """Every step of the kind's processes -> the command that carries it out."""
    out = {}
    for steps in spec.processes.values():
        for name, _seconds, _per in steps:
            feature, command = (DISPENSE if name == spec.dispense_step
                                else STEP_COMMANDS.get(name, GENERIC))
            out[name] = StepCommand(name, feature, command)
    return out


def features_of(spec: KindSpec) -> list[str]:
    """The features a server for this kind implements (and a station of the kind expects)."""
    needed = {c.feature for c in step_commands(spec).values()}
    return [*ALWAYS, *sorted(needed)]


def fdl(name: str) -> str:
    return (FDL_DIR / f"{name}.sila.xml").read_text()


@cache
def feature(name: str) -> Feature:
    """The parsed feature (sila2 builds its gRPC messages from the FDL at run time; no code generation)."""
    from sila2.framework import Feature

    return Feature(fdl(name))
