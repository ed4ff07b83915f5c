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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar, cast

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
    failure no further call starts; once the calls already running have ended, the first
    failure in the items' order is raised.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if workers == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    failed = threading.Event()

    def call(item: T) -> R | _Skipped:
        if failed.is_set():
            return _SKIPPED
        try:
            return fn(item)
        except BaseException:
            failed.set()
            raise

    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix=name)
    futures = [pool.submit(contextvars.copy_context().run, call, item) for item in items]
    try:
        wait(futures)
    except BaseException:  # interrupted while waiting: start nothing more
        failed.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    # Raises the first failure in the items' order; a call is only skipped after a failure.
    return cast("list[R]", [f.result() for f in futures])


class _Skipped:
    """A call not started because an earlier one failed."""


_SKIPPED = _Skipped()


class RowBudget:
    """At most ``rows`` rows held at once by the callers of ``hold``, admitted in turn.

    ``hold(n)`` waits for the requests before it, then until ``n`` more rows fit. A request
    of more than the whole budget waits until nothing else is held, and then runs alone;
    the requests after it wait for it (first come, first served: a large date is not
    overtaken forever by small ones).
    """

    def __init__(self, rows: int) -> None:
        if rows < 1:
            raise ValueError(f"rows must be at least 1, not {rows}")
        self.rows = rows
        self._held = 0
        self._waiting: deque[object] = deque()
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, n: int) -> Iterator[None]:
        n = min(max(n, 0), self.rows)
        turn = object()
        with self._changed:
            self._waiting.append(turn)
            try:
                self._changed.wait_for(
                    lambda: self._waiting[0] is turn and self._held + n <= self.rows
                )
            finally:
                self._waiting.remove(turn)
                self._changed.notify_all()
            self._held += n
        try:
            yield
        finally:
            with self._changed:
                self._held -= n
                self._changed.notify_all()
