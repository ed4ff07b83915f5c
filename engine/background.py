"""Work on background threads, with bounds.

- ``InOrder``: one thread, calls run in the order given, a bounded backlog. The writers of
  typed rows (the local lake's staging, the validator container's cleaned file) encode
  Parquet on such a thread while the caller judges the next piece: Parquet encoding releases
  the GIL, so the two overlap on two cores, and the backlog bound keeps memory to a few
  pieces.
- ``map_in_order``: a call per item on a few threads, results in the items' order. The AWS
  transformer publishes and exports dates this way: each date is a handful of S3 and
  DynamoDB round trips, latency more than work.
- ``RowBudget``: how many lake rows concurrent readers may hold at once, so that running
  dates side by side does not multiply the memory one date needs.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class InOrder:
    """Runs calls one after the other on one worker thread, in the order submitted.

    At most ``depth`` calls are pending: ``submit`` first waits for the oldest ones beyond
    that. ``submit`` and ``wait`` raise what an earlier call raised (once).
    """

    def __init__(self, name: str, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: deque[Future[object]] = deque()

    def submit(self, fn: Callable[..., object], *args: object, room: bool = True) -> None:
        """Queue ``fn(*args)``. ``room=False`` queues it without waiting for room (a last,
        small call, such as ending a file, that the caller should not wait behind)."""
        while room and len(self._pending) >= self.depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        """Return when every queued call has run; raise the first failure met."""
        while self._pending:
            self._pending.popleft().result()

    def shutdown(self) -> None:
        """Wait for the calls still queued, ignoring their failures, and stop the thread."""
        with contextlib.suppress(Exception):
            self.wait()
        self._pending.clear()
        self._pool.shutdown()


def map_in_order(
    fn: Callable[[T], R], items: Sequence[T], *, workers: int, name: str
) -> list[R]:
    """Return ``[fn(item) for item in items]``, computed on up to ``workers`` threads.

    Each call runs in a copy of the caller's context (its log and metric context). After a
    failure no further call starts; the first failure in the items' order is raised once
    the calls already running have ended.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if workers == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix=name)
    futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
    try:
        # Calls start in the items' order, so those cancelled here all come after the
        # failed one: the results below meet it (or an earlier failure) first.
        wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.done() and not f.cancelled() and f.exception() for f in futures):
            _cancel(futures)
        return [f.result() for f in futures]
    except BaseException:
        _cancel(futures)
        raise
    finally:
        pool.shutdown(wait=True)


def _cancel(futures: Sequence[Future[R]]) -> None:
    for f in futures:
        f.cancel()


class RowBudget:
    """At most ``rows`` rows held at once by the callers of ``hold``.

    ``hold(n)`` waits until ``n`` more rows fit. A request of more than the whole budget
    waits until nothing else is held, and then runs alone.
    """

    def __init__(self, rows: int) -> None:
        if rows < 1:
            raise ValueError(f"rows must be at least 1, not {rows}")
        self.rows = rows
        self._held = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, n: int) -> Iterator[None]:
        n = min(max(n, 0), self.rows)
        with self._changed:
            self._changed.wait_for(lambda: self._held + n <= self.rows)
            self._held += n
        try:
            yield
        finally:
            with self._changed:
                self._held -= n
                self._changed.notify_all()
