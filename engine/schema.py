"""The pandera-polars model of an order row: the rules of ``engine/rules.py`` as checks.

The model is declared over the text of each field (after surrounding whitespace is stripped);
each check wraps one rule of ``rules.ROW_RULES``, so pandera and the streaming validator judge
with the same expressions. Pandera's part is the report: it names every failing row, column
and value. ``validate.py`` runs the model; ``rules.typed_columns`` types rows that passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import pandera.polars as pa
import polars as pl

from engine import rules
from engine.columns import DEFAULT_CATEGORIES
from engine.rules import LAKE_SCHEMA, MAX_QUANTITY, MAX_UNIT_PRICE, typed_columns

__all__ = ["LAKE_SCHEMA", "RULE_IDS", "RULE_MESSAGES", "OrderModel", "order_model", "typed_columns"]

# Rule name (as pandera reports it) -> what a business user reads.
RULE_MESSAGES: dict[str, str] = {
    "not_empty": "must not be empty",
    "field_uniqueness": "must be unique within the file (the same order_id is on another line)",
    "allowed_category": "is not an allowed category",
    "calendar_date": "must be a real calendar date written YYYY-MM-DD",
    "positive_integer": f"must be a whole number from 1 to {MAX_QUANTITY:,}",
    "positive_decimal": (
        f"must be a number above 0 and at most {MAX_UNIT_PRICE:,}, with at most 4 decimal places"
    ),
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


def _columns(rule: str) -> tuple[str, ...]:
    return rules.ROW_RULES[rule][1]


class OrderModel(pa.DataFrameModel):
    """One order row, as text. ``returned`` is any letter case of true/false."""

    order_id: str = pa.Field(unique=True)  # rules.UNIQUE_COLUMNS
    customer_id: str
    order_date: str
    category: str
    product_id: str
    quantity: str
    unit_price: str
    returned: str

    @pa.check(*_columns("not_empty"), name="not_empty")
    def not_empty(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return cls._run(rules.not_empty, data)

    @pa.check(*_columns("allowed_category"), name="allowed_category")
    def allowed_category(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return cls._run(rules.allowed_category, data)

    @pa.check(*_columns("calendar_date"), name="calendar_date")
    def calendar_date(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return cls._run(rules.calendar_date, data)

    @pa.check(*_columns("positive_integer"), name="positive_integer")
    def positive_integer(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return cls._run(rules.positive_integer, data)

    @pa.check(*_columns("positive_decimal"), name="positive_decimal")
    def positive_decimal(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return cls._run(rules.positive_decimal, data)

    @pa.check(*_columns("true_or_false"), name="true_or_false")
    def true_or_false(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return cls._run(rules.true_or_false, data)

    @classmethod
    def _run(cls, rule: rules.Rule, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(rule(pl.col(data.key), cls.allowed_categories()))

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
    cats = rules.allowed_categories(categories)
    if cats == rules.allowed_categories(None):
        return OrderModel
    return _model_for(cats)
