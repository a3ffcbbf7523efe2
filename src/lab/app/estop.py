"""`lab estop [--release] [--reason TEXT]`: the emergency stop from the operator's hand.

Kept lean on purpose so that the stop reaches the lab quickly. It first tries the safety node's
operator fast path on this host (one UDP datagram to 127.0.0.1, lab.core.operations.safety: no DDS
discovery to wait for) and otherwise calls /safety/stop (or /safety/release) over DDS. Either
way the `safety` node latches the state every moving or processing node enforces.
"""

from __future__ import annotations

import argparse
import getpass
import json
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


def fast_path(release: bool, reason: str, port: int | None, wait: float = 0.5) -> dict | None:
    """The safety node's answer through its UDP operator endpoint on this host; None when there is
    none (another host, or the fast path off): then the DDS service is used."""
    from lab.core.operations.safety import OPERATOR_PORT, operator_port

    request = json.dumps({"op": "release" if release else "stop", "by": who(), "reason": reason}).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        try:
            sock.sendto(request, ("127.0.0.1", operator_port(OPERATOR_PORT if port is None else port)))
            data, _ = sock.recvfrom(4096)
            return dict(json.loads(data.decode()))
        except (OSError, ValueError):  # nothing listening (refused), no answer in time, or garbled
            return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab estop", description="Emergency stop: every motion and process "
                                     "stops now, whoever started it; --release lifts it (the lab then stays paused "
                                     "until `lab resume`).")
    parser.add_argument("--release", action="store_true", help="release the emergency stop")
    parser.add_argument("--reason", default="", help="why (kept with the stop, shown to everyone)")
    parser.add_argument("--timeout", type=float, default=10.0, help="wall s to wait for the safety node")
    parser.add_argument("--port", type=int, default=None,
                        help="the safety node's operator_port, if the lab sets another (0: DDS only)")
    ns = parser.parse_args(argv)
    started = time.monotonic()
    if ns.port != 0:
        answer = fast_path(ns.release, ns.reason, ns.port)
        if answer is not None:
            print(f"lab estop: {answer['message']} ({time.monotonic() - started:.2f} s from the command)")
            return 0 if answer.get("success") else 1
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
