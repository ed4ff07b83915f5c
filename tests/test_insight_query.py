"""engine.insight.query: KPI rows read back from a local folder and from DynamoDB (moto)."""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from engine.errors import TerminalError, TransientError, UsageError
from engine.insight import add_subparsers
from engine.insight.query import DynamoTables, query_category, query_daily
from engine.insight.render import render_csv, render_json, render_table
from tests.insight_aws import NoScanClient, dynamodb, loaded_tables, moto_endpoint, wire
from tests.insight_support import CATEGORY_SCHEMA, DAILY_SCHEMA, frames, oracle, write_output_folder

__all__ = ["loaded_tables", "moto_endpoint"]  # fixtures, used by name

D1, D2, D4 = date(2025, 7, 1), date(2025, 7, 2), date(2025, 7, 4)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return write_output_folder(tmp_path / "out", oracle())


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="order-kpis")
    add_subparsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_local_daily_query_equals_oracle_with_contract_types(out_dir: Path) -> None:
    got = query_daily(out_dir, D1, D4)
    assert got.schema == pl.Schema(DAILY_SCHEMA)
    assert got.rows(named=True) == oracle().daily


def test_local_category_query_keeps_one_category_and_the_range(out_dir: Path) -> None:
    got = query_category(out_dir, "Books", D2, D4)
    want = [r for r in oracle().category if r["category"] == "Books" and r["order_date"] >= D2]
    assert got.schema == pl.Schema(CATEGORY_SCHEMA)
    assert got.rows(named=True) == want
    assert [r["avg_order_value"] for r in want] == [Decimal("5.02"), Decimal("60.00")]


def test_range_without_rows_gives_an_empty_typed_frame(out_dir: Path) -> None:
    got = query_daily(out_dir, date(2025, 7, 3), date(2025, 7, 3))
    assert got.height == 0
    assert got.schema == pl.Schema(DAILY_SCHEMA)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["query", "daily", "--from", "2025-7-1", "--to", "2025-07-02"], "is not a date"),
        (["query", "daily", "--from", "2025-07-05", "--to", "2025-07-02"], "is after"),
        (["query", "daily", "--from", "2025-02-30", "--to", "2025-03-02"], "is not a date"),
    ],
)
def test_bad_dates_are_usage_errors(out_dir: Path, argv: list[str], message: str) -> None:
    args = parse([*argv, "--dir", str(out_dir)])
    with pytest.raises(UsageError, match=message) as info:
        args.handler(args)
    assert "Hint:" in str(info.value)


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    args = parse(
        [
            "query",
            "daily",
            "--from",
            "2025-07-01",
            "--to",
            "2025-07-02",
            "--dir",
            str(tmp_path / "x"),
        ]
    )
    with pytest.raises(UsageError, match="does not exist"):
        args.handler(args)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"daily_kpis\.parquet"):
        query_daily(tmp_path / "empty", D1, D2)


