"""Work handed to one background thread, run in the order given, with a bounded backlog.

The writers of typed rows (the local lake's staging, the validator container's cleaned file)
encode Parquet on such a thread while the caller judges the next piece: Parquet encoding
releases the GIL, so the two overlap on two cores, and the backlog bound keeps memory to a
few pieces.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


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
