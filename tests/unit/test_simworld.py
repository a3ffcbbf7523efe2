"""The embedded simulation's physics without ROS: driving, walls, drift, grasps, batteries."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.core.errors import InvalidGoal
from lab.core.robot.gridnav import plan_path
from lab.core.robot.simworld import ObjectRegistry, SimLab, SimParams
from lab.core.robot.world import LabWorld, Pose2D


@pytest.fixture(scope="module")
def world(repo_root: Path) -> LabWorld:
    return LabWorld.load(repo_root / "worlds" / "lab.sdf", repo_root / "config" / "stations.yaml")


def drive(sim: SimLab, name: str, goal: Pose2D, limit: float = 1000.0) -> None:
    robot = sim.robots[name]
    sim.follow_path(name, plan_path(sim.world, robot.estimate, goal))
    t = 0.0
    while robot.follower is not None and t < limit:
        sim.step(0.5)
        t += 0.5


def test_every_station_to_every_other_arrives_without_touching_anything(world: LabWorld) -> None:
    names = list(world.stations)
    sim = SimLab(world, {"r": world.stations[names[0]].dock}, [], ObjectRegistry({}, {}), seed=1)
    robot = sim.robots["r"]
    for a in names:
        for b in names:
            if a == b:
                continue
            sim.reset_estimate("r", robot.truth)  # what the marker refinement does at a
            sim.robots["r"].truth = robot.truth
            drive(sim, "r", world.stations[a].dock)
            sim.reset_estimate("r", robot.truth)
            drive(sim, "r", world.stations[b].dock)
            assert robot.bumper == "", f"{a} -> {b}: {robot.events}"
            dock = world.stations[b].dock
            assert math.hypot(robot.estimate.x - dock.x, robot.estimate.y - dock.y) < 0.02, f"{a} -> {b}"
            # the base believes it is docked; in truth it is off by the drift, a few cm at most
            off = math.hypot(robot.truth.x - dock.x, robot.truth.y - dock.y)
            assert off <= sim.params.max_drift + 0.02, f"{a} -> {b}: {off:.3f} m"


def test_a_base_docked_too_close_and_askew_backs_out_before_it_turns(world: LabWorld) -> None:
    """robot1 refined at rack storage to 5.6 cm closer than its dock and 0.135 rad
    askew, then the drive to the printer turned at once and clipped rack storage, twice (a batch
    of four failed). The planned heading now holds while the base backs out (UNDOCK_HOLD). From
    every dock, 5 cm too close and 0.12 rad askew either way: 95 of 450 such drives to every other
    station touched something before, 0 of these."""
    names = list(world.stations)
    cases = [("rack_storage", Pose2D(1.294, 1.611, 3.006), "printer")]
    for a in names:
        d = world.stations[a].dock
        for turn in (0.12, -0.12):
            start = Pose2D(d.x + 0.05 * math.cos(d.yaw), d.y + 0.05 * math.sin(d.yaw), d.yaw + turn)
            cases.append((a, start, names[(names.index(a) + 5) % len(names)]))
    for a, start, b in cases:
        sim = SimLab(world, {"r": start}, [], ObjectRegistry({}, {}), seed=1)
        robot = sim.robots["r"]
        sim.reset_estimate("r", robot.truth)  # what the marker refinement does
        drive(sim, "r", world.stations[b].dock)
        assert robot.bumper == "" and robot.follower is None, f"{a} {start} -> {b}: {robot.events}"


def test_docking_is_imperfect_the_way_real_bases_are(world: LabWorld) -> None:
    names = [n for n in world.stations]
    sim = SimLab(world, {"r": world.stations[names[0]].dock}, [], ObjectRegistry({}, {}), seed=3)
    errors = []
    for name in names[1:] + names[:1]:
        drive(sim, "r", world.stations[name].dock)
        robot = sim.robots["r"]
        errors.append(math.hypot(robot.truth.x - robot.estimate.x, robot.truth.y - robot.estimate.y))
    assert 0.005 < float(np.median(errors)) <= sim.params.max_drift


def test_the_base_stops_at_a_wall_and_says_so(world: LabWorld) -> None:
    start = next(iter(world.stations.values())).dock
    sim = SimLab(world, {"r": start}, [], ObjectRegistry({}, {}))
    for _ in range(400):  # drive straight ahead, into the station it faces
        sim.set_cmd_vel("r", 0.3, 0.0, 0.0)
        sim.step(0.1)
    robot = sim.robots["r"]
    assert robot.bumper and robot.events and "stopped against" in robot.events[0][0]
    assert not robot.moving


def test_objects_move_only_between_an_occupied_source_and_a_free_target() -> None:
    reg = ObjectRegistry({"rack_1": "rack_storage/slot1", "rack_2": "rack_storage/slot2"}, {})
    with pytest.raises(InvalidGoal, match="nothing at"):
        reg.move("", "rack_storage/slot3", "robot1/gripper")
    with pytest.raises(InvalidGoal, match="occupied by rack_2"):
        reg.move("rack_1", "rack_storage/slot1", "rack_storage/slot2")
    with pytest.raises(InvalidGoal, match="holds rack_1, not rack_2"):
        reg.move("rack_2", "rack_storage/slot1", "robot1/gripper")
    assert reg.move("", "rack_storage/slot1", "robot1/gripper") == "rack_1"
    assert reg.at("robot1/gripper") == "rack_1" and reg.at("rack_storage/slot1") is None


def test_emergency_stop_halts_every_motion_and_refuses_commands_until_released(world: LabWorld) -> None:
    """The simulated controllers as a safety relay: the base stops where it is, the arm holds,
    motion commands and grasps are refused with the reason, and a release lets them run again."""
    charger = next(s for s in world.stations.values() if s.kind == "charger")
    other = next(s for s in world.stations.values() if s.kind != "charger")
    sim = SimLab(world, {"r": charger.dock}, ["j1"], ObjectRegistry({"rack_1": "rack_storage/slot1"}, {}),
                 params=SimParams(max_drift=0.0))
    path = plan_path(world, charger.dock, other.dock)
    sim.follow_path("r", path)
    sim.step(2.0)
    assert sim.robots["r"].moving
    sim.emergency_stop("emergency stop by test: drill")
    at = sim.robots["r"].truth
    sim.step(5.0)
    assert not sim.robots["r"].moving and sim.robots["r"].truth == at
    assert sim.robots["r"].bumper == "emergency stop by test: drill"
    sim.follow_path("r", [])  # the navigator's stop, before the simulation reported the halt
    assert sim.robots["r"].events[-1][1] == "emergency stop by test: drill"  # what the report says
    for command in (lambda: sim.follow_path("r", path), lambda: sim.set_cmd_vel("r", 0.3, 0.0, 0.0),
                    lambda: sim.set_trajectory("r", ["j1"], [0.0, 1.0], [[0.0], [1.0]]),
                    lambda: sim.move_object("rack_1", "rack_storage/slot1", "r/gripper")):
        with pytest.raises(InvalidGoal, match="refused: emergency stop by test: drill"):
            command()
    sim.follow_path("r", [])  # stopping is always allowed
    sim.release()
    sim.follow_path("r", plan_path(world, sim.robots["r"].estimate, other.dock))
    sim.step(2.0)
    assert sim.robots["r"].moving


def test_battery_drains_while_driving_and_charges_at_the_charger(world: LabWorld) -> None:
    charger = next(s for s in world.stations.values() if s.kind == "charger")
    other = next(s for s in world.stations.values() if s.kind != "charger")
    sim = SimLab(world, {"r": charger.dock}, [], ObjectRegistry({}, {}), params=SimParams(max_drift=0.0))
    robot = sim.robots["r"]
    robot.battery = 0.3
    sim.step(1800.0)  # half an hour on the charger: +0.30, less the idle drain
    assert robot.charging and robot.battery == pytest.approx(0.3 + 0.30 - 0.01, abs=0.005)
    level = robot.battery
    drive(sim, "r", other.dock)
    assert not robot.charging and robot.battery < level


def test_every_slot_is_within_reach_however_far_off_the_dock_the_base_stops(world: LabWorld, repo_root: Path) -> None:
    """Approach and grasp poses of every station slot have an IK solution with the base anywhere
    the simulation's localisation drift can leave it (max_drift, max_yaw_drift) off the dock."""
    from lab.core.robot.kinematics import Chain, Unreachable, expand_xacro
    from lab.nodes.arm import TOP_DOWN

    chain = Chain.from_urdf(expand_xacro(repo_root / "urdf" / "kmr_iiwa.urdf.xacro"), "base_link", "tool0")
    params = SimParams()
    offsets = [(0.0, 0.0)] + [(params.max_drift * math.cos(a), params.max_drift * math.sin(a))
                              for a in np.linspace(0.0, 2 * math.pi, 8, endpoint=False)]
    unreachable = []
    for station in world.stations.values():
        for slot in station.slots:
            x, y, z = station.slot_in_map(slot)
            for dx, dy in offsets:
                for dyaw in (-params.max_yaw_drift, 0.0, params.max_yaw_drift):
                    bx, by, yaw = station.dock.x + dx, station.dock.y + dy, station.dock.yaw + dyaw
                    c, s = math.cos(yaw), math.sin(yaw)
                    for lift in (0.0, 0.12):  # grasp and approach heights of config/params/arm.yaml
                        target = np.eye(4)
                        target[:3, :3] = TOP_DOWN
                        target[:3, 3] = [c * (x - bx) + s * (y - by), -s * (x - bx) + c * (y - by), z + 0.06 + lift]
                        try:
                            chain.ik(target, np.zeros(7))
                        except Unreachable:
                            unreachable.append((station.name, slot, round(dx, 3), round(dy, 3), dyaw, lift))
    assert not unreachable, unreachable


