"""Dates held by several sources: the latest version of each order wins, in bounded slices.

``latest_orders_in_slices`` splits the de-duplication by a hash of order_id so that its window
never holds more than a slice of a date's orders. Here it is checked against plain Python (the
latest ingestion of each (date, order id) wins), and the KPI tables computed in many slices
against the Decimal oracle.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import pipeline
from engine.kpis import latest_orders, latest_orders_in_slices
from engine.lake import LocalLake
from engine.pipeline import process_paths, refresh_tables
from tests import oracle

HEADER = "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"

versions = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C", "D", "E", "F", "G", "H"]),  # order id
        st.sampled_from([dt.date(2025, 7, 1), dt.date(2025, 7, 2)]),
        st.integers(1, 5),  # ingestion sequence
        st.integers(1, 99),  # quantity, to tell versions apart
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(rows=versions, slices=st.integers(1, 6))
def test_slices_keep_exactly_the_latest_version_of_each_order(
    rows: list[tuple[str, dt.date, int, int]], slices: int
) -> None:
    # Within one ingestion an id is unique per date, as validation guarantees.
    seen: dict[tuple[str, dt.date, int], int] = {}
    for oid, day, seq, qty in rows:
        seen.setdefault((oid, day, seq), qty)
    newest: dict[tuple[str, dt.date], int] = {}
    for oid, day, seq in seen:
        newest[(oid, day)] = max(seq, newest.get((oid, day), 0))
    want = sorted((oid, day, seq, qty) for (oid, day, seq), qty in seen.items()
                  if newest[(oid, day)] == seq)
    frame = pl.DataFrame(
        [(oid, day, seq, qty) for (oid, day, seq), qty in seen.items()],
        schema={"order_id": pl.String, "order_date": pl.Date, "_seq": pl.Int64,
                "quantity": pl.Int64},
        orient="row",
    )
    got = latest_orders_in_slices(frame.lazy(), slices).collect()
    assert sorted(got.iter_rows()) == want
    assert sorted(latest_orders(frame.lazy()).collect().iter_rows()) == want


def _files(tmp_path: Path) -> list[Path]:
    """Three exports of two days, each re-sending and correcting some of the earlier orders."""
    rnd = random.Random(7)
    paths = []
    for n in range(3):
        lines = [HEADER]
        for i in range(n * 20, n * 20 + 60):
            day = 1 + i % 2
            price = f"{rnd.randint(1, 5000)}.{rnd.randint(0, 99):02d}"
            lines.append(f"ORD{i},CUST{rnd.randint(1, 25)},2025-07-0{day},"
                         f"{rnd.choice(['Books', 'Clothing', 'Electronics'])},P{i % 5},"
                         f"{rnd.randint(1, 9)},{price},{rnd.choice(['true', 'false'])}\n")
        p = tmp_path / f"export{n}.csv"
        p.write_text("".join(lines))
        paths.append(p)
    return paths


@pytest.mark.parametrize("max_rows", [1, 7, 10**9])
def test_kpis_of_shared_dates_in_slices_equal_the_oracle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_rows: int
) -> None:
    files = _files(tmp_path)
    out = tmp_path / "out"
    for f in files:  # one run per file: each later file re-sends orders of the same dates
        assert process_paths([f], out).files[0].outcome == "accepted"
    used: list[int] = []

    def spy(rows: pl.LazyFrame, slices: int) -> pl.LazyFrame:
        used.append(slices)
        return latest_orders_in_slices(rows, slices)

    monkeypatch.setattr(pipeline, "latest_orders_in_slices", spy)
    lake = LocalLake(out / "lake")
    lake.mark_pending(lake.dates())
    with lake.locked():
        refresh_tables(lake, out, max_rows=max_rows)
    want_cat, want_day = oracle.kpis_from_paths(files)
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day
    # Each date holds 30 rows of each of 3 sources: one group per date, in slices of
    # max_rows rows; with a large max_rows both dates are one group, in one slice.
    assert used == ([-(-90 // max_rows)] * 2 if max_rows < 90 else [1])
