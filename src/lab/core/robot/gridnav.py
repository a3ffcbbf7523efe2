"""Grid navigation for a holonomic base: occupancy grid from the world, shortest path, follower.

The grid marks walls and station footprints; A* (8-connected) runs on it inflated by the
footprint's circumscribed radius, where the base may turn freely. A dock lies closer to its
station than that radius, so a path leaves its start and reaches its goal by a straight
segment at the start's and goal's heading, checked against the real rectangular footprint;
in between the heading turns from one to the other. Units: m, rad, s.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from lab.core.robot.world import ROBOT_FOOTPRINT, Box, LabWorld, Pose2D, footprint_collides, wrap


class NoPath(ValueError):
    """No collision-free path; the message says why."""


@dataclass
class OccupancyGrid:
    resolution: float
    origin: tuple[float, float]
    occupied: np.ndarray  # bool, rows = y, columns = x, row 0 at origin y

    @classmethod
    def from_world(cls, world: LabWorld, resolution: float = 0.05, inflation: float = 0.0) -> OccupancyGrid:
        cols = int(round(world.width / resolution))
        rows = int(round(world.length / resolution))
        grid = cls(resolution, (0.0, 0.0), np.zeros((rows, cols), dtype=bool))
        grid.mark(world.obstacles, inflation)
        return grid

    def mark(self, boxes: list[Box], inflation: float) -> None:
        """Occupy every cell within `inflation` of one of the boxes."""
        rows, cols = self.occupied.shape
        xs = self.origin[0] + (np.arange(cols) + 0.5) * self.resolution
        ys = self.origin[1] + (np.arange(rows) + 0.5) * self.resolution
        gx, gy = np.meshgrid(xs, ys)
        for box in boxes:
            c, s = math.cos(box.pose.yaw), math.sin(box.pose.yaw)
            dx, dy = gx - box.pose.x, gy - box.pose.y
            lx, ly = c * dx + s * dy, -s * dx + c * dy
            ex = np.maximum(np.abs(lx) - box.size[0] / 2, 0.0)
            ey = np.maximum(np.abs(ly) - box.size[1] / 2, 0.0)
            self.occupied |= np.hypot(ex, ey) <= inflation

    def cell(self, x: float, y: float) -> tuple[int, int]:
        return int((y - self.origin[1]) / self.resolution), int((x - self.origin[0]) / self.resolution)

    def centre(self, row: int, col: int) -> tuple[float, float]:
        return (self.origin[0] + (col + 0.5) * self.resolution, self.origin[1] + (row + 0.5) * self.resolution)

    def inside(self, row: int, col: int) -> bool:
        return 0 <= row < self.occupied.shape[0] and 0 <= col < self.occupied.shape[1]

    def is_free(self, x: float, y: float) -> bool:
        row, col = self.cell(x, y)
        return self.inside(row, col) and not bool(self.occupied[row, col])

    def to_pgm(self) -> bytes:
        """Binary PGM as Nav2's map_server reads it: 0 occupied, 254 free, top row = largest y."""
        rows, cols = self.occupied.shape
        image = np.where(self.occupied[::-1], 0, 254).astype(np.uint8)
        return f"P5\n{cols} {rows}\n255\n".encode() + image.tobytes()

    def map_yaml(self, image: str) -> str:
        return (f"image: {image}\nmode: trinary\nresolution: {self.resolution}\n"
                f"origin: [{self.origin[0]}, {self.origin[1]}, 0.0]\nnegate: 0\noccupied_thresh: 0.65\n"
                f"free_thresh: 0.25\n")


_GRIDS: dict[tuple[int, float, float], OccupancyGrid] = {}


def _grid(world: LabWorld, resolution: float, inflation: float) -> OccupancyGrid:
    if world.base is not None:  # a world with extra obstacles: its base's grid plus those (not kept)
        base = _grid(world.base, resolution, inflation)
        grid = OccupancyGrid(base.resolution, base.origin, base.occupied.copy())
        grid.mark(world.extra, inflation)
        return grid
    key = (id(world), resolution, inflation)
    if key not in _GRIDS:
        _GRIDS[key] = OccupancyGrid.from_world(world, resolution, inflation)
    return _GRIDS[key]


def _segment_free(world: LabWorld, a: Pose2D, b: Pose2D, step: float = 0.02) -> str | None:
    n = max(1, int(math.ceil(a.distance_to(b) / step)))
    for i in range(n + 1):
        t = i / n
        pose = Pose2D(a.x + t * (b.x - a.x), a.y + t * (b.y - a.y), wrap(a.yaw + t * wrap(b.yaw - a.yaw)))
        hit = footprint_collides(world, pose)
        if hit:
            return hit
    return None


