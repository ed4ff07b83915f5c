"""The two container jobs: validate one S3 object; add its rows to the lake and publish KPIs.

The entrypoints in ``containers/`` are env -> ``Settings`` -> these functions -> exit code.
Each step logs one JSON line (``engine.containers_support.run_step``).

Objects in the cleaned bucket, for an input ``s3://<in>/<key>`` (``key`` decoded)::

    cleaned/<source_id>.parquet     the file's typed rows (metadata: sha256, rows)
    reports/<key>.json              the validation report of a valid file
    rejected/<key>                  an invalid file's bytes, unchanged (rejected/<key>.input
                                    for a key ending in .errors.json, .rows.csv or .input)
    rejected/<key>.errors.json      its validation report
    lake/...                        see engine.s3lake
    kpis/...                        BI export of each touched month, see engine.s3export
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from botocore.exceptions import ClientError

from engine.background import InOrder, map_in_order
from engine.config import ArchiveTuning, Settings, check_bucket_name, split_s3_uri
from engine.containers_support import EXIT_OK, EXIT_REJECTED, add_metric, run_step
from engine.errors import ConfigError, TerminalError
from engine.lake import required, source_id
from engine.read import file_digest
from engine.rules import LAKE_SCHEMA
from engine.s3export import MonthExport, export_month, months_of
from engine.s3lake import ObjectReplacedError, S3Lake, date_kpis, get_to_file
from engine.sinks.dynamodb import category_items, daily_items
from engine.sinks.retry import error_code
from engine.state import KpiTables, PublishResult, Ticket, file_pk, put_status, refresh_date
from engine.validate import ValidationResult, validate_file

log = logging.getLogger(__name__)


class OtherUploadError(TerminalError):
    """The cleaned rows come from another upload of the key than the one to transform."""


class MissingObjectError(TerminalError):
    """An object the task needs is not in S3 (deleted, or an earlier step never ran)."""

    def __init__(self, uri: str, hint: str | None = None) -> None:
        self.uri = uri
        super().__init__(f"{uri}: no such object", hint=hint)


@dataclass(frozen=True)
class Clients:
    """The boto3 clients a job uses; tests pass their own."""

    s3: Any
    dynamodb: Any

    @classmethod
    def from_env(cls) -> Clients:
        """Return clients built from the standard AWS environment (one session each)."""
        import boto3

        return cls(
            s3=boto3.session.Session().client("s3"),
            dynamodb=boto3.session.Session().client("dynamodb"),
        )


def source_name(settings: Settings) -> str:
    """Return ``<bucket>/<decoded key>``, the source's name in the lake and in KPI items."""
    return f"{settings.input_bucket}/{settings.input_key}"


def cleaned_key(settings: Settings) -> str:
    """Return the key of the file's cleaned rows in the cleaned bucket."""
    return f"cleaned/{source_id(source_name(settings))}.parquet"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Fetched:
    """What ``_get_to_file`` learnt about the object it copied to disk."""

    size: int
    etag: str
    metadata: Mapping[str, str]


def _get_to_file(
    s3: Any, bucket: str, key: str, dest: Path, *, hint: str | None = None,
    if_match: str | None = None,
) -> Fetched:
    """Copy an object to ``dest``; its metadata come from the same response.

    ``GetObject`` rather than ``download_file``: the managed download makes its own
    ``HeadObject``, so metadata read beside it could belong to another version of the key. A
    body cut off on its way is read again, the same version (``s3lake.get_to_file``).
    ``if_match``: only that version (ETag) of the key; another raises ``ObjectReplacedError``.
    """
    try:
        obj = get_to_file(s3, bucket, key, dest, if_match=if_match)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            raise MissingObjectError(f"s3://{bucket}/{key}", hint=hint) from None
        if error_code(exc) == "NoSuchBucket":
            raise ConfigError(f"s3://{bucket}/{key}: the bucket {bucket!r} does not exist",
                              hint=hint) from None
        raise
    size = dest.stat().st_size
    return Fetched(size, str(obj.get("ETag", "")).strip('"'), dict(obj.get("Metadata", {})))


def rejected_keys(key: str) -> tuple[str, str]:
    """Return the keys under which the cleaned bucket keeps a rejected upload's bytes and
    its report. The bytes of a key ending like a report (``a.csv.errors.json``), or in
    ``.input``, go to ``<key>.input``: they replaced ``a.csv``'s report, which its status
    record still named. The rule is the local ``rejected/`` folder's (``names_an_output``);
    keys are not cut (S3 takes 1,024 bytes)."""
    from engine.pipeline import ERRORS_SUFFIX, KEPT_SUFFIX, names_an_output

    copy = f"rejected/{key}" + (KEPT_SUFFIX if names_an_output(key) else "")
    return copy, f"rejected/{key}{ERRORS_SUFFIX}"


