from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import boto3
import polars as pl
import pytest
from botocore.exceptions import ClientError

from engine.errors import (
    DynamoWriteError,
    KpiItemError,
    TableWriteThrottledError,
    TerminalError,
    WriteThrottledError,
)
from engine.sinks.dynamodb import (
    CATEGORY_KEY,
    category_items,
    daily_items,
    from_attribute_values,
    to_attribute_values,
    write_items,
)

TABLE = "kpis"
KEY = ("pk",)


def client_error(code: str, op: str = "BatchWriteItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"fake {code}"}}, op)


class FakeDynamo:
    """Answers BatchWriteItem from a script: 'ok', 'all' (all unprocessed), or an error code."""

    def __init__(self, script: list[str] | None = None, default: str = "ok") -> None:
        self.script = list(script or [])
        self.default = default
        self.calls: list[list[dict[str, Any]]] = []
        self.stored: dict[str, dict[str, Any]] = {}

    def batch_write_item(self, *, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        (table, requests), *rest = RequestItems.items()
        assert not rest and table == TABLE
        if len(requests) > 25:
            raise client_error("ValidationException")
        keys = [r["PutRequest"]["Item"]["pk"]["S"] for r in requests]
        if len(set(keys)) != len(keys):
            raise client_error("ValidationException")
        self.calls.append(requests)
        step = self.script.pop(0) if self.script else self.default
        if step == "all":
            return {"UnprocessedItems": {table: requests}}
        if step == "half":
            done, left = requests[: len(requests) // 2], requests[len(requests) // 2 :]
        elif step == "ok":
            done, left = requests, []
        else:
            raise client_error(step)
        for r in done:
            item = r["PutRequest"]["Item"]
            self.stored[item["pk"]["S"]] = item
        return {"UnprocessedItems": {table: left} if left else {}}


def items(n: int, prefix: str = "k") -> list[dict[str, Any]]:
    return [{"pk": f"{prefix}{i:03d}", "v": Decimal(i) / 10} for i in range(n)]


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_unprocessed_three_times_then_accepted_writes_all_with_full_jitter_waits() -> None:
    fake = FakeDynamo(["all", "all", "all", "ok"])
    sleep = Recorder()
    result = write_items(
        TABLE, items(10), client=fake, key=KEY, base_delay=0.05, max_delay=5.0,
        sleep=sleep, rng=lambda: 0.5,
    )  # fmt: skip
    assert result.written == 10 and result.attempts == 4
    assert len(fake.stored) == 10
    assert sleep.sleeps == [0.5 * 0.05, 0.5 * 0.1, 0.5 * 0.2]


def test_waits_are_capped_at_max_delay_and_scaled_by_rng() -> None:
    fake = FakeDynamo(["all"] * 7 + ["ok"])
    sleep = Recorder()
    rolls = iter([0.0, 1.0, 0.25, 1.0, 1.0, 1.0, 0.5])
    write_items(
        TABLE, items(3), client=fake, key=KEY, base_delay=0.1, max_delay=1.0,
        sleep=sleep, rng=lambda: next(rolls),
    )  # fmt: skip
    windows = [min(1.0, 0.1 * 2**a) for a in range(7)]
    assert windows == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert sleep.sleeps == pytest.approx([0.0, 0.2, 0.1, 0.8, 1.0, 1.0, 0.5])


def test_always_unprocessed_raises_transient_error_with_unwritten_count() -> None:
    fake = FakeDynamo(["ok"], default="all")  # first batch of 25 goes through, then nothing
    sleep = Recorder()
    with pytest.raises(TableWriteThrottledError) as info:
        write_items(TABLE, items(60), client=fake, key=KEY, max_attempts=5, sleep=sleep)
    err = info.value
    assert isinstance(err, WriteThrottledError) and err.transient
    assert (err.table, err.written, err.unwritten, err.attempts) == (TABLE, 25, 35, 6)
    assert len(sleep.sleeps) == 4  # no wait after the last attempt
    assert "35 item(s) not written" in str(err)


def test_partial_progress_counts_only_what_was_left() -> None:
    fake = FakeDynamo(["half", "half", "half"])
    result = write_items(TABLE, items(8), client=fake, key=KEY, sleep=Recorder())
    assert [len(c) for c in fake.calls] == [8, 4, 2, 1]
    assert result.written == 8 and len(fake.stored) == 8


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
    ],
)
def test_throttling_errors_are_retried(code: str) -> None:
    fake = FakeDynamo([code, code, "ok"])
    sleep = Recorder()
    result = write_items(TABLE, items(5), client=fake, key=KEY, sleep=sleep, rng=lambda: 1.0)
    assert result.written == 5 and result.attempts == 3
    assert sleep.sleeps == [0.05, 0.1]


def test_throttling_without_end_raises_after_max_attempts() -> None:
    fake = FakeDynamo(default="ThrottlingException")
    with pytest.raises(TableWriteThrottledError) as info:
        write_items(TABLE, items(5), client=fake, key=KEY, max_attempts=3, sleep=Recorder())
    assert (info.value.unwritten, info.value.attempts) == (5, 3)
    assert info.value.last_error == "ThrottlingException"


def test_validation_error_is_terminal_and_not_retried() -> None:
    fake = FakeDynamo(default="AccessDeniedException")
    with pytest.raises(DynamoWriteError) as info:
        write_items(TABLE, items(5), client=fake, key=KEY, sleep=Recorder())
    assert info.value.code == "AccessDeniedException" and not info.value.transient


@pytest.mark.parametrize("n", [25, 26, 51, 100, 101])
def test_items_are_sent_in_batches_of_at_most_25(n: int) -> None:
    fake = FakeDynamo()
    result = write_items(TABLE, items(n), client=fake, key=KEY)
    assert all(len(c) <= 25 for c in fake.calls)
    assert sum(len(c) for c in fake.calls) == n == result.written == len(fake.stored)
    assert result.batches == -(-n // 25)


def test_duplicate_keys_keep_the_last_item() -> None:
    fake = FakeDynamo()
    batch = [*items(20), *[{"pk": "k005", "v": Decimal("99.5")}], *items(3, "z")]
    batch.append({"pk": "k005", "v": Decimal("7")})
    result = write_items(TABLE, batch, client=fake, key=KEY)
    assert result.duplicates_dropped == 2 and result.written == 23
    assert fake.stored["k005"]["v"] == {"N": "7"}


# --- KPI frames -> items -------------------------------------------------------------------

D = dt.date(2025, 7, 7)


def category_frame(**over: list[Any]) -> pl.DataFrame:
    cols: dict[str, Any] = {
        "category": ["Books", "Toys"],
        "order_date": [D, D],
        "daily_revenue": [Decimal("0.10"), Decimal("1234567890123.45")],
        "avg_order_value": [Decimal("0.10"), Decimal("33.33")],
        "avg_return_rate": [Decimal("0.1000"), Decimal("0.3333")],
        "orders": [1, 3],
        "returned_orders": [0, 1],
    }
    cols.update(over)
    return pl.DataFrame(cols).with_columns(
        pl.col("daily_revenue", "avg_order_value").cast(pl.Decimal(38, 2)),
        pl.col("avg_return_rate").cast(pl.Decimal(38, 4)),
    )


def test_category_items_are_exact_decimals_with_metadata() -> None:
    out = category_items(
        category_frame(), source_files=["s3://b/a.csv"], computed_at="2025-07-08T00:00:00Z",
        ticket=7,
    )  # fmt: skip
    assert out[0] == {
        "category": "Books",
        "order_date": "2025-07-07",
        "daily_revenue": Decimal("0.10"),
        "avg_order_value": Decimal("0.10"),
        "avg_return_rate": Decimal("0.1000"),
        "orders": 1,
        "returned_orders": 0,
        "source_files": ["s3://b/a.csv"],
        "source_count": 1,
        "computed_at": "2025-07-08T00:00:00Z",
        "snapshot_ticket": 7,
    }
    assert str(out[1]["daily_revenue"]) == "1234567890123.45"
    assert to_attribute_values(out[0])["avg_return_rate"] == {"N": "0.1000"}
    assert from_attribute_values(to_attribute_values(out[1])) == out[1]


def test_daily_items_without_ticket_have_no_snapshot_ticket() -> None:
    df = pl.DataFrame(
        {
            "order_date": [D],
            "total_orders": [4],
            "total_revenue": [Decimal("10.01")],
            "total_items_sold": [9],
            "return_rate": [Decimal("0.2500")],
            "unique_customers": [3],
        }
    ).with_columns(
        pl.col("total_revenue").cast(pl.Decimal(38, 2)),
        pl.col("return_rate").cast(pl.Decimal(38, 4)),
    )
    (item,) = daily_items(df, source_files=[], computed_at="t", ticket=None)
    assert item["total_revenue"] == Decimal("10.01") and "snapshot_ticket" not in item
    assert item["return_rate"] == Decimal("0.25") and item["order_date"] == "2025-07-07"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.1])
