"""`recorder`: writes the lab's topics to MCAP (rosbag2's storage format) as they arrive.

Subscribes (serialized, so the bytes are what went over DDS) to every topic whose name matches
one of the `topics` regular expressions, discovering new ones as they appear, and writes them
with their full message definitions, so `ros2 bag info`, Foxglove and mcap-ros2-support read
the file. Chunks are flushed as they fill, so a recorder that dies loses at most the last one.
The file's path is published, transient-local, on `~/path`.
"""

from __future__ import annotations

import importlib
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from mcap.writer import CompressionType, Writer
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from lab.core.msgdefs import full_definition
from lab.core.params import RecorderParams
from lab.ros.main import node_main
from lab.ros.params import declare_params
from lab.ros.qos import LATCHED


def _find_msg(package: str, name: str) -> Path:
    return Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"


def _message_class(type_name: str) -> type:
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class Recorder(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("recorder", **node_kwargs)
        self.params = params = declare_params(self, RecorderParams)
        patterns = list(params.topics)
        self._patterns = [re.compile(p) for p in patterns]
        out_dir = Path(params.output_dir).expanduser()
        out_dir.mkdir(parents=True, exist_ok=True)
        name = params.file_name or (
            "lab_" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ".mcap")
        self.path = (out_dir / name).resolve()
        self._file = open(self.path, "wb")
        self._writer = Writer(self._file, compression=CompressionType.ZSTD, chunk_size=256 * 1024)
        self._writer.start(profile="ros2", library="lab recorder")
        self._channels: dict[str, int] = {}
        self._schemas: dict[str, int] = {}
        self._subs = []
        self.count = 0
        self._path_pub = self.create_publisher(String, "~/path", LATCHED)
        self._path_pub.publish(String(data=str(self.path)))
        # a wall-clock timer: with use_sim_time the node's clock runs hundreds of times too fast
        self.create_timer(params.discovery_period, self._discover,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._discover()
        self.get_logger().info(f"recording {', '.join(patterns)} to {self.path}")

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self._channels or not any(p.search(topic) for p in self._patterns) or len(types) != 1:
                continue
            type_name = types[0]
            try:
                cls = _message_class(type_name)
                schema_id = self._schemas.get(type_name)
                if schema_id is None:
                    text = full_definition(type_name, _find_msg)
                    schema_id = self._writer.register_schema(
                        name=type_name.replace("/msg/", "/"), encoding="ros2msg", data=text.encode())
                    self._schemas[type_name] = schema_id
            except (ImportError, AttributeError, OSError, LookupError) as exc:
                self.get_logger().warning(f"cannot record {topic} ({type_name}): {exc}")
                self._channels[topic] = -1
                continue
            channel = self._writer.register_channel(topic=topic, message_encoding="cdr", schema_id=schema_id)
            self._channels[topic] = channel
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            pubs = self.get_publishers_info_by_topic(topic)
            if any(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in pubs):
                qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
            if pubs and all(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in pubs):
                qos.reliability = ReliabilityPolicy.BEST_EFFORT
            # one-argument callback: rclpy passes MessageInfo to callbacks taking two
            self._subs.append(self.create_subscription(cls, topic, self._writer_for(channel), qos, raw=True))

    def _writer_for(self, channel: int):
        def write(data: bytes) -> None:
            stamp = self.get_clock().now().nanoseconds or time.time_ns()
            self._writer.add_message(channel_id=channel, log_time=stamp, data=data, publish_time=stamp)
            self.count += 1

        return write

    def shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        if self._file.closed:
            return
        self._writer.finish()
        self._file.close()
        # the context may be shut down already (Ctrl-C), so not through the ROS logger
        print(f"[recorder] wrote {self.count} messages to {self.path}", flush=True)


def main(args: list[str] | None = None) -> None:
    node_main(Recorder, "recorder", threads=1)


if __name__ == "__main__":
    main()
