"""Start and follow the backfill workflow (``orchestration/backfill.asl.json``) from a client.

``order-kpis backfill`` and ``order-kpis reprocess --state-machine-arn`` call these. Progress
comes from the execution and its map run (``DescribeMapRun``'s item counts); the Step
Functions client is injected so that tests pass their own.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import UsageError

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Return (bucket, prefix) of ``s3://bucket/prefix``; raise ``UsageError`` otherwise."""
    from engine.config import split_s3_uri

    if (split := split_s3_uri(uri)) is None:
        raise UsageError(f"{uri!r} is not an s3://bucket/prefix URI",
                         hint="Example: s3://order-kpis-input-123456789012-eu-west-1/backfill/2024/")
    bucket, prefix = split
    if not prefix.startswith(("input/", "backfill/")):
        raise UsageError(
            f"{uri}: the backfill reads only input/... or backfill/... of the input bucket",
            hint="Copy the files under s3://<input bucket>/backfill/ first (aws s3 sync).")
    return bucket, prefix


MAX_CONCURRENCY = 10_000  # a Distributed Map's most parallel child executions
BACKFILL_COMMENT = "order-kpis backfill:"  # how the backfill's definition begins its Comment


def check_backfill_machine(sfn: Any, arn: str) -> None:
    """Raise ``UsageError`` when ``arn`` names a state machine that is not the backfill (the
    stack's per-file workflow, ``StateMachineArn``, sits beside it in the outputs: started
    with a backfill's input, it failed at its first step and pointed to a notice it never
    sent). Where AWS does not describe it (the caller may not; no such machine), nothing is
    checked: StartExecution says what is wrong, in its words."""
    from botocore.exceptions import ClientError

    try:
        definition = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    except ClientError:
        return
    try:
        comment = str(json.loads(definition).get("Comment", ""))
    except (ValueError, AttributeError):
        comment = ""
    if not comment.startswith(BACKFILL_COMMENT):
        raise UsageError(f"{arn} is not the backfill state machine",
                         hint="Pass the stack's output BackfillStateMachineArn (StateMachineArn"
                         " is the per-file workflow).")


def files_input(bucket: str, prefix: str, *, max_concurrency: int | None = None,
                tolerated_failure_percentage: float | None = None) -> dict[str, Any]:
    """Return the backfill execution input for every object under ``bucket``/``prefix``."""
    out: dict[str, Any] = {"mode": "files", "bucket": bucket, "prefix": prefix}
    if max_concurrency is not None:
        if not 1 <= max_concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"--max-concurrency must be from 1 to {MAX_CONCURRENCY:,}"
                             " (a Distributed Map runs at most that many child executions at"
                             " once)")
        out["max_concurrency"] = max_concurrency
    if tolerated_failure_percentage is not None:
        if not 0 <= tolerated_failure_percentage <= 100:
            raise UsageError("--tolerated-failure-percentage must be between 0 and 100")
        out["tolerated_failure_percentage"] = tolerated_failure_percentage
    return out


def reprocess_input(date_from: dt.date, date_to: dt.date) -> dict[str, Any]:
    """Return the backfill execution input that recomputes [date_from, date_to] from the lake."""
    if date_from > date_to:
        raise UsageError(f"--date-from {date_from} is after --date-to {date_to}")
    return {"mode": "reprocess", "date_from": date_from.isoformat(),
            "date_to": date_to.isoformat()}


def execution_name(kind: str, now: dt.datetime | None = None) -> str:
    """Return a unique, sortable execution name; child names append ``-<index>`` (80 chars max)."""
    at = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{at}-{uuid.uuid4().hex[:8]}"


def start(sfn: Any, state_machine_arn: str, payload: dict[str, Any], name: str) -> str:
    """Start the backfill workflow; return the execution ARN."""
    response = sfn.start_execution(stateMachineArn=state_machine_arn, name=name,
                                   input=json.dumps(payload))
    return str(response["executionArn"])


@dataclass(frozen=True)
class Progress:
    """Where an execution stands: its status and its map run's item counts (0 before it runs)."""

    status: str
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0
    error: str | None = None
    cause: str | None = None
    results: str | None = None
    """``s3://`` URI of the ResultWriter manifest, once the map run wrote it."""

    @property
    def done(self) -> bool:
        """Whether the execution has stopped."""
        return self.status in TERMINAL

    def line(self, *, files: bool = True) -> str:
        """Return one line for people (``files=False``: the status without item counts)."""
        text = self.status
        if files:
            text += (f": {self.succeeded + self.failed}/{self.total} files done, "
                     f"{self.failed} failed, {self.running} running")
        if self.error:
            text += f"; {self.error}: {self.cause or ''}".rstrip(": ")
        if self.results:
            text += f"; results {self.results}"
        return text


def progress(sfn: Any, execution_arn: str) -> Progress:
    """Return the execution's status and, once its map run exists, the item counts."""
    d = sfn.describe_execution(executionArn=execution_arn)
    counts: dict[str, Any] = {}
    runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    if runs:
        run = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])
        counts = run.get("itemCounts", {})
    results = None
    if d.get("output"):
        try:
            out = json.loads(d["output"])
        except ValueError:
            out = {}
        details = (out.get("map") or {}).get("ResultWriterDetails") if isinstance(out,
                                                                               dict) else None
        if details:
            results = f"s3://{details['Bucket']}/{details['Key']}"
    return Progress(
        status=str(d["status"]), total=int(counts.get("total", 0)),
        succeeded=int(counts.get("succeeded", 0)),
        failed=sum(int(counts.get(k, 0)) for k in ("failed", "timedOut", "aborted")),
        running=int(counts.get("running", 0)), pending=int(counts.get("pending", 0)),
        error=d.get("error"), cause=d.get("cause"), results=results)


def follow(sfn: Any, execution_arn: str, *, on_progress: Callable[[Progress], None] | None = None,
           interval: float = 2.0, timeout: float | None = None) -> Progress:
    """Return the execution's last state, polling until it stops; ``on_progress`` sees changes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last: Progress | None = None
    while True:
        now = progress(sfn, execution_arn)
        if on_progress is not None and now != last:
            on_progress(now)
        last = now
        if now.done:
            return now
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{execution_arn} still {now.status} after {timeout:.0f} s")
        time.sleep(interval)
