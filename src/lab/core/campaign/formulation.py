"""Plain-data formulations and measurements (what stations, planner and store exchange).

The ROS messages (lab_interfaces/Formulation, Measurement) carry the same content;
lab.ros.conversions converts between the two, so nothing under lab.core imports rclpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Formulation:
    """Named component amounts of one sample (a vial, or a printed specimen)."""

    sample_id: str
    amounts: dict[str, float]
    units: dict[str, str] = field(default_factory=dict)
    specimen_kind: str = ""


#: whose a failure was (MeasurementData.failure_kind): the equipment's (the sample was spoiled or
#: never measured: a crash, restart, fault, e-stop, time-out, a robot or carrier lost; the same
#: formulation can be made again) or the chemistry's (the station measured the sample and found
#: it invalid: a result the planner learns from, counted against the budget)
EQUIPMENT, CHEMISTRY = "equipment", "chemistry"


@dataclass
class MeasurementData:
    """What a station says about one sample. valid=False: failure_reason says why and
    failure_kind whose failure it was (EQUIPMENT or CHEMISTRY)."""

    sample_id: str
    valid: bool
    values: dict[str, float] = field(default_factory=dict)
    uncertainties: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    failure_reason: str = ""
    as_dispensed: dict[str, float] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)
    station: str = ""
    failure_kind: str = ""

    @classmethod
    def failed(cls, sample_id: str, reason: str, station: str = "", kind: str = EQUIPMENT) -> MeasurementData:
        return cls(sample_id=sample_id, valid=False, failure_reason=reason, station=station, failure_kind=kind)

    def to_state(self) -> dict[str, Any]:
        """As JSON-able data (the lab manager's record of batches in flight)."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MeasurementData:
        return cls(sample_id=str(state["sample_id"]), valid=bool(state["valid"]),
                   values={str(k): float(v) for k, v in state["values"].items()},
                   uncertainties={str(k): float(v) for k, v in state["uncertainties"].items()},
                   units={str(k): str(v) for k, v in state["units"].items()},
                   failure_reason=str(state["failure_reason"]),
                   as_dispensed={str(k): float(v) for k, v in state["as_dispensed"].items()},
                   curves=list(state["curves"]), station=str(state["station"]),
                   failure_kind=str(state.get("failure_kind", "")))
