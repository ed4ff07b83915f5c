"""Arguments of the ``query`` and ``dashboard`` subcommands, without importing Polars.

The handlers live in ``engine.insight.commands`` and are imported only when a command runs,
so that ``order-kpis --help`` stays instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

FORMATS = ("table", "csv", "json")


def named(what: str) -> Callable[[str], str]:
    """Return an argparse type that refuses an empty value (an unset shell variable), which
    would name the current folder: ``what`` says what was empty."""

    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{what} is empty")
        return text

    return check


def _lazy(name: str) -> Callable[..., int]:
    def run(args: argparse.Namespace, **kwargs: Any) -> int:
        from engine.insight import commands

        handler: Callable[..., int] = getattr(commands, name)
        return handler(args, **kwargs)

    run.__name__ = name
    return run


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
    category.set_defaults(handler=_lazy("run_query_category"))

    daily = kinds.add_parser("daily", help="daily KPIs over a date range")
    _range_arguments(daily)
    _source_arguments(daily)
    daily.add_argument("--format", choices=FORMATS, default="table")
    daily.set_defaults(handler=_lazy("run_query_daily"))

    board = subparsers.add_parser("dashboard", help="write a self-contained offline HTML report")
    where = board.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-dir", metavar="DIR", type=named("the output folder"),
                       help="output folder of `process --out DIR`")
    where.add_argument("--from-dynamodb", action="store_true", help="read the DynamoDB tables")
    board.add_argument("--category-table", default="CategoryKPIs")
    board.add_argument("--order-table", default="OrderKPIs")
    board.add_argument(
        "--categories",
        help="comma-separated category names: the category charts show these (with"
        " --from-dynamodb, the ones read: no Scan is made)",
    )
    board.add_argument(
        "--state-table",
        help="with --from-dynamodb and no --categories: read the names from the per-date fences",
    )
    board.add_argument(
        "--rejections-from",
        metavar="s3://BUCKET/PREFIX",
        help="list the latest rejections from the validator's reports there (on AWS:"
        " s3://<cleaned bucket>/rejected/, the default prefix); instead of DIR/rejected/",
    )
    board.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD")
    board.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD")
    board.add_argument("--out", required=True, metavar="report.html",
                       type=named("the page's path"))
    board.add_argument("--title", default="Order KPIs")
    board.set_defaults(handler=_lazy("run_dashboard"))


def _range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD")


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", metavar="DIR", type=named("the output folder"),
                       help="output folder of `process --out DIR`")
    where.add_argument("--dynamodb", action="store_true", help="read the DynamoDB KPI tables")
    parser.add_argument("--category-table", default="CategoryKPIs")
    parser.add_argument("--order-table", default="OrderKPIs")


