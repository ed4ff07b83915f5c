from __future__ import annotations

import random
import threading
import time
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from engine.errors import TableWriteThrottledError
from engine.state import (
    KpiTables,
    Ticket,
    claim,
    claim_key,
    file_pk,
    get_status,
    publish_date_snapshot,
    put_status,
    refresh_date,
    take_ticket,
)

DATE = "2025-07-07"
ALL_CATEGORIES = ["Books", "Clothing", "Electronics", "Garden", "Home", "Sports", "Toys"]

Snapshot = tuple[list[dict[str, Any]], dict[str, Any] | None]


def snapshot_for(seed: int, date: str = DATE) -> Snapshot:
    """A deterministic snapshot whose category set and numbers depend on ``seed``."""
    rnd = random.Random(seed)
    cats = sorted(rnd.sample(ALL_CATEGORIES, rnd.randint(0, len(ALL_CATEGORIES))))
    items = [
        {
            "category": c,
            "order_date": date,
            "daily_revenue": Decimal(rnd.randint(0, 10**9)) / 100,
            "avg_order_value": Decimal(rnd.randint(0, 10**6)) / 100,
            "avg_return_rate": Decimal(rnd.randint(0, 10**4)) / 10**4,
            "orders": rnd.randint(1, 1000),
            "returned_orders": rnd.randint(0, 5),
            "source_files": [f"s3://in/orders_{seed}.csv"],
            "computed_at": f"seed-{seed}",
        }
        for c in cats
    ]
    daily = (
        {
            "order_date": date,
            "total_orders": sum(i["orders"] for i in items),
            "total_revenue": sum((i["daily_revenue"] for i in items), Decimal(0)),
            "total_items_sold": seed,
            "return_rate": Decimal("0.1234"),
            "unique_customers": seed + 1,
            "source_files": [f"s3://in/orders_{seed}.csv"],
            "computed_at": f"seed-{seed}",
        }
        if items
        else None
    )
    return items, daily


def stored(client: Any, tables: KpiTables, date: str = DATE) -> Snapshot:
    """What the tables hold for ``date``, as Python values, without snapshot_ticket."""
    res = boto3.resource("dynamodb")
    cats = [
        {k: v for k, v in i.items() if k != "snapshot_ticket"}
        for i in res.Table(tables.category).scan(ConsistentRead=True)["Items"]
        if i["order_date"] == date
    ]
    daily = res.Table(tables.daily).get_item(Key={"order_date": date}, ConsistentRead=True)
    day = daily.get("Item")
    if day is not None:
        day = {k: v for k, v in day.items() if k != "snapshot_ticket"}
    return sorted(cats, key=lambda i: i["category"]), day


@pytest.fixture
def tables(dynamodb_client: Any) -> KpiTables:
    from tests.aws.tables import create_kpi_tables

    return create_kpi_tables(dynamodb_client)


@pytest.mark.integration
def test_published_snapshot_is_stored_with_its_ticket(dynamodb_client: Any, tables: KpiTables):
    items, daily = snapshot_for(3)
    ticket = take_ticket(DATE, table=tables.state, client=dynamodb_client)
    assert ticket.ticket == 1 and ticket.stored_categories == frozenset()
    result = publish_date_snapshot(ticket, items, daily, tables=tables, client=dynamodb_client)
    assert result.published and result.written == len(items) + 1 and result.deleted == 0
    assert stored(dynamodb_client, tables) == (items, daily)  # Decimal oracle: exact equality
    raw = dynamodb_client.get_item(
        TableName=tables.category,
        Key={"category": {"S": items[0]["category"]}, "order_date": {"S": DATE}},
    )["Item"]
    assert raw["snapshot_ticket"] == {"N": "1"}
    fence = get_status(tables.state, f"date#{DATE}", "fence", client=dynamodb_client)
    assert fence == {
        "pk": f"date#{DATE}",
        "sk": "fence",
        "ticket": 1,
        "published_ticket": 1,
        "categories": [i["category"] for i in items],
    }


