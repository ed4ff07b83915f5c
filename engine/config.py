"""Settings, read from the environment in one place. Explicit arguments beat the environment."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from engine.errors import ConfigError

_YMD = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_ymd(text: str) -> dt.date:
    """Return the date written exactly YYYY-MM-DD; raise ``ValueError`` otherwise
    (``date.fromisoformat`` alone also takes ``20250701`` and ``2025-W27-1``)."""
    if not _YMD.fullmatch(text):
        raise ValueError(f"not a date in YYYY-MM-DD: {text!r}")
    return dt.date.fromisoformat(text)


def split_s3_uri(uri: str) -> tuple[str, str] | None:
    """Return (bucket, key or prefix) of ``s3://bucket[/rest]``, or None if ``uri`` is not one."""
    bucket, _, rest = uri.removeprefix("s3://").partition("/")
    return (bucket, rest) if uri.startswith("s3://") and bucket else None

CATEGORIES_ENV = "ORDER_KPIS_CATEGORIES_FROM"

# The S3 lake's tuning (``engine.s3lake``), for the transformer and the reprocess job.
DEFAULT_DATE_WORKERS = 8
DEFAULT_LOCAL_READ_MB = 64
_MAX_DATE_WORKERS = 64  # each holds a thread, a local copy and a share of the connections
_MAX_LOCAL_READ_MB = 16384  # a Fargate task has 20 GiB of disk unless given more


@dataclass(frozen=True)
class LakeTuning:
    """How the S3 lake is read and written: settings with defaults, for tuning a task.

    ``date_workers`` (``DATE_WORKERS``): dates read, published and uploaded side by side;
    a date is a handful of round trips, so latency, not work, sets its time. Memory does
    not grow with it (the KPI reads share one row budget), but local disk may: each date
    being read may hold a copy of up to ``local_read_bytes``.
    ``local_read_bytes`` (``LOCAL_READ_MB``, in MiB): a date whose lake objects add up to at
    most this is copied whole to local disk and read there; a larger one is read from S3.
    """

    date_workers: int = DEFAULT_DATE_WORKERS
    local_read_bytes: int = DEFAULT_LOCAL_READ_MB * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LakeTuning:
        """Return the tuning from ``env`` (default ``os.environ``); raise ``ConfigError``
        for a value that is not a whole number in its range."""
        e = os.environ if env is None else env
        workers = _whole(e, "DATE_WORKERS", DEFAULT_DATE_WORKERS, 1, _MAX_DATE_WORKERS)
        mib = _whole(e, "LOCAL_READ_MB", DEFAULT_LOCAL_READ_MB, 0, _MAX_LOCAL_READ_MB)
        return cls(date_workers=workers, local_read_bytes=mib * 1024 * 1024)


# S3 copies an object of up to 5 GiB in one CopyObject; the workflow archives a larger one
# part by part (UploadPartCopy), in the byte ranges the validator writes into the file's
# status record (``engine.aws_jobs.archive_parts``).
_MIB = 1024 * 1024
COPY_OBJECT_MAX_MB = 5 * 1024
DEFAULT_ARCHIVE_PART_MB = 512
_MIN_PART_MB = 5  # S3's smallest part but for the last


@dataclass(frozen=True)
class ArchiveTuning:
    """How the workflow archives a file to processed/, as the validator plans it.

    ``single_copy_max_bytes`` (``ARCHIVE_SINGLE_COPY_MAX_MB``, default and most 5120): a file of
    at most this is archived by one CopyObject; a larger one in parts of ``part_bytes``
    (``ARCHIVE_PART_MB``, 5-5120, default 512). Both exist to be lowered in tests.
    """

    single_copy_max_bytes: int = COPY_OBJECT_MAX_MB * _MIB
    part_bytes: int = DEFAULT_ARCHIVE_PART_MB * _MIB

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ArchiveTuning:
        """Return the tuning from ``env`` (default ``os.environ``); raise ``ConfigError``."""
        e = os.environ if env is None else env
        single = _whole(e, "ARCHIVE_SINGLE_COPY_MAX_MB", COPY_OBJECT_MAX_MB, 0,
                        COPY_OBJECT_MAX_MB)
        part = _whole(e, "ARCHIVE_PART_MB", DEFAULT_ARCHIVE_PART_MB, _MIN_PART_MB,
                      COPY_OBJECT_MAX_MB)
        return cls(single_copy_max_bytes=single * _MIB, part_bytes=part * _MIB)


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{name}={env[name]!r} must be a whole number from {low} to {high}"
                          f" (default {default})")
    return value