def test_one_trajectory_through_waypoints_rests_at_each_and_holds_on_emergency_stop(world: LabWorld) -> None:
    """A multi-waypoint move (approach, grasp height, lift) is one trajectory: the joints pass
    through every waypoint at rest (zero velocity there, so a grasp can happen), the sim's
    trajectory controller plays it from one message, and an e-stop mid-way holds the arm."""
    from lab.core.robot.kinematics import waypoint_trajectory

    waypoints = [np.array([0.5, -0.2]), np.array([0.5, 0.4]), np.array([-0.3, 0.4])]
    times, positions, ends = waypoint_trajectory(np.zeros(2), waypoints, np.array([1.0, 1.0]), scale=0.5, dt=0.05)
    assert np.all(np.diff(times) > 0)
    for index, waypoint in zip(ends, waypoints, strict=True):
        assert positions[index] == pytest.approx(waypoint)
        if index + 1 < len(times):  # at rest there: the next sample barely moved
            step = np.abs(positions[index + 1] - positions[index]).max()
            assert step < 0.01, step
    charger = next(s for s in world.stations.values() if s.kind == "charger")
    sim = SimLab(world, {"r": charger.dock}, ["j1", "j2"], ObjectRegistry({}, {}), params=SimParams(max_drift=0.0))
    sim.set_trajectory("r", ["j1", "j2"], list(times), positions.tolist())
    arm = sim.robots["r"]
    sim.step(float(times[ends[0]]))
    assert [arm.joints["j1"], arm.joints["j2"]] == pytest.approx(waypoints[0], abs=1e-6)
    sim.step(0.5)
    assert arm.arm_moving
    sim.emergency_stop("emergency stop by test")
    held = dict(arm.joints)
    sim.step(float(times[-1]))
    assert not arm.arm_moving and arm.joints == held
    sim.release()
    sim.set_trajectory("r", ["j1", "j2"], list(times), positions.tolist())
    sim.step(float(times[-1]) + 0.1)
    assert [arm.joints["j1"], arm.joints["j2"]] == pytest.approx(waypoints[-1])


