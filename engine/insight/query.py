"""KPI tables read back by category or by day, from a local output folder or from DynamoDB.

Access patterns (never a Scan):

* ``CategoryKPIs`` has partition key ``category`` and sort key ``order_date``, so a category over
  a date range is ONE key-condition ``Query`` (``category = :c AND order_date BETWEEN :a AND :b``),
  read page by page.
* ``OrderKPIs`` has the partition key ``order_date`` alone. DynamoDB can only ``Query`` one
  partition key value at a time, and a range over partition keys is what a ``Scan`` would do (it
  reads the whole table and filters afterwards, paying for every item). The dates of a range are
  known in advance, so the exact keys are fetched with ``BatchGetItem`` (100 keys per call), which
  costs one read per day asked for, whatever the size of the table.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

import polars as pl

from engine.columns import CATEGORY_PARQUET, DAILY_PARQUET
from engine.config import parse_ymd
from engine.errors import TerminalError, TransientError, UsageError
from engine.kpis import CATEGORY_SCHEMA, DAILY_SCHEMA, empty_category_table, scan_table

logger = logging.getLogger(__name__)


# BatchGetItem accepts at most 100 keys per request.
_BATCH_GET_LIMIT: Final = 100
# A range longer than this is almost certainly a typo (a wrong year) and would cost reads.
MAX_RANGE_DAYS: Final = 3660
_MAX_UNPROCESSED_ROUNDS: Final = 8


@dataclass(frozen=True)
class DynamoTables:
    """Names of the two KPI tables in DynamoDB."""

    category_table: str = "CategoryKPIs"
    """Table with partition key ``category`` (S) and sort key ``order_date`` (S)."""
    order_table: str = "OrderKPIs"
    """Table with partition key ``order_date`` (S)."""


Source = str | Path | DynamoTables
"""A local output folder (``process --out DIR``) or the DynamoDB tables."""


def parse_date(text: str, *, name: str = "date") -> date:
    """Return the date written as YYYY-MM-DD, or raise UsageError naming the bad value."""
    try:
        return parse_ymd(text)
    except ValueError:
        raise UsageError(
            f"{name} {text!r} is not a date", hint="write dates as YYYY-MM-DD, e.g. 2025-07-07"
        ) from None


def check_range(date_from: date, date_to: date, *, bounded: bool = True) -> None:
    """Raise UsageError when the range is reversed, or (``bounded``: read from DynamoDB, where
    every day costs reads) unreasonably long."""
    if date_from > date_to:
        raise UsageError(
            f"--from {date_from.isoformat()} is after --to {date_to.isoformat()}",
            hint="swap the two dates",
        )
    days = (date_to - date_from).days + 1
    if bounded and days > MAX_RANGE_DAYS:
        raise UsageError(
            f"the range {date_from.isoformat()}..{date_to.isoformat()} spans {days} days, "
            f"more than {MAX_RANGE_DAYS}",
            hint="query a shorter range",
        )


def dates_between(date_from: date, date_to: date) -> list[date]:
    """Return every date from ``date_from`` to ``date_to``, both included."""
    return [date_from + timedelta(days=i) for i in range((date_to - date_from).days + 1)]


def query_category(
    source: Source,
    category: str,
    date_from: date,
    date_to: date,
    *,
    client: Any = None,
    page_size: int | None = None,
) -> pl.DataFrame:
    """Return ``category_kpis`` rows of one category between two dates (both included).

    ``client`` is a boto3 DynamoDB client, used only for a DynamoDB source; ``None`` builds one
    from the environment. ``page_size`` caps the items per ``Query`` page (tests use it to force
    several pages).
    """
    check_range(date_from, date_to, bounded=isinstance(source, DynamoTables))
    if isinstance(source, DynamoTables):
        rows = list(_dynamo_category_rows(source, category, date_from, date_to, client, page_size))
        return _frame_from_items(rows, CATEGORY_SCHEMA, ["category", "order_date"])
    path = _local_file(source, CATEGORY_PARQUET)
    return (
        scan_table(path, CATEGORY_SCHEMA)
        .filter(
            (pl.col("category") == category)
            & pl.col("order_date").is_between(date_from, date_to, closed="both")
        )
        .select(pl.col(name).cast(dtype) for name, dtype in CATEGORY_SCHEMA.items())
        .sort("category", "order_date")
        .collect()
    )


def query_daily(
    source: Source,
    date_from: date,
    date_to: date,
    *,
    client: Any = None,
) -> pl.DataFrame:
    """Return ``daily_kpis`` rows between two dates (both included); days without orders are
    absent, not zero."""
    check_range(date_from, date_to, bounded=isinstance(source, DynamoTables))
    if isinstance(source, DynamoTables):
        rows = _dynamo_daily_rows(source, date_from, date_to, client)
        return _frame_from_items(rows, DAILY_SCHEMA, ["order_date"])
    path = _local_file(source, DAILY_PARQUET)
    return (
        scan_table(path, DAILY_SCHEMA)
        .filter(pl.col("order_date").is_between(date_from, date_to, closed="both"))
        .select(pl.col(name).cast(dtype) for name, dtype in DAILY_SCHEMA.items())
        .sort("order_date")
        .collect()
    )


def query_all_categories(
    source: Source,
    date_from: date,
    date_to: date,
    *,
    categories: Sequence[str] | None = None,
    client: Any = None,
) -> pl.DataFrame:
    """Return ``category_kpis`` rows of every category (or of ``categories``) between two dates.

    Locally the categories come from the file. In DynamoDB the partition key is the category, and
    listing partition keys would need a Scan, so the names must be given: one Query each.
    """
    check_range(date_from, date_to, bounded=isinstance(source, DynamoTables))
    if not isinstance(source, DynamoTables):
        path = _local_file(source, CATEGORY_PARQUET)
        frame = scan_table(path, CATEGORY_SCHEMA).filter(
            pl.col("order_date").is_between(date_from, date_to, closed="both")
        )
        if categories is not None:
            frame = frame.filter(pl.col("category").is_in(list(categories)))
        return (
            frame.select(pl.col(name).cast(dtype) for name, dtype in CATEGORY_SCHEMA.items())
            .sort("category", "order_date")
            .collect()
        )
    if categories is None:
        raise UsageError(
            "reading every category from DynamoDB needs the category names",
            hint="pass --categories a,b,c (a Scan of the table is deliberately not offered)",
        )
    client = _client(client)
    frames = [
        query_category(source, name, date_from, date_to, client=client) for name in categories
    ]
    return (
        pl.concat(frames).sort("category", "order_date") if frames else empty_category_table()
    )


def local_categories(folder: str | Path) -> list[str]:
    """Return the categories a ``process`` output folder's category table holds."""
    path = _local_file(folder, CATEGORY_PARQUET)
    return scan_table(path, CATEGORY_SCHEMA).select(pl.col("category").unique()).collect()[
        "category"].to_list()


