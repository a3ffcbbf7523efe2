"""The emergency stop's operator fast path, shared by the `safety` node and `lab estop`: a
UDP datagram on the safety node's host, on a port per ROS domain. Kept free of imports so
that `lab estop` starts in a fraction of a second."""

from __future__ import annotations

import os

#: how a mover (navigator, arm) or a station words its refusal while it cannot hear the safety node; the
#: lab manager reads it as the network's failure, not the robot's (lab.core.operations.scheduler)
NO_CONTACT = "no contact with the safety node"

#: the safety node's `operator_port` default (lab.core.config.params.SafetyParams)
OPERATOR_PORT = 47100


def operator_port(base: int = OPERATOR_PORT) -> int:
    """The fast path's port: one per ROS domain, so `lab estop` reaches the lab of its own domain."""
    return base + int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
