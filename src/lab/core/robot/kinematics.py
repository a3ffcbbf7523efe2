"""Forward and inverse kinematics of a URDF chain, and joint trajectories (numpy, transforms3d).

The embedded manipulation backend and the simulation read the robot from the same xacro
as Gazebo, MoveIt and RViz, so the arm they move is the arm the full stack moves.
Units: m, rad, s.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transforms3d.axangles import axangle2mat
from transforms3d.euler import euler2mat


class Unreachable(ValueError):
    """No joint configuration within the limits reaches the target; the message says why."""


def expand_xacro(path: Path, **args: str) -> str:
    """The URDF text of a .xacro file with these arguments (the xacro package, no ROS needed)."""
    import xacro

    doc = xacro.process_file(str(path), mappings={k: str(v) for k, v in args.items()})
    return str(doc.toprettyxml(indent="  "))


@dataclass(frozen=True)
class _Joint:
    name: str
    kind: str                 # 'fixed' | 'revolute' | 'prismatic' | 'continuous'
    origin: np.ndarray        # 4x4 parent -> joint frame at q = 0
    axis: np.ndarray          # unit vector in the joint frame
    lower: float
    upper: float
    velocity: float


def _joint(joint: ET.Element) -> _Joint:
    kind = joint.get("type", "fixed")
    limit = joint.find("limit")
    lower = float(limit.get("lower", "-3.1416")) if limit is not None else -math.pi
    upper = float(limit.get("upper", "3.1416")) if limit is not None else math.pi
    velocity = float(limit.get("velocity", "1.0")) if limit is not None else 1.0
    if kind == "continuous":
        lower, upper = -math.pi, math.pi
    axis_el = joint.find("axis")
    axis = np.array([float(v) for v in (axis_el.get("xyz", "1 0 0") if axis_el is not None else "1 0 0").split()])
    return _Joint(joint.get("name", ""), kind, _origin(joint.find("origin")), axis / (np.linalg.norm(axis) or 1.0),
                  lower, upper, velocity)


def _motion(joint: _Joint, q: float) -> np.ndarray:
    """The joint's own motion at position q (4x4)."""
    motion = np.eye(4)
    if joint.kind == "prismatic":
        motion[:3, 3] = joint.axis * q
    elif joint.kind != "fixed":
        motion[:3, :3] = axangle2mat(joint.axis, q)
    return motion


def _origin(element: ET.Element | None) -> np.ndarray:
    t = np.eye(4)
    if element is None:
        return t
    xyz = [float(v) for v in element.get("xyz", "0 0 0").split()]
    rpy = [float(v) for v in element.get("rpy", "0 0 0").split()]
    t[:3, :3] = euler2mat(rpy[0], rpy[1], rpy[2], "sxyz")
    t[:3, 3] = xyz
    return t


@dataclass(frozen=True)
class Link:
    """One joint's transform as tf carries it: the child link's pose in the parent link's frame."""
    parent: str
    child: str
    pose: np.ndarray  # 4x4


class Tree:
    """Every joint of a URDF, as robot_state_publisher reads it: fixed joints give the static
    transforms, the others a transform per joint state (a mimic joint follows its leader:
    multiplier * q + offset; a joint with no position known is left out, as there)."""

    def __init__(self, urdf_xml: str) -> None:
        self._fixed: list[Link] = []
        self._moving: list[tuple[_Joint, str, str, str, float, float]] = []
        for element in ET.fromstring(urdf_xml).findall("joint"):
            parent, child = element.find("parent"), element.find("child")
            if parent is None or child is None:
                raise ValueError(f"joint '{element.get('name')}' has no parent or child link")
            joint = _joint(element)
            ends = (parent.get("link", ""), child.get("link", ""))
            if joint.kind == "fixed":
                self._fixed.append(Link(*ends, joint.origin))
                continue
            mimic = element.find("mimic")
            leader = mimic.get("joint", "") if mimic is not None else joint.name
            multiplier = float(mimic.get("multiplier", "1")) if mimic is not None else 1.0
            offset = float(mimic.get("offset", "0")) if mimic is not None else 0.0
            self._moving.append((joint, *ends, leader, multiplier, offset))

    def fixed(self) -> list[Link]:
        return list(self._fixed)

    def moving(self, positions: dict[str, float]) -> list[Link]:
        return [Link(parent, child, joint.origin @ _motion(joint, multiplier * positions[leader] + offset))
                for joint, parent, child, leader, multiplier, offset in self._moving if leader in positions]