def test_float_money_is_rejected_naming_column_and_row(bad: float) -> None:
    df = category_frame().with_columns(pl.Series("avg_order_value", [1.0, bad], dtype=pl.Float64))
    with pytest.raises(KpiItemError) as info:
        category_items(df, source_files=[], computed_at="t", ticket=None)
    err = info.value
    assert isinstance(err, TerminalError) and not err.transient
    assert (err.column, err.row) == ("avg_order_value", 0)  # the first float already fails
    assert "avg_order_value" in str(err) and "row 0" in str(err)


@pytest.mark.parametrize(
    "value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("0.123"), None]
)
def test_non_finite_null_or_too_precise_decimals_are_rejected(value: Decimal | None) -> None:
    df = category_frame().with_columns(pl.Series("daily_revenue", [Decimal("1.00"), value],
                                                 dtype=pl.Object))  # fmt: skip
    with pytest.raises(KpiItemError) as info:
        category_items(df, source_files=[], computed_at="t", ticket=None)
    assert (info.value.column, info.value.row) == ("daily_revenue", 1)


def test_missing_column_is_named() -> None:
    with pytest.raises(KpiItemError, match="returned_orders"):
        category_items(category_frame().drop("returned_orders"), source_files=[],
                       computed_at="t", ticket=None)  # fmt: skip


