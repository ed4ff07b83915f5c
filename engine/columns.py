"""Column names and the default categories: plain data, cheap to import (no Polars, no pandera)."""

from __future__ import annotations

ORDER_COLUMNS: tuple[str, ...] = (
    "order_id",
    "customer_id",
    "order_date",
    "category",
    "product_id",
    "quantity",
    "unit_price",
    "returned",
)
"""The eight columns of an order file, in the original design's order."""

DEFAULT_CATEGORIES: tuple[str, ...] = ("Electronics", "Books", "Clothing")
"""The allowed categories unless a products file replaces them."""

CATEGORY_COLUMNS: tuple[str, ...] = (
    "category",
    "order_date",
    "daily_revenue",
    "avg_order_value",
    "avg_return_rate",
    "orders",
    "returned_orders",
)
"""Columns of the category KPI table, in output order."""

DAILY_COLUMNS: tuple[str, ...] = (
    "order_date",
    "total_orders",
    "total_revenue",
    "total_items_sold",
    "return_rate",
    "unique_customers",
)
"""Columns of the daily KPI table, in output order."""

CATEGORY_PARQUET, DAILY_PARQUET = "category_kpis.parquet", "daily_kpis.parquet"
CATEGORY_CSV, DAILY_CSV = "category_kpis.csv", "daily_kpis.csv"
TABLE_FILES: tuple[str, ...] = (CATEGORY_PARQUET, DAILY_PARQUET, CATEGORY_CSV, DAILY_CSV)
"""The KPI tables in a ``process`` output folder."""