@pytest.mark.integration
def test_older_ticket_arriving_last_does_not_overwrite(dynamodb_client: Any, tables: KpiTables):
    old = take_ticket(DATE, table=tables.state, client=dynamodb_client)
    new = take_ticket(DATE, table=tables.state, client=dynamodb_client)
    new_snap = snapshot_for(10)
    assert publish_date_snapshot(new, *new_snap, tables=tables, client=dynamodb_client).published
    late = publish_date_snapshot(old, *snapshot_for(11), tables=tables, client=dynamodb_client)
    assert not late.published and late.superseded_by == new.ticket
    assert late.written == 0 and late.skipped > 0
    assert stored(dynamodb_client, tables) == new_snap


@pytest.mark.integration
def test_vanished_categories_are_deleted_and_not_resurrected_by_an_older_snapshot(
    dynamodb_client: Any, tables: KpiTables
) -> None:
    def item(cat: str, revenue: str) -> dict[str, Any]:
        return {
            "category": cat, "order_date": DATE, "daily_revenue": Decimal(revenue),
            "avg_order_value": Decimal("1.00"), "avg_return_rate": Decimal("0.5000"),
            "orders": 2, "returned_orders": 1, "source_files": ["a.csv"], "computed_at": "t",
        }  # fmt: skip

    first = take_ticket(DATE, table=tables.state, client=dynamodb_client)
    publish_date_snapshot(
        first, [item("Books", "1.10"), item("Toys", "2.20")], None, tables=tables,
        client=dynamodb_client,
    )  # fmt: skip
    slow = take_ticket(DATE, table=tables.state, client=dynamodb_client)  # read Books + Toys
    fix = take_ticket(DATE, table=tables.state, client=dynamodb_client)  # corrected upload
    assert fix.stored_categories == {"Books", "Toys"}
    result = publish_date_snapshot(
        fix, [item("Books", "3.30")], None, tables=tables, client=dynamodb_client
    )
    assert result.deleted == 2  # Toys and the (absent) daily row
    late = publish_date_snapshot(
        slow, [item("Books", "1.10"), item("Toys", "2.20")], None, tables=tables,
        client=dynamodb_client,
    )  # fmt: skip
    assert not late.published
    cats, daily = stored(dynamodb_client, tables)
    assert [(c["category"], c["daily_revenue"]) for c in cats] == [("Books", Decimal("3.3"))]
    assert daily is None


@pytest.mark.integration
def test_empty_snapshot_deletes_the_whole_date(dynamodb_client: Any, tables: KpiTables):
    snap = snapshot_for(3)
    t1 = take_ticket(DATE, table=tables.state, client=dynamodb_client)
    publish_date_snapshot(t1, *snap, tables=tables, client=dynamodb_client)
    t2 = take_ticket(DATE, table=tables.state, client=dynamodb_client)
    result = publish_date_snapshot(t2, [], None, tables=tables, client=dynamodb_client)
    assert result.deleted == len(snap[0]) + 1
    assert stored(dynamodb_client, tables) == ([], None)


@pytest.mark.integration
@pytest.mark.parametrize("max_transaction_items", [100, 3])
def test_concurrent_writers_leave_the_highest_tickets_snapshot(
    dynamodb_client: Any, tables: KpiTables, max_transaction_items: int
) -> None:
    """16 threads each take a ticket, then publish that ticket's snapshot twice, in random
    order with random pauses; the tables must end equal to the highest ticket's snapshot.
    With max_transaction_items=3 snapshots go in several fenced parts."""
    writers = 16
    barrier = threading.Barrier(writers)
    tickets: list[Ticket] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    seed_of_run = random.randrange(10**6)

    def writer(i: int) -> None:
        rnd = random.Random(seed_of_run + i)
        try:
            barrier.wait()
            for _ in range(2):
                time.sleep(rnd.random() * 0.3)  # spread out: some publish before others start

                def read_lake(t: Ticket) -> Snapshot:
                    time.sleep(rnd.random() * 0.05)  # reading the lake takes a while
                    return snapshot_for(t.ticket)  # the lake as seen after ticket t

                result = refresh_date(
                    DATE,
                    read_lake,
                    tables=tables,
                    client=dynamodb_client,
                    max_transaction_items=max_transaction_items,
                    base_delay=0.01,
                    max_delay=0.2,
                    max_attempts=40,
                )
                with lock:
                    tickets.append(Ticket(DATE, result.ticket, frozenset()))
        except BaseException as exc:  # pragma: no cover - reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    highest = max(t.ticket for t in tickets)
    assert highest == 2 * writers and len({t.ticket for t in tickets}) == 2 * writers
    assert stored(dynamodb_client, tables) == snapshot_for(highest), f"seed {seed_of_run}"


