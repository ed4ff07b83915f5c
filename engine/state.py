"""The state table: event claims, file statuses, and the per-date fence for KPI snapshots.

Per-date fence (docs/dynamodb.md has the argument in full). A task that has written its rows
to the lake, for each date D it touched:

1. ``take_ticket(D)``: ``ADD ticket :one`` on ``pk=date#D, sk=fence``; the answer also gives
   ``categories``, the categories stored by the last snapshot published for D;
2. reads the lake and recomputes D's KPIs (the caller's work, after the ticket);
3. ``publish_date_snapshot``: one ``TransactWriteItems`` that puts every KPI item of D,
   deletes the categories that vanished, and updates the fence record, all under the
   condition ``ticket = :t`` on the fence. If a newer ticket has been taken meanwhile the
   transaction is cancelled and the snapshot is *superseded*: not an error, the newer ticket's
   task publishes a snapshot that includes ours.

Why not a conditional put per item on ``snapshot_ticket < :t``: a delete leaves no trace of
its ticket, so an older snapshot arriving after the delete would re-create a vanished
category (``attribute_not_exists`` holds). Conditioning on the fence instead orders every
write of a date by the one counter.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from engine.errors import DynamoWriteError, TableWriteThrottledError, TerminalError
from engine.sinks.dynamodb import (
    CATEGORY_KEY,
    DAILY_KEY,
    Item,
    default_client,
    from_attribute_values,
    to_attribute_values,
)
from engine.sinks.retry import Backoff, error_code, is_retryable

log = logging.getLogger(__name__)

FENCE_SK = "fence"
MAX_TRANSACTION_ITEMS = 100  # TransactWriteItems' limit (one slot goes to the fence record)
# Cancellation reasons after which the same transaction, sent again, may go through.
_RETRYABLE_REASONS = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    }
)


def date_pk(date: dt.date | str) -> str:
    """``date#YYYY-MM-DD``, the fence record's partition key."""
    day = date.isoformat() if isinstance(date, dt.date) else dt.date.fromisoformat(date).isoformat()
    return f"date#{day}"


def file_pk(bucket: str, raw_key: str) -> str:
    """``file#<bucket>/<raw key>``; ``raw_key`` exactly as the event delivered it."""
    return f"file#{bucket}/{raw_key}"


def claim_key(bucket: str, raw_key: str, etag: str, sequencer: str = "") -> tuple[str, str]:
    """(pk, sk) of the event claim record for one upload: its etag and S3 ``sequencer``
    (unique per upload of a key; empty for a backfill child), as the workflow writes it."""
    return f"claim#{bucket}/{raw_key}", f"etag#{etag}/seq#{sequencer}"


@dataclass(frozen=True)
class KpiTables:
    """The three table names a snapshot touches (from Settings)."""

    category: str
    """CATEGORY_KPI_TABLE: key (category, order_date)."""
    daily: str
    """ORDER_KPI_TABLE: key order_date."""
    state: str
    """STATE_TABLE: key (pk, sk)."""


@dataclass(frozen=True)
class Ticket:
    """A place in the order of snapshots of one date, taken before reading the lake."""

    date: str
    ticket: int
    stored_categories: frozenset[str]
    """Categories the last published snapshot of the date left in the category table."""


@dataclass(frozen=True)
class PublishResult:
    """What publishing one date's snapshot did."""

    date: str
    ticket: int
    published: bool
    """False when a newer ticket was taken first: this snapshot is superseded, not written."""
    written: int
    deleted: int
    skipped: int
    """KPI writes and deletes not made because the snapshot was superseded."""
    attempts: int
    superseded_by: int | None = None


def _backoff(
    max_attempts: int,
    base_delay: float,
    max_delay: float,
    sleep: Callable[[float], None] | None,
    rng: Callable[[], float] | None,
) -> Backoff:
    return Backoff(
        max_attempts=max_attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        sleep=time.sleep if sleep is None else sleep,
        rng=random.random if rng is None else rng,
    )