def test_saved_world_comes_back_in_a_new_simulation_and_a_bad_one_changes_nothing(world: LabWorld,
                                                                                 tmp_path: Path) -> None:
    """What a restarted simulation takes back (lab.core.persist through a file, as the sim node
    does): the time, where the robot truly is and believes it is, its joints and battery, and
    where every rack is, including one left in a station's slot and one in the gripper."""
    from lab.core.persist import read_json, write_json

    charger = next(s for s in world.stations.values() if s.kind == "charger")
    other = next(s for s in world.stations.values() if s.kind != "charger" and s.name != "rack_storage" and s.slots)
    objects = {"rack_1": "rack_storage/slot1", "rack_2": "rack_storage/slot2"}

    def fresh() -> SimLab:
        return SimLab(world, {"r": charger.dock}, ["j1"], ObjectRegistry(dict(objects), {}))

    sim = fresh()
    drive(sim, "r", other.dock)
    sim.objects.move("rack_1", "rack_storage/slot1", f"{other.name}/{next(iter(other.slots))}")
    sim.objects.move("rack_2", "rack_storage/slot2", "r/gripper")
    sim.robots["r"].joints["j1"] = 0.7
    write_json(tmp_path / "world.json", sim.state())

    back = fresh()
    assert back.restore(read_json(tmp_path / "world.json")) == []
    assert back.time == pytest.approx(sim.time) and back.time > 0
    assert back.objects.locations == sim.objects.locations
    robot, was = back.robots["r"], sim.robots["r"]
    assert (robot.truth, robot.estimate, robot.joints, robot.battery) == \
        (was.truth, was.estimate, was.joints, was.battery)
    assert robot.truth.distance_to(charger.dock) > 1.0  # not where a fresh start puts it

    state = sim.state()
    bad_states = [
        {**state, "objects": {**state["objects"], "rack_2": state["objects"]["rack_1"]}},  # two in one slot
        {**state, "objects": {**state["objects"], "rack_2": "rack_storage/no_such_slot"}},
        {**state, "robots": {"r": {**state["robots"]["r"], "truth": [-50.0, 0.0, 0.0]}}},  # outside the lab
        {**state, "robots": {"r": {**state["robots"]["r"], "battery": float("nan")}}},
        {**state, "time": -1.0},
        {"time": 1.0},
    ]
    for bad in bad_states:
        untouched = fresh()
        before = untouched.state()
        with pytest.raises(InvalidGoal):
            untouched.restore(bad)
        assert untouched.state() == before
    assert read_json(tmp_path / "none.json") is None
    (tmp_path / "torn.json").write_text('{"time": 1')
    from lab.core.errors import ConfigError
    with pytest.raises(ConfigError, match="torn.json"):
        read_json(tmp_path / "torn.json")