@pytest.mark.integration
def test_publish_in_random_order_each_twice_keeps_the_highest(
    dynamodb_client: Any, tables: KpiTables
) -> None:
    """Tickets taken first, snapshots then published from 16 threads in a shuffled order,
    each twice: whatever the order, the highest ticket's snapshot is what stays."""
    issued = [take_ticket(DATE, table=tables.state, client=dynamodb_client) for _ in range(16)]
    jobs = [t for t in issued for _ in range(2)]
    random.shuffle(jobs)
    errors: list[BaseException] = []

    def run(t: Ticket) -> None:
        try:
            publish_date_snapshot(
                t, *snapshot_for(t.ticket), tables=tables, client=dynamodb_client,
                base_delay=0.01, max_delay=0.2, max_attempts=40,
            )  # fmt: skip
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # Only the highest ticket can pass the fence: earlier ones were taken before it.
    assert snapshot_for(16)[0] and snapshot_for(15)[0] != snapshot_for(16)[0]
    assert stored(dynamodb_client, tables) == snapshot_for(16)


# --- claims and statuses -----------------------------------------------------------------


@pytest.mark.integration
def test_claim_is_granted_once(dynamodb_client: Any, tables: KpiTables) -> None:
    pk, sk = claim_key("in", "orders+2025.csv", '"abc"')
    assert claim(tables.state, pk, sk, attributes={"execution": "e1"}, client=dynamodb_client)
    assert not claim(tables.state, pk, sk, attributes={"execution": "e2"}, client=dynamodb_client)
    assert get_status(tables.state, pk, sk, client=dynamodb_client)["execution"] == "e1"
    # The same claimant asking again (a retried call whose first answer was lost) keeps it.
    assert claim(tables.state, pk, sk, attributes={"execution": "e1"}, client=dynamodb_client)


@pytest.mark.integration
def test_status_round_trip(dynamodb_client: Any, tables: KpiTables) -> None:
    pk = file_pk("in", "orders+2025.csv")
    assert get_status(tables.state, pk, "status", client=dynamodb_client) is None
    attrs = {"status": "VALID", "rows": 3, "dates": ["2025-07-07"], "etag": "x"}
    put_status(tables.state, pk, "status", attrs, client=dynamodb_client)
    assert get_status(tables.state, pk, "status", client=dynamodb_client) == {
        **attrs, "pk": pk, "sk": "status",
    }  # fmt: skip


# --- unit: retries around the fence, with a fake client ----------------------------------


class ThrottledOnce:
    def __init__(self, inner: Any, code: str, times: int) -> None:
        self.inner, self.code, self.times = inner, code, times

    def update_item(self, **kw: Any) -> Any:
        if self.times:
            self.times -= 1
            raise ClientError({"Error": {"Code": self.code, "Message": "x"}}, "UpdateItem")
        return self.inner.update_item(**kw)


class FakeFence:
    def __init__(self) -> None:
        self.n = 0

    def update_item(self, **kw: Any) -> Any:
        self.n += 1
        return {"Attributes": {"ticket": {"N": str(self.n)}}}


def test_take_ticket_retries_throttling_with_full_jitter() -> None:
    sleeps: list[float] = []
    client = ThrottledOnce(FakeFence(), "ProvisionedThroughputExceededException", 2)
    t = take_ticket(DATE, table="s", client=client, sleep=sleeps.append, rng=lambda: 1.0)
    assert t.ticket == 1 and sleeps == [0.05, 0.1]


