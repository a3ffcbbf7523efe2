"""The emergency stop's operator fast path, shared by the `safety` node and `lab estop`: a Unix
socket on the safety node's host, one per ROS domain. Kept free of heavy imports so that
`lab estop` starts in a fraction of a second.

Who may use it is the kernel's business, not the message's: the socket's file permissions admit
the lab's own user and, if the configuration names one, an operators' group; the safety node reads
the caller's user from the connection (SO_PEERCRED) and records that, not a name the caller
claims. Anyone who can connect may stop the lab; releasing is for the lab's user and the users the
configuration names (`release_users`). Over DDS, stopping stays open to all and releasing is not
offered: without SROS2 anyone on the domain could call it (docs/security.md)."""

from __future__ import annotations

import json
import os
import socket

#: how a mover (navigator, arm) or a station words its refusal while it cannot hear the safety node; the
#: lab manager reads it as the network's failure, not the robot's (lab.core.operations.scheduler)
NO_CONTACT = "no contact with the safety node"

#: the safety node's `operator_socket` when the configuration gives none: per ROS domain, in a folder
#: the safety node creates and owns (a folder another user made is refused: it could be a trap)
SOCKET_TEMPLATE = "/tmp/lab-safety-{domain}/estop.sock"


def operator_socket(path: str = "") -> str:
    """The fast path's socket: `path`, or one per ROS domain (`lab estop` reaches its own domain's lab)."""
    return path or SOCKET_TEMPLATE.format(domain=int(os.environ.get("ROS_DOMAIN_ID", "0") or 0))


def fast_path_request(op: str, reason: str, path: str = "", wait: float = 2.0, via: str = "",
                      on_behalf: str = "") -> dict:
    """Send `op` ('stop' | 'release') to the safety node's socket; its answer ({'success',
    'message'}), or {'success': False, 'message': why, 'unreachable': True} when there is no
    socket to reach (another host, the node not running) or no permission to. `via` and
    `on_behalf`: the program and the person it asks for (the console and its signed-in account),
    recorded after the kernel's word on who called."""
    target = operator_socket(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(wait)
            sock.connect(target)
            request = {"op": op, "reason": reason}
            if via:
                request["via"] = via
            if on_behalf:
                request["on_behalf"] = on_behalf
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        return dict(json.loads(data.decode()))
    except PermissionError:
        return {"success": False, "unreachable": True,
                "message": f"{target}: this user may not use the lab's fast path (its permissions admit the lab's "
                           "user and its operators' group: SafetyParams.operator_group)"}
    except (FileNotFoundError, ConnectionRefusedError):
        return {"success": False, "unreachable": True,
                "message": f"no safety node listens on {target} (another host, or not running)"}
    except (OSError, ValueError) as exc:
        return {"success": False, "unreachable": True, "message": f"{target}: no answer ({exc})"}
