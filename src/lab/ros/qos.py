"""QoS profiles the lab's publishers and subscribers share."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

#: latched: late subscribers get the last message (robot_description, world state, markers, status)
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)


#: /tf as tf2_ros's TransformBroadcaster offers it (reliable, volatile, depth 100)
TF = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE,
                reliability=ReliabilityPolicy.RELIABLE)
