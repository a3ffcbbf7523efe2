"""The embedded simulation's messages, built from its state (lab.core.robot.simworld): what
Gazebo's sensors, a base controller and robot_state_publisher would publish. Pure builders;
the sim node (lab.nodes.sim) decides when each goes out."""

from __future__ import annotations

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState, CameraInfo, CompressedImage, Image, JointState
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker, MarkerArray

from lab.core.robot.gridnav import OccupancyGrid
from lab.core.robot.kinematics import Tree
from lab.core.robot.simworld import GRIPPER, SimLab, SimRobot
from lab.core.robot.vision import CameraModel
from lab.core.robot.world import LabWorld, Pose2D
from lab.ros.conversions import pose_msg, transform_msg


def occupancy_grid_msg(world: LabWorld, stamp: Time) -> OccupancyGridMsg:
    """The lab's walls and stations as an occupancy grid (what scripts/make_map.py writes to
    maps/lab.pgm for the full stack), 0 free and 100 occupied."""
    grid = OccupancyGrid.from_world(world)
    msg = OccupancyGridMsg()
    msg.header.frame_id, msg.header.stamp = "map", stamp
    msg.info.resolution = float(grid.resolution)
    msg.info.height, msg.info.width = grid.occupied.shape
    msg.info.origin.position.x, msg.info.origin.position.y = (float(v) for v in grid.origin)
    msg.data = np.where(grid.occupied, 100, 0).astype(np.int8).ravel().tolist()
    return msg


def robot_state_msgs(robot: SimRobot, now: Time) -> tuple[Odometry, Odometry, JointState, BatteryState]:
    """Odometry (where the robot believes it is), ground truth, joint states, battery."""
    odometry = []
    for pose in (robot.estimate, robot.truth):
        msg = Odometry()
        msg.header.stamp, msg.header.frame_id = now, "map"
        msg.child_frame_id = f"{robot.name}/base_link"
        msg.pose.pose = pose_msg(pose)
        msg.twist.twist.linear.x, msg.twist.twist.linear.y = robot.velocity[0], robot.velocity[1]
        msg.twist.twist.angular.z = robot.velocity[2]
        odometry.append(msg)
    js = JointState()
    js.header.stamp = now
    js.name = [f"{robot.name}/{j}" for j in robot.joints]
    js.position = [float(v) for v in robot.joints.values()]
    battery = BatteryState()
    battery.header.stamp = now
    battery.percentage = float(robot.battery)
    battery.present = True
    battery.power_supply_status = (BatteryState.POWER_SUPPLY_STATUS_CHARGING if robot.charging
                                   else BatteryState.POWER_SUPPLY_STATUS_DISCHARGING)
    return odometry[0], odometry[1], js, battery


def robot_tf_msg(name: str, estimate: Pose2D, tree: Tree, js: JointState, now: Time,
                 base: bool = True, links: bool = True) -> TFMessage:
    # what a real robot's drivers give: localisation's map -> odom (the simulated odometry
    # does not drift apart from the estimate: identity) and odometry's odom -> base_footprint
    # (`base`, with an odometry message), robot_state_publisher's links from the joint states (`links`)
    return TFMessage(transforms=[
        *((transform_msg("map", f"{name}/odom", np.eye(4), now),
           transform_msg(f"{name}/odom", f"{name}/base_footprint", estimate.as_matrix3d(), now)) if base else ()),
        *(transform_msg(link.parent, link.child, link.pose, now)
          for link in (tree.moving(dict(zip(js.name, js.position, strict=True))) if links else ()))])


def compressed_image_msg(image: np.ndarray, frame: str, now: Time) -> CompressedImage:
    """The JPEG stream recordings keep (mono8)."""
    packed = CompressedImage()
    packed.header.stamp, packed.header.frame_id = now, frame
    packed.format = "mono8; jpeg compressed mono8"
    packed.data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    return packed


def image_msgs(image: np.ndarray, camera: CameraModel, frame: str, now: Time) -> tuple[Image, CameraInfo]:
    """The raw image and its calibration (a distortion-free pinhole)."""
    msg = Image()
    msg.header.stamp, msg.header.frame_id = now, frame
    msg.height, msg.width = image.shape[:2]
    msg.encoding, msg.step = "mono8", image.shape[1]
    msg.data = image.tobytes()
    info = CameraInfo()
    info.header = msg.header
    info.height, info.width = msg.height, msg.width
    info.k = [camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0]
    info.p = [camera.fx, 0.0, camera.cx, 0.0, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.distortion_model, info.d = "plumb_bob", [0.0] * 5
    return msg, info


def lab_markers_msg(world: LabWorld, lab: SimLab, now: Time) -> MarkerArray:
    """Stations, their labels, robots, racks and trays as RViz markers."""
    markers = MarkerArray()

    def add(ns: str, ident: int, kind: int, pose: Pose2D, z: float, size, colour, text: str = "") -> None:
        m = Marker()
        m.header.stamp, m.header.frame_id = now, "map"
        m.ns, m.id, m.type, m.action = ns, ident, kind, Marker.ADD
        m.pose = pose_msg(pose, z)
        m.scale.x, m.scale.y, m.scale.z = (float(v) for v in size)
        m.color.r, m.color.g, m.color.b, m.color.a = colour
        m.text = text
        markers.markers.append(m)

    for i, station in enumerate(world.stations.values()):
        add("stations", i, Marker.CUBE, station.pose, station.size[2] / 2, station.size, (0.6, 0.6, 0.7, 0.8))
        add("labels", i, Marker.TEXT_VIEW_FACING, station.pose, station.size[2] + 0.3, (0.2, 0.2, 0.2),
            (1.0, 1.0, 1.0, 1.0), station.name)
    for i, robot in enumerate(lab.robots.values()):
        add("robots", i, Marker.CUBE, robot.truth, 0.35, (1.1, 0.63, 0.7), (1.0, 0.5, 0.0, 0.9))
    for i, (_obj, kind, loc) in enumerate(lab.objects.snapshot()):
        owner, _, slot = loc.partition("/")
        point = lab.tool_in_map(owner) if slot == GRIPPER else lab.location_in_map(loc)
        if point is None:
            continue
        colour = (0.1, 0.5, 1.0, 1.0) if kind == "rack" else (0.2, 0.8, 0.2, 1.0)
        add("objects", i, Marker.CUBE, Pose2D(float(point[0]), float(point[1]), 0.0), float(point[2]) + 0.04,
            (0.12, 0.25, 0.08), colour)
    return markers
