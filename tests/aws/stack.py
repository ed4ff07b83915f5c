"""A throwaway set of buckets and tables on the emulators, plus an exact KPI oracle.

Each test gets fresh names (the emulators are shared by the session), the container
environment that names them, and helpers to read back what the jobs left behind.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from engine.sinks.dynamodb import from_attribute_values

HEADER = "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned"
VOLATILE = ("computed_at", "snapshot_ticket")


@dataclass
class Stack:
    """Names of one test's resources and the clients that reach them."""

    input_bucket: str
    cleaned_bucket: str
    order_table: str
    category_table: str
    state_table: str
    s3: Any
    dynamodb: Any

    def env(self, key: str) -> dict[str, str]:
        """Return the container environment for the object ``key`` (URL-encoded here)."""
        return {
            "S3_INPUT_BUCKET": self.input_bucket,
            "S3_INPUT_KEY": quote_plus(key, safe="/"),
            "S3_CLEANED_BUCKET": self.cleaned_bucket,
            "ORDER_KPI_TABLE": self.order_table,
            "CATEGORY_KPI_TABLE": self.category_table,
            "STATE_TABLE": self.state_table,
        }

    def upload(self, key: str, text: str) -> None:
        self.s3.put_object(Bucket=self.input_bucket, Key=key, Body=text.encode())

    def object_keys(self, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.cleaned_bucket, Prefix=prefix
        )
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    def items(self, table: str, *, keep_volatile: bool = False) -> list[dict[str, Any]]:
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        out = []
        for page in pages:
            for raw in page["Items"]:
                item = from_attribute_values(raw)
                if not keep_volatile:
                    for v in VOLATILE:
                        item.pop(v, None)
                out.append(item)
        return sorted(out, key=lambda i: (i.get("category", ""), i["order_date"]))

    def record(self, pk: str, sk: str) -> dict[str, Any] | None:
        raw = self.dynamodb.get_item(
            TableName=self.state_table,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
        ).get("Item")
        return None if raw is None else from_attribute_values(raw)


def make_stack(s3: Any, dynamodb: Any) -> Stack:
    """Create two buckets and the three tables under fresh names."""
    tag = uuid.uuid4().hex[:10]
    st = Stack(
        f"in-{tag}",
        f"cleaned-{tag}",
        f"orders-{tag}",
        f"categories-{tag}",
        f"state-{tag}",
        s3,
        dynamodb,
    )
    for b in (st.input_bucket, st.cleaned_bucket):
        s3.create_bucket(Bucket=b)
    schemas = {
        st.order_table: [("order_date", "HASH")],
        st.category_table: [("category", "HASH"), ("order_date", "RANGE")],
        st.state_table: [("pk", "HASH"), ("sk", "RANGE")],
    }
    for name, keys in schemas.items():
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
            BillingMode="PAY_PER_REQUEST",
        )
    return st


@pytest.fixture
def stack(aws_local_env: dict[str, str]) -> Stack:
    """Fresh buckets on moto server and tables on DynamoDB Local, reached over HTTP."""
    s3 = boto3.session.Session().client("s3")
    ddb = boto3.session.Session().client("dynamodb")
    return make_stack(s3, ddb)


# -- files and the oracle -------------------------------------------------------------------


def order_csv(rows: list[tuple[Any, ...]]) -> str:
    """Return an order CSV with the contract's header."""
    out = io.StringIO()
    out.write(HEADER + "\n")
    w = csv.writer(out, lineterminator="\n")
    for r in rows:
        w.writerow(r)
    return out.getvalue()


def _q(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_EVEN)


def oracle(
    files: list[tuple[str, list[tuple[Any, ...]]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (category items, daily items) as plain-Python Decimals.

    ``files`` are (source, rows) in processing order: a later file's row for the same
    (order_date, order_id) replaces an earlier one.
    """
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    sources: dict[str, set[str]] = defaultdict(set)
    for source, rows in files:
        for r in rows:
            latest[(r[2], r[0])] = r
            sources[r[2]].add(source)
    by_cat: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    by_day: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for (day, _), r in latest.items():
        by_cat[(r[3], day)].append(r)
        by_day[day].append(r)

    def revenue(rows: list[tuple[Any, ...]]) -> Decimal:
        return sum((int(r[5]) * Decimal(str(r[6])) for r in rows), Decimal(0))

    def returned(rows: list[tuple[Any, ...]]) -> int:
        return sum(1 for r in rows if str(r[7]).lower() == "true")

    cats = []
    for (cat, day), rows in sorted(by_cat.items()):
        n = len(rows)
        cats.append(
            {
                "category": cat,
                "order_date": day,
                "daily_revenue": _q(revenue(rows), "0.01"),
                "avg_order_value": _q(revenue(rows) / n, "0.01"),
                "avg_return_rate": _q(Decimal(returned(rows)) / n, "0.0001"),
                "orders": n,
                "returned_orders": returned(rows),
                "source_files": sorted(sources[day])[:100],
                "source_count": len(sources[day]),
            }
        )
    days = []
    for day, rows in sorted(by_day.items()):
        n = len(rows)
        days.append(
            {
                "order_date": day,
                "total_orders": n,
                "total_revenue": _q(revenue(rows), "0.01"),
                "total_items_sold": sum(int(r[5]) for r in rows),
                "return_rate": _q(Decimal(returned(rows)) / n, "0.0001"),
                "unique_customers": len({r[1] for r in rows}),
                "source_files": sorted(sources[day])[:100],
                "source_count": len(sources[day]),
            }
        )
    return cats, days