def _escape(world: LabWorld, grid: OccupancyGrid, pose: Pose2D, what: str) -> Pose2D:
    """The nearest freely-turnable point reachable from pose by a straight move at its heading
    (backwards first: out of a dock), or sideways."""
    if grid.is_free(pose.x, pose.y):
        return pose
    c, s = math.cos(pose.yaw), math.sin(pose.yaw)
    step = grid.resolution / 2
    for ux, uy in ((-c, -s), (c, s), (-s, c), (s, -c)):
        for k in range(1, int(1.5 / step) + 1):
            x, y = pose.x + ux * k * step, pose.y + uy * k * step
            if not (0.0 < x < world.width and 0.0 < y < world.length):
                break
            if footprint_collides(world, Pose2D(x, y, pose.yaw)):
                break
            if grid.is_free(x, y):
                return Pose2D(x, y, pose.yaw)
    raise NoPath(f"the {what} ({pose.x:.2f}, {pose.y:.2f}) is boxed in: no room to turn within 1.5 m")


def _astar(grid: OccupancyGrid, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
    occupied = grid.occupied
    rows, cols = occupied.shape
    moves = [(-1, 0, 1.0), (1, 0, 1.0), (0, -1, 1.0), (0, 1, 1.0),
             (-1, -1, math.sqrt(2)), (-1, 1, math.sqrt(2)), (1, -1, math.sqrt(2)), (1, 1, math.sqrt(2))]
    g = {start: 0.0}
    parent: dict[tuple[int, int], tuple[int, int]] = {}
    heap = [(0.0, start)]
    closed = set()
    while heap:
        _, node = heapq.heappop(heap)
        if node == goal:
            path = [node]
            while node in parent:
                node = parent[node]
                path.append(node)
            return path[::-1]
        if node in closed:
            continue
        closed.add(node)
        r, c = node
        for dr, dc, cost in moves:
            nr, nc = r + dr, c + dc
            if not (0 <= nr < rows and 0 <= nc < cols) or occupied[nr, nc]:
                continue
            new = g[node] + cost
            if new < g.get((nr, nc), math.inf):
                g[(nr, nc)] = new
                parent[(nr, nc)] = node
                h = math.hypot(goal[0] - nr, goal[1] - nc)
                heapq.heappush(heap, (new + h, (nr, nc)))
    raise NoPath("no route between them: the free space is not connected")


def _line_free(grid: OccupancyGrid, a: tuple[float, float], b: tuple[float, float]) -> bool:
    n = max(1, int(math.ceil(math.hypot(b[0] - a[0], b[1] - a[1]) / (grid.resolution / 2))))
    for i in range(n + 1):
        t = i / n
        if not grid.is_free(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])):
            return False
    return True


#: m the heading holds after a base has backed out of a dock (more than PathFollower's look-ahead)
UNDOCK_HOLD = 0.5


def plan_path(world: LabWorld, start: Pose2D, goal: Pose2D, resolution: float = 0.05,
              footprint: tuple[float, float] = ROBOT_FOOTPRINT) -> list[Pose2D]:
    """Waypoints from start to goal, collision-free for the rectangular footprint; NoPath says why."""
    for pose, what in ((start, "start"), (goal, "goal")):
        if not (0.0 <= pose.x <= world.width and 0.0 <= pose.y <= world.length):
            raise NoPath(f"the {what} ({pose.x:.2f}, {pose.y:.2f}) is outside the lab")
        hit = footprint_collides(world, pose, footprint)
        if hit:
            raise NoPath(f"the {what} ({pose.x:.2f}, {pose.y:.2f}) puts the robot inside {hit}")
    radius = math.hypot(*footprint) / 2 + 0.03
    grid = _grid(world, resolution, radius)
    if start.distance_to(goal) < 1e-3:
        return [start, goal]
    if _segment_free(world, start, goal) is None and start.distance_to(goal) < 1.0:
        return [start, goal]  # a short straight move, e.g. a correction at a dock
    a = _escape(world, grid, start, "start")
    b = _escape(world, grid, goal, "goal")
    cells = _astar(grid, grid.cell(a.x, a.y), grid.cell(b.x, b.y))
    points = [(a.x, a.y)] + [grid.centre(r, c) for r, c in cells[1:-1]] + [(b.x, b.y)]
    # shortcut: keep a point only where the straight line from the last kept one is blocked
    smooth = [points[0]]
    i = 0
    while i < len(points) - 1:
        j = len(points) - 1
        while j > i + 1 and not _line_free(grid, points[i], points[j]):
            j -= 1
        smooth.append(points[j])
        i = j
    hold = 0.0
    first = math.hypot(smooth[1][0] - smooth[0][0], smooth[1][1] - smooth[0][1]) if len(smooth) > 1 else 0.0
    if start.distance_to(a) > 1e-6 and first > 1e-6:
        # backed out of a dock: the heading holds for UNDOCK_HOLD beyond the escape point, so the
        # follower (which steers toward a point 0.4 m ahead) does not turn while the footprint is
        # still at the station (a base docked a few cm too close and askew would clip it)
        (x0, y0), (x1, y1) = smooth[0], smooth[1]
        hold = min(UNDOCK_HOLD, first / 2)
        smooth.insert(1, (x0 + hold / first * (x1 - x0), y0 + hold / first * (y1 - y0)))
    total = sum(math.hypot(q[0] - p[0], q[1] - p[1]) for p, q in zip(smooth, smooth[1:], strict=False)) or 1.0
    turn = wrap(b.yaw - a.yaw)
    path = [start] if start.distance_to(a) > 1e-6 else []
    run = 0.0
    for k, (x, y) in enumerate(smooth):
        if k:
            run += math.hypot(x - smooth[k - 1][0], y - smooth[k - 1][1])
        path.append(Pose2D(x, y, wrap(a.yaw + turn * max(0.0, run - hold) / max(total - hold, 1e-9))))
    if goal.distance_to(b) > 1e-6:
        path.append(goal)
    else:
        path[-1] = goal
    return path


