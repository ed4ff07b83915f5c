from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import polars as pl
import pytest

from engine.kpis import category_kpis, daily_kpis, div_half_even, latest_orders
from engine.rules import LAKE_SCHEMA
from tests import oracle


def orders(rows: list[tuple[str, str, str, str, int, str, bool]]) -> pl.LazyFrame:
    """rows: (order_id, customer_id, date, category, quantity, unit_price, returned)."""
    return pl.DataFrame(
        {
            "order_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "order_date": [dt.date.fromisoformat(r[2]) for r in rows],
            "category": [r[3] for r in rows],
            "product_id": ["P"] * len(rows),
            "quantity": [r[4] for r in rows],
            "unit_price": [Decimal(r[5]) for r in rows],
            "returned": [r[6] for r in rows],
        },
        schema=LAKE_SCHEMA,
    ).lazy()


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [(5, 2, 2), (7, 2, 4), (1, 3, 0), (2, 3, 1), (3125, 10000, 0), (15, 10, 2), (25, 10, 2),
     (10**30 + 5, 10, 10**29 + 0)],
)
def test_div_half_even_matches_decimal(num: int, den: int, expected: int) -> None:
    df = pl.DataFrame({"n": [num], "d": [den]}, schema={"n": pl.Int128, "d": pl.Int128})
    got = df.select(div_half_even(pl.col("n"), pl.col("d"))).item()
    with localcontext() as ctx:
        ctx.prec = 80
        want = int((Decimal(num) / Decimal(den)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert got == want == expected


def test_five_cents_over_two_orders_is_two_cents() -> None:
    lf = orders([("a", "c1", "2025-07-06", "Books", 1, "0.04", False),
                 ("b", "c2", "2025-07-06", "Books", 1, "0.01", False)])
    row = category_kpis(lf).collect().row(0, named=True)
    assert row["daily_revenue"] == Decimal("0.05")
    assert row["avg_order_value"] == Decimal("0.02")  # 0.025 rounds half to even


def test_one_returned_of_32_is_0312() -> None:
    rows = [(f"o{i}", "c", "2025-07-06", "Books", 1, "1", i == 0) for i in range(32)]
    cat = category_kpis(orders(rows)).collect().row(0, named=True)
    day = daily_kpis(orders(rows)).collect().row(0, named=True)
    assert cat["avg_return_rate"] == Decimal("0.0312")  # 0.03125 -> even
    assert day["return_rate"] == Decimal("0.0312")


def test_half_cent_tie_from_real_data_rounds_the_exact_value() -> None:
    # 489.26 over 16 orders = 30.57875 exactly: the tie is decided on the exact value.
    rows = [("a", "c", "2025-07-06", "Books", 1, "489.26", False)] + [
        (f"z{i}", "c", "2025-07-06", "Books", 1, "0.0001", False) for i in range(15)
    ]
    got = category_kpis(orders(rows)).collect().row(0, named=True)
    exact = (Decimal("489.26") + 15 * Decimal("0.0001")) / 16
    assert got["avg_order_value"] == exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


@pytest.mark.parametrize(("price", "want"), [("0.125", "0.12"), ("0.135", "0.14"),
                                             ("0.0050", "0.00"), ("0.0150", "0.02")])
def test_revenue_ties_at_half_a_cent_round_to_even(price: str, want: str) -> None:
    got = category_kpis(orders([("a", "c", "2025-07-06", "Books", 1, price, False)]))
    assert got.collect()["daily_revenue"][0] == Decimal(want)


def test_tables_match_oracle_on_mixed_rows() -> None:
    rows = [
        ("1", "c1", "2025-07-06", "Books", 3, "10.3333", True),
        ("2", "c2", "2025-07-06", "Books", 1, "0.0050", False),
        ("3", "c1", "2025-07-06", "Electronics", 2, "199.99", False),
        ("4", "c3", "2025-07-07", "Books", 7, "0.1", True),
    ]
    csv_text = "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"
    csv_text += "".join(f"{r[0]},{r[1]},{r[2]},{r[3]},P,{r[4]},{r[5]},{str(r[6]).lower()}\n"
                        for r in rows)
    want_cat, want_day = oracle.kpis([csv_text.encode()])
    got_cat = category_kpis(orders(rows)).collect()
    got_day = daily_kpis(orders(rows)).collect()
    as_str = [{k: str(v) for k, v in r.items()} for r in got_cat.to_dicts()]
    assert as_str == want_cat
    assert [{k: str(v) for k, v in r.items()} for r in got_day.to_dicts()] == want_day


@pytest.mark.parametrize("price_type", [pl.Decimal(38, 4), pl.Decimal(12, 2), pl.Decimal(20, 6)])
def test_revenue_reads_the_price_at_its_own_scale(price_type: pl.Decimal) -> None:
    # The revenue takes a scale-4 price's integer as its ten-thousandths: a price of another
    # scale must be rescaled first, not read as if it had 4 decimals.
    rows = [("1", "c1", "2025-07-06", "Books", 3, "10.25", False),
            ("2", "c2", "2025-07-06", "Books", 2, "0.5", True)]
    lf = orders(rows).with_columns(pl.col("unit_price").cast(price_type))
    got = category_kpis(lf).collect().row(0, named=True)
    exact = 3 * Decimal("10.25") + 2 * Decimal("0.5")  # 31.75 over 2 orders
    assert got["daily_revenue"] == exact
    assert got["avg_order_value"] == (exact / 2).quantize(Decimal("0.01"), ROUND_HALF_EVEN)


def test_latest_orders_keeps_the_later_ingestion_per_date_and_order() -> None:
    lf = orders([("a", "c1", "2025-07-06", "Books", 1, "1", False),
                 ("a", "c1", "2025-07-06", "Books", 5, "1", True),
                 ("a", "c1", "2025-07-07", "Books", 2, "1", False)])
    lf = lf.with_columns(pl.Series("_seq", [1, 2, 1]))
    got = latest_orders(lf).collect().sort("order_date")
    assert got["quantity"].to_list() == [5, 2]
    assert got["returned"].to_list() == [True, False]


def test_the_largest_valid_values_sum_exactly() -> None:
    # The rules' bounds (MAX_QUANTITY, MAX_UNIT_PRICE) are what keeps these sums exact: 20
    # lines of 18-digit quantities wrapped total_items_sold to a negative number, and 2,000
    # lines of them at the largest 18-character price overflowed the revenue (Int128).
    from engine.rules import MAX_QUANTITY, MAX_UNIT_PRICE

    rows = [(f"O{i}", f"c{i % 3}", "2025-03-01", "Books", MAX_QUANTITY, str(MAX_UNIT_PRICE),
             i % 2 == 0) for i in range(3000)]
    csv_text = "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"
    csv_text += "".join(f"{r[0]},{r[1]},{r[2]},{r[3]},P,{r[4]},{r[5]},{str(r[6]).lower()}\n"
                        for r in rows)
    want_cat, want_day = oracle.kpis([csv_text.encode()])
    assert want_day[0]["total_items_sold"] == "3000000000000"
    assert want_day[0]["total_revenue"] == "3000000000000000000000.00"
    got_cat = category_kpis(orders(rows)).collect()
    got_day = daily_kpis(orders(rows)).collect()
    assert [{k: str(v) for k, v in r.items()} for r in got_cat.to_dicts()] == want_cat
    assert [{k: str(v) for k, v in r.items()} for r in got_day.to_dicts()] == want_day
