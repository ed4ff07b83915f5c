"""Background work (``engine.background``): the ordered queue the Parquet writers run on, the
parallel map the AWS transformer publishes dates with, and the row budget that bounds it."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from engine.background import InOrder, RowBudget, map_in_order


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


class Gauge:
    """Counts calls in progress and remembers the most seen at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self.now -= 1


def test_map_in_order_runs_calls_side_by_side_and_gives_results_in_order() -> None:
    gauge = Gauge()
    both_in = threading.Barrier(3, timeout=10)  # three calls must be in at once to pass
    request: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")
    request.set("file-7")

    def call(i: int) -> tuple[int, str]:
        with gauge:
            if i < 3:
                both_in.wait()
            time.sleep(0.002 * (i % 4))  # finish out of order
            return i * i, request.get()

    out = map_in_order(call, list(range(20)), workers=3, name="t")
    assert out == [(i * i, "file-7") for i in range(20)]  # the caller's context in each call
    assert gauge.most == 3
    assert not any(t.name.startswith("t_") for t in threading.enumerate())


def test_map_in_order_raises_the_first_failure_and_starts_no_further_call() -> None:
    started: list[int] = []
    second_failed = threading.Event()

    def call(i: int) -> int:
        started.append(i)
        if i == 1:
            second_failed.set()
            raise ValueError("date 1 failed")
        if i == 0:  # still running when 1 fails; fails after it, but comes first
            second_failed.wait(10)
            raise KeyError("date 0 failed")
        time.sleep(0.05)
        return i

    with pytest.raises(KeyError, match="date 0"):
        map_in_order(call, list(range(50)), workers=2, name="t")
    # The two first calls ran; the thread freed by 1's failure started nothing more.
    assert sorted(started) == [0, 1]


def test_map_in_order_with_one_worker_is_a_plain_loop() -> None:
    names: list[str] = []
    out = map_in_order(lambda i: names.append(threading.current_thread().name) or i, [1, 2],
                       workers=1, name="t")
    assert out == [1, 2] and set(names) == {threading.current_thread().name}
    with pytest.raises(ValueError, match="workers"):
        map_in_order(lambda i: i, [1], workers=0, name="t")


def test_row_budget_holds_at_most_its_rows_and_a_larger_request_runs_alone() -> None:
    budget = RowBudget(100)
    held: list[int] = []
    most = [0]
    lock = threading.Lock()
    gauge = Gauge()

    def hold(n: int) -> None:
        with budget.hold(n), gauge:
            with lock:
                held.append(n)
                # A request of more than the budget counts as the whole budget.
                most[0] = max(most[0], sum(min(h, 100) for h in held))
                if n > 100:
                    assert len(held) == 1, "a request over the budget ran beside another"
            time.sleep(0.002)
            with lock:
                held.remove(n)

    map_in_order(hold, [30, 30, 30, 250, 30, 60, 40, 100, 10, 10, 10, 10] * 3, workers=6,
                 name="t")
    assert most[0] == 100  # reached (three 30s and a 10), never passed
    assert gauge.most >= 2  # small requests were held side by side


def test_row_budget_admits_in_turn_so_a_large_request_is_not_overtaken() -> None:
    budget = RowBudget(100)
    admitted: list[str] = []
    release = {k: threading.Event() for k in ("a", "big", "c")}

    def hold(name: str, n: int) -> None:
        with budget.hold(n):
            admitted.append(name)
            release[name].wait(10)

    threads = {name: threading.Thread(target=hold, args=(name, n))
               for name, n in (("a", 60), ("big", 250), ("c", 10))}
    threads["a"].start()
    while admitted != ["a"]:
        time.sleep(0.001)
    threads["big"].start()  # waits for nothing else to be held
    while len(budget._waiting) != 1:
        time.sleep(0.001)
    threads["c"].start()  # 60 + 10 would fit, but the large request came first
    time.sleep(0.2)
    assert admitted == ["a"]
    for name in ("a", "big", "c"):
        release[name].set()
    for t in threads.values():
        t.join(10)
    assert admitted == ["a", "big", "c"]
