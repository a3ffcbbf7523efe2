"""`recorder`: writes the lab's topics to MCAP (rosbag2's storage format) as they arrive.

Subscribes (serialized, so the bytes are what went over DDS) to every topic whose name matches
one of the `topics` regular expressions, discovering new ones as they appear, and writes them
with their full message definitions, so `ros2 bag info`, Foxglove and mcap-ros2-support read
the file. Chunks are flushed as they fill, so a recorder that dies loses at most the last one.
The file's path is published, transient-local, on `~/path`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from mcap.writer import CompressionType, Writer
from rclpy.clock import Clock, ClockType
from std_msgs.msg import String

from lab.core.config.params import RecorderParams
from lab.ros.main import node_main
from lab.ros.node import LabNode
from lab.ros.params import declare_params
from lab.ros.qos import LATCHED
from lab.ros.topics import RawTopics


class Recorder(LabNode):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("recorder", **node_kwargs)
        self.params = params = declare_params(self, RecorderParams)
        patterns = list(params.topics)
        out_dir = Path(params.output_dir).expanduser()
        out_dir.mkdir(parents=True, exist_ok=True)
        name = params.file_name or (
            "lab_" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ".mcap")
        self.path = (out_dir / name).resolve()
        self._file = open(self.path, "wb")
        self._writer = Writer(self._file, compression=CompressionType.ZSTD, chunk_size=256 * 1024)
        self._writer.start(profile="ros2", library="lab recorder")
        self._schemas: dict[str, int] = {}
        self._topics = RawTopics(self, patterns, self._channel, self._write)
        self.count = 0
        self._path_pub = self.create_publisher(String, "~/path", LATCHED)
        self._path_pub.publish(String(data=str(self.path)))
        # a wall-clock timer: with use_sim_time the node's clock runs hundreds of times too fast
        self.create_timer(params.discovery_period, self._topics.discover,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._topics.discover()
        self.get_logger().info(f"recording {', '.join(patterns)} to {self.path}")

    def _channel(self, topic: str, type_name: str, definition: str) -> int:
        schema_id = self._schemas.get(type_name)
        if schema_id is None:
            schema_id = self._schemas[type_name] = self._writer.register_schema(
                name=type_name.replace("/msg/", "/"), encoding="ros2msg", data=definition.encode())
        return self._writer.register_channel(topic=topic, message_encoding="cdr", schema_id=schema_id)

    def _write(self, channel: int, data: bytes) -> None:
        stamp = self.get_clock().now().nanoseconds or time.time_ns()
        self._writer.add_message(channel_id=channel, log_time=stamp, data=data, publish_time=stamp)
        self.count += 1

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
