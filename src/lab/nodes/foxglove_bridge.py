"""`foxglove_bridge`: the lab's topics live in Foxglove (bringup `viz:=foxglove`).

Foxglove's own SDK (`foxglove-sdk`) serves its WebSocket protocol on `host:port`
(ws://localhost:8765 by default: Foxglove -> Open connection -> Foxglove WebSocket). Every topic
matching one of the `topics` patterns is advertised as it appears, with its ROS 2 message
definition (ros2msg) and CDR encoding, and its messages are passed on as they went over DDS
(no decoding here). Latched topics (transient local: tf_static, the robot description, the map,
the world state) are sent again to each new subscriber, as DDS does. The layout
`config/foxglove_layout.json` shows the 3D lab, the wrist camera, the measured objective per
experiment and station states.
"""

from __future__ import annotations

import threading
import time

import foxglove
from rclpy.clock import Clock, ClockType
from rclpy.qos import DurabilityPolicy

from lab.core.config.params import FoxgloveParams
from lab.core.origin_gate import OriginGate
from lab.ros.main import node_main
from lab.ros.node import LabNode
from lab.ros.params import declare_params
from lab.ros.topics import RawTopics


class _Latched(foxglove.ServerListener):
    """Re-sends a latched topic's last message when a client subscribes to it."""

    def __init__(self) -> None:
        self.last: dict[int, tuple[foxglove.Channel, bytes]] = {}
        self.lock = threading.Lock()

    def on_subscribe(self, client: object, channel: object) -> None:
        with self.lock:
            kept = self.last.get(int(channel.id))  # type: ignore[attr-defined]
        if kept is not None:
            kept[0].log(kept[1], log_time=time.time_ns())


class FoxgloveBridge(LabNode):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("foxglove_bridge", **node_kwargs)
        self.params = params = declare_params(self, FoxgloveParams)
        self._latched = _Latched()
        # the SDK's server on a private port, behind a gate that refuses other web pages' origins
        # (lab.core.origin_gate: the SDK does not check the handshake's Origin)
        self.server = foxglove.start_server(name="lab", host="127.0.0.1", port=0, server_listener=self._latched)
        self.gate = OriginGate(params.host, params.port, self.server.port, list(params.allowed_origins))
        self._topics = RawTopics(self, list(params.topics), self._channel, self._log)
        self.create_timer(params.discovery_period, self._topics.discover, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._topics.discover()
        self.get_logger().info(f"Foxglove WebSocket server on ws://{params.host}:{self.gate.port} (browser pages "
                               f"from {', '.join(params.allowed_origins) or 'no origin'} only)")

    def _channel(self, topic: str, type_name: str, definition: str) -> tuple[foxglove.Channel, bool]:
        schema = foxglove.Schema(name=type_name.replace("/msg/", "/"), encoding="ros2msg", data=definition.encode())
        latched = any(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                      for p in self.get_publishers_info_by_topic(topic))
        return foxglove.Channel(topic, schema=schema, message_encoding="cdr"), latched

    def _log(self, handle: tuple[foxglove.Channel, bool], data: bytes) -> None:
        channel, latched = handle
        stamp = self.get_clock().now().nanoseconds or time.time_ns()
        if latched:
            with self._latched.lock:
                self._latched.last[channel.id()] = (channel, bytes(data))
        channel.log(bytes(data), log_time=stamp)

    def shutdown(self) -> None:
        self.gate.close()
        self.server.stop()


def main(args: list[str] | None = None) -> None:
    node_main(FoxgloveBridge, "foxglove_bridge", threads=1)


if __name__ == "__main__":
    main()