def test_cli_json_output_keeps_exact_decimal_strings(
    out_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(
        ["query", "category", "--category", "Books", "--from", "2025-07-02", "--to",
         "2025-07-02", "--dir", str(out_dir), "--format", "json"]
    )  # fmt: skip
    assert args.handler(args) == 0
    records = json.loads(capsys.readouterr().out)
    assert records == [
        {
            "category": "Books",
            "order_date": "2025-07-02",
            "daily_revenue": "10.05",
            "avg_order_value": "5.02",
            "avg_return_rate": "0.5000",
            "orders": 2,
            "returned_orders": 1,
        }
    ]


def test_table_and_csv_renderers_show_stored_scale(out_dir: Path) -> None:
    daily = query_daily(out_dir, D1, D1)
    table = render_table(daily)
    assert "0.0312" in table and "847.68" in table
    assert render_csv(daily).splitlines() == [
        "order_date,total_orders,total_revenue,total_items_sold,return_rate,unique_customers",
        "2025-07-01,32,847.68,80,0.0312,20",
    ]


def test_csv_output_neutralises_formula_like_categories() -> None:
    category, _ = frames(oracle())
    evil = category.head(1).with_columns(pl.lit('=HYPERLINK("http://x")').alias("category"))
    line = render_csv(evil).splitlines()[1]
    assert line.startswith("\"'=HYPERLINK(")
    assert json.loads(render_json(evil))[0]["category"] == '=HYPERLINK("http://x")'


# ---- DynamoDB (moto over HTTP) -------------------------------------------------------------


@pytest.mark.integration
def test_dynamodb_category_query_is_one_paginated_key_query(loaded_tables: DynamoTables) -> None:
    spy = NoScanClient(dynamodb())
    got = query_category(loaded_tables, "Books", D1, D4, client=spy, page_size=1)
    want = [r for r in oracle().category if r["category"] == "Books"]
    assert got.schema == pl.Schema(CATEGORY_SCHEMA)
    assert got.rows(named=True) == want
    # 3 items at 1 per page: 3 pages plus possibly one empty page that ends the query.
    assert set(spy.calls) == {"query"}
    assert spy.calls["query"] >= len(want)


@pytest.mark.integration
def test_dynamodb_daily_query_batches_over_the_dates_and_never_scans(
    loaded_tables: DynamoTables,
) -> None:
    spy = NoScanClient(dynamodb())
    start = D4 - timedelta(days=149)  # 150 dates -> two BatchGetItem calls (100 keys max)
    got = query_daily(loaded_tables, start, D4, client=spy)
    assert got.schema == pl.Schema(DAILY_SCHEMA)
    assert got.rows(named=True) == oracle().daily
    assert dict(spy.calls) == {"batch_get_item": 2}


@pytest.mark.integration
def test_dynamodb_cli_with_default_client_prints_csv(
    loaded_tables: DynamoTables, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(
        ["query", "daily", "--from", "2025-07-02", "--to", "2025-07-03", "--dynamodb",
         "--order-table", loaded_tables.order_table, "--format", "csv"]
    )  # fmt: skip
    assert args.handler(args) == 0
    assert capsys.readouterr().out.splitlines()[1] == "2025-07-02,5,1355.15,8,0.4000,4"


class FlakyBatchClient:
    """A fake client whose first BatchGetItem leaves every key unprocessed."""

    def __init__(self, items: list[dict[str, Any]], failures: int) -> None:
        self.items = {i["order_date"]["S"]: i for i in items}
        self.failures = failures
        self.calls = 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        ((table, request),) = RequestItems.items()
        if self.failures:
            self.failures -= 1
            return {"Responses": {table: []}, "UnprocessedKeys": RequestItems}
        found = [self.items[k["order_date"]["S"]] for k in request["Keys"]
                 if k["order_date"]["S"] in self.items]  # fmt: skip
        return {"Responses": {table: found}, "UnprocessedKeys": {}}


def test_unprocessed_keys_are_retried_then_reported_as_transient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("engine.insight.query.time.sleep", lambda _s: None)
    items = [wire(r) for r in oracle().daily]
    flaky = FlakyBatchClient(items, failures=2)
    got = query_daily(DynamoTables(), D1, D4, client=flaky)
    assert got.rows(named=True) == oracle().daily
    assert flaky.calls == 3
    with pytest.raises(TransientError, match="unprocessed"):
        query_daily(DynamoTables(), D1, D4, client=FlakyBatchClient(items, failures=100))


def test_a_table_still_throttled_exits_75_run_it_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It exited 1, the code of invalid data; 75 is the command line's "run it again".
    from engine.cli import main

    monkeypatch.setattr("engine.insight.query.time.sleep", lambda _s: None)
    monkeypatch.setattr("engine.insight.commands.query_daily", lambda *a, **k: query_daily(
        DynamoTables(), D1, D4, client=FlakyBatchClient([], failures=100)))
    assert main(["query", "daily", "--from", "2025-07-01", "--to", "2025-07-04",
                 "--dynamodb"]) == 75
    err = capsys.readouterr().err
    assert "left keys unprocessed after 8 retries" in err and "run the query again" in err


def test_stored_number_with_more_places_than_the_contract_is_refused() -> None:
    row = dict(oracle().daily[0])
    item = wire(row)
    item["total_revenue"] = {"N": "847.685"}  # a writer bug: must not be rounded away silently
    with pytest.raises(TerminalError, match="total_revenue"):
        query_daily(DynamoTables(), D1, D1, client=FlakyBatchClient([item], failures=0))


def test_tables_behind_the_lake_are_served_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # After an interrupted run the lake holds files the tables do not show yet: query and
    # dashboard served them without a word.
    import datetime as dt

    from engine.cli import main
    from engine.lake import LocalLake

    out = tmp_path / "out"
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "valid_order.csv"
    assert main(["process", str(fixture), "--out", str(out), "-q"]) == 0
    july = ["query", "daily", "--from", "2025-07-01", "--to", "2025-07-31"]
    assert main([*july, "--dir", str(out)]) == 0
    assert "do not show" not in caplog.text
    LocalLake(out / "lake").mark_pending([dt.date(2025, 7, 6), dt.date(2025, 7, 9)])
    assert main([*july, "--dir", str(out)]) == 0
    assert "do not show the lake's latest orders for 2 dates (2025-07-06..2025-07-09)" in \
        caplog.text


def test_a_long_range_is_refused_for_dynamodb_only_and_a_case_slip_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main
    from engine.errors import UsageError
    from engine.insight.query import MAX_RANGE_DAYS, DynamoTables, query_daily

    out = tmp_path / "out"
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "valid_order.csv"
    assert main(["process", str(fixture), "--out", str(out), "-q"]) == 0
    # Every day read from DynamoDB costs reads: a range is bounded there, not in a folder.
    with pytest.raises(UsageError, match=f"more than {MAX_RANGE_DAYS}"):
        query_daily(DynamoTables("c", "d"), date(2000, 1, 1), date(2030, 1, 1), client=object())
    capsys.readouterr()
    assert main(["query", "daily", "--from", "0001-01-01", "--to", "9999-12-31",
                 "--dir", str(out), "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 1 + 1  # the header and the file's one date
    # Names match exactly; a case slip gave "(no rows)" and nothing more.
    assert main(["query", "category", "--category", "books", "--from", "2025-07-01",
                 "--to", "2025-07-31", "--dir", str(out)]) == 0
    assert "no category 'books': names match exactly; did you mean 'Books'?" in caplog.text


def test_table_format_keeps_one_line_per_row_and_its_columns_aligned() -> None:
    # A category holding a newline (the validator takes a quoted one) split its row in two, and
    # wide characters (CJK, emoji) pushed the next columns out of line.
    import unicodedata

    frame = pl.DataFrame({"category": ["Books\nNew", "本と雑誌", "Cafe\u0301", "📚", "Toys",
                                       "กัน", "A\\tB", "A\tB"],
                          "orders": [1, 22, 333, 4, 5, 6, 7, 8]})
    lines = render_table(frame).splitlines()
    assert len(lines) == 2 + frame.height
    assert lines[2].startswith("'Books\\nNew'")
    assert lines[8].startswith("A\\tB ") and lines[9].startswith("'A\\tB'")  # told apart

    def columns(text: str) -> int:  # terminal columns, counted independently of the code
        return sum(0 if unicodedata.category(c) in ("Mn", "Me") else
                   2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)

    assert len({columns(line) for line in lines}) == 1  # every number ends in one column
