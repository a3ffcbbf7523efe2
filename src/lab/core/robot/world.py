"""The lab's geometry: walls and stations from worlds/lab.sdf, kinds, docks and slots from
config/stations.yaml, checked against each other. Units: m, rad."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lab.core import yamlfile
from lab.core.errors import ConfigError, InvalidGoal

#: the base of the KUKA KMR iiwa the paper used: about 1.1 m x 0.63 m (length x width)
ROBOT_FOOTPRINT = (1.1, 0.63)


def wrap(angle: float) -> float:
    """The angle in [-pi, pi] (rad): the one angle wrap of the lab."""
    return math.atan2(math.sin(angle), math.cos(angle))


@dataclass(frozen=True)
class Pose2D:
    x: float
    y: float
    yaw: float = 0.0

    def compose(self, other: Pose2D) -> Pose2D:
        """self * other: `other` is expressed in self's frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return Pose2D(self.x + c * other.x - s * other.y, self.y + s * other.x + c * other.y,
                      wrap(self.yaw + other.yaw))

    def inverse(self) -> Pose2D:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return Pose2D(-(c * self.x + s * self.y), -(-s * self.x + c * self.y), wrap(-self.yaw))

    def as_matrix(self) -> np.ndarray:
        """3x3 homogeneous transform."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, -s, self.x], [s, c, self.y], [0.0, 0.0, 1.0]])

    def as_matrix3d(self, z: float = 0.0) -> np.ndarray:
        """4x4 homogeneous transform (a rotation about z)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, -s, 0.0, self.x], [s, c, 0.0, self.y], [0.0, 0.0, 1.0, z], [0.0, 0.0, 0.0, 1.0]])

    def distance_to(self, other: Pose2D) -> float:
        return math.hypot(other.x - self.x, other.y - self.y)


@dataclass(frozen=True)
class Box:
    """An obstacle's footprint: centre pose, size (x, y, z)."""

    name: str
    pose: Pose2D
    size: tuple[float, float, float]


@dataclass(frozen=True)
class Marker:
    id: int
    size: float                               # edge length, m
    position: tuple[float, float, float]      # centre in the station frame, lying on the bench top


@dataclass(frozen=True)
class Station:
    name: str
    kind: str
    pose: Pose2D
    size: tuple[float, float, float]
    dock: Pose2D
    marker: Marker
    slots: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def slot_in_map(self, slot: str) -> tuple[float, float, float]:
        x, y, z = self.slots[slot]
        p = self.pose.compose(Pose2D(x, y, 0.0))
        return p.x, p.y, z

    def marker_pose_in_map(self) -> np.ndarray:
        """4x4 pose of the marker in the map frame: lying face up, its x axis along the station's x."""
        x, y, z = self.marker.position
        p = self.pose.compose(Pose2D(x, y, 0.0))
        return p.as_matrix3d(z)

    def box(self) -> Box:
        return Box(self.name, self.pose, self.size)


