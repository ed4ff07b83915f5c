"""The ``query`` and ``dashboard`` subcommands, registered on the main CLI's subparsers."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import UsageError
from engine.insight import dashboard as dash
from engine.insight.query import (
    DynamoTables,
    Source,
    categories_from_state,
    check_range,
    parse_date,
    query_all_categories,
    query_category,
    query_daily,
)
from engine.insight.render import FORMATS, render

logger = logging.getLogger(__name__)


def add_subparsers(subparsers: Any) -> None:
    """Register ``query category``, ``query daily`` and ``dashboard`` on an argparse subparsers
    object; each parsed namespace carries ``handler(args) -> int``."""
    query = subparsers.add_parser("query", help="read KPI rows back from a folder or DynamoDB")
    kinds = query.add_subparsers(dest="query_kind", metavar="{category,daily}")
    kinds.required = True

    category = kinds.add_parser("category", help="one category's KPIs over a date range")
    category.add_argument("--category", required=True, help="category name, as in the data")
    _range_arguments(category)
    _source_arguments(category)
    category.add_argument("--format", choices=FORMATS, default="table")
    category.set_defaults(handler=run_query_category)

    daily = kinds.add_parser("daily", help="daily KPIs over a date range")
    _range_arguments(daily)
    _source_arguments(daily)
    daily.add_argument("--format", choices=FORMATS, default="table")
    daily.set_defaults(handler=run_query_daily)

    board = subparsers.add_parser("dashboard", help="write a self-contained offline HTML report")
    where = board.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-dir", metavar="DIR", help="output folder of `process --out DIR`")
    where.add_argument("--from-dynamodb", action="store_true", help="read the DynamoDB tables")
    board.add_argument("--category-table", default="CategoryKPIs")
    board.add_argument("--order-table", default="OrderKPIs")
    board.add_argument(
        "--categories",
        help="comma-separated category names (with --from-dynamodb; no Scan is made)",
    )
    board.add_argument(
        "--state-table",
        help="with --from-dynamodb and no --categories: read the names from the per-date fences",
    )
    board.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD")
    board.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD")
    board.add_argument("--out", required=True, metavar="report.html")
    board.add_argument("--title", default="Order KPIs")
    board.set_defaults(handler=run_dashboard)


def _range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD")


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", metavar="DIR", help="output folder of `process --out DIR`")
    where.add_argument("--dynamodb", action="store_true", help="read the DynamoDB KPI tables")
    parser.add_argument("--category-table", default="CategoryKPIs")
    parser.add_argument("--order-table", default="OrderKPIs")


def _source(args: argparse.Namespace) -> Source:
    if getattr(args, "dynamodb", False):
        return DynamoTables(args.category_table, args.order_table)
    folder = Path(args.dir)
    if not folder.is_dir():
        raise UsageError(
            f"output folder {args.dir!r} does not exist",
            hint="pass the folder given to `order-kpis process --out DIR`",
        )
    return folder


def _dates(args: argparse.Namespace) -> tuple[date, date]:
    date_from = parse_date(args.date_from, name="--from")
    date_to = parse_date(args.date_to, name="--to")
    check_range(date_from, date_to)
    return date_from, date_to


def _emit(frame: pl.DataFrame, fmt: str) -> int:
    sys.stdout.write(render(frame, fmt))
    sys.stdout.flush()
    if frame.height == 0:
        logger.warning("no KPI rows in the range")
    return 0


def run_query_category(args: argparse.Namespace, *, client: Any = None) -> int:
    """Print one category's KPI rows; return the exit code."""
    date_from, date_to = _dates(args)
    source = _source(args)
    return _emit(
        query_category(source, args.category, date_from, date_to, client=client), args.format
    )


def run_query_daily(args: argparse.Namespace, *, client: Any = None) -> int:
    """Print the daily KPI rows; return the exit code."""
    date_from, date_to = _dates(args)
    source = _source(args)
    return _emit(query_daily(source, date_from, date_to, client=client), args.format)


def run_dashboard(args: argparse.Namespace, *, client: Any = None) -> int:
    """Write the HTML dashboard; return the exit code."""
    categories = (
        [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    )
    rejections: list[dash.Rejection] = []
    if args.from_dynamodb:
        if not (args.date_from and args.date_to):
            raise UsageError(
                "--from-dynamodb needs --from and --to",
                hint="DynamoDB is read by key: the dates say which keys",
            )
        date_from, date_to = _dates(args)
        if not categories and args.state_table:
            categories = categories_from_state(args.state_table, date_from, date_to, client=client)
            logger.info("categories from %s fences: %s", args.state_table, categories)
        if not categories:
            raise UsageError(
                "reading every category from DynamoDB needs the category names",
                hint="pass --categories a,b,c or --state-table T (the per-date fences list "
                "them); a Scan of the table is deliberately not offered",
            )
        tables = DynamoTables(args.category_table, args.order_table)
        daily = query_daily(tables, date_from, date_to, client=client)
        cats = query_all_categories(
            tables, date_from, date_to, categories=categories, client=client
        )
    else:
        folder = Path(args.from_dir)
        if not folder.is_dir():
            raise UsageError(
                f"output folder {args.from_dir!r} does not exist",
                hint="pass the folder given to `order-kpis process --out DIR`",
            )
        date_from = parse_date(args.date_from, name="--from") if args.date_from else date.min
        date_to = parse_date(args.date_to, name="--to") if args.date_to else date.max
        if date_from > date_to:
            check_range(date_from, date_to)
        daily = _read_all(folder, date_from, date_to, kind="daily")
        cats = _read_all(folder, date_from, date_to, kind="category", categories=categories)
        rejections = dash.load_rejections(folder)
    page = dash.build_html(cats, daily, rejections=rejections, title=args.title)
    out = dash.write_dashboard(args.out, page)
    logger.info("dashboard: %d days, %d category rows -> %s", daily.height, cats.height, out)
    return 0


def _read_all(
    folder: Path,
    date_from: date,
    date_to: date,
    *,
    kind: str,
    categories: list[str] | None = None,
) -> pl.DataFrame:
    # The dashboard's default is "everything in the folder", which may exceed the range cap
    # meant for typed ranges, so the local files are filtered here without check_range.
    from engine.insight import query as q

    if kind == "daily":
        path = q._local_file(folder, q.DAILY_FILE)
        frame = pl.scan_parquet(path)
        schema, order = q.DAILY_SCHEMA, ["order_date"]
    else:
        path = q._local_file(folder, q.CATEGORY_FILE)
        frame = pl.scan_parquet(path)
        if categories is not None:
            frame = frame.filter(pl.col("category").is_in(categories))
        schema, order = q.CATEGORY_SCHEMA, ["category", "order_date"]
    return (
        frame.filter(pl.col("order_date").is_between(date_from, date_to, closed="both"))
        .select(pl.col(n).cast(t) for n, t in schema.items())
        .sort(order)
        .collect()
    )
