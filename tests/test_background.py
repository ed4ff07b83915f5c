"""The ordered background queue that the Parquet writers run on (``engine.background``)."""

from __future__ import annotations

import threading
import time

import pytest

from engine.background import InOrder


def test_calls_run_in_order_on_one_thread() -> None:
    queue = InOrder("t", depth=2)
    seen: list[tuple[int, str]] = []
    for i in range(20):
        queue.submit(lambda i: (time.sleep(0.001 * (i % 3)), seen.append(
            (i, threading.current_thread().name))), i)
    queue.wait()
    queue.shutdown()
    assert [i for i, _ in seen] == list(range(20))
    assert len({name for _, name in seen}) == 1 and seen[0][1] != threading.current_thread().name


def test_submit_waits_while_depth_calls_are_pending() -> None:
    queue = InOrder("t", depth=2)
    release = threading.Event()
    queue.submit(release.wait)
    queue.submit(lambda: None)
    third = threading.Thread(target=queue.submit, args=(lambda: None,))
    third.start()
    try:
        third.join(0.2)
        assert third.is_alive()  # two pending: the third waits for the first to end
    finally:
        release.set()  # a failed check must not leave the worker blocked
    third.join(5)
    assert not third.is_alive()
    queue.shutdown()


def test_room_false_queues_without_waiting() -> None:
    queue = InOrder("t", depth=1)
    release = threading.Event()
    ran: list[str] = []
    queue.submit(release.wait)
    timer = threading.Timer(5, release.set)  # so that a regression fails instead of hanging
    timer.start()
    queue.submit(ran.append, "last", room=False)  # with room=True: blocked until the timer
    try:
        assert ran == [] and not release.is_set()
    finally:
        release.set()
        timer.cancel()
    queue.wait()
    assert ran == ["last"]
    queue.shutdown()


def test_a_failure_is_raised_once_by_the_next_submit_or_wait() -> None:
    queue = InOrder("t", depth=1)

    def fail() -> None:
        raise OSError("disk full")

    queue.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        queue.submit(lambda: None)  # waits for room: meets the failure
    queue.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        queue.wait()
    queue.wait()  # raised once: nothing left
    queue.shutdown()


def test_shutdown_waits_for_queued_calls_ignores_failures_and_stops_the_thread() -> None:
    queue = InOrder("bg-stop", depth=3)
    ran: list[int] = []

    def fail() -> None:
        raise RuntimeError("boom")

    queue.submit(fail)
    queue.submit(lambda: (time.sleep(0.05), ran.append(1)))
    queue.submit(ran.append, 2)
    queue.shutdown()
    assert ran == [1, 2]
    assert not any(t.name.startswith("bg-stop") for t in threading.enumerate())


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InOrder("t", depth=0)
