"""What a valid order field is, as Polars expressions: the one statement of the row rules.

Each rule is a function of one text column whose surrounding whitespace is already stripped,
because the contract is about how values are *written* (``2025-07-06``, not ``2025/07/06``;
at most 4 decimal places) and Polars' typed parsers are more lenient than that. Two runners
use these functions and nothing else:

- the pandera model (``engine/schema.py``) wraps each one in a check, and names every
  failing row, column and value: that is the report of a bad piece;
- the streaming validator (``engine/validate.py``) evaluates all of them at once on a piece,
  together with its typed columns (``checked_piece``): that is only a verdict, so a piece
  that passes never pays for pandera, and the ~1 s import of pandera is paid only by files
  that have something to report.

This module imports Polars only, so reading valid files and writing the lake stay light.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

import polars as pl

from engine.columns import DEFAULT_CATEGORIES, ORDER_COLUMNS

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
INTEGER_PATTERN = r"^[0-9]+$"
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]{1,4})?$"
# Longer values cannot be a sane quantity or price; the parsers then need no overflow care.
MAX_NUMBER_CHARS = 18
# The largest quantity and unit price: sane for any order line, and small enough that no
# KPI sum can overflow. A date's items stay below 2^63 (Int64) up to ~9e9 order lines, and
# its revenue in ten-thousandths, summed in Int128, below 10^36 (the Decimal(38, 2) money)
# up to 10^13 order lines. Without them, 10 lines of 18-digit quantities gave a negative
# total_items_sold, and 2,000 of the largest prices an Int128 overflow in the KPI query.
MAX_QUANTITY = 1_000_000_000
MAX_UNIT_PRICE = 1_000_000_000
DATE_FORMAT = "%Y-%m-%d"
PRICE_SCALE = 4


def allowed_categories(categories: Iterable[str] | None) -> tuple[str, ...]:
    """Return the allowed categories as both runners use them: a sorted, distinct tuple
    (the contract's default set when None)."""
    return tuple(sorted(set(DEFAULT_CATEGORIES if categories is None else categories)))


def not_empty(col: pl.Expr, categories: Sequence[str] = ()) -> pl.Expr:
    """The field holds something."""
    return col.str.len_bytes() > 0


def allowed_category(col: pl.Expr, categories: Sequence[str] = ()) -> pl.Expr:
    """The category is one of ``categories``; an empty one is reported by ``not_empty``."""
    return col.is_in(list(categories)) | (col.str.len_bytes() == 0)


def _date(col: pl.Expr) -> pl.Expr:
    return col.str.to_date(DATE_FORMAT, strict=False)


_FIRST_DAY = pl.date(1, 1, 1)


def calendar_date(col: pl.Expr, categories: Sequence[str] = ()) -> pl.Expr:
    """A real calendar date written YYYY-MM-DD, from year 1 (there is no year 0: Polars'
    parser takes ``0000-01-01``, and Python's dates stop at year 1)."""
    return col.str.contains(DATE_PATTERN) & (_date(col) >= _FIRST_DAY).fill_null(False)


def _integer(col: pl.Expr) -> pl.Expr:
    return col.str.to_integer(strict=False)


def _decimal(col: pl.Expr) -> pl.Expr:
    return col.str.to_decimal(scale=PRICE_SCALE)


def _positive(col: pl.Expr, pattern: str, value: Callable[[pl.Expr], pl.Expr]) -> pl.Expr:
    ok = (
        col.str.contains(pattern)
        & (col.str.len_bytes() <= MAX_NUMBER_CHARS)
        & value(col)
    )
    return ok.fill_null(False)


def positive_integer(col: pl.Expr, categories: Sequence[str] = ()) -> pl.Expr:
    """Digits only, at most ``MAX_NUMBER_CHARS`` of them, from 1 to ``MAX_QUANTITY``.

    That is ``INTEGER_PATTERN``, checked without a regex: Polars' integer parser takes an
    optional sign and ASCII digits and nothing else, so a value above zero not written with a
    ``+`` is all digits (measured 2.5x cheaper; ``tests/test_rules.py`` checks it against
    the pattern).
    """
    ok = (
        (col.str.len_bytes() <= MAX_NUMBER_CHARS)
        & _integer(col).is_between(1, MAX_QUANTITY)
        & ~col.str.starts_with("+")
    )
    return ok.fill_null(False)


def positive_decimal(col: pl.Expr, categories: Sequence[str] = ()) -> pl.Expr:
    """Digits with at most 4 decimal places, at most ``MAX_NUMBER_CHARS`` long, above zero
    and at most ``MAX_UNIT_PRICE``."""
    # Compared as the decimal's integer count of ten-thousandths: comparing the Decimal with
    # a bound cost more than parsing it (0.17 -> 0.39 CPU-s per 6 pieces of 32 MB; as
    # integers, 0.20).
    def in_bounds(c: pl.Expr) -> pl.Expr:
        return _decimal(c).to_physical().is_between(1, MAX_UNIT_PRICE * 10**PRICE_SCALE)

    return _positive(col, DECIMAL_PATTERN, in_bounds)


def _letter_cases(word: str) -> list[str]:
    return ["".join(p) for p in itertools.product(*({ch.lower(), ch.upper()} for ch in word))]


# Every letter-case spelling of the two words: looking a value up among them costs ~4x less
# than lower-casing every value first, and means the same, since no character but an ASCII
# capital lower-cases to any of their letters (``tests/test_rules.py`` checks both).
TRUE_SPELLINGS = tuple(sorted(_letter_cases("true")))
FALSE_SPELLINGS = tuple(sorted(_letter_cases("false")))


def true_or_false(col: pl.Expr, categories: Sequence[str] = ()) -> pl.Expr:
    """``true`` or ``false`` in any letter case."""
    return col.is_in([*TRUE_SPELLINGS, *FALSE_SPELLINGS])


def is_true(col: pl.Expr) -> pl.Expr:
    """``true`` in any letter case (the typed value of ``returned``)."""
    return col.is_in(TRUE_SPELLINGS)


Rule = Callable[[pl.Expr, Sequence[str]], pl.Expr]

# Rule name (as reports show it) -> the rule, and the columns it applies to. Every column is
# also required to be present and not null (pandera's default; ``checked_piece`` states it).
ROW_RULES: dict[str, tuple[Rule, tuple[str, ...]]] = {
    "not_empty": (not_empty, ("order_id", "customer_id", "product_id", "category")),
    "allowed_category": (allowed_category, ("category",)),
    "calendar_date": (calendar_date, ("order_date",)),
    "positive_integer": (positive_integer, ("quantity",)),
    "positive_decimal": (positive_decimal, ("unit_price",)),
    "true_or_false": (true_or_false, ("returned",)),
}


# Columns whose values must be unique within a file: a file-wide rule, which pandera states as
# ``Field(unique=True)`` and the streaming validator checks across pieces by hashes.
UNIQUE_COLUMNS = ("order_id",)

LAKE_SCHEMA: dict[str, pl.DataType] = {
    "order_id": pl.String(),
    "customer_id": pl.String(),
    "order_date": pl.Date(),
    "category": pl.String(),
    "product_id": pl.String(),
    "quantity": pl.Int64(),
    "unit_price": pl.Decimal(38, 4),
    "returned": pl.Boolean(),
}


def typed_columns(values: dict[str, pl.Expr] | None = None) -> list[pl.Expr]:
    """Return expressions turning valid text columns into the lake's typed columns.

    ``values`` maps a column to the expression of its (stripped) text; plain columns when
    None. On a value that breaks its rule the result is null, never an error.
    """
    v = values or {c: pl.col(c) for c in ORDER_COLUMNS}
    return [
        v["order_id"].alias("order_id"),
        v["customer_id"].alias("customer_id"),
        _date(v["order_date"]).alias("order_date"),
        v["category"].alias("category"),
        v["product_id"].alias("product_id"),
        _integer(v["quantity"]).cast(LAKE_SCHEMA["quantity"]).alias("quantity"),
        _decimal(v["unit_price"]).cast(LAKE_SCHEMA["unit_price"]).alias("unit_price"),
        is_true(v["returned"]).alias("returned"),
    ]


# Columns whose rules pass only values without surrounding whitespace (a pattern or an exact
# word): they need no stripping to be judged, and a padded value fails, so such a piece is
# judged again stripped, by pandera. The other columns are stripped before their rules run.
_SELF_TRIMMING = ("order_date", "quantity", "unit_price", "returned")
OK, BLANK = "__ok", "__blank"
_STRIPPED = "__stripped_"


def checked_piece(
    names: Sequence[str],
    categories: Sequence[str],
    *,
    max_field_bytes: int,
    max_line_bytes: int,
    strip: bool = True,
) -> Callable[[pl.LazyFrame], pl.LazyFrame]:
    """Return the query that judges a piece of text columns ``names`` in one pass.

    Its result holds the typed columns (``typed_columns`` of the stripped text), ``__blank``
    (every field empty: a blank line, skipped) and ``__ok``: the row passes every rule of
    ``ROW_RULES``, no field is null, and neither a field nor the line is over its size limit.
    ``__ok`` True on every non-blank row means the piece is valid; it is a verdict only.
    The stripped text is made once, as columns of its own, before the select: Polars does
    not share a strip repeated across expressions (measured: 30% of the select's CPU).
    ``strip=False`` judges the text as it is, for a piece whose bytes show that no field is
    padded (``read.unpadded``): the same verdict, without the stripped copies.
    """
    stripped = [
        pl.col(c).str.strip_chars().alias(_STRIPPED + c)
        for c in ORDER_COLUMNS if c not in _SELF_TRIMMING
    ] if strip else []
    values = {
        c: pl.col(_STRIPPED + c) if strip and c not in _SELF_TRIMMING else pl.col(c)
        for c in ORDER_COLUMNS
    }
    rules = [
        rule(values[c], categories) for rule, columns in ROW_RULES.values() for c in columns
    ]
    present = [values[c].is_not_null() for c in ORDER_COLUMNS]
    sizes = [pl.col(n).str.len_bytes() for n in names]
    fits = pl.all_horizontal([s <= max_field_bytes for s in sizes]) & (
        pl.sum_horizontal(sizes) + (len(names) - 1) <= max_line_bytes
    )
    ok = pl.all_horizontal([*rules, *present, fits]).fill_null(False)
    blank = pl.all_horizontal([s == 0 for s in sizes])
    judged = [*typed_columns(values), ok.alias(OK), blank.alias(BLANK)]
    return lambda piece: piece.with_columns(stripped).select(judged)