class Chain:
    """The serial chain between two links of a URDF."""

    def __init__(self, joints: list[_Joint]) -> None:
        self._joints = joints
        moving = [j for j in joints if j.kind != "fixed"]
        self.joint_names = [j.name for j in moving]
        self.lower = np.array([j.lower for j in moving])
        self.upper = np.array([j.upper for j in moving])
        self.velocity = np.array([j.velocity for j in moving])
        #: recent IK answers: the arm checks a whole pick-and-place before moving, then solves
        #: the same targets from the same seeds again as it moves (each solve is 20-250 ms)
        self._ik_memo: dict[bytes, np.ndarray | str] = {}

    @classmethod
    def from_urdf(cls, urdf_xml: str, base_link: str, tip_link: str) -> Chain:
        root = ET.fromstring(urdf_xml)
        by_child: dict[str, ET.Element] = {}
        for joint in root.findall("joint"):
            child = joint.find("child")
            if child is not None:
                by_child[child.get("link", "")] = joint
        names = {link.get("name") for link in root.findall("link")}
        for link in (base_link, tip_link):
            if link not in names:
                raise ValueError(f"no link '{link}' in the URDF")
        chain: list[_Joint] = []
        link = tip_link
        while link != base_link:
            if link not in by_child:
                raise ValueError(f"'{tip_link}' is not below '{base_link}' in the URDF")
            joint = by_child[link]
            chain.append(_joint(joint))
            parent = joint.find("parent")
            link = parent.get("link", "") if parent is not None else ""
        chain.reverse()
        return cls(chain)

    def _frames(self, q: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, str]]]:
        """Tip pose and, per moving joint, (origin point, axis in base frame, kind)."""
        t = np.eye(4)
        axes = []
        k = 0
        for joint in self._joints:
            t = t @ joint.origin
            if joint.kind == "fixed":
                continue
            axis = t[:3, :3] @ joint.axis
            axes.append((t[:3, 3].copy(), axis, joint.kind))
            t = t @ _motion(joint, q[k])
            k += 1
        return t, axes

    def fk(self, q: np.ndarray) -> np.ndarray:
        """4x4 pose of the tip in the base link's frame."""
        q = np.asarray(q, dtype=float)
        if q.shape != (len(self.joint_names),):
            raise ValueError(f"expected {len(self.joint_names)} joint values, got {q.shape}")
        return self._frames(q)[0]

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        return _jacobian(*self._frames(q))

    def ik(self, target: np.ndarray, seed: np.ndarray, position_tolerance: float = 1e-4,
           orientation_tolerance: float = 1e-3, restarts: int = 30, rng_seed: int = 0) -> np.ndarray:
        """Joint values within the limits putting the tip at target (damped least squares, restarts).
        Deterministic: the same target, seed and settings give the same answer (remembered)."""
        target = np.asarray(target, dtype=float)
        key = b"".join([target.tobytes(), np.asarray(seed, dtype=float).tobytes(),
                        np.array([position_tolerance, orientation_tolerance, restarts, rng_seed]).tobytes()])
        known = self._ik_memo.get(key)
        if known is None:
            try:
                known = self._ik(target, seed, position_tolerance, orientation_tolerance, restarts, rng_seed)
            except Unreachable as exc:
                known = str(exc)
            if len(self._ik_memo) >= 256:
                self._ik_memo.pop(next(iter(self._ik_memo)))
            self._ik_memo[key] = known
        if isinstance(known, str):
            raise Unreachable(known)
        return known.copy()

    def _ik(self, target: np.ndarray, seed: np.ndarray, position_tolerance: float, orientation_tolerance: float,
            restarts: int, rng_seed: int) -> np.ndarray:
        reach = sum(float(np.linalg.norm(j.origin[:3, 3])) for j in self._joints)
        if np.linalg.norm(target[:3, 3]) > reach + 1.0:
            raise Unreachable(f"target {np.round(target[:3, 3], 3).tolist()} is beyond the arm's reach")
        rng = np.random.default_rng(rng_seed)
        seeds = [np.clip(np.asarray(seed, dtype=float), self.lower, self.upper)]
        # the first joint turned toward the target, the others from the seed, helps far-off targets
        base = self._frames(np.zeros(len(self.joint_names)))[1]
        if base:
            heading = math.atan2(target[1, 3] - base[0][0][1], target[0, 3] - base[0][0][0])
            towards = np.array(seeds[0])
            towards[0] = heading
            seeds.append(np.clip(towards, self.lower, self.upper))
            if len(self.joint_names) == 7:  # elbow-up reaching postures of a 7-joint arm, turned toward the target
                for bend in (0.3, 0.7, 1.1):
                    seeds.append(np.clip(np.array([heading, bend, 0.0, -1.5, 0.0, 1.6 - bend, 0.0]),
                                         self.lower, self.upper))
        seeds += [rng.uniform(self.lower, self.upper) * 0.8 for _ in range(restarts)]
        best_error, best_q = math.inf, seeds[0]
        for q0 in seeds:
            q, pos_err, rot_err = self._solve(target, q0)
            if pos_err <= position_tolerance and rot_err <= orientation_tolerance:
                return q
            if pos_err < best_error:
                best_error, best_q = pos_err, q
        if best_error < 0.005:
            # near the edge of the workspace (arm almost stretched) damped steps converge slowly:
            # polish the closest solution with lighter damping and more iterations
            q, pos_err, rot_err = self._solve(target, best_q, iterations=1000, damping=1e-3)
            if pos_err <= position_tolerance and rot_err <= orientation_tolerance:
                return q
            best_error = min(best_error, pos_err)
        raise Unreachable(f"no solution within the joint limits for {np.round(target[:3, 3], 3).tolist()} "
                          f"(closest {best_error * 1000:.1f} mm)")

    def _solve(self, target: np.ndarray, q: np.ndarray, iterations: int = 200,
               damping: float = 1e-2) -> tuple[np.ndarray, float, float]:
        pos_err = rot_err = math.inf
        for _ in range(iterations):
            # one pass over the chain gives both the tip and the Jacobian (IK was 27 % of an arm
            # action's wall time in a campaign, computing the frames twice an iteration)
            current, axes = self._frames(q)
            dp = target[:3, 3] - current[:3, 3]
            r = target[:3, :3] @ current[:3, :3].T
            angle = math.acos(max(-1.0, min(1.0, (np.trace(r) - 1.0) / 2.0)))
            if angle < 1e-9:
                dr = np.zeros(3)
            elif angle < math.pi - 1e-6:
                dr = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) * angle / (2 * math.sin(angle))
            else:
                dr = _pi_rotation_axis(r) * angle
            pos_err, rot_err = float(np.linalg.norm(dp)), angle
            if pos_err < 1e-5 and rot_err < 1e-4:
                break
            error = np.concatenate([dp, dr * 0.5])
            jac = _jacobian(current, axes)
            step = jac.T @ np.linalg.solve(jac @ jac.T + damping ** 2 * np.eye(6), error)
            norm = np.linalg.norm(step)
            if norm > 0.3:
                step *= 0.3 / norm
            q = np.clip(q + step, self.lower, self.upper)
        return q, pos_err, rot_err


