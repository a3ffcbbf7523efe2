"""`traffic`: the lab's traffic arbiter for embedded navigation with several robots.

Service `/traffic/request` (lab_interfaces/Traffic): a navigator asks for the floor
its planned path sweeps before it drives and hands it back when it stops, saying where it
stands (one pose); every answer says where the other robots stand. lab.core.robot.traffic decides.
Requests are served one at a time, so two robots asking at once cannot both be granted
crossing paths. A reservation of a robot whose navigator has left the
graph is dropped, so a crashed navigator does not block the others for ever.

With Nav2 (navigation:=nav2) this node does not run: multi-robot traffic there is a fleet
manager's job (e.g. Open-RMF), not this package's.
"""

from __future__ import annotations

from geometry_msgs.msg import Pose2D as Pose2DMsg

from lab.core.config.params import TrafficParams
from lab.core.robot.traffic import TrafficTable
from lab.core.robot.world import Pose2D
from lab.ros.main import node_main
from lab.ros.node import LabNode
from lab.ros.params import declare_params
from lab_interfaces.srv import Traffic


class TrafficNode(LabNode):
    def __init__(self) -> None:
        super().__init__("traffic")
        self.params = declare_params(self, TrafficParams)
        self.table = TrafficTable(self.params.clearance)
        self.create_service(Traffic, "/traffic/request", self._request)
        self.get_logger().info(f"traffic: paths kept {self.table.clearance:.2f} m apart")

    def _navigators(self) -> set[str]:
        return {ns.strip("/") for name, ns in self.get_node_names_and_namespaces() if name == "navigator"}

    def _request(self, request: Traffic.Request, response: Traffic.Response) -> Traffic.Response:
        robot = request.robot.strip()
        path = [Pose2D(p.x, p.y, p.theta) for p in request.path]
        if not robot:
            response.granted, response.message = False, "no robot named in the request"
        elif request.operation == Traffic.Request.RELEASE:
            if len(path) != 1:
                response.granted = False
                response.message = f"RELEASE needs the one pose the robot stands at, got {len(path)}"
            else:
                self.table.release(robot, standing=path[0])
                self.get_logger().debug(f"{robot}: released at ({path[0].x:.2f},{path[0].y:.2f})")
                response.granted, response.message = True, "released"
        elif request.operation == Traffic.Request.ASK:
            response.granted, response.message = True, "nothing reserved or released"
        elif request.operation != Traffic.Request.RESERVE:
            response.granted = False
            response.message = f"unknown operation {request.operation} (ASK 0, RESERVE 1, RELEASE 2)"
        elif len(path) < 2:
            response.granted, response.message = False, f"RESERVE needs a path of 2 or more poses, got {len(path)}"
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