def _call(
    table: str,
    backoff: Backoff,
    call: Callable[[], Any],
    *,
    passthrough: frozenset[str] = frozenset(),
) -> Any:
    """The result of ``call()``, retrying throttling with backoff.

    Errors whose code is in ``passthrough`` propagate as they are (the caller handles them);
    other non-retryable ones become ``DynamoWriteError`` (terminal).
    """
    for attempt in range(backoff.max_attempts):
        if attempt:
            backoff.wait(attempt - 1)
        try:
            return call()
        except ClientError as exc:
            code = error_code(exc)
            if code in passthrough:
                raise
            if not is_retryable(exc):
                raise DynamoWriteError(table, code, str(exc)) from exc
            if attempt == backoff.max_attempts - 1:
                raise TableWriteThrottledError(
                    table, unwritten=1, written=0, attempts=attempt + 1, last_error=code
                ) from exc
            log.warning("%s: %s, retrying", table, code)
    raise AssertionError("unreachable")  # pragma: no cover


def take_ticket(
    date: dt.date | str,
    *,
    table: str,
    client: Any = None,
    max_attempts: int = 8,
    base_delay: float = 0.05,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] | None = None,
    rng: Callable[[], float] | None = None,
) -> Ticket:
    """A new ticket for ``date`` (ADD 1 on the fence record) and the categories stored now.

    Take it *after* the lake write has completed and *before* reading the lake.
    """
    client = default_client() if client is None else client
    pk = date_pk(date)
    backoff = _backoff(max_attempts, base_delay, max_delay, sleep, rng)
    response = _call(
        table,
        backoff,
        lambda: client.update_item(
            TableName=table,
            Key={"pk": {"S": pk}, "sk": {"S": FENCE_SK}},
            UpdateExpression="ADD ticket :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        ),
    )
    attrs = from_attribute_values(response["Attributes"])
    ticket = Ticket(
        date=pk.removeprefix("date#"),
        ticket=int(attrs["ticket"]),
        stored_categories=frozenset(str(c) for c in attrs.get("categories", [])),
    )
    log.debug("ticket %d for %s", ticket.ticket, ticket.date)
    return ticket


def _key(item: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {name: {"S": str(item[name])} for name in names}


def _fence_update(tables: KpiTables, ticket: Ticket, categories: Iterable[str]) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": tables.state,
            "Key": {"pk": {"S": date_pk(ticket.date)}, "sk": {"S": FENCE_SK}},
            "UpdateExpression": "SET categories = :c, published_ticket = :t",
            "ConditionExpression": "ticket = :t",
            "ExpressionAttributeValues": {
                ":c": {"L": [{"S": c} for c in sorted(categories)]},
                ":t": {"N": str(ticket.ticket)},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _fence_check(tables: KpiTables, ticket: Ticket) -> dict[str, Any]:
    return {
        "ConditionCheck": {
            "TableName": tables.state,
            "Key": {"pk": {"S": date_pk(ticket.date)}, "sk": {"S": FENCE_SK}},
            "ConditionExpression": "ticket = :t",
            "ExpressionAttributeValues": {":t": {"N": str(ticket.ticket)}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _tables_of(items: list[dict[str, Any]], reasons: list[dict[str, Any]]) -> str:
    """Name the table(s) a failed transaction is about: those of the items whose
    cancellation reason is a refusal, or else every table it wrote (a table missing, access
    denied: DynamoDB does not say which)."""
    named = [next(iter(item.values()))["TableName"] for item in items]
    refused = [t for t, r in zip(named, reasons, strict=False)
               if str(r.get("Code")) not in ("None", "ConditionalCheckFailed",
                                             *_RETRYABLE_REASONS)]
    tables = list(dict.fromkeys(refused or named))
    return tables[0] if len(tables) == 1 else "one of the tables " + ", ".join(tables)


def _reasons(exc: Any) -> list[dict[str, Any]]:
    reasons = exc.response.get("CancellationReasons")
    if reasons:
        return list(reasons)
    # Some emulators only put the reasons in the message: "... [ConditionalCheckFailed, None]".
    message = str(exc.response.get("Error", {}).get("Message", ""))
    if "[" in message:
        codes = message[message.rindex("[") + 1 : message.rindex("]")].split(",")
        return [{"Code": code.strip()} for code in codes]
    return []


def publish_date_snapshot(
    ticket: Ticket,
    category_items: Sequence[Mapping[str, Any]],
    daily_item: Mapping[str, Any] | None,
    *,
    tables: KpiTables,
    client: Any = None,
    max_transaction_items: int = MAX_TRANSACTION_ITEMS,
    max_attempts: int = 8,
    base_delay: float = 0.05,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] | None = None,
    rng: Callable[[], float] | None = None,
) -> PublishResult:
    """Store one date's KPI snapshot unless a newer ticket for the date exists; give counts.

    ``category_items`` / ``daily_item`` come from ``engine.sinks.dynamodb`` for this date only
    (``daily_item`` None when the date has no valid rows left). Categories stored by the last
    snapshot but absent from this one are deleted. The snapshot goes in one transaction when
    it fits (``max_transaction_items`` actions including the fence); larger ones go in
    several, each conditioned on the fence, so a superseded snapshot may land in part, and
    the newer one then overwrites all of it.
    """
    client = default_client() if client is None else client
    backoff = _backoff(max_attempts, base_delay, max_delay, sleep, rng)
    if max_transaction_items < 2:
        raise ValueError("max_transaction_items must leave room for the fence and one item")

    new_categories: list[str] = []
    actions: list[dict[str, Any]] = []
    for row, item in enumerate(category_items):
        if item.get("order_date") != ticket.date:
            raise TerminalError(
                f"category item {row} is for {item.get('order_date')!r}, not {ticket.date}"
            )
        if item["category"] in new_categories:
            raise TerminalError(
                f"category {item['category']!r} twice in the snapshot of {ticket.date}"
            )
        new_categories.append(str(item["category"]))
        full: Item = {**item, "snapshot_ticket": ticket.ticket}
        actions.append({"Put": {"TableName": tables.category, "Item": to_attribute_values(full)}})
    written = len(actions)
    if daily_item is not None:
        if daily_item.get("order_date") != ticket.date:
            raise TerminalError(
                f"daily item is for {daily_item.get('order_date')!r}, not {ticket.date}"
            )
        full = {**daily_item, "snapshot_ticket": ticket.ticket}
        actions.append({"Put": {"TableName": tables.daily, "Item": to_attribute_values(full)}})
        written += 1
    else:
        actions.append(
            {
                "Delete": {
                    "TableName": tables.daily,
                    "Key": _key({"order_date": ticket.date}, DAILY_KEY),
                }
            }
        )
    vanished = sorted(ticket.stored_categories - set(new_categories))
    for category in vanished:
        key = _key({"category": category, "order_date": ticket.date}, CATEGORY_KEY)
        actions.append({"Delete": {"TableName": tables.category, "Key": key}})
    deleted = len(vanished) + (daily_item is None)

    size = max_transaction_items - 1
    chunks = [actions[i : i + size] for i in range(0, len(actions), size)]
    attempts = 0
    done = 0
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        if last:
            fence = _fence_update(tables, ticket, new_categories)
        elif index == 0:
            # Until the last part lands, the fence must list every category this snapshot
            # may have written, so that a newer snapshot knows to delete them.
            fence = _fence_update(tables, ticket, ticket.stored_categories | set(new_categories))
        else:
            fence = _fence_check(tables, ticket)
        for attempt in range(backoff.max_attempts):
            if attempt:
                backoff.wait(attempt - 1)
            attempts += 1
            items = [fence, *chunk]
            try:
                client.transact_write_items(TransactItems=items)
                break
            except ClientError as exc:
                code = error_code(exc)
                if code == "TransactionCanceledException":
                    reasons = _reasons(exc)
                    if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                        newer = reasons[0].get("Item", {}).get("ticket", {}).get("N")
                        log.info(
                            "snapshot %d of %s superseded by ticket %s",
                            ticket.ticket, ticket.date, newer,
                        )  # fmt: skip
                        return PublishResult(
                            date=ticket.date,
                            ticket=ticket.ticket,
                            published=False,
                            written=min(done, written),
                            deleted=max(0, done - written),
                            skipped=len(actions) - done,
                            attempts=attempts,
                            superseded_by=int(newer) if newer else None,
                        )
                    codes = {str(r.get("Code")) for r in reasons} - {"None"}
                    if not codes or not codes <= _RETRYABLE_REASONS:
                        raise DynamoWriteError(_tables_of(items, reasons), code, str(exc)) from exc
                elif not is_retryable(exc):
                    raise DynamoWriteError(_tables_of(items, []), code, str(exc)) from exc
                log.warning("snapshot %d of %s: %s, retrying", ticket.ticket, ticket.date, code)
        else:
            raise TableWriteThrottledError(
                tables.category,
                unwritten=len(actions) - done,
                written=done,
                attempts=attempts,
                last_error="TransactionCanceled",
            )
        done += len(chunk)
    log.info(
        "snapshot %d of %s published: %d written, %d deleted",
        ticket.ticket, ticket.date, written, deleted,
    )  # fmt: skip
    return PublishResult(
        date=ticket.date,
        ticket=ticket.ticket,
        published=True,
        written=written,
        deleted=deleted,
        skipped=0,
        attempts=attempts,
    )


def refresh_date(
    date: dt.date | str,
    compute: Callable[[Ticket], tuple[Sequence[Mapping[str, Any]], Mapping[str, Any] | None]],
    *,
    tables: KpiTables,
    client: Any = None,
    max_transaction_items: int = MAX_TRANSACTION_ITEMS,
    **retry: Any,
) -> PublishResult:
    """Take a ticket, then ``compute(ticket)`` (read the lake), then publish; the outcome.

    The order is the protocol: the lake is read only after the ticket is held.
    """
    client = default_client() if client is None else client
    ticket = take_ticket(date, table=tables.state, client=client, **retry)
    categories, daily = compute(ticket)
    return publish_date_snapshot(
        ticket,
        categories,
        daily,
        tables=tables,
        client=client,
        max_transaction_items=max_transaction_items,
        **retry,
    )


# --- event idempotency and statuses ----------------------------------------------------


def claim(
    table: str,
    pk: str,
    sk: str,
    *,
    attributes: Mapping[str, Any] | None = None,
    client: Any = None,
    max_attempts: int = 8,
    sleep: Callable[[float], None] | None = None,
    rng: Callable[[], float] | None = None,
) -> bool:
    """True if this call created the record (pk, sk); False if another claim holds it.

    A claim whose first put landed but whose answer was lost (the SDK then retries and the
    condition fails) is still ours: when the stored record equals the one we sent, this
    gives True. Put something unique to the claimant in ``attributes`` (an execution id).
    """
    client = default_client() if client is None else client
    item = {**(attributes or {}), "pk": pk, "sk": sk}
    backoff = _backoff(max_attempts, 0.05, 5.0, sleep, rng)
    try:
        _call(
            table,
            backoff,
            lambda: client.put_item(
                TableName=table,
                Item=to_attribute_values(item),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
            passthrough=frozenset({"ConditionalCheckFailedException"}),
        )
    except ClientError as exc:
        existing = exc.response.get("Item")
        return existing is not None and from_attribute_values(existing) == item
    return True


def put_status(
    table: str,
    pk: str,
    sk: str,
    attributes: Mapping[str, Any],
    *,
    client: Any = None,
    max_attempts: int = 8,
    sleep: Callable[[float], None] | None = None,
    rng: Callable[[], float] | None = None,
) -> None:
    """Store (replace) the status record (pk, sk), e.g. ``file#b/k`` + ``status``."""
    client = default_client() if client is None else client
    item = {**attributes, "pk": pk, "sk": sk}
    backoff = _backoff(max_attempts, 0.05, 5.0, sleep, rng)
    _call(table, backoff, lambda: client.put_item(TableName=table, Item=to_attribute_values(item)))


def get_status(
    table: str,
    pk: str,
    sk: str,
    *,
    client: Any = None,
    max_attempts: int = 8,
    sleep: Callable[[float], None] | None = None,
    rng: Callable[[], float] | None = None,
) -> Item | None:
    """The record (pk, sk) as Python values (strongly consistent read), or None."""
    client = default_client() if client is None else client
    backoff = _backoff(max_attempts, 0.05, 5.0, sleep, rng)
    response = _call(
        table,
        backoff,
        lambda: client.get_item(
            TableName=table,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
        ),
    )
    raw = response.get("Item")
    return None if raw is None else from_attribute_values(raw)
