"""Reading KPI tables back: queries, exports for BI tools and an offline HTML dashboard."""

from __future__ import annotations

from engine.insight.commands import add_subparsers
from engine.insight.query import (
    CATEGORY_SCHEMA,
    DAILY_SCHEMA,
    DynamoTables,
    query_category,
    query_daily,
)

__all__ = [
    "CATEGORY_SCHEMA",
    "DAILY_SCHEMA",
    "DynamoTables",
    "add_subparsers",
    "query_category",
    "query_daily",
]