def path_length(path: list[Pose2D]) -> float:
    return sum(a.distance_to(b) for a, b in zip(path, path[1:], strict=False))


class PathFollower:
    """Holonomic path following: velocity toward a look-ahead point, heading from the path.

    Speed ramps with `accel` and falls as sqrt(2 accel d) toward the end, so the base stops on
    the goal; done when within goal_tolerance (m) and yaw_tolerance (rad) of the last pose.
    """

    def __init__(self, path: list[Pose2D], max_speed: float = 0.7, max_yaw_rate: float = 1.0, accel: float = 0.5,
                 goal_tolerance: float = 0.005, yaw_tolerance: float = 0.005, lookahead: float = 0.4) -> None:
        if not path:
            raise ValueError("an empty path")
        self.path = path
        self.max_speed, self.max_yaw_rate, self.accel = max_speed, max_yaw_rate, accel
        self.goal_tolerance, self.yaw_tolerance, self.lookahead = goal_tolerance, yaw_tolerance, lookahead
        self._cum = np.concatenate([[0.0], np.cumsum([a.distance_to(b) for a, b in zip(path, path[1:],
                                                                                         strict=False)])])
        self._progress = 0.0
        self._speed = 0.0
        self.done = False

    def _point_at(self, s: float) -> Pose2D:
        s = min(max(s, 0.0), float(self._cum[-1]))
        i = int(np.searchsorted(self._cum, s, side="right")) - 1
        i = min(i, len(self.path) - 2)
        if i < 0:
            return self.path[0]
        a, b = self.path[i], self.path[i + 1]
        seg = self._cum[i + 1] - self._cum[i]
        t = 0.0 if seg <= 0 else (s - self._cum[i]) / seg
        return Pose2D(a.x + t * (b.x - a.x), a.y + t * (b.y - a.y), wrap(a.yaw + t * wrap(b.yaw - a.yaw)))

    def _project(self, pose: Pose2D) -> float:
        """Arc length of the path point nearest pose, not going backwards."""
        best, best_s = math.inf, self._progress
        for i in range(len(self.path) - 1):
            if self._cum[i + 1] < self._progress - 1e-9:
                continue
            a, b = self.path[i], self.path[i + 1]
            vx, vy = b.x - a.x, b.y - a.y
            seg = vx * vx + vy * vy
            t = 0.0 if seg == 0 else max(0.0, min(1.0, ((pose.x - a.x) * vx + (pose.y - a.y) * vy) / seg))
            d = math.hypot(a.x + t * vx - pose.x, a.y + t * vy - pose.y)
            if d < best - 1e-9:
                best, best_s = d, max(self._progress, float(self._cum[i] + t * math.sqrt(seg)))
        return best_s

    def distance_remaining(self, pose: Pose2D) -> float:
        end = self.path[-1]
        return max(float(self._cum[-1]) - self._project(pose), pose.distance_to(end))

    def estimated_time_remaining(self, pose: Pose2D) -> float:
        return self.distance_remaining(pose) / self.max_speed

    def command(self, pose: Pose2D, dt: float) -> tuple[float, float, float]:
        """(vx, vy, wz) in the robot's frame for the next dt seconds."""
        end = self.path[-1]
        self._progress = self._project(pose)
        remaining = max(float(self._cum[-1]) - self._progress, 0.0)
        to_end = pose.distance_to(end)
        yaw_to_end = wrap(end.yaw - pose.yaw)
        if to_end <= self.goal_tolerance and abs(yaw_to_end) <= self.yaw_tolerance:
            self.done = True
            self._speed = 0.0
            return 0.0, 0.0, 0.0
        if remaining < self.lookahead or to_end < self.lookahead:
            target, distance, yaw_target = end, to_end, end.yaw
        else:
            target = self._point_at(self._progress + self.lookahead)
            distance, yaw_target = pose.distance_to(target), target.yaw
        limit = min(self.max_speed, math.sqrt(2.0 * self.accel * max(remaining, to_end)),
                    self._speed + self.accel * dt, 0.8 * to_end / dt if dt > 0 else self.max_speed)
        speed = max(0.0, limit)
        self._speed = speed
        if distance > 1e-9:
            ux, uy = (target.x - pose.x) / distance, (target.y - pose.y) / distance
        else:
            ux = uy = 0.0
        mx, my = ux * speed, uy * speed
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        yaw_error = wrap(yaw_target - pose.yaw)
        wz = max(-self.max_yaw_rate, min(self.max_yaw_rate, 0.8 * yaw_error / dt if dt > 0 else 0.0))
        return c * mx + s * my, -s * mx + c * my, wz
