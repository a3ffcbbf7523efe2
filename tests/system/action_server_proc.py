"""A RunStation action server in its own process, for the interface round-trip test."""

import sys
import time

import rclpy
from rclpy.action import ActionServer
from rclpy.node import Node

from lab_interfaces.action import RunStation
from lab_interfaces.msg import Measurement


class EchoStation(Node):
    def __init__(self) -> None:
        super().__init__("echo_station")
        self.server = ActionServer(self, RunStation, "run_station", execute_callback=self.execute)

    def execute(self, handle):
        goal = handle.request
        for i in range(3):
            fb = RunStation.Feedback(step=f"step{i}", step_index=i, step_count=3, progress=(i + 1) / 3.0,
                                     time_left=float(2 - i))
            handle.publish_feedback(fb)
            time.sleep(0.05)
        handle.succeed()
        out = []
        for f in goal.formulations:
            m = Measurement(sample_id=f.sample_id, valid=True, objectives=["total"], values=[sum(f.amounts)],
                            units=["mL"], station="echo_station")
            m.as_dispensed = f
            out.append(m)
        return RunStation.Result(success=True, message=f"ran {goal.rack_id}", measurements=out, duration=3.0)


def main() -> None:
    rclpy.init(args=sys.argv)
    node = EchoStation()
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
