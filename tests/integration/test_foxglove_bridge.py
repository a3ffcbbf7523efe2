"""The Foxglove bridge, seen as Foxglove sees it: a WebSocket client speaking Foxglove's protocol
(subprotocol foxglove.sdk.v1, the SDK's version of foxglove.websocket) gets the lab's topics
advertised with their ROS 2 definitions, and the messages it subscribes to decode to what was
published (a latched one included, published before the client connected)."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time

import pytest
from conftest import ros_available

pytestmark = pytest.mark.skipif(not ros_available(), reason="rclpy/lab_interfaces not built (make test builds them)")


async def _session(port: int, want: set[str], timeout: float = 20.0) -> tuple[dict, dict[str, bytes]]:
    """Connect, collect the advertised channels until `want` are all there, subscribe to them
    and return (channels by topic, first payload per topic)."""
    import websockets

    channels: dict[str, dict] = {}
    payloads: dict[str, bytes] = {}
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"]) as ws:
        deadline = time.monotonic() + timeout
        subscribed: dict[int, str] = {}
        while len(payloads) < len(want):
            left = deadline - time.monotonic()
            assert left > 0, f"advertised {sorted(channels)}, received {sorted(payloads)}, wanted {sorted(want)}"
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=left)
            except TimeoutError:
                continue
            if isinstance(frame, str):
                msg = json.loads(frame)
                if msg.get("op") == "advertise":
                    channels.update({c["topic"]: c for c in msg["channels"]})
                    new = [c for t, c in channels.items() if t in want and t not in subscribed.values()]
                    for c in new:
                        subscribed[len(subscribed) + 1] = c["topic"]
                    if new:
                        await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                            {"id": sid, "channelId": channels[t]["id"]} for sid, t in subscribed.items()
                            if t in {c["topic"] for c in new}]}))
                continue
            opcode, sid = frame[0], struct.unpack_from("<I", frame, 1)[0]
            if opcode == 0x01 and sid in subscribed:  # message data: id, u64 timestamp, payload
                payloads.setdefault(subscribed[sid], bytes(frame[13:]))
    return channels, payloads


async def _handshake(port: int, origin: str) -> int:
    """The HTTP status a WebSocket handshake from a page of `origin` gets."""
    import websockets

    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"], origin=origin):
            return 101
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code


def test_foxglove_client_gets_the_lab_topics_advertised_and_decodes_them(rclpy_context) -> None:
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import String

    from lab.nodes.foxglove_bridge import FoxgloveBridge
    from lab.ros.qos import LATCHED
    from lab_interfaces.msg import StationStatus

    executor = MultiThreadedExecutor(context=rclpy_context)
    pub_node = Node("publisher", context=rclpy_context)
    status_pub = pub_node.create_publisher(StationStatus, "/stations/photoreactor/status", 10)
    description_pub = pub_node.create_publisher(String, "/robot1/robot_description", LATCHED)
    description_pub.publish(String(data="<robot name='kmr_iiwa'/>"))  # before any client: latched
    other_pub = pub_node.create_publisher(String, "/not_served", 10)
    bridge = FoxgloveBridge(context=rclpy_context, parameter_overrides=[
        Parameter("port", value=0), Parameter("discovery_period", value=0.1)])
    executor.add_node(bridge)
    executor.add_node(pub_node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    def publish() -> None:  # the station keeps reporting, as stations do
        while not stop.is_set():
            status_pub.publish(StationStatus(name="photoreactor", kind="photoreactor", state=StationStatus.BUSY,
                                             state_text="busy", queue=["rack_1"]))
            other_pub.publish(String(data="x"))
            time.sleep(0.05)

    threads = [threading.Thread(target=spin), threading.Thread(target=publish)]
    for t in threads:
        t.start()
    try:
        want = {"/stations/photoreactor/status", "/robot1/robot_description"}
        channels, payloads = asyncio.run(_session(bridge.gate.port, want))  # (no Origin: not a web page)
        # a web page of another origin is refused at the handshake; Foxglove's web app is let in
        assert asyncio.run(_handshake(bridge.gate.port, "https://evil.example")) == 403
        assert asyncio.run(_handshake(bridge.gate.port, "https://app.foxglove.dev")) == 101
        assert bridge.gate.refused == ["https://evil.example"]
    finally:
        stop.set()
        for t in threads:
            t.join()
        bridge.shutdown()
        executor.shutdown()
        bridge.destroy_node()
        pub_node.destroy_node()
    assert "/not_served" not in channels
    status = channels["/stations/photoreactor/status"]
    assert (status["encoding"], status["schemaEncoding"], status["schemaName"]) == \
        ("cdr", "ros2msg", "lab_interfaces/StationStatus")
    assert "string state_text" in status["schema"]  # the full definition travels with the channel
    decoded = deserialize_message(payloads["/stations/photoreactor/status"], StationStatus)
    assert (decoded.name, decoded.state, list(decoded.queue)) == ("photoreactor", StationStatus.BUSY, ["rack_1"])
    assert deserialize_message(payloads["/robot1/robot_description"], String).data == "<robot name='kmr_iiwa'/>"


def test_the_committed_layout_reads_only_what_the_bridge_serves(repo_root) -> None:
    """config/foxglove_layout.json: every topic a panel reads is one the bridge serves by default,
    and every message path names fields the message has."""
    import re

    from lab.core.config.params import FoxgloveParams
    from lab_interfaces.msg import ExperimentRecord, StationStatus

    layout = json.loads((repo_root / "config" / "foxglove_layout.json").read_text())
    panels = layout["configById"]
    topics: set[str] = set()
    paths: list[str] = []
    for config in panels.values():
        topics |= set(config.get("topics", {}))
        topics |= {layer["topic"] for layer in config.get("layers", {}).values() if "topic" in layer}
        if config.get("imageMode", {}).get("imageTopic"):
            topics.add(config["imageMode"]["imageTopic"])
        paths += [p["value"] for p in config.get("paths", [])]
    topics |= {p.split(".")[0] for p in paths}
    served = [re.compile(p) for p in FoxgloveParams().topics]
    assert len(topics) >= 8 and all(any(p.search(t) for p in served) for t in topics), sorted(topics)
    types = {"/experiments": ExperimentRecord, "/stations/": StationStatus}
    for path in paths:
        topic, *fields = path.split(".")
        value = next(cls for prefix, cls in types.items() if topic.startswith(prefix))()
        for field in fields:
            name, _, index = field.partition("[")
            value = getattr(value, name)  # an AttributeError: a field the message does not have
            if index:
                value = 0.0  # an element of an array field
    # the mosaic names only panels that are configured
    def leaves(node) -> list[str]:
        return [node] if isinstance(node, str) else leaves(node["first"]) + leaves(node["second"])

    assert sorted(leaves(layout["layout"])) == sorted(panels)