def _local_file(folder: str | Path, name: str) -> Path:
    base = Path(folder)
    if not base.is_dir():
        raise UsageError(
            f"output folder {str(base)!r} does not exist",
            hint="pass the folder given to `order-kpis process --out DIR`",
        )
    path = base / name
    if not path.is_file():
        raise UsageError(
            f"{str(path)!r} is missing",
            hint="run `order-kpis process ... --out DIR` first; it writes the KPI Parquet files",
        )
    return path


def _client(client: Any) -> Any:
    if client is not None:
        return client
    import boto3  # imported late: local queries must not need AWS configuration

    return boto3.client("dynamodb")


def _dynamo_category_rows(
    tables: DynamoTables,
    category: str,
    date_from: date,
    date_to: date,
    client: Any,
    page_size: int | None,
) -> Iterator[dict[str, Any]]:
    ddb = _client(client)
    request: dict[str, Any] = {
        "TableName": tables.category_table,
        "KeyConditionExpression": "#c = :c AND #d BETWEEN :a AND :b",
        "ExpressionAttributeNames": {"#c": "category", "#d": "order_date"},
        "ExpressionAttributeValues": {
            ":c": {"S": category},
            ":a": {"S": date_from.isoformat()},
            ":b": {"S": date_to.isoformat()},
        },
        "ConsistentRead": False,
    }
    if page_size is not None:
        request["Limit"] = page_size
    pages = 0
    while True:
        response = ddb.query(**request)
        pages += 1
        items = response.get("Items", [])
        logger.info(
            "query %s category=%s page %d: %d items",
            tables.category_table,
            category,
            pages,
            len(items),
        )
        for item in items:
            yield _plain(item)
        last = response.get("LastEvaluatedKey")
        if not last:
            return
        request["ExclusiveStartKey"] = last


def _dynamo_daily_rows(
    tables: DynamoTables, date_from: date, date_to: date, client: Any
) -> list[dict[str, Any]]:
    days = [d.isoformat() for d in dates_between(date_from, date_to)]
    keys = [{"order_date": {"S": day}} for day in days]
    return [_plain(item) for item in batch_get(_client(client), tables.order_table, keys)]


