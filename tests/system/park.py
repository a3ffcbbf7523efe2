"""`python park.py ROBOT`: drive ROBOT to its parking spot (config/stations.yaml) and wait; prints
PARKED or exits non-zero with the reason. For tests that must know where a robot stands."""

from __future__ import annotations

import sys
from pathlib import Path

import rclpy
from geometry_msgs.msg import Pose2D
from rclpy.action import ActionClient

from lab.core.world import load_stations
from lab_interfaces.action import NavigateToPose


def main() -> int:
    robot = sys.argv[1]
    parking = load_stations(Path(__file__).resolve().parents[2] / "config" / "stations.yaml").parking
    spot = parking[int(robot.removeprefix("robot")) - 1]
    rclpy.init()
    node = rclpy.create_node("park")
    client = ActionClient(node, NavigateToPose, f"/{robot}/navigate_to_pose")
    if not client.wait_for_server(timeout_sec=60):
        print(f"no /{robot}/navigate_to_pose within 60 s")
        return 1
    sent = client.send_goal_async(NavigateToPose.Goal(pose=Pose2D(x=spot.x, y=spot.y, theta=spot.yaw)))
    rclpy.spin_until_future_complete(node, sent, timeout_sec=30)
    handle = sent.result()
    if handle is None or not handle.accepted:
        print("goal not accepted")
        return 1
    result = handle.get_result_async()
    rclpy.spin_until_future_complete(node, result, timeout_sec=300)
    done = result.result()
    if done is None or not done.result.success:
        print(f"not parked: {done.result.message if done else 'no result within 300 s'}")
        return 1
    print("PARKED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
