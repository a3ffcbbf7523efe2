"""Conversions between ROS messages and lab.core's plain data: planar poses, formulations,
measurements, the lab manager's samples. Nothing under lab.core imports a message type and no
message object crosses into core; this is where they meet."""

from __future__ import annotations

import math
from typing import Any

from geometry_msgs.msg import Pose, TransformStamped
from transforms3d.quaternions import mat2quat

from lab.core.campaign.formulation import Formulation, MeasurementData
from lab.core.errors import InvalidGoal
from lab.core.operations.scheduler import Amounts, Sample, SampleReport
from lab.core.robot.world import Pose2D
from lab_interfaces.msg import Curve, Measurement
from lab_interfaces.msg import Formulation as FormulationMsg


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by yaw about z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def planar_pose(pose: Any) -> Pose2D:
    """x, y and yaw of a geometry_msgs/Pose (an Odometry's or a PoseWithCovarianceStamped's
    msg.pose.pose)."""
    q = pose.orientation
    return Pose2D(pose.position.x, pose.position.y, quaternion_to_yaw(q.x, q.y, q.z, q.w))




def rotation_to_quaternion(r: Any) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a 3x3 rotation matrix (transforms3d gives w first)."""
    w, x, y, z = (float(v) for v in mat2quat(r))
    return x, y, z, w


def transform_msg(parent: str, child: str, pose: Any, stamp: Any) -> TransformStamped:
    """A geometry_msgs/TransformStamped: the child frame's 4x4 pose in the parent frame."""
    msg = TransformStamped()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, parent, child
    t = msg.transform
    t.translation.x, t.translation.y, t.translation.z = (float(v) for v in pose[:3, 3])
    t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w = rotation_to_quaternion(pose[:3, :3])
    return msg


def odom_pose(msg: Any) -> Pose2D:
    """x, y and yaw of an Odometry's pose (map frame in the embedded simulation)."""
    return planar_pose(msg.pose.pose)


def pose_msg(pose: Pose2D, z: float = 0.0) -> Pose:
    """A geometry_msgs/Pose of a planar pose (at height z)."""
    msg = Pose()
    msg.position.x, msg.position.y, msg.position.z = float(pose.x), float(pose.y), float(z)
    (msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w) = yaw_to_quaternion(pose.yaw)
    return msg



def msg_to_formulation(msg: FormulationMsg) -> Formulation:
    units = list(msg.units) + [""] * (len(msg.components) - len(msg.units))
    if len(msg.amounts) != len(msg.components):
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
                      failure_kind=m.failure_kind, objectives=list(m.values),
                      values=[float(v) for v in m.values.values()],
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
        station=msg.station, failure_kind=msg.failure_kind)


# ------------------------------------------------------------------ the lab manager's samples
def requested_sample(msg: FormulationMsg) -> Sample:
    """A RunBatch goal's formulation as the scheduler's sample; InvalidGoal when malformed."""
    f = msg_to_formulation(msg)
    return Sample(f.sample_id, f.specimen_kind, {c: (a, f.units.get(c, "")) for c, a in f.amounts.items()})


def amounts_to_msg(sample_id: str, specimen_kind: str, amounts: Amounts) -> FormulationMsg:
    return formulation_to_msg(Formulation(sample_id, {c: a for c, (a, _) in amounts.items()},
                                          {c: u for c, (_, u) in amounts.items() if u}, specimen_kind))


def sample_report(msg: Measurement) -> SampleReport:
    """What a station's measurement says of its sample, for the scheduler."""
    d = msg.as_dispensed
    units = list(d.units) + [""] * (len(d.amounts) - len(d.units))
    return SampleReport(msg.sample_id, bool(msg.valid), msg.failure_reason,
                        {c: (float(a), str(u)) for c, a, u in zip(d.components, d.amounts, units, strict=False)},
                        msg_to_measurement(msg) if msg.objectives else None)


def batch_line(sample: Sample) -> Measurement:
    """A sample's line of a batch's result: its measurement, or invalid with why; as dispensed
    (as requested where nothing was dispensed)."""
    if sample.measurement is not None and not sample.failure:
        msg = measurement_to_msg(sample.measurement)
    else:
        msg = Measurement(sample_id=sample.sample_id, valid=False, failure_reason=sample.failure,
                          failure_kind=sample.failure_kind)
    msg.sample_id = sample.sample_id
    msg.as_dispensed = amounts_to_msg(*sample.order())
    return msg
