"""Shared test set-up: every test session gets a DDS domain of its own on loopback only."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# Other runs on the same machine (a developer's shell, another test session) must not see
# our nodes, nor we theirs: a random domain unless the caller chose one, discovery on loopback.
# Under pytest-xdist each worker is a test session of its own: the controller draws the domain
# (its workers inherit the environment) and worker gwN takes that domain plus N.
_base = int(os.environ.setdefault("LAB_TEST_DOMAIN", os.environ.get("ROS_DOMAIN_ID")
                                  or str(random.Random().randint(40, 90))))
os.environ["ROS_DOMAIN_ID"] = str(_base + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


def ros_available() -> bool:
    try:
        import rclpy  # noqa: F401

        import lab_interfaces  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def rclpy_context():
    """An initialised rclpy context for one test, shut down afterwards."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def commander():
    """A LabCommander (the operator's client) on a context of its own, for one test."""
    import rclpy

    from lab.app.commander import LabCommander

    context = rclpy.Context()
    rclpy.init(context=context)
    cmd = LabCommander("campaign_test", context=context)
    try:
        yield cmd
    finally:
        cmd.destroy_node()
        context.try_shutdown()


@contextmanager
def spinning(executor) -> Iterator[None]:
    """Spin an rclpy executor in a thread for the block's duration."""
    import threading

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


#: the longest modules, longest first, as the clean-clone run at 56b04bd timed them (setup and
#: calls, s): test_hosts 170, test_faults 136, test_campaign_kills 110, test_campaigns 100,
#: test_console_browser 85, test_campaign_cancel 50, test_goal_fuzz 35, test_bringup 33
LONGEST = ("test_hosts", "test_faults", "test_campaign_kills", "test_campaigns", "test_console_browser",
           "test_campaign_cancel", "test_goal_fuzz", "test_bringup")


def pytest_collection_modifyitems(config, items) -> None:
    """Modules marked slow run first, the longest of them first (the longest-processing-time rule):
    `make test` hands whole files to two pytest-xdist workers in this order
    (--no-loadscope-reorder), and a long file started last would end the run alone while the
    other worker idles; the many short unit files come last and fill the gap between the two."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}

    def key(item) -> tuple[bool, int]:
        name = item.module.__name__
        return name not in slow, LONGEST.index(name) if name in LONGEST else len(LONGEST)

    items.sort(key=key)  # stable: the order within a module stays
