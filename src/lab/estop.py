"""`lab estop [--release] [--reason TEXT]`: the emergency stop from the operator's hand.

Kept lean on purpose (rclpy and one service type, nothing of the lab's own heavy imports) so
that the stop reaches the lab quickly: it calls /safety/stop (or /safety/release) of the
`safety` node, which latches the state every moving or processing node enforces.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import time


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container: the uid says enough
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} (lab estop)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab estop", description="Emergency stop: every motion and process "
                                     "stops now, whoever started it; --release lifts it (the lab then stays paused "
                                     "until `lab resume`).")
    parser.add_argument("--release", action="store_true", help="release the emergency stop")
    parser.add_argument("--reason", default="", help="why (kept with the stop, shown to everyone)")
    parser.add_argument("--timeout", type=float, default=10.0, help="wall s to wait for the safety node")
    ns = parser.parse_args(argv)
    started = time.monotonic()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from lab_interfaces.srv import SafetyCommand

    service = "/safety/release" if ns.release else "/safety/stop"
    rclpy.init()
    node = rclpy.create_node(f"lab_estop_{os.getpid()}")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        client = node.create_client(SafetyCommand, service)
        deadline = started + ns.timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                print(f"lab estop: no {service} after {ns.timeout:g} s: is the lab's `safety` node running? "
                      "If not, stop the robots by their own hardware stop.", file=sys.stderr)
                return 1
            executor.spin_once(timeout_sec=0.01)
        future = client.call_async(SafetyCommand.Request(by=who(), reason=ns.reason))
        while not future.done():
            if time.monotonic() > deadline:
                print(f"lab estop: {service} did not answer within {ns.timeout:g} s", file=sys.stderr)
                return 1
            executor.spin_once(timeout_sec=0.01)
        answer = future.result()
        print(f"lab estop: {answer.message} ({time.monotonic() - started:.2f} s from the command)")
        return 0 if answer.success else 1
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
