"""Where the robot really stands at a station, from the station's ArUco marker (OpenCV).

The real robot had to touch-calibrate at every station (Burger et al. 2020); here the wrist
camera looks down at the marker panel lying on the station's bench top, the marker's pose in
the camera (ArUco detection, sub-pixel corners, IPPE square PnP) and the camera's pose on the
robot (forward kinematics) give the base's pose in the map. The embedded simulation renders
the same view from the true pose, so the refinement is tested against ground truth.
Units: m, rad, pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from lab.core.robot.world import Pose2D, Station

DICTIONARY = cv2.aruco.DICT_4X4_50
#: the panel is the marker with a white border: the marker's edge is 0.8 of the panel's
PANEL_RATIO = 1.25
_MARKER_PIXELS = 240


@dataclass(frozen=True)
class CameraModel:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def default(cls) -> CameraModel:
        """The wrist camera of the URDF: 1280 x 960, 70 degrees horizontal field of view, no distortion."""
        f = 640.0 / math.tan(math.radians(35.0))
        return cls(1280, 960, f, f, 639.5, 479.5)

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def _panel_image(marker_id: int) -> np.ndarray:
    dictionary = cv2.aruco.getPredefinedDictionary(DICTIONARY)
    marker = cv2.aruco.generateImageMarker(dictionary, marker_id, _MARKER_PIXELS)
    border = int(round(_MARKER_PIXELS * (PANEL_RATIO - 1.0) / 2.0))
    return cv2.copyMakeBorder(marker, border, border, border, border, cv2.BORDER_CONSTANT, value=255)


def render_marker_view(camera: CameraModel, marker_id: int, marker_size: float, t_cam_marker: np.ndarray,
                       rng: np.random.Generator | None = None, noise_sd: float = 2.0,
                       background: int = 110) -> np.ndarray:
    """Grey image of the marker panel as the camera sees it (perspective warp, blur, pixel noise).

    The marker frame: origin at the marker's centre, x to the right of the marker image, y up
    (toward its top row), z out of the marker (as OpenCV's ArUco functions use it).
    """
    panel = _panel_image(marker_id)
    size = panel.shape[0]
    half = marker_size * PANEL_RATIO / 2.0
    corners3d = np.array([[-half, half, 0.0, 1.0], [half, half, 0.0, 1.0], [half, -half, 0.0, 1.0],
                          [-half, -half, 0.0, 1.0]])
    in_cam = (t_cam_marker @ corners3d.T).T[:, :3]
    image = np.full((camera.height, camera.width), background, dtype=np.uint8)
    if np.any(in_cam[:, 2] <= 0.01):
        return image
    pixels = (camera.matrix() @ in_cam.T).T
    pixels = (pixels[:, :2] / pixels[:, 2:3]).astype(np.float32)
    src = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float32) - 0.5
    warp = cv2.getPerspectiveTransform(src, pixels)
    cv2.warpPerspective(panel, warp, (camera.width, camera.height), dst=image, flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_TRANSPARENT)
    blurred = cv2.GaussianBlur(image, (0, 0), 0.7)
    if rng is None or noise_sd <= 0:
        return blurred
    # OpenCV's generator, seeded from `rng` (a seeded rng gives the same frames; the generator is
    # per thread): numpy's normal() over a 1280 x 960 frame was 22 of a render's 24 ms, and the
    # simulation renders at 10 Hz whenever a wrist camera sees a panel (issue 37: 35 % of a core)
    noise = np.empty(blurred.shape, np.int16)
    cv2.setRNGSeed(int(rng.integers(2**31)))
    cv2.randn(noise, np.array([0.0]), np.array([noise_sd]))
    return np.clip(blurred.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def panel_in_view(stations: Iterable[Station], t_map_cam: np.ndarray,
                  camera_range: float) -> tuple[Station, np.ndarray] | None:
    """The station whose marker panel a camera at `t_map_cam` sees (the nearest in front of it,
    within `camera_range` m) and the marker's pose in the camera frame; None when none is: the
    embedded camera renders and publishes only then."""
    best, best_d = None, 1e9
    to_cam = np.linalg.inv(t_map_cam)
    for station in stations:
        t_cam_marker = to_cam @ station.marker_pose_in_map()
        z, distance = t_cam_marker[2, 3], float(np.linalg.norm(t_cam_marker[:3, 3]))
        if 0.1 < z and distance < min(best_d, 3.0):
            best, best_d = (station, t_cam_marker), distance
    return None if best is None or best_d > camera_range else best


def _detector() -> cv2.aruco.ArucoDetector:
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    params.cornerRefinementWinSize = 7
    params.cornerRefinementMaxIterations = 60
    params.cornerRefinementMinAccuracy = 0.001
    return cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(DICTIONARY), params)


def estimate_marker_pose(image: np.ndarray, camera: CameraModel, marker_id: int,
                         marker_size: float) -> np.ndarray | None:
    """4x4 pose of the marker in the camera's optical frame, or None when it is not seen."""
    corners, ids, _ = _detector().detectMarkers(image)
    if ids is None:
        return None
    for found, marker in zip(corners, ids.flatten(), strict=True):
        if int(marker) != marker_id:
            continue
        half = marker_size / 2.0
        obj = np.array([[-half, half, 0.0], [half, half, 0.0], [half, -half, 0.0], [-half, -half, 0.0]])
        ok, rvec, tvec = cv2.solvePnP(obj, found.reshape(4, 2).astype(np.float64), camera.matrix(), None,
                                      flags=cv2.SOLVEPNP_IPPE_SQUARE)
        if not ok:
            return None
        t = np.eye(4)
        t[:3, :3] = cv2.Rodrigues(rvec)[0]
        t[:3, 3] = tvec.flatten()
        return t
    return None


def refine_base_pose(station: Station, t_base_cam: np.ndarray, t_cam_marker: np.ndarray) -> Pose2D:
    """The base's pose in the map implied by one observation of the station's marker.

    The base stands on a flat floor and the marker lies flat on the bench, so only what a
    camera measures well is used: the direction to the marker's centre (scaled to the known
    height of the bench top) and the marker's rotation about the vertical; the marker's
    estimated tilt, which PnP determines poorly for a fronto-parallel square, is not.
    """
    ray = t_base_cam[:3, :3] @ t_cam_marker[:3, 3]
    origin = t_base_cam[:3, 3]
    marker_z = station.marker.position[2]
    if abs(ray[2]) < 1e-6:
        raise ValueError("the camera does not look down at the marker")
    point = origin + ray * (marker_z - origin[2]) / ray[2]
    r_base_marker = t_base_cam[:3, :3] @ t_cam_marker[:3, :3]
    yaw_in_base = math.atan2(float(r_base_marker[1, 0]), float(r_base_marker[0, 0]))
    t_map_marker = station.marker_pose_in_map()
    marker_in_map = Pose2D(float(t_map_marker[0, 3]), float(t_map_marker[1, 3]),
                           math.atan2(float(t_map_marker[1, 0]), float(t_map_marker[0, 0])))
    marker_in_base = Pose2D(float(point[0]), float(point[1]), yaw_in_base)
    return marker_in_map.compose(marker_in_base.inverse())


def dock_offset(station: Station, base_pose: Pose2D) -> Pose2D:
    """The base's pose in the station's docking frame (zero when exactly docked)."""
    return station.dock.inverse().compose(base_pose)
