"""Hypothesis: random multi-file, multi-date inputs; the CLI's tables equal the oracle's."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.columns import DEFAULT_CATEGORIES, ORDER_COLUMNS
from tests import oracle

DATES = ["2025-07-05", "2025-07-06", "2025-07-07", "2024-02-29"]
ID_ALPHABET = st.sampled_from(list("ABCxyz019-_ ,\n\"é"))


@st.composite
def order_row(draw: st.DrawFn, order_id: str) -> dict[str, str]:
    places = draw(st.integers(0, 4))
    cents = draw(st.integers(1, 10**7))
    price = Decimal(cents).scaleb(-places)
    return {
        "order_id": order_id,
        "customer_id": "C" + draw(st.text(ID_ALPHABET, min_size=0, max_size=4)).strip(),
        "order_date": draw(st.sampled_from(DATES)),
        "category": draw(st.sampled_from(DEFAULT_CATEGORIES)),
        "product_id": "P" + draw(st.text(ID_ALPHABET, max_size=3)).strip(),
        "quantity": str(draw(st.integers(1, 500))),
        "unit_price": str(price),
        "returned": draw(st.sampled_from(["true", "false", "TRUE", "False", "tRuE"])),
    }


@st.composite
def order_file(draw: st.DrawFn, known_ids: list[str]) -> bytes:
    n = draw(st.integers(0, 12))
    ids: list[str] = []
    for _ in range(n):
        # Re-send an order from an earlier file now and then (the later file wins).
        if known_ids and draw(st.booleans()):
            oid = draw(st.sampled_from(known_ids))
        else:
            oid = "O" + str(draw(st.integers(0, 10**6)))
        if oid not in ids:
            ids.append(oid)
    rows = [draw(order_row(oid)) for oid in ids]
    known_ids.extend(ids)
    columns = list(draw(st.permutations(ORDER_COLUMNS)))
    extra = draw(st.booleans())
    if extra:
        columns.insert(draw(st.integers(0, len(columns))), "note")
    pad = draw(st.sampled_from(["", " ", "  "]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n"])),
                   quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
    w.writerow([pad + c.upper() if draw(st.booleans()) else c for c in columns])
    for r in rows:
        w.writerow([pad + r.get(c, "=x, y") + pad for c in columns])
    data = buf.getvalue().encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data


@st.composite
def file_batches(draw: st.DrawFn) -> list[list[bytes]]:
    """One to three `process` runs on the same folder, each with one to three files."""
    known: list[str] = []
    return [
        [draw(order_file(known)) for _ in range(draw(st.integers(1, 3)))]
        for _ in range(draw(st.integers(1, 3)))
    ]


def _check(batches: list[list[bytes]], tmp: Path) -> None:
    out = tmp / "out"
    every: list[bytes] = []
    for b, files in enumerate(batches):
        paths = []
        for i, data in enumerate(files):
            # Unique names: a file name is its source identity in the lake.
            p = tmp / f"in{b}" / f"f{b}_{i}.csv"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            paths.append(str(p))
        every.extend(files)
        assert main(["process", *paths, "--out", str(out), "-q"]) == 0
    want_cat, want_day = oracle.kpis(every)
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=file_batches())
def test_process_tables_equal_the_oracle(batches: list[list[bytes]], tmp_path_factory:
                                         pytest.TempPathFactory) -> None:
    _check(batches, tmp_path_factory.mktemp("prop"))


@pytest.mark.slow
@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=file_batches())
def test_process_tables_equal_the_oracle_long(batches: list[list[bytes]], tmp_path_factory:
                                              pytest.TempPathFactory) -> None:
    _check(batches, tmp_path_factory.mktemp("prop"))
