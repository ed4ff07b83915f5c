"""An independent plain-Python oracle for both KPI tables.

It shares no code with the engine: it parses CSV with the ``csv`` module, keeps money as exact
``Decimal`` and ``Fraction`` values and rounds half to even in integer arithmetic (a ``Decimal``
division would first round to the context's 28 digits, which sums of ~1e20 exceed). It is written
from README.md ("KPI definitions", "Input contract", the lake) and docs/CONTRACT.md only. Tests
compare the engine's outputs to it.

``kpis`` models files processed once each, in order; ``Lake`` also models file names: a valid
file replaces every order of the earlier file of its name, and is the latest source.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

CATEGORY_COLUMNS = ["category", "order_date", "daily_revenue", "avg_order_value",
                    "avg_return_rate", "orders", "returned_orders"]
DAILY_COLUMNS = ["order_date", "total_orders", "total_revenue", "total_items_sold",
                 "return_rate", "unique_customers"]

# Typed rows, in the columns above: what the Parquet tables hold.
CategoryRow = tuple[str, dt.date, Decimal, Decimal, Decimal, int, int]
DailyRow = tuple[dt.date, int, Decimal, int, Decimal, int]

# README: a text cell of a CSV written for people that begins with one of these gets a leading
# "'", unless it is a plain number literal ("numbers such as -12.50 stay numbers").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER_LITERAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def round_half_even(value: Fraction, places: int) -> Decimal:
    """Return ``value`` (>= 0) rounded half to even to ``places`` decimals, exactly."""
    scaled = value * 10**places
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest > scaled.denominator or (2 * rest == scaled.denominator and whole % 2):
        whole += 1
    return Decimal(whole).scaleb(-places)


def money(x: Decimal | Fraction) -> str:
    return f"{round_half_even(Fraction(x), 2):.2f}"


def rate(x: Decimal | Fraction) -> str:
    return f"{round_half_even(Fraction(x), 4):.4f}"


def csv_cell(text: str) -> str:
    """Return a text cell as the engine's CSVs must show it (formula-like text gets a ``'``)."""
    if text.startswith(_FORMULA_STARTS) and not _NUMBER_LITERAL.fullmatch(text):
        return "'" + text
    return text


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


class Lake:
    """The KPI tables the README promises for the valid files ``process`` took, in order.

    A file's name is its identity: ingesting a name again replaces all of that name's earlier
    orders (a header-only file leaves it none) and makes it the latest source. An order is keyed
    by (order_date, order_id) across sources; the latest source's version wins.
    """

    def __init__(self) -> None:
        self._sources: dict[str, tuple[int, list[dict[str, str]]]] = {}
        self._seq = 0

    def ingest(self, name: str, data: bytes) -> None:
        """Take a valid file's bytes under its name (a rejected file is never ingested)."""
        self._seq += 1
        self._sources[name] = (self._seq, read_rows(data))

    def round(self, value: Fraction, places: int) -> Decimal:
        """Return the rounding the KPI definitions ask for (a hook for deliberately wrong
        variants that prove the comparison can fail)."""
        return round_half_even(value, places)

    def orders(self) -> list[dict[str, str]]:
        """Return the winning version of every (order_date, order_id)."""
        latest: dict[tuple[str, str], tuple[int, dict[str, str]]] = {}
        for seq, rows in self._sources.values():
            for r in rows:
                key = (r["order_date"], r["order_id"])
                if key not in latest or latest[key][0] <= seq:
                    latest[key] = (seq, r)
        return [r for _, r in latest.values()]

    def tables(self) -> tuple[list[CategoryRow], list[DailyRow]]:
        """Return (category rows, daily rows), typed and sorted as docs/CONTRACT.md says."""
        cat: dict[tuple[str, str], list[Fraction]] = {}  # revenue, orders, returned
        day: dict[str, list[Fraction]] = {}  # orders, revenue, items, returned
        customers: dict[str, set[str]] = {}
        for r in self.orders():
            quantity = int(r["quantity"])
            revenue = quantity * Fraction(Decimal(r["unit_price"]))
            returned = int(r["returned"].lower() == "true")
            c = cat.setdefault((r["category"], r["order_date"]), [Fraction(0)] * 3)
            c[0] += revenue
            c[1] += 1
            c[2] += returned
            d = day.setdefault(r["order_date"], [Fraction(0)] * 4)
            d[0] += 1
            d[1] += revenue
            d[2] += quantity
            d[3] += returned
            customers.setdefault(r["order_date"], set()).add(r["customer_id"])
        cat_rows: list[CategoryRow] = [
            (name, dt.date.fromisoformat(date), self.round(rev, 2), self.round(rev / n, 2),
             self.round(ret / n, 4), int(n), int(ret))
            for (name, date), (rev, n, ret) in sorted(cat.items())
        ]
        day_rows: list[DailyRow] = [
            (dt.date.fromisoformat(date), int(n), self.round(rev, 2), int(items),
             self.round(ret / n, 4), len(customers[date]))
            for date, (n, rev, items, ret) in sorted(day.items())
        ]
        return cat_rows, day_rows

    def csv_tables(self) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """Return both tables as the engine's CSVs must read (see ``read_csv_table``)."""
        cat_rows, day_rows = self.tables()
        return (
            [dict(zip(CATEGORY_COLUMNS, (csv_cell(c), d.isoformat(), f"{rev:.2f}", f"{avg:.2f}",
                                         f"{rr:.4f}", str(n), str(ret)), strict=True))
             for c, d, rev, avg, rr, n, ret in cat_rows],
            [dict(zip(DAILY_COLUMNS, (d.isoformat(), str(n), f"{rev:.2f}", str(items),
                                      f"{rr:.4f}", str(cust)), strict=True))
             for d, n, rev, items, rr, cust in day_rows],
        )


def kpis(files: Iterable[bytes]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Return (category rows, daily rows) as strings, for files processed in this order
    (each under a name of its own)."""
    lake = Lake()
    for i, data in enumerate(files):
        lake.ingest(f"file #{i}", data)
    return lake.csv_tables()


def kpis_from_paths(paths: Iterable[Path]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    return kpis(Path(p).read_bytes() for p in paths)


def read_csv_table(path: Path) -> list[dict[str, str]]:
    """Return a KPI CSV written by the engine as a list of string dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
