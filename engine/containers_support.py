"""What both container entrypoints share: JSON-lines logs, timed steps, metrics, exit codes.

Exit codes (docs/CONTRACT.md): 0 done; 3 the file was rejected; 4 transient (retry);
2 bad configuration or an AWS refusal a retry cannot fix; anything else is a bug.

Metrics: at the end of every run, ``run_entrypoint`` prints one CloudWatch Embedded Metric
Format (EMF) line on stdout (namespace ``OrderKpis``, dimension ``Job``): ``RowsProcessed``,
``RowsRejected``, ``FilesRejected``, ``TaskDurationMs``. CloudWatch Logs turns the line into
metrics by itself (the awslogs driver is enough; no agent, no PutMetricData permission).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError

from engine.errors import ConfigError, OrderKpisError
from engine.sinks.retry import error_code, is_aws_network_error, is_retryable

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

METRICS_NAMESPACE = "OrderKpis"
METRIC_UNITS: dict[str, str] = {
    "RowsProcessed": "Count",
    "RowsRejected": "Count",
    "FilesRejected": "Count",
    "TaskDurationMs": "Milliseconds",
}
_metrics: ContextVar[dict[str, float] | None] = ContextVar("order_kpis_metrics", default=None)
_metrics_lock = threading.Lock()


def add_metric(name: str, value: float) -> None:
    """Add ``value`` to the run's metric ``name``; a no-op outside ``run_entrypoint``."""
    if name not in METRIC_UNITS:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(METRIC_UNITS)}")
    current = _metrics.get()
    if current is not None:
        with _metrics_lock:  # worker threads (map_in_order) share the run's dict
            current[name] = current.get(name, 0) + value


def emf_record(
    job: str,
    values: Mapping[str, float],
    *,
    timestamp_ms: int | None = None,
    namespace: str = METRICS_NAMESPACE,
) -> dict[str, Any]:
    """Return one EMF object: every known metric (0 when not given) under dimension ``Job``."""
    names = list(METRIC_UNITS)
    return {
        "_aws": {
            "Timestamp": round(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [["Job"]],
                    "Metrics": [{"Name": n, "Unit": METRIC_UNITS[n]} for n in names],
                }
            ],
        },
        "Job": job,
        **{n: values.get(n, 0) for n in names},
    }


def emit_metrics(job: str, values: Mapping[str, float], stream: Any = None) -> None:
    """Print the EMF line of ``values`` on ``stream`` (stdout), beside the JSON log lines."""
    out = sys.stdout if stream is None else stream
    print(json.dumps(emf_record(job, values), separators=(",", ":")), file=out, flush=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
        "message",
        "asctime",
        "taskName",
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


# The names Python's logging takes (WARN and FATAL too), in any letter case.
LOG_LEVELS = tuple(logging.getLevelNamesMapping())


def configure_logging(level: str | None = None, stream: Any = None) -> None:
    """Send every log record to ``stream`` (stdout) as JSON lines, at ``level`` (INFO);
    a level that is not one of ``LOG_LEVELS`` raises ``ConfigError`` naming ``LOG_LEVEL``,
    with the logs set up at INFO to say so."""
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    name = (level or "INFO").strip().upper()
    root.setLevel(name if name in LOG_LEVELS else "INFO")
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if name not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={level!r} is not a log level: use DEBUG, INFO, WARNING,"
                          " ERROR or CRITICAL (default INFO)")