def _jacobian(tip: np.ndarray, axes: list[tuple[np.ndarray, np.ndarray, str]]) -> np.ndarray:
    """The geometric Jacobian (6 x joints) from Chain._frames' tip and per-joint (point, axis, kind)."""
    jac = np.zeros((6, len(axes)))
    if not axes:
        return jac
    points = np.array([a[0] for a in axes])
    directions = np.array([a[1] for a in axes])
    prismatic = np.array([a[2] == "prismatic" for a in axes])
    # one cross product for all joints (np.cross per joint was half the time of an IK solve)
    lever = tip[:3, 3] - points
    linear = np.stack([directions[:, 1] * lever[:, 2] - directions[:, 2] * lever[:, 1],
                       directions[:, 2] * lever[:, 0] - directions[:, 0] * lever[:, 2],
                       directions[:, 0] * lever[:, 1] - directions[:, 1] * lever[:, 0]])
    jac[:3] = np.where(prismatic, directions.T, linear)
    jac[3:] = np.where(prismatic, 0.0, directions.T)
    return jac


def _pi_rotation_axis(r: np.ndarray) -> np.ndarray:
    axis = np.sqrt(np.maximum(np.diag(r) + 1.0, 0.0) / 2.0)
    k = int(np.argmax(axis))
    for i in range(3):
        if i != k and r[k, i] < 0:
            axis[i] = -axis[i]
    return axis / np.linalg.norm(axis)


