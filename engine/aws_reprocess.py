"""Recompute the KPIs of a date range from the S3 lake, reading no input file (a changed KPI
definition). The reprocess container and ``order-kpis reprocess --s3-lake`` call this.

Each date goes through the same per-date fence as the transformer (``engine.state.refresh_date``),
so a reprocess running beside file workflows publishes nothing stale. Then the BI export of
every month of the range that the lake holds is rewritten from the lake, as the transformer
does for the months it touches (``engine.s3export``), so that it shows the recomputed KPIs too.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from engine.aws_jobs import Clients, export_months, publish_dates
from engine.config import ReprocessSettings
from engine.containers_support import EXIT_OK, run_step
from engine.lake import partition_date
from engine.s3lake import S3Lake
from engine.state import KpiTables, PublishResult

log = logging.getLogger(__name__)


def lake_dates(s3: Any, bucket: str, prefix: str = "lake") -> list[dt.date]:
    """Return every ``order_date`` partition under ``s3://bucket/prefix/``, sorted."""
    out: set[dt.date] = set()
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/", Delimiter="/"):
        for p in page.get("CommonPrefixes", []):
            name = str(p["Prefix"]).removeprefix(f"{prefix}/").rstrip("/")
            if (day := partition_date(name)) is not None:
                out.add(day)
            elif name.startswith("order_date="):
                log.warning("s3://%s/%s: not a date partition; skipped", bucket, p["Prefix"])
    return sorted(out)


def reprocess_range(
    settings: ReprocessSettings, clients: Clients | None = None
) -> list[PublishResult]:
    """Republish every lake date in the settings' range; return one result per date."""
    c = Clients.from_env() if clients is None else clients
    lake = S3Lake(
        settings.cleaned_bucket, state_table=settings.state_table, s3=c.s3, dynamodb=c.dynamodb,
        tuning=settings.lake,
    )
    tables = KpiTables(
        category=settings.category_table, daily=settings.order_table, state=settings.state_table
    )
    dates = run_step(
        "lake_dates",
        lambda: [
            d for d in lake_dates(c.s3, settings.cleaned_bucket)
            if settings.date_from <= d <= settings.date_to
        ],
        lambda r: {"dates": len(r)},
        date_from=settings.date_from.isoformat(),
        date_to=settings.date_to.isoformat(),
    )
    published = publish_dates(lake, dates, tables, c.dynamodb)
    export_months(lake, dates, settings.state_table, c)
    return published


def reprocess_job(settings: ReprocessSettings, clients: Clients | None = None) -> int:
    """Run ``reprocess_range`` as a container job; return the exit code."""
    reprocess_range(settings, clients)
    return EXIT_OK
