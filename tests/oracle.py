"""An independent plain-Python Decimal oracle for both KPI tables.

It shares no code with the engine: it parses CSV with the ``csv`` module, keeps money as
``Decimal`` and rounds with ``ROUND_HALF_EVEN``. Tests compare the engine's outputs to it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

CENT = Decimal("0.01")
BP = Decimal("0.0001")


def money(x: Decimal) -> str:
    return str(x.quantize(CENT, rounding=ROUND_HALF_EVEN))


def rate(x: Decimal) -> str:
    return str(x.quantize(BP, rounding=ROUND_HALF_EVEN))


def read_rows(data: bytes) -> list[dict[str, str]]:
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader)]
    rows = []
    for rec in reader:
        if not rec or all(not f.strip() for f in rec):
            continue
        rows.append({h: v.strip() for h, v in zip(header, rec, strict=False)})
    return rows


def kpis(files: Iterable[bytes]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Return (category rows, daily rows) as strings, for files processed in this order."""
    orders: dict[tuple[str, str], dict[str, str]] = {}
    for data in files:
        for r in read_rows(data):
            orders[(r["order_date"], r["order_id"])] = r  # the later file wins
    cat: dict[tuple[str, str], list[Decimal | int]] = {}
    day: dict[str, dict[str, object]] = {}
    for (date, _), r in orders.items():
        revenue = Decimal(r["quantity"]) * Decimal(r["unit_price"])
        returned = r["returned"].lower() == "true"
        c = cat.setdefault((r["category"], date), [Decimal(0), 0, 0])
        c[0] += revenue
        c[1] += 1
        c[2] += int(returned)
        d = day.setdefault(date, {"rev": Decimal(0), "n": 0, "items": 0, "ret": 0,
                                  "cust": set()})
        d["rev"] = d["rev"] + revenue  # type: ignore[operator]
        d["n"] = d["n"] + 1  # type: ignore[operator]
        d["items"] = d["items"] + int(r["quantity"])  # type: ignore[operator]
        d["ret"] = d["ret"] + int(returned)  # type: ignore[operator]
        d["cust"].add(r["customer_id"])  # type: ignore[attr-defined]
    cat_rows = [
        {
            "category": k[0],
            "order_date": k[1],
            "daily_revenue": money(Decimal(v[0])),
            "avg_order_value": money(Decimal(v[0]) / v[1]),
            "avg_return_rate": rate(Decimal(v[2]) / v[1]),
            "orders": str(v[1]),
            "returned_orders": str(v[2]),
        }
        for k, v in sorted(cat.items())
    ]
    day_rows = [
        {
            "order_date": k,
            "total_orders": str(v["n"]),
            "total_revenue": money(v["rev"]),  # type: ignore[arg-type]
            "total_items_sold": str(v["items"]),
            "return_rate": rate(Decimal(v["ret"]) / v["n"]),  # type: ignore[arg-type, operator]
            "unique_customers": str(len(v["cust"])),  # type: ignore[arg-type]
        }
        for k, v in sorted(day.items())
    ]
    return cat_rows, day_rows


def kpis_from_paths(paths: Iterable[Path]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    return kpis(Path(p).read_bytes() for p in paths)


def read_csv_table(path: Path) -> list[dict[str, str]]:
    """Return a KPI CSV written by the engine as a list of string dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