def test_take_ticket_gives_up_with_a_transient_error() -> None:
    client = ThrottledOnce(FakeFence(), "ThrottlingException", 99)
    with pytest.raises(TableWriteThrottledError) as info:
        take_ticket(DATE, table="s", client=client, max_attempts=3, sleep=lambda s: None)
    assert info.value.transient and info.value.attempts == 3 and info.value.table == "s"


class CancelledTx:
    def __init__(self, reasons: list[list[str]]) -> None:
        self.reasons = reasons
        self.calls = 0

    def transact_write_items(self, **kw: Any) -> Any:
        self.calls += 1
        if self.reasons:
            codes = self.reasons.pop(0)
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                    "CancellationReasons": [{"Code": c} for c in codes],
                },
                "TransactWriteItems",
            )
        return {}


def test_transaction_conflicts_are_retried_then_published() -> None:
    client = CancelledTx([["TransactionConflict", "None"], ["None", "ThrottlingError"]])
    sleeps: list[float] = []
    t = Ticket(DATE, 4, frozenset())
    result = publish_date_snapshot(
        t, *snapshot_for(4), tables=KpiTables("c", "d", "s"), client=client,
        sleep=sleeps.append, rng=lambda: 0.5,
    )  # fmt: skip
    assert result.published and result.attempts == 3 and sleeps == [0.025, 0.05]


def test_fence_check_failure_means_superseded_not_error() -> None:
    client = CancelledTx([["ConditionalCheckFailed", "None"]])
    t = Ticket(DATE, 4, frozenset())
    result = publish_date_snapshot(
        t, *snapshot_for(4), tables=KpiTables("c", "d", "s"), client=client
    )
    assert not result.published and result.written == 0 and client.calls == 1


@pytest.mark.integration
def test_large_snapshot_goes_in_full_100_action_transactions(
    dynamodb_client: Any, tables: KpiTables
) -> None:
    def items(n: int, cents: int) -> list[dict[str, Any]]:
        return [
            {
                "category": f"cat{i:03d}", "order_date": DATE,
                "daily_revenue": Decimal(cents + i).scaleb(-2), "avg_order_value": Decimal("1.00"),
                "avg_return_rate": Decimal("0.0001"), "orders": 1, "returned_orders": 0,
                "source_files": [], "computed_at": "t",
            }
            for i in range(n)
        ]  # fmt: skip

    t1 = take_ticket(DATE, table=tables.state, client=dynamodb_client)
    first = publish_date_snapshot(t1, items(150, 1), None, tables=tables, client=dynamodb_client)
    assert first.published and first.attempts == 2  # 99 + 52 actions, each with the fence
    t2 = take_ticket(DATE, table=tables.state, client=dynamodb_client)
    second = items(120, 7)
    result = publish_date_snapshot(t2, second, None, tables=tables, client=dynamodb_client)
    assert result.deleted == 30 + 1
    assert stored(dynamodb_client, tables) == (second, None)


def test_non_retryable_errors_become_terminal_project_errors() -> None:
    from engine.errors import DynamoWriteError

    client = ThrottledOnce(FakeFence(), "ResourceNotFoundException", 1)
    with pytest.raises(DynamoWriteError) as info:
        take_ticket(DATE, table="s", client=client, sleep=lambda s: None)
    assert info.value.code == "ResourceNotFoundException" and not info.value.transient


class RecordingTx:
    def __init__(self) -> None:
        self.transactions: list[list[dict[str, Any]]] = []

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]]) -> Any:
        assert len(TransactItems) <= 100
        self.transactions.append(TransactItems)
        return {}


def _fence_categories(action: dict[str, Any]) -> list[str]:
    values = action["Update"]["ExpressionAttributeValues"][":c"]["L"]
    return [v["S"] for v in values]


