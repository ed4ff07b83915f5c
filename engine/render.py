"""Frames as aligned text tables for a terminal."""

from __future__ import annotations

import polars as pl


def table_text(df: pl.DataFrame, *, title: str | None = None) -> str:
    """Return ``df`` as a plain aligned table (numbers right-aligned), every row shown."""
    cols = df.columns
    text = df.select(pl.col(c).cast(pl.String).fill_null("") for c in cols)
    rows = text.rows()
    numeric = [df.schema[c].is_numeric() for c in cols]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]

    def fmt(values: tuple[str, ...] | list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    lines = [title] if title else []
    lines.append(fmt(cols))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(r) for r in rows)
    if not rows:
        lines.append("(no rows)")
    return "\n".join(lines)