def joint_trajectory(q_from: np.ndarray, q_to: np.ndarray, velocity_limits: np.ndarray, scale: float = 0.5,
                     dt: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and positions of a synchronised move: every joint follows a smooth (cosine)
    profile, the slowest joint at no more than scale x its velocity limit."""
    q_from, q_to = np.asarray(q_from, dtype=float), np.asarray(q_to, dtype=float)
    delta = q_to - q_from
    limits = np.maximum(np.asarray(velocity_limits, dtype=float) * scale, 1e-6)
    # the cosine profile's peak speed is pi/2 x the mean speed
    duration = float(np.max(np.abs(delta) / limits)) * math.pi / 2
    if duration < 1e-6:
        return np.array([0.0]), q_to[None, :]
    steps = max(2, int(math.ceil(duration / dt)))
    times = np.linspace(0.0, duration, steps + 1)[1:]
    s = (1.0 - np.cos(math.pi * times / duration)) / 2.0
    return times, q_from[None, :] + s[:, None] * delta[None, :]


def waypoint_trajectory(q_from: np.ndarray, waypoints: list[np.ndarray], velocity_limits: np.ndarray,
                        scale: float = 0.5, dt: float = 0.1) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One trajectory through several joint-space waypoints: each segment a synchronised move
    (joint_trajectory) that comes to rest at its waypoint, so a grasp can be made there.
    Returns the times, the positions, and for every waypoint the index of its point."""
    times: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    ends: list[int] = []
    t0, q = 0.0, np.asarray(q_from, dtype=float)
    count = 0
    for target in waypoints:
        t, p = joint_trajectory(q, target, velocity_limits, scale=scale, dt=dt)
        if t[-1] == 0.0 and count:  # no motion: the waypoint is the previous point
            ends.append(count - 1)
            continue
        times.append(t + t0)
        positions.append(p)
        count += len(t)
        ends.append(count - 1)
        t0, q = float(t0 + t[-1]), np.asarray(target, dtype=float)
    return np.concatenate(times), np.concatenate(positions), ends


def deck_places(urdf_xml: str, base_link: str = "base_link") -> dict[str, np.ndarray]:
    """The robot's deck places (links deck1, deck2, ... fixed to the base) as 4x4 poses in base_link."""
    places: dict[str, np.ndarray] = {}
    k = 1
    while True:
        try:
            places[f"deck{k}"] = Chain.from_urdf(urdf_xml, base_link, f"deck{k}").fk(np.zeros(0))
        except (ValueError, KeyError):
            return places
        k += 1


def named_poses(srdf_path: Path, group: str) -> dict[str, dict[str, float]]:
    """The SRDF's group_states of one group: name -> {joint: value}."""
    root = ET.parse(srdf_path).getroot()
    poses: dict[str, dict[str, float]] = {}
    for state in root.findall("group_state"):
        if state.get("group") == group:
            poses[state.get("name", "")] = {j.get("name", ""): float(j.get("value", "0"))
                                           for j in state.findall("joint")}
    return poses
