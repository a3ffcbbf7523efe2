"""Reservations shared by concurrent batches."""

import threading
import time

import pytest

from lab.core.operations.resources import ResourcePool, Unavailable


def test_one_holder_at_a_time_and_release_on_every_path() -> None:
    pool = ResourcePool(["photoreactor_1", "photoreactor_2"])
    a = pool.acquire(["photoreactor_1", "photoreactor_2"], "batch-a")
    b = pool.acquire(["photoreactor_1", "photoreactor_2"], "batch-b")
    assert {a, b} == {"photoreactor_1", "photoreactor_2"}
    with pytest.raises(Unavailable):
        pool.acquire(["photoreactor_1", "photoreactor_2"], "batch-c", timeout=0.1)
    pool.release(a, "batch-b")  # not the holder: nothing happens
    assert pool.holder(a) == "batch-a"
    pool.release(a, "batch-a")
    with pytest.raises(RuntimeError), pool.reserved([a], "batch-c") as name:
        assert pool.holder(name) == "batch-c"
        raise RuntimeError("step failed")
    assert pool.holder(a) == ""


def test_waiter_gets_the_resource_when_it_is_released() -> None:
    pool = ResourcePool(["robot1"])
    pool.acquire(["robot1"], "batch-a")
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(["robot1"], "batch-b", timeout=5)))
    waiter.start()
    time.sleep(0.1)
    assert not got
    pool.release("robot1", "batch-a")
    waiter.join(5)
    assert got == ["robot1"] and pool.holder("robot1") == "batch-b"


def test_unusable_and_preferred_and_cancelled() -> None:
    pool = ResourcePool(["gc_1", "gc_2", "gc_3"])
    assert pool.acquire(["gc_1", "gc_2", "gc_3"], "x", usable=lambda n: n != "gc_1") == "gc_2"
    assert pool.acquire(["gc_1", "gc_3"], "y", prefer=lambda n: 0.0 if n == "gc_3" else 1.0) == "gc_3"
    with pytest.raises(Unavailable, match="cancelled"):
        pool.acquire(["gc_2", "gc_3"], "z", cancelled=lambda: True)
    with pytest.raises(KeyError):
        pool.acquire(["nope"], "z")


def test_a_long_wait_says_what_it_waits_for_and_who_holds_it() -> None:
    pool = ResourcePool(["photoreactor", "gc"])
    pool.acquire(["photoreactor"], "batch-a")
    said: list[str] = []
    with pytest.raises(Unavailable):
        pool.acquire(["photoreactor", "gc"], "batch-b", usable=lambda name: name != "gc", timeout=0.35,
                     waiting=said.append, report_every=0.1)
    assert said and said[0] == "waits for photoreactor or gc: photoreactor held by batch-a, gc not usable now"
    assert 2 <= len(said) <= 4  # every report_every s, not every poll
