"""`safety`: the lab's emergency stop, one latched state for every node that moves or runs.

Services `/safety/stop` and `/safety/release` (lab_interfaces/SafetyCommand: who, why), and
the operator's fast path on this host: a UDP datagram to 127.0.0.1:`operator_port` +
ROS_DOMAIN_ID (`lab estop` tries it first: no DDS discovery to wait for, which can take
seconds);
topic `/safety/state` (lab_interfaces/SafetyState, transient local: a node that starts or
restarts later gets the state at once). The state is written to `state_file` on every change
and read back at start, so a restarted safety node keeps the lab stopped. Release is its own
operator act: nothing else (not `lab resume`) releases a stop.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

from lab.core.config.params import SafetyParams
from lab.core.operations.safety import operator_port
from lab.ros.clock import to_time
from lab.ros.main import node_main
from lab.ros.node import LabNode
from lab.ros.params import declare_params
from lab.ros.presence import offer_presence
from lab.ros.qos import LATCHED
from lab.ros.safety import PRESENCE_TOPIC, TOPIC
from lab_interfaces.msg import SafetyState
from lab_interfaces.srv import SafetyCommand


class SafetyNode(LabNode):
    def __init__(self) -> None:
        super().__init__("safety")
        self.params = declare_params(self, SafetyParams)
        self.path = Path(self.params.state_file)
        self.state = {"stopped": False, "by": "", "reason": "", "time": time.time()}
        if self.path.is_file():
            try:
                self.state.update(json.loads(self.path.read_text()))
            except (OSError, ValueError) as exc:
                self.get_logger().error(f"{self.path}: unreadable ({exc}); starting STOPPED to be safe")
                self.state.update(stopped=True, by="safety", reason=f"state file unreadable: {exc}")
        self._lock = threading.Lock()
        self.pub = self.create_publisher(SafetyState, TOPIC, LATCHED)
        # its presence for the movers (lab.ros.safety.SafetyMonitor contact_timeout)
        self._presence = offer_presence(self, PRESENCE_TOPIC, self.params.presence_lease)
        self.create_service(SafetyCommand, "/safety/stop", lambda rq, rs: self._set(True, rq, rs))
        self.create_service(SafetyCommand, "/safety/release", lambda rq, rs: self._set(False, rq, rs))
        self._publish()
        self._socket = None
        if self.params.operator_port:
            self._serve_operator(operator_port(self.params.operator_port))
        what = "STOPPED" if self.state["stopped"] else "released"
        self.get_logger().info(f"emergency stop {what} ({self.path})")

    def _publish(self) -> None:
        self.pub.publish(SafetyState(stopped=bool(self.state["stopped"]), by=str(self.state["by"]),
                                     reason=str(self.state["reason"]), stamp=to_time(float(self.state["time"]))))

    def _serve_operator(self, port: int) -> None:
        try:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._socket.bind(("127.0.0.1", port))
        except OSError as exc:
            self.get_logger().warning(f"operator fast path off: cannot bind 127.0.0.1:{port} ({exc}); "
                                      "the DDS services still work")
            self._socket = None
            return
        threading.Thread(target=self._operator_loop, daemon=True).start()

    def _operator_loop(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data, sender = self._socket.recvfrom(4096)
            except OSError:
                return  # closed at shutdown
            try:
                request = json.loads(data.decode())
                stop = {"stop": True, "release": False}[request["op"]]
                answer = self._set(stop, SafetyCommand.Request(by=str(request.get("by", "")),
                                                               reason=str(request.get("reason", ""))),
                                   SafetyCommand.Response())
                reply = {"success": answer.success, "message": answer.message}
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"success": False, "message": f"malformed request ({exc})"}
            self._socket.sendto(json.dumps(reply).encode(), sender)

    def shutdown(self) -> None:
        if self._socket is not None:
            self._socket.close()

    def _set(self, stopped: bool, request: SafetyCommand.Request, response: SafetyCommand.Response):
        with self._lock:
            return self._set_locked(stopped, request, response)

    def _set_locked(self, stopped: bool, request: SafetyCommand.Request, response: SafetyCommand.Response):
        by = request.by.strip() or "unknown"
        if not stopped and not self.state["stopped"]:
            response.success, response.message = True, "not stopped: nothing to release"
            return response
        self.state = {"stopped": stopped, "by": by, "reason": request.reason.strip(), "time": time.time()}
        self._publish()  # first: every node stops on this message
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.state))
        except OSError as exc:
            self.get_logger().error(f"could not persist the safety state to {self.path}: {exc}")
        if stopped:
            self.get_logger().error(f"EMERGENCY STOP by {by}" + (f": {request.reason}" if request.reason else ""))
            response.message = f"emergency stop by {by}: every motion and process stops; release: lab estop --release"
        else:
            self.get_logger().warning(f"emergency stop released by {by}")
            response.message = f"released by {by}: the lab stays paused until `lab resume`"
        response.success = True
        return response


def main(args: list[str] | None = None) -> None:
    node_main(SafetyNode, "safety", threads=1)


if __name__ == "__main__":
    main()