# --- against DynamoDB Local --------------------------------------------------------------


def make_category_table(client: Any) -> str:
    name = f"category-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "category", "KeyType": "HASH"},
            {"AttributeName": "order_date", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "category", "AttributeType": "S"},
            {"AttributeName": "order_date", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.mark.integration
def test_items_round_trip_exactly_through_dynamodb_local(dynamodb_client: Any) -> None:
    table = make_category_table(dynamodb_client)
    cats = [f"cat{i:02d}" for i in range(30)]
    revenue = [Decimal(f"{i}.{i:02d}") + Decimal("0.01") for i in range(30)]
    df = pl.DataFrame(
        {
            "category": cats,
            "order_date": [D] * 30,
            "daily_revenue": revenue,
            "avg_order_value": [Decimal("0.10")] * 30,
            "avg_return_rate": [Decimal("0.1")] * 30,
            "orders": list(range(30)),
            "returned_orders": [0] * 30,
        }
    ).with_columns(
        pl.col("daily_revenue", "avg_order_value").cast(pl.Decimal(38, 2)),
        pl.col("avg_return_rate").cast(pl.Decimal(38, 4)),
    )
    built = category_items(df, source_files=["s3://b/k.csv"], computed_at="now", ticket=None)
    result = write_items(table, built, client=dynamodb_client)  # key from DescribeTable
    assert result.written == 30 and result.batches == 2

    resource = boto3.resource("dynamodb")
    stored = {i["category"]: i for i in resource.Table(table).scan(ConsistentRead=True)["Items"]}
    assert len(stored) == 30
    for cat, money in zip(cats, revenue, strict=True):
        assert stored[cat]["daily_revenue"] == money  # Decimal oracle, no float on the way
        assert stored[cat]["avg_order_value"] == Decimal("0.1")
        assert stored[cat]["source_files"] == ["s3://b/k.csv"]
    raw = dynamodb_client.get_item(
        TableName=table, Key={"category": {"S": "cat00"}, "order_date": {"S": "2025-07-07"}}
    )["Item"]
    assert raw["avg_return_rate"] == {"N": "0.1"} and raw["daily_revenue"] == {"N": "0.01"}
    assert CATEGORY_KEY == ("category", "order_date")


@pytest.mark.integration
def test_dynamodb_local_rejects_26_items_but_write_items_splits(dynamodb_client: Any) -> None:
    table = make_category_table(dynamodb_client)
    rows = [{"category": f"c{i}", "order_date": "2025-07-07"} for i in range(26)]
    with pytest.raises(ClientError):
        dynamodb_client.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": to_attribute_values(r)}} for r in rows]}
        )
    assert write_items(table, rows, client=dynamodb_client, key=CATEGORY_KEY).written == 26


