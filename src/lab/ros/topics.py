"""Topics taken as they go over the wire: the recorder and the Foxglove bridge both follow every
topic whose name matches one of their patterns, discovering new ones as they appear, and get
each message serialized (CDR bytes) with its type's full definition text (ros2msg)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ament_index_python.packages import get_package_share_directory
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from lab.core.config.msgdefs import full_definition


def _find_msg(package: str, name: str) -> Path:
    return Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"


def _message_class(type_name: str) -> type:
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class RawTopics:
    """Calls `added(topic, type_name, definition)` once per new matching topic (returning a
    handle, or None to leave the topic out), then `received(handle, data)` for each message.
    Subscriptions match the publishers' QoS: transient local where one is (latched messages
    arrive), best effort where all are."""

    def __init__(self, node: Node, patterns: list[str], added: Callable[[str, str, str], Any],
                 received: Callable[[Any, bytes], None]) -> None:
        self.node = node
        self.patterns = [re.compile(p) for p in patterns]
        self._added, self._received = added, received
        self.topics: dict[str, Any] = {}
        self._definitions: dict[str, str] = {}
        self._subs: list = []

    def discover(self) -> None:
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self.topics or not any(p.search(topic) for p in self.patterns) or len(types) != 1:
                continue
            type_name = types[0]
            try:
                cls = _message_class(type_name)
                if type_name not in self._definitions:
                    self._definitions[type_name] = full_definition(type_name, _find_msg)
            except (ImportError, AttributeError, OSError, LookupError) as exc:
                self.node.get_logger().warning(f"cannot take {topic} ({type_name}): {exc}")
                self.topics[topic] = None
                continue
            handle = self.topics[topic] = self._added(topic, type_name, self._definitions[type_name])
            if handle is None:
                continue
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            pubs = self.node.get_publishers_info_by_topic(topic)
            if any(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in pubs):
                qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
            if pubs and all(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in pubs):
                qos.reliability = ReliabilityPolicy.BEST_EFFORT
            # one-argument callback: rclpy passes MessageInfo to callbacks taking two
            self._subs.append(self.node.create_subscription(cls, topic, lambda data, h=handle: self._received(h, data),
                                                            qos, raw=True))
