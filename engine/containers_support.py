"""What both container entrypoints share: JSON-lines logs, timed steps, exit codes.

Exit codes (docs/CONTRACT.md): 0 done; 3 the file was rejected; 4 transient (retry);
2 bad configuration or an AWS refusal a retry cannot fix; anything else is a bug.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from engine.errors import OrderKpisError
from engine.sinks.retry import error_code, is_retryable

log = logging.getLogger("order_kpis.container")

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_REJECTED = 3
EXIT_TRANSIENT = 4

# S3's codes for "try again later"; DynamoDB's are in engine.sinks.retry.
_S3_RETRYABLE = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
)
T = TypeVar("T")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
        "message", "asctime", "taskName",
    }

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.levelno >= logging.ERROR:
            out["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str | None = None, stream: Any = None) -> None:
    """Send every log record to ``stream`` (stdout) as JSON lines, at ``level`` (INFO)."""
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or "INFO").upper())
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def step(name: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Time a step and log one line for it; the yielded dict collects counts for that line."""
    counts: dict[str, Any] = dict(fields)
    start = time.perf_counter()
    try:
        yield counts
    except BaseException as exc:
        ms = round((time.perf_counter() - start) * 1000, 1)
        log.warning("step %s failed", name, extra={
            "step": name, "ok": False, "duration_ms": ms, "error": type(exc).__name__, **counts,
        })
        raise
    ms = round((time.perf_counter() - start) * 1000, 1)
    log.info("step %s", name, extra={"step": name, "ok": True, "duration_ms": ms, **counts})


def run_step(name: str, fn: Callable[[], T], counts: Callable[[T], Mapping[str, Any]] | None = None,
             **fields: Any) -> T:
    """Return ``fn()``, logging one line with the step's name, duration and ``counts(result)``."""
    with step(name, **fields) as c:
        result = fn()
        if counts is not None:
            c.update(counts(result))
    return result


def is_transient(exc: BaseException) -> bool:
    """Whether running the same task again later may succeed."""
    if isinstance(exc, OrderKpisError):
        return exc.transient
    if isinstance(exc, ClientError):
        return is_retryable(exc) or error_code(exc) in _S3_RETRYABLE
    return isinstance(exc, (EndpointConnectionError, BotoConnectionError, ReadTimeoutError))


def exit_code_for(exc: BaseException) -> int:
    """Return the process exit code for an error that ended a task."""
    if is_transient(exc):
        return EXIT_TRANSIENT
    if isinstance(exc, (OrderKpisError, ClientError, BotoCoreError)):
        return EXIT_CONFIG
    return 1


def run_entrypoint(job: str, main: Callable[[], int], *, level: str | None = None) -> int:
    """Run ``main`` with JSON logs; turn known errors into exit codes and one log line each."""
    configure_logging(level)
    start = time.perf_counter()
    try:
        code = main()
    except Exception as exc:
        code = exit_code_for(exc)
        if code == 1:
            log.exception("%s: unexpected error (a bug)", job, extra={"job": job, "exit_code": 1})
            return 1
        log.error("%s", str(exc).splitlines()[0], extra={
            "job": job, "exit_code": code, "error": type(exc).__name__,
            "transient": code == EXIT_TRANSIENT, "detail": str(exc),
        })
        return code
    log.info("%s finished", job, extra={
        "job": job, "exit_code": code,
        "duration_ms": round((time.perf_counter() - start) * 1000, 1),
    })
    return code