# --- property: any Decimal(38, s) value goes through the item form unchanged -------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.sinks.dynamodb import MONEY, RATE, exact_number  # noqa: E402


@given(
    st.sampled_from([(MONEY, 2), (RATE, 4)]).flatmap(
        lambda p: st.tuples(
            st.just(p[0]),
            st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1).map(
                lambda n, s=p[1]: Decimal(f"{n}E-{s}")
            ),
        )
    )
)
def test_any_decimal_38_value_survives_item_conversion(case: tuple[Decimal, Decimal]) -> None:
    places, value = case
    number = exact_number(value, places=places, table="t", row=0, column="c")
    assert number == value
    back = from_attribute_values(to_attribute_values({"c": number}))["c"]
    assert back == value and str(back) == str(value)


@pytest.mark.integration
def test_a_date_of_thousands_of_sources_names_a_hundred_and_counts_them_all(
    dynamodb_local_endpoint: str,
) -> None:
    # Every item of a date carried every source's URI: 8,000 files of one date (one per
    # store) made items of ~460 KB, past DynamoDB's 400 KB, and the date could not be
    # published again. The items now name 100 and count them all.
    import boto3

    sources = [f"s3://in-bucket/stores/store-{i:05d}/orders-2025-07-07.csv" for i in range(8000)]
    df = pl.DataFrame({
        "order_date": [dt.date(2025, 7, 7)], "total_orders": [8000],
        "total_revenue": [Decimal("10.01")], "total_items_sold": [9000],
        "return_rate": [Decimal("0.2500")], "unique_customers": [3000],
    }).with_columns(pl.col("total_revenue").cast(pl.Decimal(38, 2)),
                    pl.col("return_rate").cast(pl.Decimal(38, 4)))
    [item] = daily_items(df, source_files=sources, computed_at="t", ticket=None)
    assert item["source_files"] == sources[:100] and item["source_count"] == 8000
    client = boto3.client("dynamodb", endpoint_url=dynamodb_local_endpoint, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    client.create_table(TableName="thousands", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "order_date", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "order_date",
                                               "AttributeType": "S"}])
    with pytest.raises(ClientError, match="size has exceeded"):  # every source named
        client.put_item(TableName="thousands",
                        Item=to_attribute_values({**item, "source_files": sources}))
    client.put_item(TableName="thousands", Item=to_attribute_values(item))
    got = client.get_item(TableName="thousands", Key={"order_date": {"S": item["order_date"]}})
    assert int(got["Item"]["source_count"]["N"]) == 8000
