"""Run on a host of a multi-host test: prints, one line each, what the test waits for.

  STEPS <json>    the steps the lab manager reports under way (LabStatus.active_steps), whenever they change
  OFFLINE <json>  the robots LabStatus shows offline, with their messages, whenever that changes
  NODES <json>    the node names this process's graph holds, whenever they change

It is one participant that stays up through a network cut: what it sees of the graph
afterwards is what every running node sees. Stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys

import rclpy

from lab_interfaces.msg import LabStatus


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("lab_watch")
    last: dict[str, object] = {"nodes": None, "offline": None, "steps": None}

    def say(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def status(msg: LabStatus) -> None:
        steps = sorted(msg.active_steps)
        if steps != last["steps"]:
            last["steps"] = steps
            say(f"STEPS {json.dumps(steps)}")
        offline = {r.name: r.message for r in msg.robots if r.state == "offline"}
        if offline != last["offline"]:
            last["offline"] = offline
            say(f"OFFLINE {json.dumps(offline)}")

    node.create_subscription(LabStatus, "/lab_status", status, 10)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"]:
            rclpy.spin_once(node, timeout_sec=0.2)
            nodes = sorted(f"{ns.rstrip('/')}/{name}" for name, ns in node.get_node_names_and_namespaces())
            if nodes != last["nodes"]:
                last["nodes"] = nodes
                say(f"NODES {json.dumps(nodes)}")
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
