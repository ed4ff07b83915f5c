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
    local_categories,
    parse_date,
    query_all_categories,
    query_category,
    query_daily,
)
from engine.insight.render import render

logger = logging.getLogger(__name__)


def _source(args: argparse.Namespace) -> Source:
    if getattr(args, "dynamodb", False):
        return DynamoTables(args.category_table, args.order_table)
    return _output_folder(args.dir)


def _output_folder(text: str) -> Path:
    """Return the `process` output folder ``text`` names; raise UsageError if it is none."""
    folder = Path(text)
    if not folder.is_dir():
        raise UsageError(
            f"output folder {text!r} "
            + ("is not a folder" if folder.exists() else "does not exist"),
            hint="pass the folder given to `order-kpis process --out DIR`",
        )
    if (folder / "lake").is_dir():
        from engine.lake import LocalLake

        if pending := LocalLake(folder / "lake").pending():
            logger.warning(
                "the KPI tables of %s do not show the lake's latest orders for %d dates (%s%s):"
                " a run is under way, or one was interrupted; the next `order-kpis process` or"
                " `reprocess` of the folder brings them up to date", text, len(pending),
                min(pending).isoformat(), "" if len(pending) == 1 else f"..{max(pending)}")
    return folder


def _dates(args: argparse.Namespace) -> tuple[date, date]:
    date_from = parse_date(args.date_from, name="--from")
    date_to = parse_date(args.date_to, name="--to")
    dynamodb = bool(getattr(args, "dynamodb", False) or getattr(args, "from_dynamodb", False))
    check_range(date_from, date_to, bounded=dynamodb)
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
    frame = query_category(source, args.category, date_from, date_to, client=client)
    if frame.height == 0 and isinstance(source, Path):
        names = local_categories(source)
        if args.category not in names and (
                like := [n for n in names if n.casefold() == args.category.casefold()]):
            logger.warning("no category %r: names match exactly; did you mean %r?",
                           args.category, like[0])
    return _emit(frame, args.format)


def run_query_daily(args: argparse.Namespace, *, client: Any = None) -> int:
    """Print the daily KPI rows; return the exit code."""
    date_from, date_to = _dates(args)
    source = _source(args)
    return _emit(query_daily(source, date_from, date_to, client=client), args.format)


_DATA_SUFFIXES = (".csv", ".parquet", ".json", ".jsonl", ".tsv", ".xlsx")


def _check_dashboard_out(out: str, from_dir: str | None) -> None:
    """Refuse an --out that would replace data: a table, report or lake file (`--out
    DIR/category_kpis.parquet` replaced the table with HTML and left the folder unusable)."""
    target = Path(out)
    hint = "name the page like report.html (DIR/dashboard.html is fine)"
    if target.suffix.lower() in _DATA_SUFFIXES:
        raise UsageError(f"--out {out!r}: the dashboard is one HTML page, not a"
                         f" {target.suffix} file; a data file there would be replaced", hint=hint)
    if from_dir:
        from engine.pipeline import output_part

        if (part := output_part(target, Path(from_dir))) is not None:
            raise UsageError(f"--out {out!r} is {part} of {from_dir}, which `process` owns",
                             hint=hint)


def run_dashboard(args: argparse.Namespace, *, client: Any = None) -> int:
    """Write the HTML dashboard; return the exit code."""
    _check_dashboard_out(args.out, None if args.from_dynamodb else args.from_dir)
    categories = (
        [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    )
    if args.state_table and not args.from_dynamodb:
        raise UsageError("--state-table reads the per-date fences in DynamoDB: it goes with"
                         " --from-dynamodb", hint="a folder's category table holds every"
                         " category: leave --state-table out")
    if args.state_table and categories:
        raise UsageError("--categories and --state-table both say which categories to read",
                         hint="give one of them")
    rejections: list[dash.Rejection] | None = []
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
        rejections = None
    else:
        folder = _output_folder(args.from_dir)
        date_from = parse_date(args.date_from, name="--from") if args.date_from else date.min
        date_to = parse_date(args.date_to, name="--to") if args.date_to else date.max
        if date_from > date_to:
            check_range(date_from, date_to)
        # A local range is not capped (the default is everything in the folder).
        daily = query_daily(folder, date_from, date_to)
        cats = query_all_categories(folder, date_from, date_to, categories=categories)
        rejections = dash.load_rejections(folder)
    if args.rejections_from:
        from engine.config import split_s3_uri

        if (split := split_s3_uri(args.rejections_from)) is None:
            raise UsageError(
                f"--rejections-from {args.rejections_from!r} is not an s3://bucket/prefix URI",
                hint="the stack's cleaned bucket: s3://<CleanedBucketName>/rejected/",
            )
        bucket, prefix = split[0], split[1] or "rejected/"
        rejections = dash.load_rejections_s3(bucket, prefix)
    page = dash.build_html(cats, daily, rejections=rejections, title=args.title,
                           read_all=dash.READ_ALL_DYNAMODB if args.from_dynamodb
                           else dash.READ_ALL_LOCAL)
    out = dash.write_dashboard(args.out, page)
    logger.info("dashboard: %d days, %d category rows -> %s", daily.height, cats.height, out)
    # stdout stays free for data; where the file went is for the person at the terminal.
    quarantined = sum(r.quarantined for r in rejections or ())
    shown = ("rejections not read" if rejections is None
             else f"{len(rejections) - quarantined} rejected files"
             + (f", {quarantined} with rows quarantined" if quarantined else ""))
    print(f"dashboard written to {out} ({daily.height} days, {shown})", file=sys.stderr)
    return 0