def test_a_saved_state_is_taken_back_or_set_aside_with_the_reason(tmp_path: Path) -> None:
    from lab.core.persist import take_back, write_json

    def use(state: Any) -> int:
        if not isinstance(state, dict) or "n" not in state:
            raise InvalidGoal("no n")
        return int(state["n"])

    assert take_back(tmp_path / "none.json", use) == (None, "")
    write_json(tmp_path / "good.json", {"n": 3})
    assert take_back(tmp_path / "good.json", use) == (3, "")
    write_json(tmp_path / "bad.json", {"m": 3})
    (tmp_path / "torn.json").write_text('{"n": 1')
    for name, reason in (("bad.json", "no n"), ("torn.json", "not a saved state")):
        value, why = take_back(tmp_path / name, use)
        assert value is None and reason in why and f"set aside as {tmp_path / name}.unusable-" in why
        assert not (tmp_path / name).exists()  # not read again at the next start
        assert len(list(tmp_path.glob(f"{name}.unusable-*"))) == 1


def test_the_gripper_grasps_as_its_finger_closes_and_releases_as_it_opens(world: LabWorld) -> None:
    """The embedded arm controller takes the finger joint: a grasp happens where the finger closes
    (the rack at the tool, within grasp_tolerance), a release where it opens (a free slot at the
    tool); away from a slot nothing moves and the miss says how far off the nearest was; an
    e-stop while the fingers close grasps nothing."""
    station = world.stations["rack_storage"]
    params = SimParams(max_drift=0.0)
    slot = station.slot_in_map("slot1")
    dock = station.dock

    def tool_fk(joints: dict[str, float]) -> np.ndarray:
        # the tool over slot1 (at grasp height) when j = 1, 10 cm short of it along x when j = 0
        local = Pose2D(dock.x, dock.y, dock.yaw).inverse().compose(Pose2D(slot[0], slot[1]))
        pose = np.eye(4)
        pose[:3, 3] = [local.x - (1.0 - joints["j"]) * 0.1, local.y, slot[2] + params.grasp_height]
        return pose

    sim = SimLab(world, {"r": dock}, ["j", "f"], ObjectRegistry({"rack_1": "rack_storage/slot1"}, {}),
                 params=params, tool_fk=tool_fk, initial_joints={"j": 0.0, "f": 0.06}, finger=("f", 0.06, 0.0))

    def play(j: float, f: float) -> list[tuple[str, str, bool]]:
        here = sim.robots["r"].joints
        sim.set_trajectory("r", ["j", "f"], [1.0, 2.0], [[j, here["f"]], [j, f]])  # move, then the finger
        sim.step(2.5)
        events, sim.gripper_events = sim.gripper_events, []
        return events

    assert play(0.5, 0.0)[0][2]  # closed 5 cm short of the rack: a miss, nothing moved
    assert sim.objects.at("rack_storage/slot1") == "rack_1"
    assert play(0.5, 0.06) == []  # opening an empty gripper is nothing
    (_, what, missed), = play(1.0, 0.0)
    assert not missed and what == "rack_1: rack_storage/slot1 -> r/gripper"
    assert sim.objects.at("r/gripper") == "rack_1"
    (_, what, missed), = play(0.5, 0.06)  # opened 5 cm from any free slot: it stays in the gripper
    assert missed and "release missed" in what and "rack_storage/slot1, is 5.0 cm" in what, what
    assert sim.objects.at("r/gripper") == "rack_1"
    play(0.5, 0.0)  # closed on what it holds: nothing
    (_, what, missed), = play(1.0, 0.06)
    assert not missed and sim.objects.at("rack_storage/slot1") == "rack_1"
    here = sim.robots["r"].joints
    sim.set_trajectory("r", ["j", "f"], [1.0], [[1.0, 0.0]])
    sim.step(0.5)  # half closed
    sim.emergency_stop("emergency stop by test")
    sim.step(2.0)
    assert sim.gripper_events == [] and sim.objects.at("rack_storage/slot1") == "rack_1" and 0.0 < here["f"] < 0.06


def test_the_jacobian_is_the_derivative_of_the_tip_pose(repo_root: Path) -> None:
    """The IK's Jacobian (one vectorised pass over the chain) against central differences of the
    forward kinematics: linear velocity of the tip, and angular velocity from R' R^T."""
    from lab.core.robot.kinematics import Chain, expand_xacro

    chain = Chain.from_urdf(expand_xacro(repo_root / "urdf" / "kmr_iiwa.urdf.xacro"), "base_link", "tool0")
    rng = np.random.default_rng(3)
    h = 1e-6
    for _ in range(5):
        q = rng.uniform(chain.lower, chain.upper) * 0.8
        jac = chain.jacobian(q)
        for i in range(len(q)):
            dq = np.zeros(len(q))
            dq[i] = h
            plus, minus = chain.fk(q + dq), chain.fk(q - dq)
            linear = (plus[:3, 3] - minus[:3, 3]) / (2 * h)
            spin = (plus[:3, :3] - minus[:3, :3]) / (2 * h) @ chain.fk(q)[:3, :3].T
            angular = np.array([spin[2, 1], spin[0, 2], spin[1, 0]])
            assert np.allclose(jac[:3, i], linear, atol=1e-5) and np.allclose(jac[3:, i], angular, atol=1e-5), i
