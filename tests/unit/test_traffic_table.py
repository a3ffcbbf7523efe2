"""Traffic between robots: the reservation table, planning around robots, parking spots."""

from __future__ import annotations

import pytest
import yaml

from lab.core.errors import ConfigError
from lab.core.robot.gridnav import NoPath, plan_path
from lab.core.robot.traffic import CLEARANCE, TrafficTable, closest, sample_path
from lab.core.robot.world import ROBOT_FOOTPRINT, LabWorld, Pose2D, footprint_collides, rectangles_overlap
from lab.paths import config_path, share_dir

WORLD = LabWorld.load(share_dir() / "worlds" / "lab.sdf", config_path("stations.yaml"))
DOCK = {name: s.dock for name, s in WORLD.stations.items()}


def test_sampled_paths_keep_their_ends_and_step():
    pts = sample_path([Pose2D(0, 0, 0), Pose2D(1.0, 0, 0), Pose2D(1.0, 0.35, 0)], step=0.1)
    assert pts[0].tolist() == [0.0, 0.0] and pts[-1].tolist() == pytest.approx([1.0, 0.35])
    gaps = ((pts[1:] - pts[:-1]) ** 2).sum(axis=1) ** 0.5
    assert gaps.max() <= 0.1 + 1e-9
    assert closest(pts, sample_path([Pose2D(1.0, 1.35, 0)])) == pytest.approx(1.0)


def test_crossing_paths_are_granted_one_at_a_time_and_released():
    table = TrafficTable()
    along = [Pose2D(3.0, 1.0, 0), Pose2D(3.0, 9.0, 0)]
    across = [Pose2D(2.0, 5.0, 0), Pose2D(5.0, 5.0, 0)]
    apart = [Pose2D(5.5, 1.0, 0), Pose2D(5.5, 3.0, 0)]    # 2.5 m from `along`: more than a footprint
    assert table.reserve("robot1", along) == ""
    assert table.reserve("robot2", across) == "robot1"    # refused, and nothing changed
    assert table.holders() == ["robot1"]
    assert table.reserve("robot3", apart) == ""
    assert table.reserve("robot1", along) == ""           # a robot's own reservation is not in its way
    assert table.release("robot1") and not table.release("robot1")
    assert table.reserve("robot2", across) == ""
    # where robots stand: said on release, forgotten while the robot drives again
    table.release("robot3", standing=apart[-1])
    assert table.standing() == {"robot3": apart[-1]} and table.standing(but="robot3") == {}
    assert table.reserve("robot3", [apart[-1], Pose2D(5.5, 1.0, 0)]) == ""
    assert table.standing() == {}
    # just inside / outside the clearance
    table = TrafficTable()
    table.reserve("a", [Pose2D(1.0, 1.0, 0), Pose2D(1.0, 4.0, 0)])
    assert table.reserve("b", [Pose2D(1.0 + CLEARANCE - 0.01, 1.0, 0), Pose2D(1.0 + CLEARANCE - 0.01, 4.0, 0)]) == "a"
    assert table.reserve("b", [Pose2D(1.0 + CLEARANCE + 0.01, 1.0, 0), Pose2D(1.0 + CLEARANCE + 0.01, 4.0, 0)]) == ""


def _clear_of(path, pose):
    """Every pose of the path (and between its waypoints) keeps the footprint off `pose`'s."""
    for a, b in zip(path, path[1:], strict=False):
        for k in range(21):
            t = k / 20
            p = Pose2D(a.x + t * (b.x - a.x), a.y + t * (b.y - a.y), a.yaw + t * (b.yaw - a.yaw))
            if rectangles_overlap(p, ROBOT_FOOTPRINT, pose, ROBOT_FOOTPRINT):
                return False
    return True


def test_a_path_goes_around_a_robot_standing_in_it():
    start, goal = DOCK["rack_storage"], DOCK["gas_chromatograph"]
    blocker = Pose2D(2.2, 5.5, 1.5708)  # across the straight line along the docks
    assert not _clear_of(plan_path(WORLD, start, goal), blocker)
    world = WORLD.with_obstacles([WORLD.robot_box("robot2", blocker, 0.06)])
    path = plan_path(world, start, goal)
    assert _clear_of(path, blocker)
    assert path[0].distance_to(start) < 1e-9 and path[-1].distance_to(goal) < 1e-9
    assert footprint_collides(world, blocker) == "robot2"
    assert footprint_collides(WORLD, blocker) is None      # the base world is unchanged
    # a robot on the goal's dock: no path, and the reason names it
    world = WORLD.with_obstacles([WORLD.robot_box("robot2", goal, 0.06)])
    with pytest.raises(NoPath, match="robot2"):
        plan_path(world, start, goal)


def test_parking_spots_are_free_floor_and_checked(tmp_path):
    assert len(WORLD.parking) >= 3
    for spot in WORLD.parking:
        assert footprint_collides(WORLD, spot, margin=0.05) is None
        for dock in DOCK.values():
            assert not rectangles_overlap(spot, ROBOT_FOOTPRINT, dock, ROBOT_FOOTPRINT)
    doc = yaml.safe_load(config_path("stations.yaml").read_text())
    for bad, why in (([[1.0, 3.2, 0.0]], "solid_dispenser"), ([[6.5, 10.3, 0.0], [6.5, 10.5, 0.0]], "parking\\[1\\]"),
                     ([[1.35, 3.3, 3.14]], "solid_dispenser's dock"), ([[1, 2]], "list of 3 numbers")):
        path = tmp_path / "stations.yaml"
        path.write_text(yaml.safe_dump(dict(doc, parking=bad)))
        with pytest.raises(ConfigError, match=why):
            LabWorld.load(share_dir() / "worlds" / "lab.sdf", path)