def test_split_snapshot_lists_old_and_new_categories_until_its_last_part() -> None:
    client = RecordingTx()
    items, _ = snapshot_for(5)
    assert len(items) >= 3
    t = Ticket(DATE, 9, frozenset({"Gone", items[0]["category"]}))
    result = publish_date_snapshot(
        t, items, None, tables=KpiTables("c", "d", "s"), client=client, max_transaction_items=3
    )
    txs = client.transactions
    assert result.published and len(txs) == -(-(len(items) + 2) // 2)
    assert all("ticket = :t" in next(iter(tx[0].values()))["ConditionExpression"] for tx in txs)
    new = sorted(i["category"] for i in items)
    assert _fence_categories(txs[0][0]) == sorted({"Gone", *new})
    assert all("ConditionCheck" in tx[0] for tx in txs[1:-1])
    assert _fence_categories(txs[-1][0]) == new
    deletes = [a["Delete"]["Key"] for tx in txs for a in tx[1:] if "Delete" in a]
    assert {"category": {"S": "Gone"}, "order_date": {"S": DATE}} in deletes
    assert {"order_date": {"S": DATE}} in deletes  # the daily row of a date with no rows


def test_refresh_date_reads_the_lake_only_after_the_ticket() -> None:
    events: list[str] = []

    class Client(FakeFence, RecordingTx):
        def __init__(self) -> None:
            FakeFence.__init__(self)
            RecordingTx.__init__(self)

        def update_item(self, **kw: Any) -> Any:
            events.append("ticket")
            return FakeFence.update_item(self, **kw)

    def compute(t: Ticket) -> Snapshot:
        events.append(f"read after ticket {t.ticket}")
        return snapshot_for(t.ticket)

    result = refresh_date(DATE, compute, tables=KpiTables("c", "d", "s"), client=Client())
    assert events == ["ticket", "read after ticket 1"] and result.published


def test_snapshot_for_another_date_is_refused() -> None:
    from engine.errors import TerminalError

    items, daily = snapshot_for(3, date="2025-07-08")
    with pytest.raises(TerminalError, match="2025-07-08"):
        publish_date_snapshot(
            Ticket(DATE, 1, frozenset()), items, daily, tables=KpiTables("c", "d", "s"),
            client=RecordingTx(),
        )  # fmt: skip


class RefusesTable:
    """Cancels every transaction with a ValidationError on the first item of ``table`` (an
    item too large, a key too long), or fails it outright with ``outright``."""

    def __init__(self, table: str | None, outright: str | None = None) -> None:
        self.table, self.outright = table, outright

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]]) -> Any:
        if self.outright:
            raise ClientError({"Error": {"Code": self.outright, "Message": "no"}},
                              "TransactWriteItems")
        named = [next(iter(i.values()))["TableName"] for i in TransactItems]
        codes = ["ValidationError" if n == self.table and named.index(n) == k else "None"
                 for k, n in enumerate(named)]
        raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "x"},
                           "CancellationReasons": [{"Code": c} for c in codes]},
                          "TransactWriteItems")


@pytest.mark.parametrize(("client", "named"), [
    (RefusesTable("d"), "d"), (RefusesTable("c"), "c"),
    (RefusesTable(None, outright="ResourceNotFoundException"), "one of the tables s, c, d")])
def test_a_refused_snapshot_names_the_table_that_refused_it(client: Any, named: str) -> None:
    """It always named the category table: a missing daily table was reported as the
    (existing) category table."""
    from engine.errors import DynamoWriteError

    with pytest.raises(DynamoWriteError) as info:
        publish_date_snapshot(Ticket(DATE, 4, frozenset()), *snapshot_for(4),
                              tables=KpiTables("c", "d", "s"), client=client)
    assert info.value.table == named and str(info.value).startswith(f"{named}: ")


def test_a_table_asked_only_to_retry_is_not_named_for_another_s_refusal() -> None:
    from engine.state import _tables_of

    items = [{"Update": {"TableName": "s"}}, {"Put": {"TableName": "c"}},
             {"Put": {"TableName": "d"}}]
    reasons = [{"Code": "None"}, {"Code": "TransactionConflict"}, {"Code": "ValidationError"}]
    assert _tables_of(items, reasons) == "d"
    assert _tables_of(items, []) == "one of the tables s, c, d"
