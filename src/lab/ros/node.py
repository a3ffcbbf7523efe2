"""The lab's nodes' base: publishers and subscriptions without rclpy's default QoS-event handlers.

rclpy (7.1, event_handler.py: PublisherEventCallbacks / SubscriptionEventCallbacks with
use_default_callbacks=True) gives every publisher and subscription two event handlers that log
an incompatible QoS or type. Each is a waitable in every wait of the executor, and with any of
them in the wait set a node woke far more often than messages arrived (a station probed during
a campaign: ~90 waits/s, ~25 with a message or a timer ready). Measured on a 16-experiment
photocatalysis campaign at 1500x on 2 cores (one robot, 17 node processes): 55-59 CPU-s and
34-37 s with the default handlers, 33-36 CPU-s and 26-28 s without; dropping only the
publishers' handlers gave 54 CPU-s, keeping only the subscriptions' incompatible-QoS handler 51.

What the handlers reported is checked instead where it can go wrong: QoS between the lab's own
nodes by tests/system/test_bringup.py (every publisher against every subscription of each topic,
rclpy.qos.qos_check_compatible), and a tool outside the lab (RViz, `ros2 topic echo`) reports a
mismatch on its own side. A caller that wants events (presence's liveliness) passes its own
event_callbacks, which are kept.

A service's callback that raises would end the whole node (rclpy lets the exception out of the
executor's spin: the lab manager's pause once raised, the node died and was restarted, and
/lab_manager/pause never answered). Every service here answers instead: the exception logged with
its trace, the response's success false and its message naming the node and the error, so the
caller learns whose failure it was and the node lives on.
"""

from __future__ import annotations

import traceback
from typing import Any

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.node import Node


class LabNode(Node):
    def create_publisher(self, *args: Any, event_callbacks: PublisherEventCallbacks | None = None,
                         **kwargs: Any) -> Any:
        return super().create_publisher(
            *args, event_callbacks=event_callbacks or PublisherEventCallbacks(use_default_callbacks=False), **kwargs)

    def create_subscription(self, *args: Any, event_callbacks: SubscriptionEventCallbacks | None = None,
                            **kwargs: Any) -> Any:
        return super().create_subscription(
            *args, event_callbacks=event_callbacks or SubscriptionEventCallbacks(use_default_callbacks=False),
            **kwargs)

    def create_service(self, srv_type: Any, srv_name: str, callback: Any, **kwargs: Any) -> Any:
        def guarded(request: Any, response: Any) -> Any:
            try:
                return callback(request, response)
            except Exception as exc:  # answered and logged, not raised into the executor
                self.get_logger().error(f"service {srv_name} failed: {type(exc).__name__}: {exc}\n"
                                        f"{traceback.format_exc()}")
                if hasattr(response, "success"):
                    response.success = False
                if hasattr(response, "message"):
                    response.message = (f"{self.get_fully_qualified_name()} failed to answer {srv_name}: "
                                        f"{type(exc).__name__}: {exc} (its log has the trace)")
                return response

        return super().create_service(srv_type, srv_name, guarded, **kwargs)