def batch_get(
    ddb: Any,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    projection: str | None = None,
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Return the wire items found for ``keys`` (100 per BatchGetItem call), retrying
    ``UnprocessedKeys`` with capped exponential backoff and full jitter."""
    items: list[dict[str, Any]] = []
    batches = (len(keys) + _BATCH_GET_LIMIT - 1) // _BATCH_GET_LIMIT
    for number, start in enumerate(range(0, len(keys), _BATCH_GET_LIMIT), start=1):
        chunk = list(keys[start : start + _BATCH_GET_LIMIT])
        request: dict[str, Any] = {"Keys": chunk}
        if projection is not None:
            request["ProjectionExpression"] = projection
        if names:
            request["ExpressionAttributeNames"] = dict(names)
        pending: dict[str, Any] = {table: request}
        rounds = 0
        while pending:
            response = ddb.batch_get_item(RequestItems=pending)
            items.extend(response.get("Responses", {}).get(table, []))
            pending = {k: v for k, v in response.get("UnprocessedKeys", {}).items() if v}
            if pending:
                rounds += 1
                if rounds > _MAX_UNPROCESSED_ROUNDS:
                    raise TransientError(
                        f"BatchGetItem on {table} left keys unprocessed "
                        f"after {_MAX_UNPROCESSED_ROUNDS} retries",
                        hint="the table is throttled; run the query again later",
                    )
                # Capped exponential backoff with full jitter, as for the batch writer.
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2**rounds)))
        logger.info(
            "batch_get %s batch %d/%d: %d keys asked, %d found so far",
            table,
            number,
            batches,
            len(chunk),
            len(items),
        )
    return items


def categories_from_state(
    state_table: str, date_from: date, date_to: date, *, client: Any = None
) -> list[str]:
    """Return the categories that the per-date fences of the state table list for the range.

    The transformer records ``categories`` on ``pk=date#<YYYY-MM-DD>, sk=fence`` (docs/CONTRACT.md),
    so the category names of a range come from exact keys instead of a Scan of CategoryKPIs.
    """
    check_range(date_from, date_to)
    keys = [
        {"pk": {"S": f"date#{d.isoformat()}"}, "sk": {"S": "fence"}}
        for d in dates_between(date_from, date_to)
    ]
    found: set[str] = set()
    for item in batch_get(
        _client(client), state_table, keys, projection="#c", names={"#c": "categories"}
    ):
        wire = item.get("categories", {})
        if "SS" in wire:
            found.update(wire["SS"])
        elif "L" in wire:
            found.update(v["S"] for v in wire["L"] if "S" in v)
        elif "S" in wire:
            found.update(c.strip() for c in wire["S"].split(",") if c.strip())
    return sorted(found)


def _plain(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Return a DynamoDB wire item as plain values: S -> str, N -> Decimal (never float)."""
    out: dict[str, Any] = {}
    for name, wire in item.items():
        if "S" in wire:
            out[name] = wire["S"]
        elif "N" in wire:
            out[name] = Decimal(wire["N"])
    return out


def _frame_from_items(
    rows: Sequence[Mapping[str, Any]], schema: Mapping[str, pl.DataType], sort: list[str]
) -> pl.DataFrame:
    columns: dict[str, list[Any]] = {name: [] for name in schema}
    for row in rows:
        for name, dtype in schema.items():
            columns[name].append(_convert(row, name, dtype))
    return pl.DataFrame(columns, schema=dict(schema)).sort(sort)


def _convert(row: Mapping[str, Any], name: str, dtype: pl.DataType) -> Any:
    value = row.get(name)
    if value is None:
        return None
    try:
        if dtype == pl.Date():
            return date.fromisoformat(str(value))
        if dtype == pl.Int64():
            number = Decimal(value)
            if number != number.to_integral_value():
                raise InvalidOperation(str(value))
            return int(number)
        if isinstance(dtype, pl.Decimal):
            exact = Decimal(value)
            stored = exact.quantize(Decimal(1).scaleb(-dtype.scale), rounding=ROUND_HALF_EVEN)
            if stored != exact:
                # More places than the contract allows means a writer bug; never round it away.
                raise InvalidOperation(str(value))
            return stored
    except (ValueError, InvalidOperation):
        raise TerminalError(
            f"stored attribute {name}={value!r} does not fit {dtype}",
            hint="the table was not written by this project's DynamoDB sink",
        ) from None
    return str(value)
