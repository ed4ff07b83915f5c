"""Frames as aligned text tables for a terminal."""

from __future__ import annotations

import unicodedata

import polars as pl


def _cell(value: str) -> str:
    """Return ``value`` as one line: a value holding a control character (a category may hold
    a newline, which broke its row in two) is shown quoted, escaped as Python writes it, so
    that it is never taken for another value written with a backslash."""
    return value if value.isprintable() else repr(value)


def _width(text: str) -> int:
    """Return how many terminal columns ``text`` takes: wide (CJK, emoji) characters two,
    non-spacing and enclosing marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.category(c) in ("Mn", "Me")
               else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def table_text(df: pl.DataFrame, *, title: str | None = None) -> str:
    """Return ``df`` as a plain aligned table (numbers right-aligned), every row shown."""
    cols = df.columns
    text = df.select(pl.col(c).cast(pl.String).fill_null("") for c in cols)
    rows = [tuple(_cell(v) for v in r) for r in text.rows()]
    numeric = [df.schema[c].is_numeric() for c in cols]
    widths = [max([_width(c)] + [_width(r[i]) for r in rows]) for i, c in enumerate(cols)]

    def fmt(values: tuple[str, ...] | list[str]) -> str:
        return "  ".join(
            " " * (w - _width(v)) + v if num else v + " " * (w - _width(v))
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    lines = [title] if title else []
    lines.append(fmt(cols))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(r) for r in rows)
    if not rows:
        lines.append("(no rows)")
    return "\n".join(lines)
