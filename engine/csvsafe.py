"""CSV cells that a spreadsheet would run as formulas are neutralised (OWASP CSV injection)."""

from __future__ import annotations

import polars as pl

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = r"^[+-]?[0-9]+(\.[0-9]+)?$"


def safe_text(expr: pl.Expr) -> pl.Expr:
    """Return ``expr`` with a leading ``'`` on text cells that start with a formula trigger.

    Cells that are plain numbers (``-12.50``) stay as they are: they cannot run anything.
    """
    starts = pl.lit(False)
    for t in TRIGGERS:
        starts = starts | expr.str.starts_with(t)
    risky = starts & ~expr.str.contains(_NUMBER)
    return pl.when(risky).then(pl.lit("'") + expr).otherwise(expr)


def safe_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Return ``df`` with every String column made safe for spreadsheets."""
    return df.with_columns(
        safe_text(pl.col(name)).alias(name)
        for name, dtype in df.schema.items()
        if dtype == pl.String
    )
