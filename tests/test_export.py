"""engine.insight.export: Hive month partitions for BI tools, local (atomic) and on S3 (moto)."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import boto3
import polars as pl
import pytest

from engine.errors import UsageError
from engine.insight.export import athena_ddl, export_bi
from tests.insight_aws import moto_endpoint
from tests.insight_support import CATEGORY_SCHEMA, DAILY_SCHEMA, frames, oracle

__all__ = ["moto_endpoint"]

ROOT = Path(__file__).resolve().parents[1]


def two_month_frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """The oracle's July rows plus one August day, with a formula-like category name."""
    category, daily = frames(oracle())
    aug_cat = pl.DataFrame(
        [["=HYPERLINK(\"http://evil\")", date(2025, 8, 1), Decimal("-12.50"), Decimal("-12.50"),
          Decimal("1.0000"), 1, 1]],
        schema=CATEGORY_SCHEMA, orient="row",
    )  # fmt: skip
    aug_day = pl.DataFrame(
        [[date(2025, 8, 1), 1, Decimal("-12.50"), 1, Decimal("1.0000"), 1]],
        schema=DAILY_SCHEMA,
        orient="row",
    )
    return pl.concat([category, aug_cat]), pl.concat([daily, aug_day])


def test_local_export_writes_hive_month_partitions(tmp_path: Path) -> None:
    category, daily = two_month_frames()
    written = export_bi(category, daily, tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        f"{root}/{table}/month={month}/part-0.{ext}"
        for root, ext in (("kpis", "parquet"), ("kpis_csv", "csv"))
        for table in ("category_kpis", "daily_kpis")
        for month in ("2025-07", "2025-08")
    ]
    assert len(written) == 8
    assert {(w.table, w.month, w.rows) for w in written if w.location.endswith(".parquet")} == {
        ("category_kpis", "2025-07", 8),
        ("category_kpis", "2025-08", 1),
        ("daily_kpis", "2025-07", 3),
        ("daily_kpis", "2025-08", 1),
    }


def test_partition_files_keep_contract_types_and_rows(tmp_path: Path) -> None:
    category, daily = two_month_frames()
    export_bi(category, daily, tmp_path)
    july = pl.read_parquet(tmp_path / "kpis/daily_kpis/month=2025-07/part-0.parquet")
    assert july.schema == pl.Schema(DAILY_SCHEMA)  # no `month` column inside the files
    assert july.rows(named=True) == oracle().daily
    # Hive-aware readers get the month back from the path.
    both = pl.read_parquet(tmp_path / "kpis/category_kpis/", hive_partitioning=True)
    assert both.height == category.height
    assert set(both["month"].to_list()) == {"2025-07", "2025-08"}


def test_exported_csv_is_injection_safe_and_keeps_negative_money(tmp_path: Path) -> None:
    category, daily = two_month_frames()
    export_bi(category, daily, tmp_path)
    text = (tmp_path / "kpis_csv/category_kpis/month=2025-08/part-0.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == [
        "'=HYPERLINK(\"http://evil\")", "2025-08-01", "-12.50", "-12.50", "1.0000", "1", "1"
    ]  # fmt: skip
    parquet = pl.read_parquet(tmp_path / "kpis/category_kpis/month=2025-08/part-0.parquet")
    assert parquet["category"].to_list() == ['=HYPERLINK("http://evil")']  # data unchanged


def test_rerun_replaces_files_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    category, daily = two_month_frames()
    export_bi(category, daily, tmp_path)
    export_bi(category.filter(pl.col("category") == "Books"), daily, tmp_path)
    july = pl.read_parquet(tmp_path / "kpis/category_kpis/month=2025-07/part-0.parquet")
    assert set(july["category"].to_list()) == {"Books"}
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_frame_without_contract_columns_is_refused(tmp_path: Path) -> None:
    category, daily = frames(oracle())
    with pytest.raises(UsageError, match="lacks columns"):
        export_bi(category.drop("orders"), daily, tmp_path)


