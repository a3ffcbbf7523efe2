"""`arm`: one robot's `manipulate` action: pick, place or transfer a rack or tray between slots.

Slots are named '<owner>/<slot>': a station's slot (config/stations.yaml), the robot's own
deck places ('robot1/deck1'..) or its gripper ('robot1/gripper'). Operation `move` sends the
arm to a named configuration of the SRDF (target = the name). Every target is solved with
inverse kinematics before the arm moves, from where the robot believes it stands (after the
navigator's marker refinement that is within millimetres of the truth); an unreachable
target, an empty source, an occupied destination or a robot that is not docked at the
station are refused with the reason and nothing moves. The backend (parameter `backend`:
embedded | moveit) moves the joints. An operation is one path, the gripper's actions in it;
the embedded backend sends it as one trajectory, and the embedded simulation grasps and
releases where the fingers close and open, missing when the gripper is not truly at the slot:
the goal ends once the simulation's world shows the rack where it was to go (or with what missed).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup

from lab.backends.base import Grip, ManipulationBackend, MotionOutcome, Waypoint, backend_class
from lab.core.config.params import RESULT_KEEP, ArmParams
from lab.core.errors import InvalidGoal
from lab.core.robot.kinematics import Chain, Unreachable, deck_places, named_poses
from lab.core.robot.simworld import check_move
from lab.core.robot.world import Pose2D
from lab.ros.clock import clock_hold, sim_now, wait_for
from lab.ros.conversions import planar_pose
from lab.ros.main import node_main
from lab.ros.node import LabNode
from lab.ros.params import declare_params, file_or_default, load_world, robot_urdf
from lab.ros.qos import LATCHED
from lab.ros.safety import SafetyMonitor
from lab_interfaces.action import Manipulate
from lab_interfaces.msg import WorldState
from lab_interfaces.srv import MoveObject

#: tool0 pointing down (z axis to the floor), fingers across the robot's x axis
TOP_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
#: wall s a pick or place waits for odometry published after its goal came, then goes on with the
#: last it has: 20 times the idle rate's period of the simulation's state topics
FRESH_POSE_WAIT = 2.0
#: wall s the arm waits, after its motion, for the simulation's world to show the rack moved: the
#: world goes out once the grasp or release is saved and synced to the disk, usually before the
#: motion's end; a miss ends the wait as soon as the world that reports it arrives. 2 s was too
#: short for a synced save on a loaded machine (clean clone at 93ae1d5: the world showed the
#: release after the arm had given up, and its second try grasped at an empty deck)
WORLD_WAIT = 10.0
MISSES_KEPT = 64


class ArmNode(LabNode):
    def __init__(self) -> None:
        super().__init__("arm")
        self.params = params = declare_params(self, ArmParams)
        self.robot = params.robot_name
        self.world = load_world(params)
        urdf = robot_urdf(params)
        self.chain = Chain.from_urdf(urdf, "base_link", "tool0")
        self.deck = deck_places(urdf)
        srdf = file_or_default(params.srdf_file, "urdf/kmr_iiwa.srdf")
        self.named = named_poses(srdf, "arm")
        name = params.backend
        group = ReentrantCallbackGroup()
        self.move_client = self.create_client(MoveObject, "/sim/move_object", callback_group=group)
        self.backend: ManipulationBackend = backend_class("manipulation", name)(
            self, self.robot, {"chain": self.chain, "named_poses": self.named,
                               "gripper_poses": named_poses(srdf, "gripper"), "speed_scale": params.speed_scale,
                               # the embedded simulation (it answers move_object) takes the finger joint
                               # in the arm's trajectories
                               "finger_in_trajectory": self.move_client.service_is_ready})
        self._busy = threading.Lock()
        self._state_lock = threading.Lock()
        self._pose: Pose2D | None = None
        self._pose_sent = 0  # the pose's publication time (ns since the epoch, the publisher's wall clock)
        self._world: dict[str, str] | None = None  # location -> object, once the simulation published it
        # the simulation's grasps and releases that missed: (their number since this node started,
        # '<robot>: <why>'), the last MISSES_KEPT
        self._misses: list[tuple[int, str]] = []
        self._miss_count = 0
        self.safety = SafetyMonitor(self, callback_group=group, contact_timeout=params.safety_timeout)
        self.create_subscription(Odometry, "odom", self._odom, 10, callback_group=group)
        self.create_subscription(WorldState, "/world_state", self._world_state, LATCHED, callback_group=group)
        ActionServer(self, Manipulate, "manipulate", execute_callback=self._execute,
                     goal_callback=lambda _: GoalResponse.REJECT if self._busy.locked() else GoalResponse.ACCEPT,
                     cancel_callback=lambda _: CancelResponse.ACCEPT, callback_group=group,
                     result_timeout=int(RESULT_KEEP))  # asked for after a network cut, say
        self.get_logger().info(f"{self.robot}: manipulation backend '{name}', named poses {', '.join(self.named)}")

    def shutdown(self) -> None:
        self.backend.shutdown()

    def _odom(self, msg: Odometry, info: dict[str, Any]) -> None:
        with self._state_lock:
            self._pose = planar_pose(msg.pose.pose)
            self._pose_sent = int(info.get("source_timestamp") or 0)

    def _fresh_pose(self, asked_ns: int) -> bool:
        """Wait (up to FRESH_POSE_WAIT wall s) for odometry *published* after the goal came
        (`asked_ns`, this host's wall clock): a localisation correction just before the goal must
        count. The navigator ends its goal only once its correction is in the odometry, and the
        lab manager sends this goal after that, so any message published after it has the
        correction. Counting messages was not enough: with a backlog on this subscription the
        first message taken after the goal can be an old one (2026-12-04: a release missed its
        slot by 1.9 cm with a pose from before the correction); the publication time (DDS's
        source timestamp) tells. The embedded simulation sends the odometry at its next tick
        when this node takes the clock (the action's hold); otherwise it comes at the
        simulation's idle rate (10 wall Hz), or Gazebo's. Across hosts the clocks must agree
        to better than the navigator-to-arm hand-off (tens of ms; NTP keeps a LAN within 1 ms)."""
        if wait_for(lambda: self._pose_sent >= asked_ns, FRESH_POSE_WAIT):
            return True
        self.get_logger().warning(f"{self.robot}: no odometry published after the goal came within "
                                  f"{FRESH_POSE_WAIT:g} s: slots are placed from the last pose received")
        return False

    def _world_state(self, msg: WorldState) -> None:
        with self._state_lock:
            self._world = dict(zip(msg.locations, msg.objects, strict=False))
            self._misses += [(self._miss_count + k, m) for k, m in enumerate(msg.misses)]
            self._miss_count += len(msg.misses)
            del self._misses[:-MISSES_KEPT]

    # ------------------------------------------------------------------ geometry
    def slot_in_base(self, location: str) -> np.ndarray:
        """The slot's point in base_link (xyz), from where the robot believes it is."""
        owner, _, slot = location.partition("/")
        if owner == self.robot:
            if slot not in self.deck:
                raise InvalidGoal(f"{self.robot} has no place '{slot}' (places: gripper, {', '.join(self.deck)})")
            return self.deck[slot][:3, 3].copy()
        if owner not in self.world.stations:
            raise InvalidGoal(f"unknown location '{location}': '{owner}' is neither a station nor {self.robot}")
        station = self.world.stations[owner]
        if slot not in station.slots:
            raise InvalidGoal(f"station {owner} has no slot '{slot}' (slots: {', '.join(station.slots) or 'none'})")
        with self._state_lock:
            pose = self._pose
        if pose is None:
            raise InvalidGoal(f"no odometry for {self.robot}")
        off = pose.distance_to(station.dock)
        if off > self.params.dock_tolerance:
            raise InvalidGoal(f"{self.robot} is not docked at {owner} ({off:.2f} m from its dock)")
        x, y, z = station.slot_in_map(slot)
        local = pose.inverse().compose(Pose2D(x, y))
        return np.array([local.x, local.y, z])

    def tool_pose(self, point: np.ndarray, lift: float) -> np.ndarray:
        target = np.eye(4)
        target[:3, :3] = TOP_DOWN
        target[:3, 3] = point + np.array([0.0, 0.0, self.params.grasp_height + lift])
        return target

    def _check_reachable(self, moves: list[list[Waypoint]]) -> None:
        """Solve every waypoint of the moves in the order and from the seeds the moves will use
        (the arm's joints now, then each waypoint's solution); InvalidGoal if one has none."""
        seed = self.backend.joint_positions()
        if seed is None:
            seed = self._named_joints(self.params.park_pose)
        for waypoints in moves:
            for waypoint in waypoints:
                if isinstance(waypoint, str):
                    seed = self._named_joints(waypoint)
                    continue
                try:
                    seed = self.chain.ik(waypoint, seed)
                except Unreachable as exc:
                    raise InvalidGoal(f"unreachable: {exc}") from None

    def _named_joints(self, name: str) -> np.ndarray:
        return np.array([self.named.get(name, {}).get(j, 0.0) for j in self.chain.joint_names])

    def _check_objects(self, object_id: str, source: str, target: str) -> str:
        """Refuse an empty source or an occupied target (when the world is known)."""
        with self._state_lock:
            world = None if self._world is None else dict(self._world)
        if world is None:
            return object_id
        return check_move(world, object_id, source, target)

    # ------------------------------------------------------------------ the action
    def _execute(self, goal_handle):
        asked_ns = time.time_ns()  # before the hold: the simulation answers the hold with fresh odometry
        with self._busy, clock_hold(self):
            started = sim_now(self)
            request = goal_handle.request
            result = Manipulate.Result(object_id=request.object_id)
            cancelled = lambda: goal_handle.is_cancel_requested or self.safety.stopped  # noqa: E731

            def phase(name: str, progress: float) -> None:
                goal_handle.publish_feedback(Manipulate.Feedback(phase=name, progress=float(progress)))

            try:
                refusal = self.safety.refusal()
                if refusal:
                    raise InvalidGoal(refusal)
                message, location = self._run(request, phase, cancelled, result, asked_ns)
                ok = True
            except InvalidGoal as exc:
                message, location, ok = str(exc), "", False
            if not ok and self.safety.stopped and not message.startswith("refused"):
                message = f"stopped: {self.safety.reason()} ({message})"
            result.success, result.message, result.location = ok, message, location
            result.duration = float(sim_now(self) - started)
            if ok:
                goal_handle.succeed()
            elif goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                self.get_logger().warning(f"{self.robot}: {request.operation} refused or failed: {message}")
                goal_handle.abort()
            return result

    def _run(self, request, phase, cancelled, result, asked_ns: int) -> tuple[str, str]:
        op = request.operation
        gripper = f"{self.robot}/gripper"
        if op == "move":
            phase("move", 0.0)
            self._must(self.backend.move_named(request.target, cancelled))
            return f"arm at '{request.target}'", ""
        if op == "pick":
            legs = [(request.source, gripper)]
        elif op == "place":
            legs = [(gripper, request.target)]
        elif op == "transfer":
            # from or to the gripper itself, a transfer is a place or a pick
            legs = [(a, b) for a, b in ((request.source, gripper), (gripper, request.target)) if a != b]
        else:
            raise InvalidGoal(f"unknown operation '{op}' (pick, place, transfer, move)")
        # everything is checked before anything moves
        self._fresh_pose(asked_ns)
        final = legs[-1][1]
        obj = self._check_objects(request.object_id, legs[0][0], final if op != "transfer" else request.target)
        # the whole operation as one path from rest to rest, the arm stopping where the gripper acts
        # (a grasp: open if it is not, down, close; a release: close if it is not, down, open). A
        # backend that can sends it as one trajectory, the gripper in it; the embedded simulation
        # then grasps and releases where the fingers close and open (lab.core.robot.simworld)
        path: list[Waypoint] = []
        for source, target in legs:
            grasp = source != gripper
            point = self.slot_in_base(target if not grasp else source)
            approach, at = (self.tool_pose(point, self.params.approach_height), self.tool_pose(point, 0.0))
            path += [Grip(not grasp), approach, at, Grip(grasp), approach]
        path.append(self.params.park_pose)
        phase("planning", 0.05)
        self._check_reachable([[w for w in path if not isinstance(w, Grip)]])
        phase("moving", 0.1)
        seen = self._miss_count
        # the embedded simulation answers move_object (a node just started may not have found it yet)
        embedded = self.move_client.service_is_ready() or self.move_client.wait_for_service(timeout_sec=2.0)
        self._must(self.backend.move_through(path, cancelled))
        missed = self._world_after(obj, final, seen) if embedded else ""
        if missed:
            raise InvalidGoal(missed)
        result.object_id = obj
        return f"{obj or 'object'} moved {request.source or gripper} -> {request.target or gripper}", final

    def _world_after(self, obj: str, final: str, seen: int) -> str:
        """The embedded simulation grasps and releases as the fingers close and open: wait
        (WORLD_WAIT wall s at most) for the world to show `obj` at `final`; '' when it does, else
        what the simulation said missed."""
        if not obj:
            return ""

        def shown() -> bool:
            return self._world is not None and self._world.get(final) == obj

        def missed() -> list[str]:  # what the simulation said this robot missed since `seen`
            with self._state_lock:
                return [m.partition(": ")[2] for k, m in self._misses if k >= seen and m.startswith(f"{self.robot}: ")]

        wait_for(lambda: shown() or bool(missed()), WORLD_WAIT)
        if shown():
            return ""
        with self._state_lock:
            where = next((loc for loc, o in (self._world or {}).items() if o == obj), "nowhere")
        why = "; ".join(missed()) or f"the simulation's world did not show it moved within {WORLD_WAIT:g} s"
        return f"{obj} is at {where}, not {final}: {why}"

    @staticmethod
    def _must(outcome: MotionOutcome) -> None:
        if not outcome.success:
            raise InvalidGoal(outcome.message)


def main(args: list[str] | None = None) -> None:
    node_main(ArmNode, "arm")
