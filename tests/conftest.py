"""Shared test set-up: every test session gets a DDS domain of its own on loopback only."""

from __future__ import annotations

import os
import random
import sys
import time
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


_BEGAN = pytest.StashKey[float]()


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


#: the modules that each keep a whole lab (or three) busy for minutes: one pytest-xdist worker
#: runs them one after another while the other runs everything else (`make test`: --dist
#: loadgroup). Longest first on both workers (clean clone at 56b04bd, s of setup and calls):
#: test_hosts 170, test_faults 136, test_campaign_kills 110, test_campaigns 100. Run side by side
#: (the longest-first order of 2c0d4b0 put test_hosts and test_faults together) they slowed each
#: other: the suite took 616 s where the plain order had taken 543.
HEAVY = ("test_hosts", "test_faults", "test_campaign_kills", "test_campaigns")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    """The heavy modules first, as one xdist group (one worker, one after another); every other
    module a group of its own (a module's tests and its module-scoped bring-up stay on one
    worker, as --dist loadfile kept them), the slow ones before the rest. Without xdist the
    groups mean nothing and only the order counts."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}

    def key(item) -> tuple[int, int]:
        name = item.module.__name__
        return (0, HEAVY.index(name)) if name in HEAVY else (1 if name in slow else 2, 0)

    items.sort(key=key)  # stable: the order within a module stays
    if not getattr(config.option, "loadgroup", False):  # set by xdist on its workers with --dist loadgroup
        return
    from _pytest.nodes import coerce_node_id

    for item in items:
        name = item.module.__name__
        group = "heavy" if name in HEAVY else name
        item.add_marker(pytest.mark.xdist_group(group))
        # xdist 3.8.0 marks a group by appending '@group' to item._nodeid, which pytest 9 no longer
        # reads (Node.nodeid is str(self._id)): every test then became a scope of its own and a
        # module's tests ran on both workers. The suffix is put where pytest 9 reads it.
        if "@" not in item.nodeid:
            item._id = coerce_node_id(f"{item.nodeid}@{group}")


#: per pytest-xdist worker: seconds of setup, calls and teardown it reported, and its modules'
#: share of them (what balancing the two workers needs; the controller sees every report)
_BUSY: dict[str, dict[str, float]] = {}


def pytest_runtest_logreport(report) -> None:
    worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None)
    if worker is not None:
        module = report.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        per = _BUSY.setdefault(worker, {})
        per[module] = per.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    for worker, per in sorted(_BUSY.items()):
        top = sorted(per.items(), key=lambda kv: -kv[1])  # every module: what balancing needs
        terminalreporter.write_line(f"{worker} busy {sum(per.values()):.0f} s: "
                                    + ", ".join(f"{m} {s:.0f}" for m, s in top if s >= 0.5))


def pytest_runtest_setup(item) -> None:
    item.stash[_BEGAN] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test (in its call or its set-up) keeps the whole output of every bring-up that ran
    during it in runs/test-artefacts/bringup/, and its report shows where each lockstep clock's wall
    time went (the simulation says so every 30 s: whose hold stopped it) and the log's path."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        logs = getattr(sys.modules.get("helpers"), "LOGS", {})
        began = item.stash.get(_BEGAN, 0.0)
        for index, log in enumerate(p for p, ended in list(logs.items()) if ended is None or ended >= began):
            kept = ROOT / "runs" / "test-artefacts" / "bringup" / f"{item.name[:80]}-{index}.log"
            try:
                kept.parent.mkdir(parents=True, exist_ok=True)
                text = log.read_text(errors="replace")
            except OSError:
                continue
            kept.write_text(text)
            accounts = [line for line in text.splitlines() if "where the clock's wall time went" in line][-4:]
            report.sections.append((f"bring-up {index}", "\n".join([f"whole output: {kept}", *accounts])))
    return report
