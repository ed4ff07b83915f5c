"""Test data for the insight tests: a tiny orders CSV and a plain-Python Decimal KPI oracle.

The oracle is written independently of the engine (csv + decimal only) so that the tables the
insight code reads back are checked against numbers computed another way.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import polars as pl

CENT = Decimal("0.01")
RATE = Decimal("0.0001")


def orders_csv() -> str:
    """Return a small orders CSV whose KPIs exercise half-even rounding and repeat customers.

    2025-07-01: 32 orders, 1 returned -> daily return rate 1/32 = 0.03125 -> 0.0312 (half-even).
    2025-07-02: two Books orders of 5.00 and 5.05 -> avg order value 5.025 -> 5.02 (half-even).
    Customer c1 orders on every day, so summed daily unique customers exceed the distinct count.
    """
    lines = ["order_id,customer_id,order_date,category,items,amount,returned"]
    n = 0
    cats = ["Electronics", "Books", "Home & Garden"]
    for i in range(32):
        n += 1
        lines.append(
            f"o{n},c{i % 20 + 1},2025-07-01,{cats[i % 3]},{i % 4 + 1},"
            f"{Decimal(10 + i) + Decimal('0.99')},{'true' if i == 7 else 'false'}"
        )
    for cust, cat, items, amount, returned in [
        ("c1", "Books", 1, "5.00", "false"),
        ("c2", "Books", 2, "5.05", "true"),
        ("c3", "Electronics", 1, "1299.99", "false"),
        ("c1", "Home & Garden", 3, "45.10", "true"),
        ("c4", "Home & Garden", 1, "0.01", "false"),
    ]:
        n += 1
        lines.append(f"o{n},{cust},2025-07-02,{cat},{items},{amount},{returned}")
    for cust, cat, items, amount, returned in [
        ("c1", "Electronics", 2, "199.95", "false"),
        ("c5", "Electronics", 1, "19.99", "true"),
        ("c6", "Books", 4, "60.00", "false"),
    ]:
        n += 1
        lines.append(f"o{n},{cust},2025-07-04,{cat},{items},{amount},{returned}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Oracle:
    """KPI rows computed with plain Python Decimals, as lists of dicts in CONTRACT order."""

    category: list[dict[str, object]]
    daily: list[dict[str, object]]
    distinct_customers: int


def oracle(text: str | None = None) -> Oracle:
    """Return the KPI rows of the orders CSV, computed without Polars."""
    rows = list(csv.DictReader(io.StringIO(text or orders_csv())))
    by_cat: dict[tuple[str, date], list[dict[str, str]]] = defaultdict(list)
    by_day: dict[date, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        day = date.fromisoformat(row["order_date"])
        by_cat[(row["category"], day)].append(row)
        by_day[day].append(row)
    category = []
    for (cat, day), group in sorted(by_cat.items()):
        revenue = sum((Decimal(r["amount"]) for r in group), Decimal(0))
        returned = sum(r["returned"] == "true" for r in group)
        category.append(
            {
                "category": cat,
                "order_date": day,
                "daily_revenue": revenue.quantize(CENT, rounding=ROUND_HALF_EVEN),
                "avg_order_value": (revenue / len(group)).quantize(CENT, rounding=ROUND_HALF_EVEN),
                "avg_return_rate": (Decimal(returned) / len(group)).quantize(
                    RATE, rounding=ROUND_HALF_EVEN
                ),
                "orders": len(group),
                "returned_orders": returned,
            }
        )
    daily = []
    for day, group in sorted(by_day.items()):
        revenue = sum((Decimal(r["amount"]) for r in group), Decimal(0))
        returned = sum(r["returned"] == "true" for r in group)
        daily.append(
            {
                "order_date": day,
                "total_orders": len(group),
                "total_revenue": revenue.quantize(CENT, rounding=ROUND_HALF_EVEN),
                "total_items_sold": sum(int(r["items"]) for r in group),
                "return_rate": (Decimal(returned) / len(group)).quantize(
                    RATE, rounding=ROUND_HALF_EVEN
                ),
                "unique_customers": len({r["customer_id"] for r in group}),
            }
        )
    return Oracle(category, daily, len({r["customer_id"] for r in rows}))


CATEGORY_SCHEMA = {
    "category": pl.String,
    "order_date": pl.Date,
    "daily_revenue": pl.Decimal(38, 2),
    "avg_order_value": pl.Decimal(38, 2),
    "avg_return_rate": pl.Decimal(38, 4),
    "orders": pl.Int64,
    "returned_orders": pl.Int64,
}
DAILY_SCHEMA = {
    "order_date": pl.Date,
    "total_orders": pl.Int64,
    "total_revenue": pl.Decimal(38, 2),
    "total_items_sold": pl.Int64,
    "return_rate": pl.Decimal(38, 4),
    "unique_customers": pl.Int64,
}


def frames(o: Oracle) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the oracle rows as frames typed as docs/CONTRACT.md says."""
    return (
        pl.DataFrame(o.category, schema=CATEGORY_SCHEMA, orient="row"),
        pl.DataFrame(o.daily, schema=DAILY_SCHEMA, orient="row"),
    )


def write_output_folder(folder: Path, o: Oracle) -> Path:
    """Write the KPI Parquet files of a `process --out DIR` folder from the oracle; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    category, daily = frames(o)
    category.write_parquet(folder / "category_kpis.parquet")
    daily.write_parquet(folder / "daily_kpis.parquet")
    return folder


def demo_orders_csv(days: int = 28, seed: int = 7) -> str:
    """Return a month of random but reproducible orders (one day left out) for the docs picture.

    docs/dashboard.png is made from it: see docs/insight.md.
    """
    import random
    from datetime import timedelta

    rng = random.Random(seed)
    cats = ["Electronics", "Books", "Home & Garden", "Toys", "Clothing"]
    lines = ["order_id,customer_id,order_date,category,items,amount,returned"]
    n = 0
    for offset in range(days):
        if offset == 12:
            continue  # a day without orders shows as a gap in the line charts
        day = date(2025, 6, 1) + timedelta(days=offset)
        for _ in range(rng.randint(15, 45)):
            n += 1
            cat = rng.choice(cats)
            amount = Decimal(rng.randint(500, 30000 if cat == "Electronics" else 8000)) / 100
            returned = "true" if rng.random() < 0.08 else "false"
            lines.append(
                f"o{n},c{rng.randint(1, 60)},{day},{cat},{rng.randint(1, 5)},{amount},{returned}"
            )
    return "\n".join(lines) + "\n"
