"""The transformer's BI export of whole months (engine.s3export), on moto + DynamoDB Local."""

from __future__ import annotations

import datetime as dt
import io
import threading
from typing import Any

import polars as pl
import pytest

import engine.aws_jobs as jobs
import engine.s3export as s3export
from engine.config import Settings
from engine.s3lake import S3Lake
from tests.aws.stack import Stack, oracle, order_csv

pytestmark = pytest.mark.integration

JULY_A = [
    ("A1", "C1", "2025-07-06", "Electronics", "P1", 2, "199.99", "false"),
    ("A2", "C2", "2025-07-06", "Books", "P2", 1, "29.995", "TRUE"),
    ("A3", "C1", "2025-07-31", "Books", "P3", 3, "0.0050", "false"),
]
JULY_AUGUST_B = [
    ("A1", "C9", "2025-07-06", "Electronics", "P1", 1, "10.00", "true"),  # replaces A's A1
    ("B1", "C3", "2025-07-07", "Clothing", "P4", 1, "10.005", "true"),
    ("B2", "C4", "2025-08-01", "Books", "P5", 4, "2.50", "false"),
]


def run(stack: Stack, key: str) -> None:
    settings = Settings.from_env(stack.env(key))
    clients = jobs.Clients(stack.s3, stack.dynamodb)
    assert jobs.validate_object(settings, clients) == 0
    assert jobs.transform_object(settings, clients) == 0


def exported(stack: Stack, table: str, month: str) -> list[dict[str, Any]]:
    """Return the rows of one exported Parquet partition as plain dicts (dates as text)."""
    key = f"kpis/kpis/{table}/month={month}/part-0.parquet"
    body = stack.s3.get_object(Bucket=stack.cleaned_bucket, Key=key)["Body"].read()
    frame = pl.read_parquet(io.BytesIO(body))
    return [{**r, "order_date": r["order_date"].isoformat()} for r in frame.to_dicts()]


def expected(
    stack: Stack, files: list[tuple[str, list[tuple[Any, ...]]]], month: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cats, days = oracle([(f"{stack.input_bucket}/{k}", rows) for k, rows in files])

    def strip(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in i.items() if k not in ("source_files", "source_count")}
            for i in items
            if i["order_date"].startswith(month)
        ]

    return strip(cats), strip(days)


def assert_month_is_oracle(
    stack: Stack, files: list[tuple[str, list[tuple[Any, ...]]]], month: str
) -> None:
    cats, days = expected(stack, files, month)
    assert exported(stack, "category_kpis", month) == cats
    assert exported(stack, "daily_kpis", month) == days


def test_transformer_exports_every_touched_month_whole_and_equal_to_the_oracle(
    stack: Stack,
) -> None:
    files = [("in/a.csv", JULY_A), ("in/b.csv", JULY_AUGUST_B)]
    for key, rows in files:
        stack.upload(key, order_csv(rows))
        run(stack, key)
    # b touched only 07-06, 07-07 and 08-01, yet July holds a's 07-31 too: whole months.
    assert_month_is_oracle(stack, files, "2025-07")
    assert_month_is_oracle(stack, files, "2025-08")
    assert {k for k in stack.object_keys("kpis/")} == {
        f"kpis/{root}/{t}/month={m}/part-0.{ext}"
        for root, ext in (("kpis", "parquet"), ("kpis_csv", "csv"))
        for t in ("category_kpis", "daily_kpis")
        for m in ("2025-07", "2025-08")
    }
    csv_body = stack.s3.get_object(
        Bucket=stack.cleaned_bucket, Key="kpis/kpis_csv/daily_kpis/month=2025-07/part-0.csv"
    )["Body"].read()
    assert csv_body.decode().splitlines() == [
        "order_date,total_orders,total_revenue,total_items_sold,return_rate,unique_customers",
        "2025-07-06,2,40.00,2,1.0000,2",
        "2025-07-07,1,10.00,1,1.0000,1",  # 10.005 half-even,
        "2025-07-31,1,0.02,3,0.0000,1",
    ]
    record = stack.record("month#2025-07", "export")
    assert record is not None and record["exported_ticket"] == record["ticket"] == 2
    assert record["daily_rows"] == 3


def test_a_month_whose_rows_all_moved_away_is_exported_empty(stack: Stack) -> None:
    key = "in/fix.csv"
    stack.upload(key, order_csv(JULY_A))
    run(stack, key)
    moved = [(o, c, "2025-08-02", *rest) for o, c, _, *rest in JULY_A]
    stack.upload(key, order_csv(moved))
    run(stack, key)
    assert exported(stack, "category_kpis", "2025-07") == []
    assert exported(stack, "daily_kpis", "2025-07") == []
    assert_month_is_oracle(stack, [(key, moved)], "2025-08")


def _lake(stack: Stack) -> S3Lake:
    return S3Lake(
        stack.cleaned_bucket, state_table=stack.state_table, s3=stack.s3, dynamodb=stack.dynamodb
    )


