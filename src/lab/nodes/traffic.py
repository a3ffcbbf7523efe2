"""`traffic`: the lab's traffic arbiter for embedded navigation with several robots.

Service `/traffic/reserve_path` (lab_interfaces/ReservePath): a navigator asks for the floor
its planned path sweeps before it drives and hands it back when it stops, saying where it
stands (one pose); every answer says where the other robots stand. lab.core.traffic decides.
Requests are served one at a time, so two robots asking at once cannot both be granted
crossing paths. A reservation of a robot whose navigator has left the
graph is dropped, so a crashed navigator does not block the others for ever.

With Nav2 (navigation:=nav2) this node does not run: multi-robot traffic there is a fleet
manager's job (e.g. Open-RMF), not this package's.
"""

from __future__ import annotations

from geometry_msgs.msg import Pose2D as Pose2DMsg
from rclpy.node import Node

from lab.core.traffic import CLEARANCE, TrafficTable
from lab.core.world import Pose2D
from lab.nodes.common import node_main
from lab_interfaces.srv import ReservePath


class TrafficNode(Node):
    def __init__(self) -> None:
        super().__init__("traffic")
        self.declare_parameter("clearance", CLEARANCE)
        self.table = TrafficTable(float(self.get_parameter("clearance").value))
        self.create_service(ReservePath, "/traffic/reserve_path", self._reserve)
        self.get_logger().info(f"traffic: paths kept {self.table.clearance:.2f} m apart")

    def _navigators(self) -> set[str]:
        return {ns.strip("/") for name, ns in self.get_node_names_and_namespaces() if name == "navigator"}

    def _reserve(self, request: ReservePath.Request, response: ReservePath.Response) -> ReservePath.Response:
        robot = request.robot.strip()
        path = [Pose2D(p.x, p.y, p.theta) for p in request.path]
        if not robot:
            response.granted, response.message = False, "no robot named in the request"
        elif len(path) == 1:
            self.table.release(robot, standing=path[0])
            self.get_logger().debug(f"{robot}: released at ({path[0].x:.2f},{path[0].y:.2f})")
            response.granted, response.message = True, "released"
        elif not path:
            response.granted, response.message = True, "nothing asked"
        else:
            alive = self._navigators()
            for holder in self.table.holders():
                if holder != robot and holder not in alive:
                    self.table.release(holder)
                    self.get_logger().warning(f"dropped {holder}'s reservation: its navigator is gone")
            blocker = self.table.reserve(robot, path)
            response.granted, response.blocked_by = not blocker, blocker
            response.message = f"{blocker}'s reserved path is in the way" if blocker else "granted"
            self.get_logger().debug(f"{robot}: {response.message} ({path[0].x:.2f}, {path[0].y:.2f}) -> "
                                    f"({path[-1].x:.2f}, {path[-1].y:.2f})")
        standing = self.table.standing(but=robot)
        response.standing_robots = list(standing)
        response.standing_poses = [Pose2DMsg(x=p.x, y=p.y, theta=p.yaw) for p in standing.values()]
        return response


def main(args: list[str] | None = None) -> None:
    node_main(TrafficNode, "traffic", threads=1)


if __name__ == "__main__":
    main()
