"""`navigator`: one robot's `navigate_to_station` and `navigate_to_pose` actions.

The backend (parameter `backend`: embedded | nav2) drives the base; after docking at a
station the node refines where the robot really stands from the station's ArUco marker
seen by the wrist camera (the arm goes to its `inspect` pose first, through the robot's
own `manipulate` action), corrects the localisation (`initialpose`, as for AMCL) and
reports the pose in the station's docking frame — what the real robot's touch
calibration at every station gave (Burger et al. 2020).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from geometry_msgs.msg import Pose2D as Pose2DMsg
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool

from lab.backends.base import NavigationBackend, NavOutcome, backend_class
from lab.core.config.params import RESULT_KEEP, NavigatorParams
from lab.core.errors import InvalidGoal
from lab.core.robot.kinematics import Chain
from lab.core.robot.vision import CameraModel, dock_offset, estimate_marker_pose, refine_base_pose
from lab.core.robot.world import Pose2D, Station
from lab.ros.actions import ActionClient, call_action
from lab.ros.clock import CLOCK_SLACK, Stamped, clock_hold, seconds_of, sim_now, wait_for
from lab.ros.conversions import pose_msg
from lab.ros.main import node_main
from lab.ros.node import LabNode
from lab.ros.params import declare_params, load_world, robot_urdf
from lab.ros.presence import offer_presence, robot_topic
from lab.ros.qos import LATCHED
from lab.ros.safety import SafetyMonitor
from lab_interfaces.action import Manipulate, NavigateToPose, NavigateToStation


def to_msg(pose: Pose2D) -> Pose2DMsg:
    return Pose2DMsg(x=float(pose.x), y=float(pose.y), theta=float(pose.yaw))


class NavigatorNode(LabNode):
    def __init__(self) -> None:
        super().__init__("navigator")
        self.params = params = declare_params(self, NavigatorParams)
        self.robot = params.robot_name
        self.world = load_world(params)
        urdf = robot_urdf(params)
        self.camera_chain = Chain.from_urdf(urdf, "base_link", "wrist_camera_optical_frame")
        name = params.backend
        self.backend: NavigationBackend = backend_class("navigation", name)(
            self, self.robot, {"world": self.world, "params": params,
                               "others": [r for r in params.robots if r and r != self.robot]})
        self._busy = threading.Lock()
        self._joints = Stamped()  # {joint: position} with the stamp of its joint_states message
        self._image_lock = threading.Lock()
        self._image_after = math.inf  # wanted: the first image stamped at or after this (sim s)
        self._images_seen, self._last_image_stamp = 0, math.nan  # said when none comes in time
        self._camera_image: Image | None = None
        self._camera_info: CameraInfo | None = None
        group = ReentrantCallbackGroup()
        self.safety = SafetyMonitor(self, callback_group=group, contact_timeout=params.safety_timeout)
        # subscribed for the node's life: destroying a subscription while another thread spins
        # the executor races with its wait set (rclpy InvalidHandle)
        self.create_subscription(Image, "wrist_camera/image", self._on_image, 2, callback_group=group)
        # a triggered camera's trigger (gz-sensors: <topic>/trigger): an image now, not at the next of the
        # stream's; a camera that streams without one takes no notice
        self.trigger_pub = self.create_publisher(Bool, "wrist_camera/image/trigger", 10)
        self.create_subscription(CameraInfo, "wrist_camera/camera_info", self._on_info, 2, callback_group=group)
        self.create_subscription(JointState, "joint_states", self._joint_states, 10, callback_group=group)
        self.initial_pose_pub = self.create_publisher(PoseWithCovarianceStamped, "initialpose", 10)
        self.offset_pub = self.create_publisher(PoseStamped, "dock_offset", LATCHED)
        self.arm_client = ActionClient(self, Manipulate, "manipulate", callback_group=group)
        ActionServer(self, NavigateToStation, "navigate_to_station", execute_callback=self._to_station,
                     goal_callback=self._accept, cancel_callback=lambda _: CancelResponse.ACCEPT,
                     callback_group=group, result_timeout=int(RESULT_KEEP))
        ActionServer(self, NavigateToPose, "navigate_to_pose", execute_callback=self._to_pose,
                     goal_callback=self._accept, cancel_callback=lambda _: CancelResponse.ACCEPT,
                     callback_group=group, result_timeout=int(RESULT_KEEP))
        # the robot's presence for the lab manager (DDS liveliness; lab.ros.presence)
        self._presence = offer_presence(self, robot_topic(self.robot), params.presence_lease)
        self.get_logger().info(f"{self.robot}: navigation backend '{name}', {len(self.world.stations)} stations")

    def shutdown(self) -> None:
        self.backend.shutdown()

    def _accept(self, _goal) -> GoalResponse:
        # one motion at a time: a second goal while driving is refused, not queued
        return GoalResponse.REJECT if self._busy.locked() else GoalResponse.ACCEPT

    def _joint_states(self, msg: JointState) -> None:
        self._joints.put({n.rsplit("/", 1)[-1]: p for n, p in zip(msg.name, msg.position, strict=False)},
                         seconds_of(msg.header.stamp))

    # ------------------------------------------------------------------ actions
    def _drive(self, goal_handle, goal: Pose2D, feedback_type) -> NavOutcome:
        def feedback(phase: str, pose: Pose2D, remaining: float, eta: float) -> None:
            fb = feedback_type.Feedback(phase=phase, current_pose=to_msg(pose),
                                        distance_remaining=float(remaining), estimated_time_remaining=float(eta))
            goal_handle.publish_feedback(fb)

        refusal = self.safety.refusal()
        if refusal:
            return NavOutcome(False, refusal, self.backend_pose(), 0.0)
        return self.backend.navigate(goal, feedback, lambda: goal_handle.is_cancel_requested or self.safety.stopped)

    def backend_pose(self) -> Pose2D:
        pose = getattr(self.backend, "pose", None)
        return pose if pose is not None else Pose2D(float("nan"), float("nan"), float("nan"))

    def _finish(self, goal_handle, result, outcome: NavOutcome | None, message: str, success: bool):
        if not success and self.safety.stopped and "refused" not in message:
            message = f"stopped: {self.safety.reason()} ({message})"
        result.success, result.message = success, message
        if goal_handle.is_cancel_requested and not success:
            goal_handle.canceled()
        elif success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        if not success:
            self.get_logger().warning(f"{self.robot}: {message}")
        return result

    def _to_pose(self, goal_handle):
        with self._busy, clock_hold(self):
            started = sim_now(self)
            p = goal_handle.request.pose
            result = NavigateToPose.Result()
            if not all(math.isfinite(v) for v in (p.x, p.y, p.theta)):
                return self._finish(goal_handle, result, None,
                                    f"refused: the pose ({p.x}, {p.y}, {p.theta}) is not finite", False)
            outcome = self._drive(goal_handle, Pose2D(p.x, p.y, p.theta), NavigateToPose)
            result.final_pose, result.travelled = to_msg(outcome.final_pose), float(outcome.travelled)
            result.duration = float(sim_now(self) - started)
            return self._finish(goal_handle, result, outcome, outcome.message, outcome.success)

    def _to_station(self, goal_handle):
        with self._busy, clock_hold(self):
            started = sim_now(self)
            request = goal_handle.request
            result = NavigateToStation.Result()
            try:
                station = self.world.station(request.station)
            except InvalidGoal as exc:
                return self._finish(goal_handle, result, None, str(exc), False)
            outcome = self._drive(goal_handle, station.dock, NavigateToStation)
            result.final_pose, result.travelled = to_msg(outcome.final_pose), float(outcome.travelled)
            if not outcome.success:
                result.duration = float(sim_now(self) - started)
                return self._finish(goal_handle, result, outcome, f"{station.name}: {outcome.message}", False)
            message = f"docked at {station.name}"
            pose = outcome.final_pose
            if not request.skip_refinement and self.params.refine and station.kind != "charger":
                goal_handle.publish_feedback(NavigateToStation.Feedback(phase="refining", current_pose=to_msg(pose)))
                try:
                    pose = self._refine(station, goal_handle)
                    message += f", pose refined from marker {station.marker.id}"
                except (InvalidGoal, TimeoutError) as exc:
                    result.duration = float(sim_now(self) - started)
                    return self._finish(goal_handle, result, outcome, f"{station.name}: refinement failed: {exc}",
                                        False)
            offset = dock_offset(station, pose)
            result.final_pose, result.station_offset = to_msg(pose), to_msg(offset)
            result.duration = float(sim_now(self) - started)
            self._publish_offset(station, offset)
            return self._finish(goal_handle, result, outcome, message, True)

    # ------------------------------------------------------------------ refinement
    def _refine(self, station: Station, goal_handle) -> Pose2D:
        """Arm to `inspect`, one fresh camera image, marker pose, base pose; corrects localisation."""
        self._move_arm(self.params.inspect_pose)
        current = getattr(self.backend, "pose", None)
        limits = (self.params.max_correction, self.params.max_correction_yaw)
        why = ""
        for _ in range(self.params.refine_attempts):
            camera, image, stamp = self._fresh_image(sim_now(self))
            t_cam_marker = estimate_marker_pose(image, camera, station.marker.id, station.marker.size)
            if t_cam_marker is None:
                why = f"marker {station.marker.id} not seen by the wrist camera"
                continue
            # the arm's joints as they were when the image was taken, not the last joint_states
            # that happened to arrive: that can still be the stowed arm, whose camera sits 1.01 m
            # further back, and then the base pose comes out about 1 m off
            joints = self._joints.at_or_after(stamp, self.params.camera_timeout)
            if joints is None:
                raise TimeoutError("no joint_states stamped at or after the wrist camera's image")
            q = np.array([joints.get(j, 0.0) for j in self.camera_chain.joint_names])
            pose = refine_base_pose(station, self.camera_chain.fk(q), t_cam_marker)
            why = implausible_correction(current, pose, *limits)
            if not why:
                break
            self.get_logger().warning(f"{self.robot}: {station.name}: marker pose rejected ({why}); another image")
        else:
            raise InvalidGoal(why)
        msg = PoseWithCovarianceStamped()
        msg.header.frame_id, msg.header.stamp = "map", self.get_clock().now().to_msg()
        msg.pose.pose = pose_msg(pose)
        self.initial_pose_pub.publish(msg)

        def applied() -> bool:
            now = getattr(self.backend, "pose", None)
            return now is not None and abs(now.x - pose.x) < 1e-3 and abs(now.y - pose.y) < 1e-3 and \
                abs(math.remainder(now.yaw - pose.yaw, math.tau)) < 1e-3

        # the correction must be in the odometry before the goal ends: the arm computes slots from it next
        if getattr(self.backend, "pose", None) is not None and not wait_for(applied, 5.0):
            self.initial_pose_pub.publish(msg)
            if not wait_for(applied, 5.0):
                raise TimeoutError("the localisation correction did not reach the odometry")
        return pose

    def _move_arm(self, configuration: str) -> None:
        outcome = call_action(self.arm_client, Manipulate.Goal(operation="move", target=configuration),
                              timeout=120.0, server_timeout=10.0)
        if outcome.result is None:
            raise TimeoutError(f"the arm did not reach '{configuration}': {outcome.message}")
        if not outcome.succeeded:
            raise InvalidGoal(f"arm: {outcome.message}")

    def _on_image(self, msg: Image) -> None:
        with self._image_lock:
            stamp = seconds_of(msg.header.stamp)
            self._images_seen, self._last_image_stamp = self._images_seen + 1, stamp
            # CLOCK_SLACK: a held (lockstep) clock stamps images with the very time `after` was read,
            # and sec + nanosec * 1e-9 need not round like nanoseconds * 1e-9
            if self._camera_image is None and stamp >= self._image_after - CLOCK_SLACK:
                self._camera_image = msg

    def _on_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _fresh_image(self, after: float) -> tuple[CameraModel, np.ndarray, float]:
        """The first camera image stamped at or after `after` (simulated s), and its stamp."""
        with self._image_lock:
            self._image_after, self._camera_image = after, None
        self.trigger_pub.publish(Bool(data=True))
        if not wait_for(lambda: self._camera_image is not None and self._camera_info is not None,
                        self.params.camera_timeout):
            # what arrived tells a camera that publishes nothing from a clock that runs apart
            raise TimeoutError(f"no image from the wrist camera stamped at or after {after:.2f} s within "
                               f"{self.params.camera_timeout:g} s ({self._images_seen} images since start-up, "
                               f"the last stamped {self._last_image_stamp:.2f} s)")
        with self._image_lock:
            got = {"image": self._camera_image, "info": self._camera_info}
            self._image_after = math.inf
        msg, info = got["image"], got["info"]
        assert isinstance(msg, Image) and isinstance(info, CameraInfo)
        k = info.k
        camera = CameraModel(int(info.width), int(info.height), float(k[0]), float(k[4]), float(k[2]), float(k[5]))
        image = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)[:, :msg.width]
        return camera, image, seconds_of(msg.header.stamp)

    def _publish_offset(self, station: Station, offset: Pose2D) -> None:
        msg = PoseStamped()
        msg.header.frame_id, msg.header.stamp = f"{station.name}/dock", self.get_clock().now().to_msg()
        msg.pose = pose_msg(offset)
        self.offset_pub.publish(msg)


def implausible_correction(current: Pose2D | None, refined: Pose2D, max_shift: float, max_turn: float) -> str:
    """Why a marker-refined pose cannot be right ('' when it can): it moves the robot further
    from where it believes it is than localisation drift can explain. A wrong marker pose once
    put the robot's estimate 1.07 m away, inside a wall, and every later navigation failed (the
    cause then: joint states of the stowed arm used with an image taken at `inspect`; fixed in
    _refine, the check kept as the guard for whatever else can make a pose wrong)."""
    if current is None:
        return ""
    shift = math.hypot(refined.x - current.x, refined.y - current.y)
    turn = abs(math.remainder(refined.yaw - current.yaw, math.tau))
    if shift > max_shift or turn > max_turn:
        return (f"it would move the estimate {shift:.2f} m and {math.degrees(turn):.1f} deg; "
                f"localisation drifts at most {max_shift:.2f} m and {math.degrees(max_turn):.1f} deg")
    return ""


def main(args: list[str] | None = None) -> None:
    node_main(NavigatorNode, "navigator")


if __name__ == "__main__":
    main()
