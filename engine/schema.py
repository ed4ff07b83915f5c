"""What a valid order row is: the pandera-polars model, and nothing about how it is run.

The model is declared over the text of each field (after surrounding whitespace is stripped),
because the contract is about how values are *written* (``2025-07-06``, not ``2025/07/06``;
at most 4 decimal places) and Polars' typed parsers are more lenient than that. ``validate.py``
runs the model; ``typed_columns`` turns rows that passed into typed columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import pandera.polars as pa
import polars as pl

from engine.columns import DEFAULT_CATEGORIES

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
INTEGER_PATTERN = r"^[0-9]+$"
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]{1,4})?$"
# Longer values cannot be a sane quantity or price and would overflow exact arithmetic.
MAX_NUMBER_CHARS = 18

# Rule name (as pandera reports it) -> what a business user reads.
RULE_MESSAGES: dict[str, str] = {
    "not_empty": "must not be empty",
    "field_uniqueness": "must be unique within the file (the same order_id is on another line)",
    "allowed_category": "is not an allowed category",
    "calendar_date": "must be a real calendar date written YYYY-MM-DD",
    "positive_integer": "must be a positive whole number",
    "positive_decimal": "must be a positive number with at most 4 decimal places",
    "true_or_false": "must be true or false",
    "not_nullable": "is missing",
    "column_in_dataframe": "column is missing",
}


# Pandera's internal check names -> the stable rule ids written in reports. Names not listed
# (the model's own checks) are already readable and are used as they are.
RULE_IDS: dict[str, str] = {
    "field_uniqueness": "unique",
    "not_nullable": "not_null",
    "column_in_dataframe": "column_present",
}


def _text(data: pa.PolarsData) -> pl.Expr:
    return pl.col(data.key)


class OrderModel(pa.DataFrameModel):
    """One order row, as text. ``returned`` is any letter case of true/false."""

    order_id: str = pa.Field(unique=True)
    customer_id: str
    order_date: str
    category: str
    product_id: str
    quantity: str
    unit_price: str
    returned: str

    @pa.check("order_id", "customer_id", "product_id", "category", name="not_empty")
    def not_empty(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_text(data).str.len_bytes() > 0)

    @pa.check("category", name="allowed_category")
    def allowed_category(cls, data: pa.PolarsData) -> pl.LazyFrame:
        col = _text(data)
        # An empty category is reported once, by not_empty.
        return data.lazyframe.select(
            col.is_in(list(cls.allowed_categories())) | (col.str.len_bytes() == 0)
        )

    @pa.check("order_date", name="calendar_date")
    def calendar_date(cls, data: pa.PolarsData) -> pl.LazyFrame:
        col = _text(data)
        return data.lazyframe.select(
            col.str.contains(DATE_PATTERN)
            & col.str.to_date("%Y-%m-%d", strict=False).is_not_null()
        )

    @pa.check("quantity", name="positive_integer")
    def positive_integer(cls, data: pa.PolarsData) -> pl.LazyFrame:
        col = _text(data)
        ok = (
            col.str.contains(INTEGER_PATTERN)
            & (col.str.len_bytes() <= MAX_NUMBER_CHARS)
            & (col.str.to_integer(strict=False) > 0)
        )
        return data.lazyframe.select(ok.fill_null(False))

    @pa.check("unit_price", name="positive_decimal")
    def positive_decimal(cls, data: pa.PolarsData) -> pl.LazyFrame:
        col = _text(data)
        ok = (
            col.str.contains(DECIMAL_PATTERN)
            & (col.str.len_bytes() <= MAX_NUMBER_CHARS)
            & (col.str.to_decimal(scale=4) > 0)
        )
        return data.lazyframe.select(ok.fill_null(False))

    @pa.check("returned", name="true_or_false")
    def true_or_false(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_text(data).str.to_lowercase().is_in(["true", "false"]))

    @classmethod
    def allowed_categories(cls) -> tuple[str, ...]:
        return DEFAULT_CATEGORIES

    class Config:
        # Extra columns are allowed (and ignored with a warning by the reader).
        strict = False
        coerce = False


@cache
def _model_for(categories: tuple[str, ...]) -> type[OrderModel]:
    def allowed(cls: type[OrderModel]) -> tuple[str, ...]:
        return categories

    name = "OrderModel_" + str(abs(hash(categories)))
    model = type(name, (OrderModel,), {"allowed_categories": classmethod(allowed)})
    return model


def order_model(categories: Iterable[str] | None = None) -> type[OrderModel]:
    """Return the order model whose ``category`` rule allows exactly ``categories``."""
    if categories is None:
        return OrderModel
    cats = tuple(sorted(set(categories)))
    if cats == tuple(sorted(DEFAULT_CATEGORIES)):
        return OrderModel
    return _model_for(cats)


def typed_columns() -> list[pl.Expr]:
    """Return expressions turning validated text columns into the lake's typed columns."""
    return [
        pl.col("order_id"),
        pl.col("customer_id"),
        pl.col("order_date").str.to_date("%Y-%m-%d"),
        pl.col("category"),
        pl.col("product_id"),
        pl.col("quantity").str.to_integer().cast(pl.Int64),
        pl.col("unit_price").str.to_decimal(scale=4).cast(pl.Decimal(38, 4)),
        (pl.col("returned").str.to_lowercase() == "true").alias("returned"),
    ]


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
