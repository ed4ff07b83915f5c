"""CSV cells that a spreadsheet will not run as formulas (OWASP "CSV injection").

A text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed
with a single quote, which spreadsheets show as text. Numbers stay numbers: numeric columns are
never touched, and a text cell that is a plain number literal (``-12.50``, ``+3``, ``1e5``) is
kept as is, because a spreadsheet reads it as that number and nothing else.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl

TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet evaluate a cell."""

_TRIGGER_RE: Final = r"^[=+\-@\t\r]"
_NUMBER_CORE: Final = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
# Polars (Rust regex): ^...$ anchor the whole text. Python uses fullmatch, because its "$" would
# also match before a trailing newline and let "-1\n" through as a number.
_NUMBER_RE: Final = f"^{_NUMBER_CORE}$"
_NUMBER: Final = re.compile(_NUMBER_CORE)


def neutralise(value: str) -> str:
    """Return the cell text made safe for spreadsheets (a ``'`` prefix when needed)."""
    if value.startswith(TRIGGERS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralise_expr(column: str | pl.Expr) -> pl.Expr:
    """Return a vectorised expression doing :func:`neutralise` on a String column (nulls stay)."""
    expr = pl.col(column) if isinstance(column, str) else column
    risky = expr.str.contains(_TRIGGER_RE) & ~expr.str.contains(_NUMBER_RE)
    return pl.when(risky).then(pl.lit("'") + expr).otherwise(expr)


def safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Return the frame with every text column neutralised; numeric and date columns untouched."""
    text = [
        name
        for name, dtype in frame.schema.items()
        if dtype == pl.String() or isinstance(dtype, pl.Categorical | pl.Enum)
    ]
    if not text:
        return frame
    return frame.with_columns(
        neutralise_expr(pl.col(name).cast(pl.String)).alias(name) for name in text
    )


def safe_csv(frame: pl.DataFrame) -> str:
    """Return the frame as CSV text with injection-safe cells (dates YYYY-MM-DD, exact decimals)."""
    return safe_frame(frame).write_csv(date_format="%Y-%m-%d")
