"""Peer: pandas with the pyarrow CSV engine and two groupbys.

Prices are read as float64 and turned into integer ten-thousandths with ``round(x * 10_000)``:
exact for at most 4 decimals below 10^11, so every sum after that is an exact integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from engine.bench.peers._common import (
    CategoryGroup,
    DailyGroup,
    parse_args,
    unavailable,
    write_kpis,
)

_E4 = Decimal("0.0001")


def main(argv: Sequence[str] | None = None) -> int:
    """Compute both KPI tables with pandas; return the exit code."""
    src, outdir = parse_args(argv, "pandas_groupby")
    try:
        import pandas as pd
    except ImportError as exc:
        return unavailable("pandas", exc)
    df = pd.read_csv(
        src,
        engine="pyarrow",
        dtype={
            "order_id": "string",
            "customer_id": "string",
            "order_date": "string",
            "category": "string",
            "product_id": "string",
            "quantity": "int64",
            "unit_price": "float64",
            "returned": "bool",
        },
    )
    price_e4 = (df["unit_price"] * 10_000).round().astype("int64")
    df["revenue_e4"] = df["quantity"] * price_e4
    cat = df.groupby(["category", "order_date"], sort=False).agg(
        revenue_e4=("revenue_e4", "sum"),
        orders=("order_id", "size"),
        returned=("returned", "sum"),
    )
    day = df.groupby("order_date", sort=False).agg(
        orders=("order_id", "size"),
        revenue_e4=("revenue_e4", "sum"),
        items=("quantity", "sum"),
        returned=("returned", "sum"),
        customers=("customer_id", "nunique"),
    )
    cats: list[CategoryGroup] = [
        (str(c), str(d), Decimal(int(r)) * _E4, int(n), int(ret))
        for (c, d), r, n, ret in zip(
            cat.index, cat["revenue_e4"], cat["orders"], cat["returned"], strict=True
        )
    ]
    days: list[DailyGroup] = [
        (str(d), int(n), Decimal(int(r)) * _E4, int(i), int(ret), int(u))
        for d, n, r, i, ret, u in zip(
            day.index,
            day["orders"],
            day["revenue_e4"],
            day["items"],
            day["returned"],
            day["customers"],
            strict=True,
        )
    ]
    write_kpis(outdir, cats, days)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