@pytest.mark.integration
def test_s3_export_puts_the_same_layout(moto_endpoint: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bi-exports")
    category, daily = two_month_frames()
    written = export_bi(category, daily, "s3://bi-exports/exports/", s3_client=s3)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="bi-exports")["Contents"])
    assert keys == sorted(w.location.removeprefix("s3://bi-exports/") for w in written)
    assert "exports/kpis/daily_kpis/month=2025-08/part-0.parquet" in keys
    body = s3.get_object(
        Bucket="bi-exports", Key="exports/kpis/daily_kpis/month=2025-07/part-0.parquet"
    )
    got = pl.read_parquet(io.BytesIO(body["Body"].read()))
    assert got.rows(named=True) == oracle().daily


def test_athena_ddl_declares_decimals_and_month_partitions() -> None:
    ddl = athena_ddl("s3://bi/exports")
    assert ddl.count("CREATE EXTERNAL TABLE") == 2
    assert "`total_revenue` decimal(38,2)" in ddl
    assert "`avg_return_rate` decimal(38,4)" in ddl
    assert ddl.count("PARTITIONED BY (`month` string)") == 2
    assert ddl.count("STORED AS PARQUET") == 2
    assert "LOCATION 's3://bi/exports/kpis/category_kpis/'" in ddl
    assert "kpis_csv" not in ddl  # the CSV tree must stay outside every table location


def test_athena_ddl_projects_the_months_asked_for() -> None:
    # The range was 2000-01 to NOW, fixed: a month of orders dated earlier, or ahead, was
    # exported and invisible to every query.
    assert "'projection.month.range' = '2000-01,NOW+1YEARS'" in athena_ddl("s3://b/x")
    ddl = athena_ddl("s3://b/x", first_month="1998-03", last_month="NOW+2YEARS")
    assert ddl.count("'projection.month.range' = '1998-03,NOW+2YEARS'") == 2
    assert "'1998-01,2031-12'" in athena_ddl("s3://b/x", first_month="1998-01",
                                             last_month="2031-12")
    for bad in ("1998-13", "98-01", "NOW+1DAYS", "now", "2000-01'); DROP TABLE x; --"):
        with pytest.raises(UsageError):
            athena_ddl("s3://b/x", first_month=bad)


def test_a_failed_local_export_leaves_the_earlier_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk on the third file left the category table new and the daily table old,
    # four whole files that disagreed.
    import os

    category, daily = two_month_frames()
    export_bi(category, daily, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    calls = []

    def full_disk(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    changed = category.with_columns(orders=pl.col("orders") + 1)
    with pytest.raises(OSError, match="No space"):
        export_bi(changed, daily.head(1), tmp_path)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # no temporary file left either


def test_a_local_export_that_cannot_rename_changes_nothing(tmp_path: Path) -> None:
    # A partition path taken by a folder: 7 of 8 files were renamed in before the error.
    category, daily = two_month_frames()
    export_bi(category, daily, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    blocker = tmp_path / "kpis_csv" / "daily_kpis" / "month=2025-08" / "part-0.csv"
    blocker.unlink()
    blocker.mkdir()
    del before[blocker]
    with pytest.raises(UsageError, match="is a folder"):
        export_bi(category.with_columns(orders=pl.col("orders") + 1), daily, tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    # Into a new destination, a failed export leaves no folders either.
    fresh = tmp_path / "fresh"
    (fresh / "kpis_csv" / "daily_kpis" / "month=2025-08" / "part-0.csv").mkdir(parents=True)
    with pytest.raises(UsageError):
        export_bi(category, daily, fresh)
    assert sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*")) == [
        "kpis_csv", "kpis_csv/daily_kpis", "kpis_csv/daily_kpis/month=2025-08",
        "kpis_csv/daily_kpis/month=2025-08/part-0.csv"]


def test_docs_show_the_ddl_that_the_code_generates() -> None:
    docs = (ROOT / "docs/insight.md").read_text(encoding="utf-8")
    assert athena_ddl("s3://my-bucket/exports").strip() in docs