@dataclass(frozen=True)
class Settings:
    """What the containers need to run one file through the pipeline."""

    input_bucket: str
    """Bucket the order file arrived in (``S3_INPUT_BUCKET``)."""
    input_key: str
    """Object key, decoded from the event's URL encoding (``S3_INPUT_KEY``)."""
    raw_input_key: str
    """The key exactly as the event delivered it (names the state-table records)."""
    cleaned_bucket: str
    """Bucket for the lake, reports, rejected files and archives (``S3_CLEANED_BUCKET``)."""
    order_table: str
    """DynamoDB table of daily KPIs (``ORDER_KPI_TABLE``)."""
    category_table: str
    """DynamoDB table of category KPIs (``CATEGORY_KPI_TABLE``)."""
    state_table: str
    """DynamoDB table for claims, statuses and per-date fences (``STATE_TABLE``)."""
    categories_uri: str | None = None
    """Optional products CSV (local path or s3://) whose ``category`` column is the allowed set."""
    lake: LakeTuning = LakeTuning()
    """How the S3 lake is read and written (``DATE_WORKERS``, ``LOCAL_READ_MB``)."""
    archive: ArchiveTuning = ArchiveTuning()
    """How the workflow archives the file (``ARCHIVE_SINGLE_COPY_MAX_MB``, ``ARCHIVE_PART_MB``)."""
    input_etag: str | None = None
    """The upload to process (``S3_INPUT_ETAG``, the event's etag): the validator reads that
    version of the key only (a key that holds another one, or none, was superseded), and the
    transformer refuses cleaned rows that another upload's validator wrote."""
    run_id: str | None = None
    """The workflow execution the task runs for (``WORKFLOW_EXECUTION_ID``), written into the
    records it stores, so that the workflow acts only on a verdict of its own run, never on
    one an earlier run left for an upload of the same bytes."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Return settings from ``env`` (default ``os.environ``); raise ``ConfigError``."""
        e = os.environ if env is None else env
        names = {
            "input_bucket": "S3_INPUT_BUCKET",
            "raw_input_key": "S3_INPUT_KEY",
            "cleaned_bucket": "S3_CLEANED_BUCKET",
            "order_table": "ORDER_KPI_TABLE",
            "category_table": "CATEGORY_KPI_TABLE",
            "state_table": "STATE_TABLE",
        }
        values = _required(e, names)
        return cls(
            input_key=unquote_plus(values["raw_input_key"]),
            categories_uri=e.get("CATEGORIES_S3_URI") or None,
            lake=LakeTuning.from_env(e),
            archive=ArchiveTuning.from_env(e),
            input_etag=e.get("S3_INPUT_ETAG", "").strip('"') or None,
            run_id=e.get("WORKFLOW_EXECUTION_ID") or None,
            **values,
        )


def _required(env: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    """Return {field: value} for every variable in ``names``; raise naming all that are missing."""
    missing = [v for v in names.values() if not env.get(v)]
    if missing:
        raise ConfigError(
            "missing environment variable" + ("s" if len(missing) > 1 else "") + ": "
            + ", ".join(missing)
        )
    for variable in names.values():
        if variable.endswith("_BUCKET"):
            check_bucket_name(variable, env[variable])
    return {k: env[v] for k, v in names.items()}


# The bucket names the AWS SDK takes (S3's rules are stricter for new buckets; older
# us-east-1 buckets may hold capitals and underscores; access-point aliases pass, ARNs do not:
# the stack passes names): a name it refuses failed with "Parameter validation failed:" at
# the first call, naming no variable.
_BUCKET_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")


def check_bucket_name(variable: str, bucket: str) -> None:
    """Raise ``ConfigError`` naming ``variable`` unless ``bucket`` can name a bucket."""
    if not _BUCKET_NAME.fullmatch(bucket):
        raise ConfigError(f"{variable}: {bucket!r} is not a bucket name (letters, digits, dots,"
                          " hyphens and underscores, at most 255)")


BACKFILL_ENV = "ORDER_KPIS_BACKFILL_STATE_MACHINE"


def backfill_state_machine(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """Return the backfill state machine's ARN; raise ``UsageError`` when none is configured."""
    from engine.errors import UsageError

    e = os.environ if env is None else env
    arn = explicit or e.get(BACKFILL_ENV)
    if not arn:
        raise UsageError(
            "no backfill state machine: pass --state-machine-arn",
            hint=f"The stack's output BackfillStateMachineArn; or set {BACKFILL_ENV}.")
    return arn


def categories_source(explicit: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """Return the products file naming the allowed categories, if one is configured."""
    if explicit:
        return explicit
    e = os.environ if env is None else env
    return e.get(CATEGORIES_ENV) or None


@dataclass(frozen=True)
class ReprocessSettings:
    """What the reprocess container needs to recompute a date range from the S3 lake."""

    cleaned_bucket: str
    """Bucket holding ``lake/`` (``S3_CLEANED_BUCKET``)."""
    order_table: str
    """DynamoDB table of daily KPIs (``ORDER_KPI_TABLE``)."""
    category_table: str
    """DynamoDB table of category KPIs (``CATEGORY_KPI_TABLE``)."""
    state_table: str
    """DynamoDB table with the per-date fences and the lake sequence (``STATE_TABLE``)."""
    date_from: dt.date
    """First date to recompute, inclusive (``REPROCESS_DATE_FROM``, YYYY-MM-DD)."""
    date_to: dt.date
    """Last date to recompute, inclusive (``REPROCESS_DATE_TO``, YYYY-MM-DD)."""
    lake: LakeTuning = LakeTuning()
    """How the S3 lake is read (``DATE_WORKERS``, ``LOCAL_READ_MB``)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReprocessSettings:
        """Return settings from ``env`` (default ``os.environ``); raise ``ConfigError``."""
        e = os.environ if env is None else env
        names = {
            "cleaned_bucket": "S3_CLEANED_BUCKET",
            "order_table": "ORDER_KPI_TABLE",
            "category_table": "CATEGORY_KPI_TABLE",
            "state_table": "STATE_TABLE",
            "date_from": "REPROCESS_DATE_FROM",
            "date_to": "REPROCESS_DATE_TO",
        }
        values = _required(e, names)
        dates = {}
        for field_name in ("date_from", "date_to"):
            try:
                dates[field_name] = parse_ymd(values[field_name])
            except ValueError:
                raise ConfigError(
                    f"{names[field_name]}={e[names[field_name]]!r} is not a date (YYYY-MM-DD)"
                ) from None
        if dates["date_from"] > dates["date_to"]:
            raise ConfigError(f"REPROCESS_DATE_FROM {dates['date_from']} is after"
                              f" REPROCESS_DATE_TO {dates['date_to']}")
        return cls(
            cleaned_bucket=values["cleaned_bucket"],
            order_table=values["order_table"],
            category_table=values["category_table"],
            state_table=values["state_table"],
            lake=LakeTuning.from_env(e),
            **dates,
        )