def _load_categories(uri: str | None, s3: Any, tmp: Path) -> tuple[str, ...] | None:
    from engine.cli import load_categories

    if uri is None:
        return None
    if not uri.startswith("s3://"):
        return load_categories(uri)
    where = split_s3_uri(uri)
    if where is None or not where[1] or where[1].endswith("/"):
        raise ConfigError(f"CATEGORIES_S3_URI={uri!r} names no object",
                          hint="write s3://bucket/key of a products CSV")
    check_bucket_name("CATEGORIES_S3_URI", where[0])
    local = tmp / "categories.csv"
    _get_to_file(s3, *where, local)
    # Messages name the object, not the task's local copy of it.
    return load_categories(str(local), name=uri)


_MAX_PARTS = 10_000  # S3's limit for one multipart upload


def archive_parts(size: int, tuning: ArchiveTuning) -> list[dict[str, Any]] | None:
    """Return the byte ranges (``{"n": part number, "range": "bytes=a-b"}``) in which the
    workflow copies an object of ``size`` bytes to processed/, when one CopyObject cannot
    (S3 copies at most 5 GiB at once); None for a file one copy takes. Parts are
    ``tuning.part_bytes`` long, or longer where S3's 10,000 parts would not hold the file."""
    if size <= tuning.single_copy_max_bytes:
        return None
    part = max(tuning.part_bytes, -(-size // _MAX_PARTS))
    return [
        {"n": n, "range": f"bytes={start}-{min(start + part, size) - 1}"}
        for n, start in enumerate(range(0, size, part), start=1)
    ]


def _put_json(s3: Any, bucket: str, key: str, data: Mapping[str, Any]) -> None:
    body = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")


# -- validator ---------------------------------------------------------------------------


def _superseded(settings: Settings, c: Clients, uri: str) -> int:
    """Record that the upload to validate (``input_etag``) is no longer the key's object.

    A later upload replaced it, or it was moved or deleted, before it could be read: its bytes
    are gone, so there is nothing to validate and nothing changes; a later upload of the key
    has its own run. The status record carries the upload's ETag, so the workflow reads this
    verdict as its own.
    """
    summary = (
        f"{uri} (ETag {settings.input_etag}) was not processed by this run: the key no longer"
        " holds that upload (a later upload replaced it, or it was moved or deleted, before it"
        " was read; an earlier run of it, stopped after archiving it, moves it too). This run"
        " changed nothing; a later upload of the key is processed by its own run."
    )
    log.warning("%s", summary)
    _status(settings, c, "status", {
        "status": "SUPERSEDED",
        "decoded_key": settings.input_key,
        "etag": settings.input_etag,
        "summary": summary,
        "updated_at": _now(),
    })
    return EXIT_OK


def validate_object(settings: Settings, clients: Clients | None = None) -> int:
    """Validate ``s3://<input bucket>/<key>``; store its outputs and status; give the exit code."""
    c = Clients.from_env() if clients is None else clients
    s3, bucket, key = c.s3, settings.input_bucket, settings.input_key
    out = settings.cleaned_bucket
    uri = f"s3://{bucket}/{key}"
    with tempfile.TemporaryDirectory(prefix="order-kpis-") as tmpdir:
        tmp = Path(tmpdir)
        local = tmp / "input.csv"
        try:
            fetched = run_step(
                "download",
                lambda: _get_to_file(s3, bucket, key, local, if_match=settings.input_etag),
                lambda r: {"bytes": r.size},
                source=uri,
            )
        except (MissingObjectError, ObjectReplacedError):
            if settings.input_etag is None:
                raise
            return _superseded(settings, c, uri)
        cats = run_step(
            "categories",
            lambda: _load_categories(settings.categories_uri, s3, tmp),
            lambda r: {"categories": None if r is None else len(r)},
        )
        cleaned = tmp / "cleaned.parquet"
        result, cleaned_rows = run_step(
            "validate",
            lambda: validate_to_parquet(local, cleaned, categories=cats, display_name=uri),
            lambda r: {
                "status": r[0].report.status,
                "rows": r[0].report.rows,
                "invalid_rows": r[0].report.invalid_rows,
            },
        )
        report = result.report
        add_metric("RowsProcessed", report.rows)
        add_metric("RowsRejected", report.invalid_rows)
        add_metric("FilesRejected", 0 if report.ok else 1)
        if report.sha256 is None:
            report.size_bytes, report.sha256 = file_digest(local)
        status: dict[str, Any] = {
            "decoded_key": key,
            "etag": fetched.etag,
            "rows": report.rows,
            "invalid_rows": report.invalid_rows,
            **_listed_dates("dates", report.dates),
            "summary": report.notice(rejected=not report.ok),
            "updated_at": _now(),
        }
        if not report.ok:
            copy_key, report_key = rejected_keys(key)

            def reject() -> None:
                s3.upload_file(str(local), out, copy_key)
                _put_json(s3, out, report_key, report.to_dict())

            run_step("write_rejected", reject, key=report_key)
            status.update(status="REJECTED", report_uri=f"s3://{out}/{report_key}",
                          rejected_key=copy_key)
            _status(settings, c, "status", status)
            return EXIT_REJECTED

        ckey, report_key = cleaned_key(settings), f"reports/{key}.json"
        # input-etag: the upload these rows come from (the transformer checks it).
        metadata = {
            "sha256": report.sha256 or "", "rows": str(cleaned_rows), "input-etag": fetched.etag
        }
        run_step(
            "write_cleaned",
            # A managed (multipart above 8 MiB) upload reads the file from disk part by part.
            lambda: s3.upload_file(str(cleaned), out, ckey, ExtraArgs={"Metadata": metadata}),
            lambda _: {"rows": cleaned_rows},
            key=ckey,
        )
        run_step(
            "write_report", lambda: _put_json(s3, out, report_key, report.to_dict()), key=report_key
        )
        status.update(
            status="VALID", report_uri=f"s3://{out}/{report_key}", cleaned_uri=f"s3://{out}/{ckey}"
        )
        if (parts := archive_parts(fetched.size, settings.archive)) is not None:
            status["archive_parts"] = parts  # the workflow's multipart archive copy
        _status(settings, c, "status", status)
        return EXIT_OK


# Pieces handed to the cleaned file's writer thread and not yet written, at most (as the
# local lake's ``STAGE_QUEUE``: each holds one piece's typed rows, ~35 MB for a 32 MB piece).
CLEANED_QUEUE = 2
# zstd, since the object is uploaded and downloaded again (half the bytes of LZ4), with the
# local lake's cheaper choices otherwise: dictionaries only where values repeat, statistics
# only for ``order_date``. Measured per 32 MB piece: ~0.20 CPU-s to encode, against
# ~0.24-0.26 with dictionaries and statistics everywhere and Arrow strings copied from Polars'.
_CLEANED_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "use_dictionary": ["category", "returned"],
    "write_statistics": ["order_date"],
}


class CleanedParquet:
    """A local Parquet file of typed rows (``LAKE_SCHEMA``), appended to piece by piece.

    Each ``write`` becomes a row group (pyarrow splits one of more than 1 Mi rows), encoded
    on a worker thread while the caller validates the next piece (at most ``CLEANED_QUEUE``
    pieces wait), in the order written; nothing is kept after, so memory follows a few
    pieces. The text columns go to Arrow as string views, Polars' own layout, without a copy.
    The schema is fixed when the file is opened, so a file that gets no rows is still a
    readable zero-row file with the lake's columns. Use it as a context manager: the file is
    complete when the block ends without an error; after an error it is only closed, and the
    first error is the one raised.
    """

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.rows = 0
        empty = pl.DataFrame(schema=LAKE_SCHEMA).to_arrow(compat_level=pl.CompatLevel.newest())
        self._schema = required(empty.schema)  # as the lake's
        self._writer = pq.ParquetWriter(path, self._schema, **_CLEANED_OPTIONS)
        self._queue = InOrder("cleaned", CLEANED_QUEUE)

    def write(self, rows: pl.DataFrame) -> None:
        """Queue ``rows`` as the next row group; raise what an earlier write raised."""
        self._queue.submit(self._write_now, rows)
        self.rows += rows.height

    def _write_now(self, rows: pl.DataFrame) -> None:
        table = rows.select(list(LAKE_SCHEMA)).to_arrow(compat_level=pl.CompatLevel.newest())
        self._writer.write_table(table.cast(self._schema))

    def close(self) -> None:
        """Write what is queued, then the footer; the file is complete. If a queued write
        failed, its error is raised and the file is only closed (``validate_to_parquet``
        then deletes it)."""
        try:
            self._queue.wait()
        except BaseException:
            self._abandon()
            raise
        self._queue.shutdown()
        self._writer.close()

    def _abandon(self) -> None:
        self._queue.shutdown()  # the first error stands; what the writer meets next is secondary
        with contextlib.suppress(Exception):
            self._writer.close()

    def __enter__(self) -> CleanedParquet:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self._abandon()


def validate_to_parquet(
    local: Path,
    dest: Path,
    *,
    categories: Iterable[str] | None,
    display_name: str,
) -> tuple[ValidationResult, int]:
    """Validate ``local``; leave a valid file's typed rows in ``dest``; give the result and rows.

    Rows are written as each piece passes (``validate_file``'s ``on_rows``), so neither the
    file nor its rows are ever held whole. When the streaming pass gives up (a bad file, or a
    valid one sent to the whole-file path by a piece Polars refused) ``result.streamed`` is False
    and what it wrote is thrown away: a valid file's rows are then rewritten from
    ``result.cleaned``, a bad file leaves no ``dest``. An error (a failed write included)
    leaves no ``dest`` either. The id-hash spill goes next to ``dest``.
    """
    try:
        with CleanedParquet(dest) as streamed:
            result = validate_file(
                local,
                categories=categories,
                display_name=display_name,
                on_rows=streamed.write,
                spill_dir=dest.parent,
                keep_bad_rows=False,  # a bad file is rejected whole
            )
        if result.streamed:
            return result, streamed.rows
        if not result.report.ok:
            dest.unlink()
            return result, 0
        with CleanedParquet(dest) as whole:
            if result.cleaned is not None:
                whole.write(result.cleaned)
        return result, whole.rows
    except BaseException:
        dest.unlink(missing_ok=True)  # never a half-written file
        raise


# Dates listed in a state record, at most: an item holds 400 KB, and a file of ~37,000 dates
# (11 bytes each) made the validator's record too large (exit 2 on every run, no verdict).
MAX_LISTED_DATES = 1000


def _listed_dates(name: str, dates: Sequence[str]) -> dict[str, Any]:
    """``{name: the first MAX_LISTED_DATES dates, name + "_count": how many}``."""
    listed = sorted(dates)
    return {name: listed[:MAX_LISTED_DATES], f"{name}_count": len(listed)}


def dates_text(dates: Sequence[dt.date], affected: Sequence[dt.date] = ()) -> str:
    """The dates of a file, for a notice: all of up to 31, else the first and last and how
    many; and the dates whose KPIs changed because the file no longer holds them (a
    corrected re-upload, or one of a header only, removes the earlier upload's dates)."""

    def shown(days: Sequence[dt.date]) -> str:
        text = sorted(d.isoformat() for d in days)
        return ", ".join(text) if len(text) <= 31 else (
            f"{text[0]} .. {text[-1]} ({len(text):,} dates)")

    out = shown(dates) if dates else "(none)"
    if gone := sorted(set(affected) - set(dates)):
        out += f"; no longer held, KPIs recomputed: {shown(gone)}"
    return out


def _status(settings: Settings, c: Clients, sk: str, attributes: Mapping[str, Any]) -> None:
    pk = file_pk(settings.input_bucket, settings.raw_input_key)
    if settings.run_id is not None:  # the workflow acts only on its own run's verdict
        attributes = {**attributes, "run": settings.run_id}
    run_step(
        "status",
        lambda: put_status(settings.state_table, pk, sk, attributes, client=c.dynamodb),
        record=sk,
        status=attributes.get("status"),
    )


# -- transformer -------------------------------------------------------------------------


def download_cleaned(settings: Settings, s3: Any, dest: Path) -> Fetched:
    """Copy the file's cleaned rows to ``dest``; their metadata carry the original's sha256
    and the ETag of the upload they come from, which must be ``settings.input_etag`` when
    that is set (a validator of another upload, still running after its execution was
    stopped, may have written the object since)."""
    fetched = _get_to_file(
        s3,
        settings.cleaned_bucket,
        cleaned_key(settings),
        dest,
        hint="The validator writes this object; run it (it must exit 0) first.",
    )
    came_from = fetched.metadata.get("input-etag")
    if settings.input_etag and came_from and came_from != settings.input_etag:
        raise OtherUploadError(
            f"s3://{settings.cleaned_bucket}/{cleaned_key(settings)} holds the rows of another "
            f"upload of s3://{settings.input_bucket}/{settings.input_key} (ETag {came_from}, "
            f"not {settings.input_etag}); nothing was changed",
            hint="Start the execution of this upload again: its validator writes its rows.",
        )
    return fetched


def date_snapshot(
    lake: S3Lake, day: dt.date, ticket: Ticket
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Return the KPI items of ``day`` recomputed from the lake (read after the ticket)."""
    cat, daily, sources = date_kpis(lake, day)
    at = _now()
    cats = category_items(cat, source_files=sources, computed_at=at, ticket=ticket.ticket)
    days = daily_items(daily, source_files=sources, computed_at=at, ticket=ticket.ticket)
    return [dict(i) for i in cats], (dict(days[0]) if days else None)


def publish_dates(
    lake: S3Lake, dates: Sequence[dt.date], tables: KpiTables, dynamodb: Any
) -> list[PublishResult]:
    """Recompute and publish each date's KPIs through the per-date fence.

    Dates are independent (each has its own fence), so ``DATE_WORKERS`` of them run side by
    side, their lake reads within ``lake.in_flight``; the results are in ``dates``' order.
    After a failure no further date starts, and the first failure is raised: the source
    stays unpublished in its manifest, and the rerun publishes every date again.
    """

    def publish(day: dt.date) -> PublishResult:
        return run_step(
            "publish",
            lambda: refresh_date(
                day, lambda t: date_snapshot(lake, day, t), tables=tables, client=dynamodb
            ),
            lambda r: {
                "ticket": r.ticket,
                "published": r.published,
                "written": r.written,
                "deleted": r.deleted,
            },
            date=day.isoformat(),
        )

    return map_in_order(publish, dates, workers=lake.tuning.date_workers, name="publish")


def export_months(
    lake: S3Lake, dates: Sequence[dt.date], state_table: str, c: Clients
) -> list[MonthExport]:
    """Rewrite the BI export of every month of ``dates`` (whole months, from the lake)."""
    return [
        run_step(
            "export_month",
            lambda month=month: export_month(  # type: ignore[misc]
                lake, month, state_table=state_table, dynamodb=c.dynamodb, s3=c.s3
            ),
            lambda r: {
                "ticket": r.ticket,
                "category_rows": r.category_rows,
                "daily_rows": r.daily_rows,
                "written": len(r.written),
                "skipped": len(r.skipped),
            },
            month=month,
        )
        for month in months_of(dates)
    ]


def transform_object(settings: Settings, clients: Clients | None = None) -> int:
    """Add the file's cleaned rows to the lake and republish every date it touches."""
    c = Clients.from_env() if clients is None else clients
    start = time.perf_counter()
    source = source_name(settings)
    lake = S3Lake(
        settings.cleaned_bucket, state_table=settings.state_table, s3=c.s3, dynamodb=c.dynamodb,
        tuning=settings.lake,
    )
    tables = KpiTables(
        category=settings.category_table, daily=settings.order_table, state=settings.state_table
    )
    with tempfile.TemporaryDirectory(prefix="order-kpis-") as tmpdir:
        local = Path(tmpdir) / "cleaned.parquet"
        fetched = run_step(
            "read_cleaned",
            lambda: download_cleaned(settings, c.s3, local),
            lambda r: {"bytes": r.size},
        )
        ing = run_step(
            "lake_write",
            lambda: lake.add_source_file(
                source, local, sha256=fetched.metadata.get("sha256") or None
            ),
            lambda r: {
                "seq": r.seq,
                "rows": r.rows,
                "dates": len(r.dates),
                "affected": len(r.affected),
            },
        )
    add_metric("RowsProcessed", ing.rows)
    publish_dates(lake, ing.affected, tables, c.dynamodb)
    # Before mark_published: a rerun after a failed export still has every touched date.
    export_months(lake, ing.affected, settings.state_table, c)
    run_step(
        "mark_published", lambda: lake.mark_published(source, ing.seq), lambda r: {"cleared": r}
    )
    _status(
        settings,
        c,
        "transform",
        {
            "status": "DONE",
            "rows": ing.rows,
            **_listed_dates("dates", [d.isoformat() for d in ing.dates]),
            # For people: the workflow's notification quotes it.
            "dates_text": dates_text(ing.dates, ing.affected),
            **_listed_dates("affected_dates", [d.isoformat() for d in ing.affected]),
            "seq": ing.seq,
            "duration_ms": round((time.perf_counter() - start) * 1000),
            "updated_at": _now(),
        },
    )
    return EXIT_OK