def _floats(value: Any, n: int, where: str) -> tuple[float, ...]:
    if (not isinstance(value, list | tuple) or len(value) != n
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise ConfigError(f"{where}: must be a list of {n} numbers, all finite, got {value!r}")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class StationsConfig:
    """config/stations.yaml, typed: the stations (file order) and the robots' parking spots."""

    path: Path
    stations: dict[str, Station]
    parking: list[Pose2D]

    def kinds(self) -> dict[str, str]:
        return {name: s.kind for name, s in self.stations.items()}


def load_stations(path: Path) -> StationsConfig:
    """The one reader of config/stations.yaml; ConfigError naming the file and key on anything
    malformed. (LabWorld.load also checks it against the world file.)"""
    try:
        doc = yamlfile.safe_load(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    stations = _parse_stations(doc, str(path))
    parking = doc.get("parking") or []
    if not isinstance(parking, list):
        raise ConfigError(f"{path}: parking: must be a list of [x, y, yaw]")
    spots = [Pose2D(*_floats(p, 3, f"{path}: parking[{i}]")) for i, p in enumerate(parking)]
    return StationsConfig(Path(path), stations, spots)


def _parse_stations(doc: Any, source: str) -> dict[str, Station]:
    """config/stations.yaml's stations; ConfigError naming the file and key on anything malformed."""
    if not isinstance(doc, dict) or not isinstance(doc.get("stations"), dict):
        raise ConfigError(f"{source}: needs a mapping 'stations'")
    stations: dict[str, Station] = {}
    ids: dict[int, str] = {}
    for name, body in doc["stations"].items():
        key = f"{source}: stations.{name}"
        if not isinstance(body, dict):
            raise ConfigError(f"{key}: must be a mapping")
        for required in ("kind", "pose", "size", "dock", "marker"):
            if required not in body:
                raise ConfigError(f"{key}.{required}: missing")
        if not isinstance(body["kind"], str) or not body["kind"]:
            raise ConfigError(f"{key}.kind: must be a string")
        marker = body["marker"]
        if not isinstance(marker, dict) or not isinstance(marker.get("id"), int):
            raise ConfigError(f"{key}.marker: needs an integer id, a size and a position")
        if marker["id"] in ids:
            raise ConfigError(f"{key}.marker.id: {marker['id']} is also {ids[marker['id']]}'s")
        ids[marker["id"]] = name
        slots = body.get("slots") or {}
        if not isinstance(slots, dict):
            raise ConfigError(f"{key}.slots: must be a mapping of slot name to [x, y, z]")
        pose = _floats(body["pose"], 3, f"{key}.pose")
        dock = _floats(body["dock"], 3, f"{key}.dock")
        stations[name] = Station(
            name=name, kind=body["kind"], pose=Pose2D(*pose),
            size=_floats(body["size"], 3, f"{key}.size"),  # type: ignore[arg-type]
            dock=Pose2D(*dock),
            marker=Marker(marker["id"], float(_floats([marker.get("size")], 1, f"{key}.marker.size")[0]),
                          _floats(marker.get("position"), 3, f"{key}.marker.position")),  # type: ignore[arg-type]
            slots={s: _floats(v, 3, f"{key}.slots.{s}") for s, v in slots.items()},  # type: ignore[misc]
        )
    return stations


def _pose6(text: str | None) -> tuple[float, ...]:
    values = [float(v) for v in (text or "0 0 0 0 0 0").split()]
    return tuple(values + [0.0] * (6 - len(values)))


class LabWorld:
    """Walls and stations; obstacles are what the base must not touch."""

    def __init__(self, width: float, length: float, stations: dict[str, Station], walls: list[Box],
                 parking: list[Pose2D] | None = None) -> None:
        self.width = width
        self.length = length
        self.stations = stations
        self.walls = walls
        self.parking: list[Pose2D] = list(parking or [])  # where idle robots wait out of the way, one each
        self.obstacles: list[Box] = walls + [s.box() for s in stations.values()]
        self.base: LabWorld | None = None      # set on a copy with extra obstacles (with_obstacles)
        self.extra: list[Box] = []

    def with_obstacles(self, boxes: list[Box]) -> LabWorld:
        """This world with more obstacles (e.g. the other robots where they stand); the
        static grid of this world is reused by lab.core.robot.gridnav."""
        world = LabWorld(self.width, self.length, self.stations, self.walls, self.parking)
        world.obstacles = self.obstacles + list(boxes)
        world.base, world.extra = self, list(boxes)
        return world

    def robot_box(self, name: str, pose: Pose2D, margin: float = 0.0) -> Box:
        """A robot's footprint as an obstacle (margin added on every side)."""
        return Box(name, pose, (ROBOT_FOOTPRINT[0] + 2 * margin, ROBOT_FOOTPRINT[1] + 2 * margin, 1.0))

    @classmethod
    def load(cls, sdf_path: Path, stations_path: Path) -> LabWorld:
        config = load_stations(stations_path)
        stations = config.stations
        try:
            root = ET.parse(sdf_path).getroot()
        except FileNotFoundError:
            raise ConfigError(f"{sdf_path}: file not found") from None
        except ET.ParseError as exc:
            raise ConfigError(f"{sdf_path}: not valid XML: {exc}") from None
        world = root.find("world")
        if world is None:
            raise ConfigError(f"{sdf_path}: no <world>")
        walls: list[Box] = []
        models: dict[str, tuple[Pose2D, tuple[float, ...]]] = {}
        for model in world.findall("model"):
            name = model.get("name", "")
            x, y, _z, _r, _p, yaw = _pose6(model.findtext("pose"))
            size_text = model.findtext("link/collision/geometry/box/size")
            if size_text is None:
                continue
            size = tuple(float(v) for v in size_text.split())
            if name.startswith("wall"):
                walls.append(Box(name, Pose2D(x, y, yaw), size))  # type: ignore[arg-type]
            else:
                models[name] = (Pose2D(x, y, yaw), size)
        if not walls:
            raise ConfigError(f"{sdf_path}: no wall models (named wall*)")
        # the floor is what the walls enclose
        west = max(w.pose.x + w.size[0] / 2 for w in walls if w.size[1] > w.size[0] and w.pose.x < 1.0)
        east = min(w.pose.x - w.size[0] / 2 for w in walls if w.size[1] > w.size[0] and w.pose.x > 1.0)
        south = max(w.pose.y + w.size[1] / 2 for w in walls if w.size[0] > w.size[1] and w.pose.y < 1.0)
        north = min(w.pose.y - w.size[1] / 2 for w in walls if w.size[0] > w.size[1] and w.pose.y > 1.0)
        width, length = east - west, north - south
        for name, station in stations.items():
            if name not in models:
                raise ConfigError(f"{stations_path}: stations.{name}: no model '{name}' in {sdf_path}")
            pose, size = models[name]
            if pose.distance_to(station.pose) > 1e-3 or abs(wrap(pose.yaw - station.pose.yaw)) > 1e-3:
                raise ConfigError(f"{stations_path}: stations.{name}.pose: {station.pose} but {sdf_path} has {pose}")
            if any(abs(a - b) > 1e-3 for a, b in zip(size, station.size, strict=True)):
                raise ConfigError(f"{stations_path}: stations.{name}.size: {station.size} but {sdf_path} has {size}")
        extra = set(models) - set(stations)
        if extra:
            raise ConfigError(f"{sdf_path}: station model(s) {sorted(extra)} missing from {stations_path}")
        spots = config.parking
        world_ = cls(width, length, stations, walls, spots)
        for i, spot in enumerate(spots):
            hit = footprint_collides(world_, spot, margin=0.05)
            if hit or not (0 < spot.x < width and 0 < spot.y < length):
                raise ConfigError(f"{stations_path}: parking[{i}] ({spot.x:g}, {spot.y:g}): a robot there "
                                  f"would stand in {hit or 'no lab (outside the floor)'}")
            others = [(f"parking[{j}]", q) for j, q in enumerate(spots) if j != i]
            others += [(f"{n}'s dock", st.dock) for n, st in stations.items()]
            for what, q in others:
                if rectangles_overlap(spot, ROBOT_FOOTPRINT, q, ROBOT_FOOTPRINT):
                    raise ConfigError(f"{stations_path}: parking[{i}]: a robot there overlaps one at {what}")
        return world_

    def station(self, name: str) -> Station:
        if name not in self.stations:
            raise InvalidGoal(f"unknown station '{name}' (known: {', '.join(self.stations)})")
        return self.stations[name]


def _corners(pose: Pose2D, sx: float, sy: float) -> np.ndarray:
    c, s = math.cos(pose.yaw), math.sin(pose.yaw)
    hx, hy = sx / 2.0, sy / 2.0
    local = np.array([[hx, hy], [hx, -hy], [-hx, -hy], [-hx, hy]])
    return local @ np.array([[c, s], [-s, c]]) + np.array([pose.x, pose.y])


def rectangles_overlap(a: Pose2D, a_size: tuple[float, float], b: Pose2D, b_size: tuple[float, float]) -> bool:
    """Separating-axis test of two oriented rectangles."""
    ca, cb = _corners(a, *a_size), _corners(b, *b_size)
    for p in (a, b):
        for axis in ((math.cos(p.yaw), math.sin(p.yaw)), (-math.sin(p.yaw), math.cos(p.yaw))):
            ax = np.array(axis)
            pa, pb = ca @ ax, cb @ ax
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def footprint_collides(world: LabWorld, pose: Pose2D, footprint: tuple[float, float] = ROBOT_FOOTPRINT,
                       margin: float = 0.0) -> str | None:
    """Name of the obstacle the robot's footprint at pose touches (with margin), else None."""
    size = (footprint[0] + 2 * margin, footprint[1] + 2 * margin)
    reach = math.hypot(*size) / 2.0
    for box in world.obstacles:
        if math.hypot(box.pose.x - pose.x, box.pose.y - pose.y) > reach + math.hypot(box.size[0], box.size[1]) / 2:
            continue
        if rectangles_overlap(pose, size, box.pose, (box.size[0], box.size[1])):
            return box.name
    return None


def start_poses(world: LabWorld, robots: list[str]) -> dict[str, Pose2D]:
    """Where each robot starts (and Gazebo spawns it, and its localisation is initialised): the
    first docked at the charger, the others on their parking spots (config/stations.yaml), any
    further ones along the charger's side, one robot length apart."""
    charger = next((s for s in world.stations.values() if s.kind == "charger"), None)
    first = charger.dock if charger else Pose2D(world.width / 2, 1.5, math.pi / 2)
    poses = {}
    for i, robot in enumerate(robots):
        if i == 0:
            poses[robot] = first
        elif i < len(world.parking):
            poses[robot] = world.parking[i]
        else:
            poses[robot] = Pose2D(first.x - 1.2 * i * math.sin(first.yaw), first.y + 1.2 * i * math.cos(first.yaw),
                                  first.yaw)
    return poses
