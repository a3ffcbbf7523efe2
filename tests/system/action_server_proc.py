"""A RunStation action server in its own process, for the interface round-trip tests.

    action_server_proc.py [--namespace NS] [--slow-first-answer S] [--refuse] [--hang]

With --slow-first-answer the first goal is answered S wall seconds late (what a lost or late
goal response looks like to a client); every goal that runs prints `RAN <rack_id>`. With
--hang a goal prints `STARTED <rack_id>` and never ends (a station process to kill mid-way).
"""

import sys
import time

import rclpy
from rclpy.action import ActionServer, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from lab_interfaces.action import RunStation
from lab_interfaces.msg import Measurement


class EchoStation(Node):
    def __init__(self, namespace: str = "", slow_first_answer: float = 0.0, refuse: bool = False,
                 hang: bool = False) -> None:
        super().__init__("echo_station", namespace=namespace)
        self.hang = hang
        self.slow_first_answer = slow_first_answer
        self.refuse = refuse
        # with --hang, reentrant on several threads: a hanging goal does not keep the next one from running
        self.server = ActionServer(self, RunStation, "run_station", execute_callback=self.execute,
                                   goal_callback=self.on_goal,
                                   callback_group=ReentrantCallbackGroup() if hang else None)

    def on_goal(self, goal) -> GoalResponse:
        if self.slow_first_answer:
            time.sleep(self.slow_first_answer)
            self.slow_first_answer = 0.0
        return GoalResponse.REJECT if self.refuse else GoalResponse.ACCEPT

    def execute(self, handle):
        goal = handle.request
        if self.hang:
            print(f"STARTED {goal.rack_id}", flush=True)
            while True:
                time.sleep(1.0)
        for i in range(3):
            fb = RunStation.Feedback(step=f"step{i}", step_index=i, step_count=3, progress=(i + 1) / 3.0,
                                     time_left=float(2 - i))
            handle.publish_feedback(fb)
            time.sleep(0.05)
        handle.succeed()
        print(f"RAN {goal.rack_id}", flush=True)
        out = []
        for f in goal.formulations:
            m = Measurement(sample_id=f.sample_id, valid=True, objectives=["total"], values=[sum(f.amounts)],
                            units=["mL"], station="echo_station")
            m.as_dispensed = f
            out.append(m)
        return RunStation.Result(success=True, message=f"ran {goal.rack_id}", measurements=out, duration=3.0)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", default="")
    parser.add_argument("--slow-first-answer", type=float, default=0.0)
    parser.add_argument("--refuse", action="store_true")
    parser.add_argument("--hang", action="store_true")
    ns, _ = parser.parse_known_args()
    rclpy.init(args=sys.argv)
    node = EchoStation(ns.namespace, ns.slow_first_answer, ns.refuse, ns.hang)
    print("READY", flush=True)
    try:
        rclpy.spin(node, executor=MultiThreadedExecutor(num_threads=4) if ns.hang else None)
    except KeyboardInterrupt:
        pass
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
