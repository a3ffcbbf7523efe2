"""`safety`: the lab's emergency stop, one latched state for every node that moves or runs.

Services `/safety/stop` (lab_interfaces/SafetyCommand: who, why; open to everyone on the domain)
and `/safety/release` (refused with where to release: without SROS2 anyone on the domain could
call it), and the operator's fast path on this host: a Unix socket (lab.core.operations.safety)
whose permissions admit the lab's user and its operators' group, the caller's user read from the
kernel (SO_PEERCRED) and recorded as who stopped or released; `lab estop` tries it first (no DDS
discovery to wait for). Topic `/safety/state` (lab_interfaces/SafetyState, transient local: a
node that starts or restarts later gets the state at once). The state is written to `state_file`
on every change and read back at start, so a restarted safety node keeps the lab stopped.
Release is its own operator act: nothing else (not `lab resume`) releases a stop.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import socket
import struct
import threading
import time
from pathlib import Path

from lab.core.campaign.store import record_command
from lab.core.config.params import SafetyParams
from lab.core.operations.safety import operator_socket
from lab.core.persist import write_json
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
        self.create_service(SafetyCommand, "/safety/stop", self._stop_over_dds)
        self.create_service(SafetyCommand, "/safety/release", self._release_over_dds)
        self._publish()
        self._socket: socket.socket | None = None
        if self.params.operator_socket != "off":
            self._serve_operator(operator_socket(self.params.operator_socket))
        what = "STOPPED" if self.state["stopped"] else "released"
        self.get_logger().info(f"emergency stop {what} ({self.path})")

    def _publish(self) -> None:
        self.pub.publish(SafetyState(stopped=bool(self.state["stopped"]), by=str(self.state["by"]),
                                     reason=str(self.state["reason"]), stamp=to_time(float(self.state["time"]))))

    def _stop_over_dds(self, request: SafetyCommand.Request, response: SafetyCommand.Response):
        who = f"{request.by.strip() or 'unknown'} (as said over DDS)"
        self._set(True, SafetyCommand.Request(by=who, reason=request.reason), response)
        record_command(Path(self.params.database), who, "DDS service /safety/stop", "estop", {"reason": request.reason},
                       response.message, response.success, self.get_logger())
        return response

    def _release_over_dds(self, request: SafetyCommand.Request, response: SafetyCommand.Response):
        response.success = False
        response.message = (f"release is not offered over DDS (anyone on the domain could call it): run `lab estop "
                            f"--release` on {socket.gethostname()}, the safety node's host, as the lab's user or one "
                            "of its release_users")
        self.get_logger().warning(f"a release over DDS (by {request.by!r}, as said) was refused")
        record_command(Path(self.params.database), f"{request.by.strip() or 'unknown'} (as said over DDS)",
                       "DDS service /safety/release", "estop_release", {"reason": request.reason}, response.message,
                       False, self.get_logger())
        return response

    def _serve_operator(self, path: str) -> None:
        """Listen on `path`: its folder the node's own (another user's folder is refused), the
        socket 0600, or 0660 with the operators' group."""
        folder = os.path.dirname(path)
        group = self.params.operator_group
        try:
            gid = grp.getgrnam(group).gr_gid if group else -1
            os.makedirs(folder, mode=0o750 if group else 0o700, exist_ok=True)
            if os.stat(folder).st_uid != os.getuid():
                raise PermissionError(f"{folder} belongs to another user")
            os.chmod(folder, 0o750 if group else 0o700)
            if group:
                os.chown(folder, -1, gid)
            if os.path.exists(path):
                os.unlink(path)  # a predecessor's (the folder is ours)
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._socket.bind(path)
            os.chmod(path, 0o660 if group else 0o600)
            if group:
                os.chown(path, -1, gid)
            self._socket.listen(8)
        except (OSError, KeyError) as exc:
            self.get_logger().warning(f"operator fast path off: {path}: {exc}; the DDS stop still works, and a "
                                      "release needs the fast path")
            self._socket = None
            return
        threading.Thread(target=self._operator_loop, daemon=True).start()

    def _operator_loop(self) -> None:
        assert self._socket is not None
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return  # closed at shutdown
            with conn:
                try:
                    conn.settimeout(2.0)
                    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                         struct.calcsize("3i")))
                    data = b""
                    while not data.endswith(b"\n") and len(data) < 4096:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    reply = self._operator_request(json.loads(data.decode()), uid, pid)
                except (ValueError, KeyError, TypeError, OSError) as exc:
                    reply = {"success": False, "message": f"malformed request ({exc})"}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass  # the caller went away: the state is set and published all the same

    def _operator_request(self, request: dict, uid: int, pid: int) -> dict:
        stop = {"stop": True, "release": False}[request["op"]]
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = f"uid {uid}"
        # the console (lab.console) runs as a local operator and says which of its accounts asked;
        # the kernel's word (uid, pid) stays first: the account is the console's word, not the kernel's
        via = str(request.get("via", "lab estop"))[:40]
        on_behalf = str(request.get("on_behalf", ""))[:80]
        who = (f"{user} (uid {uid}, pid {pid}, {via} on {socket.gethostname()})"
               + (f" for {on_behalf}" if on_behalf else ""))
        reason = str(request.get("reason", ""))
        if not stop and uid != os.getuid() and user not in self.params.release_users:
            self.get_logger().warning(f"release refused for {who}")
            reply = {"success": False, "message": f"release refused for {user}: only the lab's user and its "
                                                  "release_users (SafetyParams) may release the emergency stop"}
        else:
            answer = self._set(stop, SafetyCommand.Request(by=who, reason=reason), SafetyCommand.Response())
            reply = {"success": answer.success, "message": answer.message}
        record_command(Path(self.params.database), who, f"fast path ({via})", "estop" if stop else "estop_release",
                       {"reason": reason}, reply["message"], reply["success"], self.get_logger())
        return reply

    def shutdown(self) -> None:
        if self._socket is not None:
            path = self._socket.getsockname()
            self._socket.close()
            try:
                os.unlink(path)
            except OSError:
                pass

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
            write_json(self.path, self.state)  # atomic: a kill mid-write leaves the old state or the new
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
