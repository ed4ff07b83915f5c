"""engine.csvsafe: OWASP CSV-injection neutralising, scalar and vectorised."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.csvsafe import neutralise, neutralise_expr, safe_csv, safe_frame


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-12.50", "-12.50"),
        ("+3", "+3"),
        ("-1e5", "-1e5"),
        ("-1\n", "'-1\n"),
        ("Books", "Books"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralise_prefixes_formula_triggers_but_keeps_numbers(cell: str, safe: str) -> None:
    assert neutralise(cell) == safe
    frame = pl.DataFrame({"c": [cell]})
    assert frame.select(neutralise_expr("c")).item() == safe


# Polars compiles the regexes on first use: that first call must not trip the deadline.
@settings(deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="=+-@\t\r\n0123456789.eE aZ", max_size=8))))
def test_vectorised_version_agrees_with_the_scalar_one(cells: list[str | None]) -> None:
    got = pl.DataFrame({"c": cells}, schema={"c": pl.String}).select(neutralise_expr("c"))
    assert got.to_series().to_list() == [None if c is None else neutralise(c) for c in cells]


def test_safe_frame_touches_only_text_columns() -> None:
    frame = pl.DataFrame(
        {
            "category": ["=evil()", "Books"],
            "money": [Decimal("-12.50"), Decimal("3.00")],
            "n": [-1, 2],
        },
        schema={"category": pl.String, "money": pl.Decimal(38, 2), "n": pl.Int64},
    )
    out = safe_frame(frame)
    assert out.schema == frame.schema
    assert out["category"].to_list() == ["'=evil()", "Books"]
    rows = list(csv.reader(io.StringIO(safe_csv(frame))))
    assert rows == [
        ["category", "money", "n"],
        ["'=evil()", "-12.50", "-1"],
        ["Books", "3.00", "2"],
    ]


def test_categorical_columns_are_neutralised_too() -> None:
    frame = pl.DataFrame({"c": ["@x", "ok"]}, schema={"c": pl.Categorical()})
    assert safe_frame(frame)["c"].to_list() == ["'@x", "ok"]
