"""KPI tables exported for BI tools (Athena, QuickSight, Power BI) as Hive-style month partitions.

Layout under ``dest``::

    kpis/category_kpis/month=YYYY-MM/part-0.parquet     <- Athena table location (Parquet only)
    kpis/daily_kpis/month=YYYY-MM/part-0.parquet
    kpis_csv/category_kpis/month=YYYY-MM/part-0.csv     <- the same rows as injection-safe CSV
    kpis_csv/daily_kpis/month=YYYY-MM/part-0.csv

The CSV files live in their own tree because Athena reads every file under a table's LOCATION:
a CSV next to the Parquet files would make every query of the Parquet table fail. The ``month``
column is only in the path (a Hive partition), not inside the files.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import polars as pl

from engine.atomic import replace_together
from engine.csvsafe import safe_csv
from engine.errors import UsageError
from engine.kpis import CATEGORY_SCHEMA, DAILY_SCHEMA

logger = logging.getLogger(__name__)

PARQUET_ROOT: Final = "kpis"
CSV_ROOT: Final = "kpis_csv"


@dataclass(frozen=True)
class ExportedFile:
    """One file written by :func:`export_bi`."""

    table: str
    """``category_kpis`` or ``daily_kpis``."""
    month: str
    """The partition value, YYYY-MM."""
    location: str
    """Local path or ``s3://bucket/key`` of the file."""
    rows: int
    """Number of KPI rows in the file."""


def export_bi(
    category_df: pl.DataFrame,
    daily_df: pl.DataFrame,
    dest: str | Path,
    *,
    s3_client: Any = None,
    months: Iterable[str] = (),
) -> list[ExportedFile]:
    """Write both KPI tables as month partitions (Parquet + CSV) and return what was written.

    ``dest`` is a local folder or ``s3://bucket/prefix``; for S3, ``s3_client`` is a boto3 S3
    client (``None`` builds one). Local files are all written to temporary names in their
    folders first, then renamed: a reader never sees half a file, and an export that fails
    while writing (a full disk) changes nothing. An existing partition file is replaced;
    months absent from the frames are left alone, except those named in ``months`` (YYYY-MM),
    which are written even when empty (a header-only CSV and a zero-row Parquet file), so a
    month whose last rows vanished stops showing them.
    """
    dest_text = str(dest)
    to_s3 = dest_text.startswith("s3://")
    if to_s3 and s3_client is None:
        import boto3  # late: local exports must not need AWS configuration

        s3_client = boto3.client("s3")
    files = partition_files(category_df, daily_df, months=months)
    written: list[ExportedFile] = []
    if to_s3:
        locations = [_put_s3(s3_client, dest_text, f.relative, f.payload) for f in files]
    else:
        locations = _write_all(Path(dest_text), [(f.relative, f.payload) for f in files])
    for f, location in zip(files, locations, strict=True):
        written.append(ExportedFile(f.table, f.month, location, f.rows))
        if f.relative.endswith(".csv"):
            logger.info("exported %s month=%s: %d rows", f.table, f.month, f.rows)
    return written


@dataclass(frozen=True)
class PartitionFile:
    """One file of the export, not yet written."""

    table: str
    month: str
    relative: str
    """Path under the destination, e.g. ``kpis/daily_kpis/month=2025-07/part-0.parquet``."""
    payload: bytes
    rows: int


def partition_files(
    category_df: pl.DataFrame, daily_df: pl.DataFrame, *, months: Iterable[str] = ()
) -> list[PartitionFile]:
    """Return the export's files (Parquet and CSV per table and month), as :func:`export_bi`."""
    tables = (
        ("category_kpis", _conform(category_df, CATEGORY_SCHEMA), ["category", "order_date"]),
        ("daily_kpis", _conform(daily_df, DAILY_SCHEMA), ["order_date"]),
    )
    out: list[PartitionFile] = []
    for table, frame, order in tables:
        by_month = frame.with_columns(month=pl.col("order_date").dt.strftime("%Y-%m"))
        present = set(by_month.get_column("month").unique().to_list())
        for month in sorted(present | set(months)):
            part = by_month.filter(pl.col("month") == month).drop("month").sort(order)
            base = f"{table}/month={month}/part-0"
            parquet, csv = _parquet_bytes(part), safe_csv(part).encode("utf-8")
            out.append(
                PartitionFile(table, month, f"{PARQUET_ROOT}/{base}.parquet", parquet, part.height)
            )
            out.append(PartitionFile(table, month, f"{CSV_ROOT}/{base}.csv", csv, part.height))
    return out


