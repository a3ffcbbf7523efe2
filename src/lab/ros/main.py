"""A node executable's main: the shutdown idiom of ros2/examples on a multi-threaded executor."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node


def run(node_factory: Callable[[], Node], threads: int = 4) -> None:
    """The shutdown idiom of ros2/examples, with a multi-threaded executor.

    Action servers here block in their execute callbacks while waiting in simulated time,
    so every node runs on several threads; a node decides its own callback groups.
    """
    import faulthandler
    import signal

    from lab.core.persist import apply_umask

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to stderr
    apply_umask()  # what the node writes is not world-readable (lab.core.persist.UMASK)
    rclpy.init()
    node = None
    try:
        node = node_factory()
        from lab.ros.clock import ClockWaits

        ClockWaits.of(node)  # on the simulated clock: says at once that this is a new instance
        from lab.ros.presence import GraphRejoin

        rejoin = GraphRejoin(node)  # noqa: F841 (kept for the node's life) the graph heals after a network cut
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            shutdown = getattr(node, "shutdown", None)
            if callable(shutdown):
                shutdown()
            node.destroy_node()
        rclpy.try_shutdown()


def node_main(node_factory: Callable[[], Node], name: str, threads: int = 4) -> None:
    """A node executable's main: run it; a LabError (bad configuration) exits with the reason."""
    from lab.core.errors import LabError

    try:
        run(node_factory, threads)
    except LabError as exc:
        raise SystemExit(f"{name}: {exc}") from None


