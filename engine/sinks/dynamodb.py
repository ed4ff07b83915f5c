"""KPI frames -> exact DynamoDB items, and a batch writer that never drops an item.

Key schema of the KPI tables (the CloudFormation template must match):

- category table (``CATEGORY_KPI_TABLE``): partition key ``category`` (S), sort key
  ``order_date`` (S, ``YYYY-MM-DD``); a query by category gives its time series in date order.
- daily table (``ORDER_KPI_TABLE``): partition key ``order_date`` (S).

Numbers are sent as DynamoDB ``N`` strings built from ``decimal.Decimal``; floats never occur
on the way, so ``Decimal('0.1')`` is stored as ``0.1``. DynamoDB keeps the value, not the
scale: ``12.30`` comes back as ``12.3``; readers quantize to 2 (money) or 4 (rates) places.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from engine import kpis
from engine.errors import DynamoWriteError, KpiItemError, TableWriteThrottledError
from engine.sinks.retry import Backoff, error_code, is_retryable

log = logging.getLogger(__name__)

Item = dict[str, Any]
"""A DynamoDB item as Python values (str, int, Decimal, list[str])."""

MAX_BATCH = 25  # BatchWriteItem's hard limit; DynamoDB rejects 26.

CATEGORY_KEY = ("category", "order_date")
DAILY_KEY = ("order_date",)

MONEY = decimal.Decimal("0.01")
RATE = decimal.Decimal("0.0001")
_PLACES = {MONEY: 2, RATE: 4}
# DynamoDB numbers hold up to 38 significant digits; so does Decimal(38, s).
_CTX = decimal.Context(prec=38, traps=[decimal.InvalidOperation, decimal.Overflow])


def _quanta(
    schema: Mapping[str, pl.DataType], key: Sequence[str]
) -> dict[str, decimal.Decimal | None]:
    """Return each non-key column of a KPI table with its decimal step (None: an integer)."""
    steps: dict[pl.DataType, decimal.Decimal] = {kpis.MONEY: MONEY, kpis.RATE: RATE}
    return {name: steps.get(dtype) for name, dtype in schema.items() if name not in key}


CATEGORY_COLUMNS = _quanta(kpis.CATEGORY_SCHEMA, CATEGORY_KEY)
DAILY_COLUMNS = _quanta(kpis.DAILY_SCHEMA, DAILY_KEY)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attribute_values(item: Mapping[str, Any]) -> dict[str, Any]:
    """The low-level ``{"name": {"N": "0.1"}}`` form of an item of Python values."""
    return {k: _serializer.serialize(v) for k, v in item.items()}


def from_attribute_values(item: Mapping[str, Any]) -> Item:
    """Python values (Decimal for numbers) from a low-level item."""
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def exact_number(
    value: object, *, places: decimal.Decimal | None, table: str, row: int, column: str
) -> int | decimal.Decimal:
    """The value as an int, or as a Decimal quantized to ``places`` without rounding."""
    if places is None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise KpiItemError(table, row, column, value, "expected an integer")
    if isinstance(value, bool) or not isinstance(value, int | decimal.Decimal):
        kind = "null" if value is None else type(value).__name__
        raise KpiItemError(table, row, column, value, f"expected a Decimal, got {kind}")
    number = decimal.Decimal(value)
    if not number.is_finite():
        raise KpiItemError(table, row, column, value, "not a finite number")
    try:
        quantized = number.quantize(places, context=_CTX)
    except decimal.InvalidOperation:
        raise KpiItemError(table, row, column, value, "more than 38 digits") from None
    if quantized != number:
        raise KpiItemError(table, row, column, value, f"more decimal places than {_PLACES[places]}")
    return quantized


def _iso_date(value: object, *, table: str, row: int) -> str:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise KpiItemError(table, row, "order_date", value, "expected a date (YYYY-MM-DD)")


# Sources named on a KPI item, at most: every category item and the daily item of a date
# carry the list, and a date fed by thousands of files (one per store a day) made items
# past DynamoDB's 400 KB and snapshots past a transaction's 4 MB, failing the date for good.
# ``source_count`` always gives the whole number; the lake's manifests name every source.
SOURCE_FILES_MAX = 100


def _items(
    df: pl.DataFrame,
    *,
    table: str,
    keys: Sequence[str],
    columns: Mapping[str, decimal.Decimal | None],
    source_files: Sequence[str],
    computed_at: str,
    ticket: int | None,
) -> list[Item]:
    missing = [c for c in (*keys, *columns) if c not in df.columns]
    if missing:
        raise KpiItemError(table, 0, ", ".join(missing), None, "column(s) missing from the frame")
    files = [str(f) for f in source_files]
    listed = files[:SOURCE_FILES_MAX]
    out: list[Item] = []
    for row, record in enumerate(df.select(*keys, *columns).to_dicts()):
        item: Item = {}
        for key in keys:
            if key == "order_date":
                item[key] = _iso_date(record[key], table=table, row=row)
            elif isinstance(record[key], str) and record[key]:
                item[key] = record[key]
            else:
                raise KpiItemError(table, row, key, record[key], "expected a non-empty string")
        for column, places in columns.items():
            item[column] = exact_number(
                record[column], places=places, table=table, row=row, column=column
            )
        item["source_files"] = list(listed)
        item["source_count"] = len(files)
        item["computed_at"] = computed_at
        if ticket is not None:
            item["snapshot_ticket"] = ticket
        out.append(item)
    return out


def category_items(
    df: pl.DataFrame, *, source_files: list[str], computed_at: str, ticket: int | None
) -> list[Item]:
    """DynamoDB items (Python values) for a ``category_kpis`` frame, one per row."""
    return _items(
        df,
        table="category_kpis",
        keys=CATEGORY_KEY,
        columns=CATEGORY_COLUMNS,
        source_files=source_files,
        computed_at=computed_at,
        ticket=ticket,
    )


def daily_items(
    df: pl.DataFrame, *, source_files: list[str], computed_at: str, ticket: int | None
) -> list[Item]:
    """DynamoDB items (Python values) for a ``daily_kpis`` frame, one per row."""
    return _items(
        df,
        table="daily_kpis",
        keys=DAILY_KEY,
        columns=DAILY_COLUMNS,
        source_files=source_files,
        computed_at=computed_at,
        ticket=ticket,
    )


@dataclass(frozen=True)
class WriteResult:
    """What a batch write did."""

    written: int
    attempts: int
    """``BatchWriteItem`` calls made, first tries and retries together."""
    batches: int
    duplicates_dropped: int


def dedupe_last(items: Iterable[Mapping[str, Any]], key: Sequence[str]) -> list[Mapping[str, Any]]:
    """The items with one per key, the last occurrence winning (in its position)."""
    by_key: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for item in items:
        k = tuple(item[name] for name in key)
        by_key.pop(k, None)
        by_key[k] = item
    return list(by_key.values())


def default_client() -> Any:
    """A DynamoDB client from the standard environment (region, keys, AWS_ENDPOINT_URL)."""
    import boto3

    return boto3.client("dynamodb")


def table_key(table: str, client: Any) -> tuple[str, ...]:
    """The key attribute names of a table, partition key first."""
    schema = client.describe_table(TableName=table)["Table"]["KeySchema"]
    ordered = sorted(schema, key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
    return tuple(str(k["AttributeName"]) for k in ordered)


def write_items(
    table: str,
    items: Iterable[Mapping[str, Any]],
    *,
    client: Any = None,
    key: Sequence[str] | None = None,
    max_attempts: int = 8,
    base_delay: float = 0.05,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] | None = None,
    rng: Callable[[], float] | None = None,
) -> WriteResult:
    """Put every item (Python values) into ``table`` with BatchWriteItem; give the counts.

    Items with the same key are reduced to the last one (DynamoDB refuses a batch holding a
    key twice). Each batch of at most 25 is sent until DynamoDB has processed all of it: the
    ``UnprocessedItems`` are re-sent, and throttling errors retried, after a capped full-jitter
    wait ``rng() * min(max_delay, base_delay * 2**attempt)``. A batch still unfinished after
    ``max_attempts`` calls raises ``TableWriteThrottledError`` (transient) with the number of
    items not written. ``key`` defaults to the table's key schema (one DescribeTable call).
    """
    client = default_client() if client is None else client
    backoff = Backoff(
        max_attempts=max_attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        sleep=time.sleep if sleep is None else sleep,
        rng=random.random if rng is None else rng,
    )
    materialized = list(items)
    unique = dedupe_last(materialized, key or table_key(table, client))
    dropped = len(materialized) - len(unique)
    if dropped:
        log.info("%s: %d duplicate key(s) dropped, keeping the last of each", table, dropped)
    requests = [{"PutRequest": {"Item": to_attribute_values(item)}} for item in unique]
    written = attempts = batches = 0
    for start in range(0, len(requests), MAX_BATCH):
        pending: list[dict[str, Any]] = requests[start : start + MAX_BATCH]
        batches += 1
        last_error: str | None = None
        for attempt in range(backoff.max_attempts):
            if attempt:
                backoff.wait(attempt - 1)
            attempts += 1
            try:
                response = client.batch_write_item(RequestItems={table: pending})
            except ClientError as exc:
                if not is_retryable(exc):
                    raise DynamoWriteError(table, error_code(exc), str(exc)) from exc
                last_error = error_code(exc)
                log.warning("%s: %s on a batch of %d, retrying", table, last_error, len(pending))
                continue
            left = response.get("UnprocessedItems", {}).get(table, [])
            written += len(pending) - len(left)
            pending = left
            if not pending:
                break
            last_error = "UnprocessedItems"
            log.info("%s: %d item(s) unprocessed, retrying", table, len(pending))
        else:
            unwritten = len(pending) + max(0, len(requests) - start - MAX_BATCH)
            raise TableWriteThrottledError(
                table,
                unwritten=unwritten,
                written=written,
                attempts=attempts,
                last_error=last_error,
            )
    log.debug("%s: %d item(s) written in %d call(s)", table, written, attempts)
    return WriteResult(
        written=written, attempts=attempts, batches=batches, duplicates_dropped=dropped
    )