def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise UsageError(f"KPI frame lacks columns {missing}", hint="see docs/CONTRACT.md")
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def _write_all(dest: Path, payloads: list[tuple[str, bytes]]) -> list[str]:
    """Write every file under ``dest``, all of them or none (``atomic.replace_together``): a
    failed write (a full disk) or rename leaves the earlier export whole, never one table new
    and the other old, and removes the folders it made. Returns the paths."""
    paths = [dest / relative for relative, _ in payloads]
    for path in paths:
        if path.is_dir():
            raise UsageError(f"{path} is a folder: the export cannot replace it",
                             hint="remove it, then export again")
    made = {p for path in paths for p in (path.parent, *path.parent.parents)
            if not p.exists()}  # folders this export makes
    try:
        replace_together([(path, functools.partial(Path.write_bytes, data=payload))
                          for path, (_, payload) in zip(paths, payloads, strict=True)])
    except BaseException:
        for folder in sorted(made, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return [str(path) for path in paths]


def _put_s3(client: Any, dest: str, relative: str, payload: bytes) -> str:
    bucket, _, prefix = dest.removeprefix("s3://").partition("/")
    if not bucket:
        raise UsageError(f"{dest!r} names no bucket", hint="write s3://bucket/prefix")
    key = f"{prefix.strip('/')}/{relative}" if prefix.strip("/") else relative
    content_type = "text/csv" if relative.endswith(".csv") else "application/vnd.apache.parquet"
    # A single PutObject is atomic: readers see the old object or the new one, never a mix.
    client.put_object(Bucket=bucket, Key=key, Body=payload, ContentType=content_type)
    return f"s3://{bucket}/{key}"


_COLUMNS_SQL: Final = {
    "category_kpis": (
        ("category", "string"),
        ("order_date", "date"),
        ("daily_revenue", "decimal(38,2)"),
        ("avg_order_value", "decimal(38,2)"),
        ("avg_return_rate", "decimal(38,4)"),
        ("orders", "bigint"),
        ("returned_orders", "bigint"),
    ),
    "daily_kpis": (
        ("order_date", "date"),
        ("total_orders", "bigint"),
        ("total_revenue", "decimal(38,2)"),
        ("total_items_sold", "bigint"),
        ("return_rate", "decimal(38,4)"),
        ("unique_customers", "bigint"),
    ),
}


_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_RELATIVE_MONTH = re.compile(r"NOW([+-]\d+(YEARS|MONTHS))?")


def athena_ddl(
    location: str, *, database: str = "order_kpis", first_month: str = "2000-01",
    last_month: str = "NOW+1YEARS",
) -> str:
    """Return the Athena DDL for both exported tables under ``location`` (``s3://bucket/prefix``).

    Partition projection on ``month`` means new months are visible without ``MSCK REPAIR TABLE``;
    Athena sees only the months from ``first_month`` to ``last_month`` (YYYY-MM, or ``NOW`` with
    an optional ``+N``/``-N`` ``YEARS``/``MONTHS``), whatever the export holds: the default
    runs from 2000-01 to a year after the query's day (orders dated ahead). Give older data's
    first month, and keep the range near the data (a query without a month filter looks at
    every month of it).
    """
    for name, value in (("first_month", first_month), ("last_month", last_month)):
        if not (_MONTH.fullmatch(value) or _RELATIVE_MONTH.fullmatch(value)):
            raise UsageError(f"{name} {value!r} is neither YYYY-MM nor NOW[+-N YEARS|MONTHS]",
                             hint="e.g. first_month='1998-01', last_month='NOW+2YEARS'")
    base = location.rstrip("/")
    statements = [f"CREATE DATABASE IF NOT EXISTS {database};"]
    for table, columns in _COLUMNS_SQL.items():
        cols = ",\n".join(f"  `{name}` {sql}" for name, sql in columns)
        table_location = f"{base}/{PARQUET_ROOT}/{table}/"
        statements.append(
            f"CREATE EXTERNAL TABLE IF NOT EXISTS {database}.{table} (\n{cols}\n)\n"
            "PARTITIONED BY (`month` string)\n"
            "STORED AS PARQUET\n"
            f"LOCATION '{table_location}'\n"
            "TBLPROPERTIES (\n"
            "  'projection.enabled' = 'true',\n"
            "  'projection.month.type' = 'date',\n"
            "  'projection.month.format' = 'yyyy-MM',\n"
            f"  'projection.month.range' = '{first_month},{last_month}',\n"
            "  'projection.month.interval' = '1',\n"
            "  'projection.month.interval.unit' = 'MONTHS',\n"
            f"  'storage.location.template' = '{table_location}month=${{month}}/'\n"
            ");"
        )
    return "\n\n".join(statements) + "\n"