@contextmanager
def step(name: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Time a step and log one line for it; the yielded dict collects counts for that line."""
    counts: dict[str, Any] = dict(fields)
    start = time.perf_counter()
    try:
        yield counts
    except BaseException as exc:
        ms = round((time.perf_counter() - start) * 1000, 1)
        log.warning(
            "step %s failed",
            name,
            extra={
                "step": name,
                "ok": False,
                "duration_ms": ms,
                "error": type(exc).__name__,
                **counts,
            },
        )
        raise
    ms = round((time.perf_counter() - start) * 1000, 1)
    log.info("step %s", name, extra={"step": name, "ok": True, "duration_ms": ms, **counts})


def run_step(
    name: str,
    fn: Callable[[], T],
    counts: Callable[[T], Mapping[str, Any]] | None = None,
    **fields: Any,
) -> T:
    """Return ``fn()``, logging one line with the step's name, duration and ``counts(result)``."""
    with step(name, **fields) as c:
        result = fn()
        if counts is not None:
            c.update(counts(result))
    return result


def _s3_refusal(exc: BaseException) -> BaseException:
    """Return the S3 error an ``upload_file`` failure stands for, else ``exc`` itself.

    boto3's managed upload raises ``S3UploadFailedError`` while handling the ``ClientError``
    (``__context__``): a throttled upload must still exit 4 and a denied one 2, not 1 (a bug).
    """
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
        exc = exc.__context__
    return exc


def is_transient(exc: BaseException) -> bool:
    """Whether running the same task again later may succeed."""
    exc = _s3_refusal(exc)
    if isinstance(exc, OrderKpisError):
        return exc.transient
    if isinstance(exc, ClientError):
        return is_retryable(exc) or error_code(exc) in _S3_RETRYABLE
    # The network: no connection, a timeout, a body cut off on its way (as botocore,
    # urllib3 or the socket says it), all worth the same task again later.
    return is_aws_network_error(exc) or isinstance(exc, (HTTPError, ConnectionError, TimeoutError))


def exit_code_for(exc: BaseException) -> int:
    """Return the process exit code for an error that ended a task."""
    exc = _s3_refusal(exc)
    if is_transient(exc):
        return EXIT_TRANSIENT
    if isinstance(exc, (OrderKpisError, ClientError, BotoCoreError)):
        return EXIT_CONFIG
    return 1


EXIT_STOPPED = 143  # 128 + SIGTERM, as a process the signal had killed


class TaskStopped(BaseException):
    """SIGTERM: ECS stops the task (StopTask, the execution stopped or timed out). Raised in
    the main thread so that the job unwinds: its temporary folder, which holds a copy of the
    input, is removed (the signal's default action killed the process and left it)."""


def _stop(signum: int, frame: object) -> None:
    raise TaskStopped


def _work_done() -> None:
    """From here on a SIGTERM changes nothing (the job has finished, or unwound): ignore it,
    so that it cannot break the last log line, the metrics or the interpreter's exit (a
    traceback, and exit 1 for a job that had finished)."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _stop):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run_entrypoint(
    job: str, main: Callable[[], int], *, level: str | None = None, configure: bool = True
) -> int:
    """Run ``main`` with JSON logs; turn known errors into exit codes and one log line each.

    ``configure=False`` leaves the process set-up alone (logging and the SIGTERM handler;
    tests running a job in-process).
    """
    start = time.perf_counter()
    if configure:
        try:
            configure_logging(level)
        except ConfigError as exc:  # said as any failure is, with the metrics line
            main = functools.partial(_raise, exc)
        else:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, _stop)
    values: dict[str, float] = {}
    token = _metrics.set(values)
    try:
        return _run(job, main, start)
    finally:
        _metrics.reset(token)
        values["TaskDurationMs"] = round((time.perf_counter() - start) * 1000, 1)
        emit_metrics(job, values)


def _first_line(exc: BaseException) -> str:
    """The error's one-line message; S3's NoSuchBucket says which bucket (its message
    does not)."""
    line = str(exc).splitlines()[0]
    exc = _s3_refusal(exc)
    if isinstance(exc, ClientError) and error_code(exc) == "NoSuchBucket":
        bucket = exc.response.get("Error", {}).get("BucketName")
        if bucket:
            return f"the bucket {bucket!r} does not exist: {line}"
    return line


def _raise(exc: BaseException) -> int:
    raise exc


def _run(job: str, main: Callable[[], int], start: float) -> int:
    try:
        code = main()
        _work_done()
    except TaskStopped:
        _work_done()
        log.warning("%s: stopped (SIGTERM); nothing more is written", job,
                    extra={"job": job, "exit_code": EXIT_STOPPED})
        return EXIT_STOPPED
    except Exception as exc:
        _work_done()
        code = exit_code_for(exc)
        if code == 1:
            log.exception("%s: unexpected error (a bug)", job, extra={"job": job, "exit_code": 1})
            return 1
        log.error(
            "%s",
            _first_line(exc),
            extra={
                "job": job,
                "exit_code": code,
                "error": type(exc).__name__,
                "transient": code == EXIT_TRANSIENT,
                "detail": str(exc),
            },
        )
        return code
    log.info(
        "%s finished",
        job,
        extra={
            "job": job,
            "exit_code": code,
            "duration_ms": round((time.perf_counter() - start) * 1000, 1),
        },
    )
    return code
