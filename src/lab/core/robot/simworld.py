"""The embedded simulation's physics, free of ROS: bases, arms, batteries and objects.

What Gazebo does for the full stack, at the level of detail the lab needs: a holonomic base
that follows velocity commands (or a path, the way a base controller would) and stops at a
wall, a station or another robot instead of passing through it; localisation that drifts
while driving, so a docked robot stands a few centimetres and degrees off where it believes
it is (real bases do; Burger et al. 2020 calibrated at every station); arm joints that follow
joint trajectories; batteries that drain while working and charge at the charger; racks and
trays that are where the last successful grasp or release put them.

Units: m, rad, s (simulated), battery as a state of charge 0..1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import Any

import numpy as np

from lab.core.config.params import SimParams
from lab.core.errors import InvalidGoal
from lab.core.robot.gridnav import PathFollower
from lab.core.robot.world import ROBOT_FOOTPRINT, LabWorld, Pose2D, footprint_collides, rectangles_overlap, wrap

GRIPPER = "gripper"


@dataclass
class Trajectory:
    joint_names: list[str]
    times: np.ndarray          # s from start, increasing
    positions: np.ndarray      # len(times) x len(joint_names)
    start: float               # simulated s


@dataclass
class SimRobot:
    name: str
    truth: Pose2D
    estimate: Pose2D
    joints: dict[str, float]
    battery: float = 1.0
    charging: bool = False
    follower: PathFollower | None = None
    cmd_vel: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cmd_vel_until: float = -1.0
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    trajectory: Trajectory | None = None
    bumper: str = ""                       # what the base last hit ('' = nothing)
    fingers_closed: bool | None = None     # the gripper's state as the grasps and releases saw it last
    travelled: float = 0.0
    # what stopped it, to log and report on `bumper`: (log line, bumper text as it was then; a stop
    # command right after, an empty path, clears `bumper` before the report goes out)
    events: list[tuple[str, str]] = field(default_factory=list)

    @property
    def moving(self) -> bool:
        return any(abs(v) > 1e-9 for v in self.velocity)

    @property
    def arm_moving(self) -> bool:
        return self.trajectory is not None


def check_move(objects_at: Mapping[str, str], obj: str, source: str, target: str) -> str:
    """The rules of moving a rack or tray: which object a move from `source` to `target` takes
    (obj '' = whatever is at source), given what stands where (location -> object); InvalidGoal
    when there is nothing at the source, another object than `obj`, or the target is occupied.
    The simulation applies them to its truth, the arm to the world state it last saw."""
    present = objects_at.get(source)
    if present is None:
        raise InvalidGoal(f"nothing at {source}")
    if obj and present != obj:
        raise InvalidGoal(f"{source} holds {present}, not {obj}")
    occupant = objects_at.get(target)
    if occupant is not None:
        raise InvalidGoal(f"{target} is occupied by {occupant}")
    return present


class ObjectRegistry:
    """Where every rack and tray is: one location '<owner>/<slot>' per object, one object per slot."""

    def __init__(self, placement: dict[str, str], kinds: dict[str, str]) -> None:
        self.locations: dict[str, str] = {}
        self.kinds = dict(kinds)
        for obj, loc in placement.items():
            if loc in self.locations.values():
                raise InvalidGoal(f"two objects placed at {loc}")
            self.locations[obj] = loc

    def at(self, location: str) -> str | None:
        for obj, loc in self.locations.items():
            if loc == location:
                return obj
        return None

    def check_move(self, obj: str, source: str, target: str) -> str:
        """The object to move (obj may be '' = whatever is at source); InvalidGoal when it cannot."""
        return check_move({loc: o for o, loc in self.locations.items()}, obj, source, target)

    def move(self, obj: str, source: str, target: str) -> str:
        moved = self.check_move(obj, source, target)
        self.locations[moved] = target
        return moved

    def snapshot(self) -> list[tuple[str, str, str]]:
        return [(obj, self.kinds.get(obj, "rack"), loc) for obj, loc in sorted(self.locations.items())]


class SimLab:
    """Every robot and object of one simulated lab; advanced by `step(dt)`."""

    def __init__(self, world: LabWorld, robots: dict[str, Pose2D], joint_names: Sequence[str],
                 objects: ObjectRegistry, params: SimParams | None = None, seed: int = 0,
                 tool_fk: Callable[[dict[str, float]], np.ndarray] | None = None,
                 deck_slots: dict[str, np.ndarray] | None = None,
                 initial_joints: dict[str, float] | None = None,
                 finger: tuple[str, float, float] | None = None) -> None:
        """tool_fk(joints: dict) -> 4x4 pose of tool0 in base_link; deck_slots: slot name -> 4x4 in base_link;
        finger: (the gripper's finger joint, its open and its closed position), one of joint_names: the
        gripper grasps what is at the tool when the finger closes and releases it when it opens."""
        self.world = world
        self.params = params or SimParams()
        self.rng = np.random.default_rng(seed)
        self.objects = objects
        self.time = 0.0
        self.stopped = ""  # the emergency stop's reason while set: the controllers refuse every command
        self.joint_names = list(joint_names)
        self._tool_fk = tool_fk
        self.deck_slots = deck_slots or {}
        self.finger = finger
        self.gripper_events: list[tuple[str, str, bool]] = []  # (robot, what happened, whether it missed)
        self.robots: dict[str, SimRobot] = {}
        for name, pose in robots.items():
            hit = footprint_collides(world, pose)
            if hit:
                raise InvalidGoal(f"{name} cannot start at ({pose.x:.2f}, {pose.y:.2f}): it overlaps {hit}")
            joints = {j: 0.0 for j in self.joint_names}
            joints.update(initial_joints or {})
            self.robots[name] = SimRobot(name=name, truth=pose, estimate=pose, joints=joints)

    # ----------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        """What must outlive the simulation's process: the time, where every robot truly is and
        believes it is, its joints and battery, where every rack and tray is. (Motion in progress
        is not kept: a restarted controller starts at rest, as a real one does.)"""
        return {"time": self.time,
                "robots": {name: {"truth": list(astuple(r.truth)), "estimate": list(astuple(r.estimate)),
                                  "joints": dict(r.joints), "battery": r.battery}
                           for name, r in self.robots.items()},
                "objects": dict(self.objects.locations), "kinds": dict(self.objects.kinds)}

    def restore(self, state: Mapping[str, Any]) -> list[str]:
        """Take a saved `state()` back. All or nothing: InvalidGoal (nothing changed) when it does
        not fit this lab (a location that does not exist, two objects in one slot, a robot standing
        in a wall). Robots and objects the state does not name keep their configured start; the
        returned notes say what was left out (a robot or object no longer configured). The clock
        resumes at the saved time plus `ahead` (how far it may have run on after the save)."""
        try:
            time = float(state["time"]) + float(state.get("ahead", 0.0))
            robots = {name: (Pose2D(*map(float, r["truth"])), Pose2D(*map(float, r["estimate"])),
                             {str(j): float(v) for j, v in r["joints"].items()}, float(r["battery"]))
                      for name, r in state["robots"].items()}
            objects = {str(o): str(loc) for o, loc in state["objects"].items()}
            kinds = {str(o): str(k) for o, k in state.get("kinds", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidGoal(f"saved state is malformed: {exc!r}") from None
        if not math.isfinite(time) or time < 0:
            raise InvalidGoal(f"saved state has time {time}")
        numbers = [v for truth, estimate, joints, battery in robots.values()
                   for v in (*astuple(truth), *astuple(estimate), *joints.values(), battery)]
        if not all(math.isfinite(v) for v in numbers):
            raise InvalidGoal("saved state has a pose, joint or battery that is not a finite number")
        notes = [f"robot {n} is not in this lab" for n in robots if n not in self.robots]
        notes += [f"{o} is not in this lab" for o in objects if o not in self.objects.locations]
        placement = dict(self.objects.locations)
        placement.update({o: loc for o, loc in objects.items() if o in placement})
        for loc in placement.values():
            self.location_in_map(loc)  # InvalidGoal for a slot that does not exist
        registry = ObjectRegistry(placement, {**self.objects.kinds, **{o: k for o, k in kinds.items()
                                                                           if o in placement}})
        for name, (truth, _, _, battery) in robots.items():
            if name in self.robots:
                hit = footprint_collides(self.world, truth) or (
                    "" if 0.0 <= truth.x <= self.world.width and 0.0 <= truth.y <= self.world.length
                    else "outside the lab")
                if hit or not 0.0 <= battery <= 1.0:
                    raise InvalidGoal(f"saved state puts {name} at ({truth.x:.2f}, {truth.y:.2f}) "
                                      f"battery {battery}: {hit or 'battery out of 0..1'}")
        self.time, self.objects = time, registry
        for name, (truth, estimate, joints, battery) in robots.items():
            if name in self.robots:
                robot = self.robots[name]
                robot.truth, robot.estimate, robot.battery = truth, estimate, battery
                robot.joints.update({j: v for j, v in joints.items() if j in robot.joints})
        return notes

    # ----------------------------------------------------------------- commands
    def robot(self, name: str) -> SimRobot:
        if name not in self.robots:
            raise InvalidGoal(f"unknown robot '{name}' (known: {', '.join(self.robots)})")
        return self.robots[name]

    def emergency_stop(self, reason: str) -> None:
        """What a safety relay does: every base and arm stops where it is, now, and every new
        motion command or grasp is refused until `release()`."""
        self.stopped = reason or "emergency stop"
        for robot in self.robots.values():
            robot.follower, robot.trajectory = None, None
            robot.cmd_vel, robot.velocity = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
            robot.bumper = self.stopped
            robot.events.append((f"{robot.name}: base and arm halted: {self.stopped}", robot.bumper))

    def release(self) -> None:
        self.stopped = ""
        for robot in self.robots.values():
            robot.bumper = ""

    def _refuse_while_stopped(self) -> None:
        if self.stopped:
            raise InvalidGoal(f"refused: {self.stopped}")

    def follow_path(self, name: str, path: Sequence[Pose2D], **follower_options: float) -> None:
        """Drive along path (map frame, as the robot believes it is); an empty path stops."""
        if path:
            self._refuse_while_stopped()
        robot = self.robot(name)
        robot.bumper = ""
        robot.follower = PathFollower(list(path), **follower_options) if path else None
        if not path:
            robot.velocity = (0.0, 0.0, 0.0)

    def set_cmd_vel(self, name: str, vx: float, vy: float, wz: float) -> None:
        if any((vx, vy, wz)):
            self._refuse_while_stopped()
        robot = self.robot(name)
        robot.follower = None
        robot.bumper = ""
        robot.cmd_vel = (vx, vy, wz)
        robot.cmd_vel_until = self.time + self.params.cmd_vel_timeout

    def set_trajectory(self, name: str, joint_names: Sequence[str], times: Sequence[float],
                       positions: Sequence[Sequence[float]]) -> None:
        if len(times):
            self._refuse_while_stopped()
        robot = self.robot(name)
        unknown = [j for j in joint_names if j not in robot.joints]
        if unknown:
            raise InvalidGoal(f"unknown joints {unknown}")
        if not len(times):
            robot.trajectory = None
            return
        t = np.asarray(times, dtype=float)
        p = np.asarray(positions, dtype=float).reshape(len(t), len(joint_names))
        if t[0] > 0.0:  # start from where the joints are now, as a trajectory controller does
            t = np.concatenate([[0.0], t])
            p = np.vstack([[robot.joints[j] for j in joint_names], p])
        robot.trajectory = Trajectory(list(joint_names), t, p, self.time)

    def reset_estimate(self, name: str, pose: Pose2D) -> None:
        """Localisation correction (what Nav2's `initialpose` does to AMCL). A path being
        followed is dropped: the follower would otherwise chase the corrected estimate."""
        robot = self.robot(name)
        robot.estimate = pose
        robot.follower = None

    # ----------------------------------------------------------------- physics
    @property
    def busy(self) -> bool:
        """Whether anything moves or is commanded to: a base following a path or a velocity
        command, an arm on a trajectory (what a lockstep clock must keep time for)."""
        for robot in self.robots.values():
            if robot.follower is not None or robot.trajectory is not None or robot.moving:
                return True
            if self.time < robot.cmd_vel_until and any(v != 0.0 for v in robot.cmd_vel):
                return True
        return False

    def step(self, dt: float, until_idle: bool = False) -> float:
        """Advance the lab by dt simulated seconds; with `until_idle`, stop at the first
        integration step after which nothing is busy. Returns the time advanced."""
        remaining = dt
        while remaining > 1e-12:
            h = min(self.params.physics_step, remaining)
            for robot in self.robots.values():
                self._step_base(robot, h)
                self._step_arm(robot, h)
                self._step_battery(robot, h)
            self.time += h
            remaining -= h
            if until_idle and not self.busy:
                break
        return dt - max(remaining, 0.0)

    def _step_base(self, robot: SimRobot, h: float) -> None:
        if robot.follower is not None:
            command = robot.follower.command(robot.estimate, h)
            if robot.follower.done:
                robot.follower = None
                command = (0.0, 0.0, 0.0)
        elif self.time < robot.cmd_vel_until:
            command = robot.cmd_vel
        else:
            command = (0.0, 0.0, 0.0)
        robot.velocity = command
        vx, vy, wz = command
        if vx == 0.0 and vy == 0.0 and wz == 0.0:
            return
        delta = Pose2D(vx * h, vy * h, wz * h)
        new_truth = robot.truth.compose(delta)
        hit = footprint_collides(self.world, new_truth) or self._robot_collision(robot, new_truth)
        if hit:
            robot.follower = None
            robot.cmd_vel_until = -1.0
            robot.velocity = (0.0, 0.0, 0.0)
            robot.bumper = hit
            robot.events.append((f"{robot.name}: stopped against {hit} at ({robot.truth.x:.2f}, "
                                 f"{robot.truth.y:.2f})", hit))
            return
        dist = math.hypot(delta.x, delta.y)
        robot.travelled += dist
        robot.truth = new_truth
        estimate = robot.estimate.compose(delta)
        # localisation drift: the estimate wanders from the truth while driving, bounded
        sd, sd_yaw = self.params.drift_per_metre * math.sqrt(dist), self.params.yaw_drift_per_metre * math.sqrt(dist)
        ex = estimate.x - new_truth.x + self.rng.normal(0.0, sd)
        ey = estimate.y - new_truth.y + self.rng.normal(0.0, sd)
        eyaw = wrap(estimate.yaw - new_truth.yaw + self.rng.normal(0.0, sd_yaw))
        norm = math.hypot(ex, ey)
        if norm > self.params.max_drift:
            ex, ey = ex * self.params.max_drift / norm, ey * self.params.max_drift / norm
        eyaw = max(-self.params.max_yaw_drift, min(self.params.max_yaw_drift, eyaw))
        robot.estimate = Pose2D(new_truth.x + ex, new_truth.y + ey, wrap(new_truth.yaw + eyaw))

    def _robot_collision(self, robot: SimRobot, pose: Pose2D) -> str:
        for other in self.robots.values():
            if other is robot:
                continue
            if math.hypot(other.truth.x - pose.x, other.truth.y - pose.y) < 1.3 and \
                    rectangles_overlap(pose, ROBOT_FOOTPRINT, other.truth, ROBOT_FOOTPRINT):
                return other.name
        return ""

    def _step_arm(self, robot: SimRobot, h: float) -> None:
        traj = robot.trajectory
        if traj is None:
            return
        t = self.time + h - traj.start
        if t >= traj.times[-1]:
            values = traj.positions[-1]
            robot.trajectory = None
        else:
            values = np.array([np.interp(t, traj.times, traj.positions[:, k]) for k in range(len(traj.joint_names))])
        for name, value in zip(traj.joint_names, values, strict=True):
            robot.joints[name] = float(value)
        if self.finger is not None and self.finger[0] in traj.joint_names:
            self._step_gripper(robot)

    def _step_gripper(self, robot: SimRobot) -> None:
        """A grasp when the finger has closed (within a tenth of its travel), a release when it has
        opened (likewise): what a gripper does to what is between its fingers, as a trajectory
        controller that takes the finger joint drives it. Nothing happens between the two."""
        assert self.finger is not None
        name, open_at, closed_at = self.finger
        travel = (robot.joints[name] - closed_at) / (open_at - closed_at)
        closed = True if travel <= 0.1 else False if travel >= 0.9 else robot.fingers_closed
        if robot.fingers_closed is None or closed is None or closed == robot.fingers_closed:
            robot.fingers_closed = closed if robot.fingers_closed is None else robot.fingers_closed
            return
        robot.fingers_closed = closed
        held = self.objects.at(f"{robot.name}/{GRIPPER}")
        if closed and held is None:
            self._gripper_meets(robot, grasp=True)
        elif not closed and held is not None:
            self._gripper_meets(robot, grasp=False)

    def _gripper_meets(self, robot: SimRobot, grasp: bool) -> None:
        """The slot at the tool (within grasp_tolerance) holding something for a grasp, free for a
        release; the move made there, or a miss recorded (nothing moves: a rack released away
        from a slot stays in the gripper, the simulation does not drop racks)."""
        tool = self.tool_in_map(robot.name)
        gripper = f"{robot.name}/{GRIPPER}"
        held = {loc: obj for obj, loc in self.objects.locations.items()}
        best, best_error = "", math.inf
        for loc in self._slots():
            if (loc in held) != grasp:
                continue
            point = self.location_in_map(loc)
            assert point is not None
            error = float(np.linalg.norm(tool - point - np.array([0.0, 0.0, self.params.grasp_height])))
            if error < best_error:
                best, best_error = loc, error
        verb = "grasp" if grasp else "release"
        if best and best_error <= self.params.grasp_tolerance:
            obj = self.objects.move(held[best] if grasp else held[gripper], best if grasp else gripper,
                                    gripper if grasp else best)
            self.gripper_events.append((robot.name, f"{obj}: {best if grasp else gripper} -> "
                                                    f"{gripper if grasp else best}", False))
            return
        what = "a rack or tray" if grasp else "a free slot"
        nearest = f" (the nearest, {best}, is {best_error * 100:.1f} cm from it)" if best else ""
        within = f"{self.params.grasp_tolerance * 100:.1f} cm"
        self.gripper_events.append((robot.name, f"{verb} missed: no {what} within {within} of {robot.name}'s "
                                                f"gripper{nearest}", True))

    def _slots(self) -> list[str]:
        """Every place a rack or tray can stand: the stations' slots and the robots' deck places."""
        return [f"{name}/{slot}" for name, station in self.world.stations.items() for slot in station.slots] + \
            [f"{name}/{slot}" for name in self.robots for slot in self.deck_slots]

    def _step_battery(self, robot: SimRobot, h: float) -> None:
        p = self.params
        charger = next((s for s in self.world.stations.values() if s.kind == "charger"), None)
        robot.charging = bool(charger is not None and not robot.moving and
                              math.hypot(robot.truth.x - charger.dock.x, robot.truth.y - charger.dock.y)
                              <= p.charger_radius)
        rate = -p.battery_drain_idle
        if robot.moving:
            rate -= p.battery_drain_driving
        if robot.arm_moving:
            rate -= p.battery_drain_arm
        if robot.charging:
            rate += p.battery_charge_rate
        robot.battery = min(1.0, max(0.0, robot.battery + rate * h / 3600.0))

    # ----------------------------------------------------------------- objects
    def tool_in_map(self, name: str) -> np.ndarray:
        """Where tool0 truly is (map frame xyz)."""
        robot = self.robot(name)
        if self._tool_fk is None:
            raise InvalidGoal("the simulation has no arm model")
        local = self._tool_fk(robot.joints)[:3, 3]
        c, s = math.cos(robot.truth.yaw), math.sin(robot.truth.yaw)
        return np.array([robot.truth.x + c * local[0] - s * local[1],
                         robot.truth.y + s * local[0] + c * local[1], local[2]])

    def location_in_map(self, location: str) -> np.ndarray | None:
        """Map-frame point of a slot '<station>/<slot>' or '<robot>/<deck slot>'; None for a gripper."""
        owner, _, slot = location.partition("/")
        if owner in self.world.stations:
            station = self.world.stations[owner]
            if slot not in station.slots:
                raise InvalidGoal(f"station {owner} has no slot '{slot}' (slots: {', '.join(station.slots)})")
            return np.array(station.slot_in_map(slot))
        if owner in self.robots:
            if slot == GRIPPER:
                return None
            if slot not in self.deck_slots:
                raise InvalidGoal(f"robot {owner} has no slot '{slot}' (slots: gripper, {', '.join(self.deck_slots)})")
            robot = self.robots[owner]
            local = self.deck_slots[slot][:3, 3]
            c, s = math.cos(robot.truth.yaw), math.sin(robot.truth.yaw)
            return np.array([robot.truth.x + c * local[0] - s * local[1],
                             robot.truth.y + s * local[0] + c * local[1], local[2]])
        raise InvalidGoal(f"unknown location '{location}': owner '{owner}' is neither a station nor a robot")

    def move_object(self, obj: str, source: str, target: str) -> str:
        """A grasp (source -> '<robot>/gripper') or a release ('<robot>/gripper' -> target).

        The gripper must truly be at the slot, within grasp_tolerance: a robot that believes
        it is somewhere it is not misses, and nothing moves.
        """
        self._refuse_while_stopped()
        src_owner, _, src_slot = source.partition("/")
        dst_owner, _, dst_slot = target.partition("/")
        if (src_slot == GRIPPER) == (dst_slot == GRIPPER):
            raise InvalidGoal("one end of a move must be a robot's gripper (a grasp or a release)")
        robot_name, slot_loc = (dst_owner, source) if dst_slot == GRIPPER else (src_owner, target)
        self.robot(robot_name)
        point = self.location_in_map(slot_loc)
        moved = self.objects.check_move(obj, source, target)
        if point is not None:
            tool = self.tool_in_map(robot_name)
            wanted = point + np.array([0.0, 0.0, self.params.grasp_height])
            error = float(np.linalg.norm(tool - wanted))
            if error > self.params.grasp_tolerance:
                verb = "grasp" if dst_slot == GRIPPER else "release"
                raise InvalidGoal(f"{verb} missed {slot_loc}: the gripper is {error * 100:.1f} cm from it")
        return self.objects.move(moved, source, target)
