"""KPI frames as text for people (a terminal table) and for programs (CSV, JSON)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any, Final

import polars as pl

from engine.csvsafe import safe_csv
from engine.render import table_text

FORMATS: Final = ("table", "csv", "json")


def render_table(frame: pl.DataFrame) -> str:
    """Return an aligned plain-text table: text left, numbers right, nothing truncated."""
    if frame.height == 0:
        return "(no rows)\n"
    return table_text(frame) + "\n"


def render_csv(frame: pl.DataFrame) -> str:
    """Return CSV text, injection-safe, money with 2 decimals and rates with 4, as stored."""
    return safe_csv(frame)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        # A string keeps the exact decimal; a JSON number would be read back as a float.
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def render_json(frame: pl.DataFrame) -> str:
    """Return a JSON array of objects; decimals as exact strings, integers as numbers."""
    records = [{k: _json_value(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
    return json.dumps(records, indent=2) + "\n"


def render(frame: pl.DataFrame, fmt: str) -> str:
    """Return the frame rendered in one of :data:`FORMATS`."""
    if fmt == "table":
        return render_table(frame)
    if fmt == "csv":
        return render_csv(frame)
    if fmt == "json":
        return render_json(frame)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