class Interleaved:
    """An S3 client that, just before task 1's first ``method`` call, runs task 2 whole."""

    def __init__(self, stack: Stack, method: str) -> None:
        self.stack, self.method, self.done = stack, method, False

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.stack.s3, name)
        if name != self.method or self.done:
            return real

        def call(**kw: Any) -> Any:
            self.done = True
            lake = _lake(self.stack)
            lake.add_source(f"{self.stack.input_bucket}/b", pl.DataFrame(_typed(JULY_AUGUST_B)))
            other = s3export.export_month(
                lake, "2025-07", state_table=self.stack.state_table,
                dynamodb=self.stack.dynamodb, s3=self.stack.s3,
            )  # fmt: skip
            assert len(other.written) == 4 and other.ticket == 2
            return real(**kw)

        return call


@pytest.mark.parametrize("method", ["head_object", "put_object"])
def test_an_overtaken_export_never_overwrites_the_newer_one(stack: Stack, method: str) -> None:
    """Task 1 reads the month; task 2 adds rows and exports; then task 1 tries to write.

    ``head_object``: task 1 sees the newer ticket and skips. ``put_object``: task 1 checked
    before task 2 wrote, so its conditional put fails (412); it looks again and skips.
    """
    lake = _lake(stack)
    lake.add_source(f"{stack.input_bucket}/a", pl.DataFrame(_typed(JULY_A)))
    result = s3export.export_month(
        lake, "2025-07", state_table=stack.state_table, dynamodb=stack.dynamodb,
        s3=Interleaved(stack, method),
    )  # fmt: skip
    assert result.ticket == 1 and result.written == () and len(result.skipped) == 4
    both = [("a", JULY_A), ("b", JULY_AUGUST_B)]
    assert_month_is_oracle(stack, both, "2025-07")
    assert expected(stack, [("a", JULY_A)], "2025-07") != expected(stack, both, "2025-07")
    record = stack.record("month#2025-07", "export")
    assert record is not None and record["exported_ticket"] == 2


def test_an_object_that_keeps_changing_gives_a_transient_error(stack: Stack) -> None:
    class Meddling:
        n = 0

        def head_object(self, **kw: Any) -> Any:
            return stack.s3.head_object(**kw)

        def put_object(self, **kw: Any) -> Any:
            self.n += 1  # a new body each time: a new ETag
            stack.s3.put_object(Bucket=kw["Bucket"], Key=kw["Key"], Body=b"x%d" % self.n)
            return stack.s3.put_object(**kw)

    stack.s3.put_object(Bucket=stack.cleaned_bucket, Key="kpis/x", Body=b"old")
    with pytest.raises(s3export.ExportContendedError) as err:
        s3export.put_if_newer(Meddling(), stack.cleaned_bucket, "kpis/x", b"new", 5, max_attempts=3)
    assert err.value.transient and err.value.attempts == 3


def test_eight_transformers_finishing_one_month_at_once_converge(stack: Stack) -> None:
    files = []
    for i in range(8):
        rows = [
            (f"F{i}-{j}", f"C{j}", f"2025-07-{1 + (i + j) % 5:02d}",
             ("Books", "Electronics", "Clothing")[j % 3], f"P{j}", 1 + j, f"{i}.{j}5", "false")
            for j in range(4)
        ]  # fmt: skip
        files.append((f"many/f{i}.csv", rows))
        stack.upload(f"many/f{i}.csv", order_csv(rows))
    errors: list[BaseException] = []

    def work(key: str) -> None:
        try:
            run(stack, key)
        except BaseException as exc:  # reported after join
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k, _ in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_month_is_oracle(stack, files, "2025-07")  # order ids are distinct: order is moot
    record = stack.record("month#2025-07", "export")
    assert record is not None and record["exported_ticket"] == record["ticket"]


def _typed(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    from decimal import Decimal

    from engine.rules import LAKE_SCHEMA

    cols = list(LAKE_SCHEMA)
    data: dict[str, list[Any]] = {c: [] for c in cols}
    for r in rows:
        values = dict(zip(
            ["order_id", "customer_id", "order_date", "category", "product_id", "quantity",
             "unit_price", "returned"], r, strict=True))  # fmt: skip
        values["order_date"] = dt.date.fromisoformat(values["order_date"])
        values["unit_price"] = Decimal(values["unit_price"])
        values["returned"] = str(values["returned"]).lower() == "true"
        for c in cols:
            data[c].append(values.get(c))
    return pl.DataFrame(data, schema=LAKE_SCHEMA).to_dict(as_series=True)


def test_reprocess_rewrites_the_export_of_the_months_it_recomputes(stack: Stack) -> None:
    from engine.aws_reprocess import reprocess_range
    from engine.config import ReprocessSettings

    files = [("in/a.csv", JULY_A), ("in/b.csv", JULY_AUGUST_B)]
    for key, rows in files:
        stack.upload(key, order_csv(rows))
        run(stack, key)
    # As if a KPI definition had changed: the export no longer holds what the lake gives.
    for key in [o for o in stack.object_keys() if o.startswith("kpis/")]:
        stack.s3.delete_object(Bucket=stack.cleaned_bucket, Key=key)
    env = {**stack.env("in/a.csv"), "REPROCESS_DATE_FROM": "2025-07-01",
           "REPROCESS_DATE_TO": "2025-07-31"}
    reprocess_range(ReprocessSettings.from_env(env), jobs.Clients(stack.s3, stack.dynamodb))
    assert_month_is_oracle(stack, files, "2025-07")
    # August is outside the range: untouched.
    assert not [k for k in stack.object_keys() if "month=2025-08" in k]
