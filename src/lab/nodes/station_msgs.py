"""Conversions between lab_interfaces messages and lab.core's plain data."""

from __future__ import annotations

from lab.core.formulation import Formulation, MeasurementData
from lab_interfaces.msg import Curve, Measurement
from lab_interfaces.msg import Formulation as FormulationMsg


def msg_to_formulation(msg: FormulationMsg) -> Formulation:
    units = list(msg.units) + [""] * (len(msg.components) - len(msg.units))
    if len(msg.amounts) != len(msg.components):
        from lab.core.errors import InvalidGoal

        raise InvalidGoal(f"sample {msg.sample_id or '?'}: {len(msg.components)} components but "
                          f"{len(msg.amounts)} amounts")
    return Formulation(sample_id=msg.sample_id, amounts=dict(zip(msg.components, map(float, msg.amounts), strict=True)),
                       units={c: u for c, u in zip(msg.components, units, strict=False) if u},
                       specimen_kind=msg.specimen_kind)


def formulation_to_msg(f: Formulation) -> FormulationMsg:
    return FormulationMsg(sample_id=f.sample_id, specimen_kind=f.specimen_kind, components=list(f.amounts),
                          amounts=[float(v) for v in f.amounts.values()],
                          units=[f.units.get(c, "") for c in f.amounts])


def measurement_to_msg(m: MeasurementData, units: dict[str, str] | None = None,
                       specimen_kind: str = "") -> Measurement:
    units = units or {}
    msg = Measurement(sample_id=m.sample_id, valid=m.valid, failure_reason=m.failure_reason,
                      objectives=list(m.values), values=[float(v) for v in m.values.values()],
                      uncertainties=[float(m.uncertainties.get(k, 0.0)) for k in m.values],
                      units=[m.units.get(k, "") for k in m.values], station=m.station)
    msg.as_dispensed = formulation_to_msg(Formulation(m.sample_id, dict(m.as_dispensed),
                                                      {k: units.get(k, "") for k in m.as_dispensed}, specimen_kind))
    msg.curves = [Curve(x_label=c.get("x_label", ""), x_unit=c.get("x_unit", ""), y_label=c.get("y_label", ""),
                        y_unit=c.get("y_unit", ""), x=[float(v) for v in c.get("x", [])],
                        y=[float(v) for v in c.get("y", [])]) for c in m.curves]
    return msg


def msg_to_measurement(msg: Measurement) -> MeasurementData:
    n = len(msg.values)
    objectives = list(msg.objectives)[:n]
    return MeasurementData(
        sample_id=msg.sample_id, valid=bool(msg.valid), failure_reason=msg.failure_reason,
        values=dict(zip(objectives, map(float, msg.values), strict=False)),
        uncertainties=dict(zip(objectives, map(float, msg.uncertainties), strict=False)),
        units=dict(zip(objectives, msg.units, strict=False)),
        as_dispensed=dict(zip(msg.as_dispensed.components, map(float, msg.as_dispensed.amounts), strict=False)),
        curves=[{"x_label": c.x_label, "x_unit": c.x_unit, "y_label": c.y_label, "y_unit": c.y_unit,
                 "x": list(c.x), "y": list(c.y)} for c in msg.curves],
        station=msg.station)
