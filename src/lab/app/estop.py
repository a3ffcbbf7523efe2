"""`lab estop [--release] [--reason TEXT]`: the emergency stop from the operator's hand.

Kept lean on purpose so that the stop reaches the lab quickly. It first tries the safety node's
operator fast path on this host (its Unix socket, lab.core.operations.safety: no DDS discovery to
wait for; the safety node records who called from the kernel's word) and otherwise stops through
/safety/stop over DDS. A release goes only through the fast path, on the safety node's host.
Either way the `safety` node latches the state every moving or processing node enforces.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import time


def who() -> str:
    """Who is asking, for the DDS stop (said, not proven: the fast path's caller is the kernel's word)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container: the uid says enough
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} (lab estop)"


def fast_path(release: bool, reason: str, path: str | None = None, wait: float = 2.0) -> dict | None:
    """The safety node's answer through its fast path on this host; None when it cannot be reached."""
    from lab.core.operations.safety import fast_path_request

    answer = fast_path_request("release" if release else "stop", reason, path or "", wait)
    return None if answer.get("unreachable") else answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab estop", description="Emergency stop: every motion and process "
                                     "stops now, whoever started it; --release lifts it (the lab then stays paused "
                                     "until `lab resume`).")
    parser.add_argument("--release", action="store_true", help="release the emergency stop")
    parser.add_argument("--reason", default="", help="why (kept with the stop, shown to everyone)")
    parser.add_argument("--timeout", type=float, default=10.0, help="wall s to wait for the safety node")
    parser.add_argument("--socket", default="",
                        help="the safety node's operator_socket, if the lab sets another ('off': DDS only)")
    ns = parser.parse_args(argv)
    started = time.monotonic()
    if ns.socket != "off":
        from lab.core.operations.safety import fast_path_request

        answer = fast_path_request("release" if ns.release else "stop", ns.reason, ns.socket)
        if not answer.get("unreachable"):
            print(f"lab estop: {answer['message']} ({time.monotonic() - started:.2f} s from the command)")
            return 0 if answer.get("success") else 1
        if ns.release:
            print(f"lab estop: cannot release: {answer['message']}. A release goes through the safety node's "
                  "fast path only: run `lab estop --release` on its host, as the lab's user or one of its "
                  "release_users", file=sys.stderr)
            return 1
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from lab_interfaces.srv import SafetyCommand

    service = "/safety/stop"
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
