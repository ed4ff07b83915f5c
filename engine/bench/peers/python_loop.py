"""Peer: a plain csv.DictReader loop with dict accumulation, exact with Decimal."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from decimal import Decimal

from engine.bench.peers._common import CategoryGroup, DailyGroup, parse_args, write_kpis


def main(argv: Sequence[str] | None = None) -> int:
    """Compute both KPI tables row by row in Python; return the exit code."""
    src, outdir = parse_args(argv, "python_loop")
    by_cat: dict[tuple[str, str], list[Decimal | int]] = {}
    by_day: dict[str, list[Decimal | int]] = {}
    customers: dict[str, set[str]] = {}
    with src.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            day = row["order_date"]
            quantity = int(row["quantity"])
            revenue = Decimal(row["unit_price"]) * quantity
            returned = 1 if row["returned"].strip().lower() == "true" else 0
            c = by_cat.get((row["category"], day))
            if c is None:
                c = by_cat[(row["category"], day)] = [Decimal(0), 0, 0]
            c[0] += revenue
            c[1] += 1
            c[2] += returned
            d = by_day.get(day)
            if d is None:
                d = by_day[day] = [0, Decimal(0), 0, 0]
                customers[day] = set()
            d[0] += 1
            d[1] += revenue
            d[2] += quantity
            d[3] += returned
            customers[day].add(row["customer_id"])
    cats: list[CategoryGroup] = [
        (cat, day, Decimal(v[0]), int(v[1]), int(v[2])) for (cat, day), v in by_cat.items()
    ]
    days: list[DailyGroup] = [
        (day, int(v[0]), Decimal(v[1]), int(v[2]), int(v[3]), len(customers[day]))
        for day, v in by_day.items()
    ]
    write_kpis(outdir, cats, days)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
