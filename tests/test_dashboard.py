"""engine.insight.dashboard: exact period cards, a self-contained page, and a real browser run."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from engine.errors import UsageError
from engine.insight.cli_args import add_subparsers
from engine.insight.dashboard import (
    build_html,
    dashboard_data,
    format_money,
    load_rejections,
    load_rejections_s3,
    period_cards,
)
from engine.insight.query import DynamoTables
from tests.insight_aws import NoScanClient, dynamodb, loaded_tables, moto_endpoint
from tests.insight_support import frames, oracle, write_output_folder

__all__ = ["loaded_tables", "moto_endpoint"]  # fixtures, used by name

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = (
    "headless Chromium is needed for the dashboard browser test but was not found at "
    f"{CHROMIUM}. Install it with: apt-get update && apt-get install -y chromium "
    "(CI does this in .ci/run), or set CHROMIUM=/path/to/chromium."
)


def test_period_cards_are_exact_and_do_not_fake_a_distinct_count() -> None:
    o = oracle()
    category, daily = frames(o)
    cards = period_cards(category, daily)
    assert cards.revenue == sum(Decimal(str(r["total_revenue"])) for r in o.daily)
    assert cards.revenue == Decimal("2482.77")
    assert (cards.orders, cards.returned) == (40, 4)
    assert cards.return_rate == Decimal("0.1000")
    assert (cards.customers_sum, cards.customers_max) == (27, 20)
    assert cards.customers_sum != o.distinct_customers  # why the card is labelled as a sum
    # 3 returned of 37 orders = 0.081081... ; 1/32 alone = 0.03125 -> 0.0312 (half-even)
    assert period_cards(category, daily, date(2025, 7, 1), date(2025, 7, 2)).return_rate == (
        Decimal("0.0811")
    )
    assert period_cards(category, daily, date(2025, 7, 1), date(2025, 7, 1)).return_rate == (
        Decimal("0.0312")
    )


def test_page_is_self_contained_and_escapes_data(tmp_path: Path) -> None:
    category, daily = frames(oracle())
    evil = "</script><script>window.__pwned=1</script>"
    category = category.with_columns(
        pl.when(pl.col("category") == "Books").then(pl.lit(evil)).otherwise(pl.col("category"))
    )
    page = build_html(category, daily, title="KPIs <b>")
    urls = set(re.findall(r"https?://[^\s\"')]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page)
    assert evil not in page and page.count("</script>") == 2
    assert "KPIs &lt;b&gt;" in page


def test_rejections_are_read_tolerantly(tmp_path: Path) -> None:
    rejected = tmp_path / "rejected"
    rejected.mkdir()
    findings = [
        {"line": i, "column": "amount", "rule": "ge_0", "value": "-1", "message": "negative"}
        for i in range(2, 12)
    ]
    (rejected / "a.csv.errors.json").write_text(
        json.dumps({"file": "a.csv", "findings": findings, "summary": "10 bad rows"})
    )
    (rejected / "b.csv.errors.json").write_text('{"findings": [{"line": 3}]}')
    (rejected / "c.csv.errors.json").write_text("{not json")
    (rejected / "c.csv").write_text("ignored: not a report")
    got = {r.name: r for r in load_rejections(tmp_path)}
    assert set(got) == {"a.csv", "b.csv", "c.csv"}
    assert got["a.csv"].findings == 10 and len(got["a.csv"].first) == 5
    assert got["a.csv"].first[0]["line"] == "2"
    assert got["b.csv"].first == ({"line": "3", "column": "", "rule": "", "value": "",
                                   "message": ""},)  # fmt: skip
    assert got["c.csv"].summary.startswith("report unreadable")
    assert load_rejections(tmp_path / "nowhere") == []


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_subparsers(parser.add_subparsers())
    return parser.parse_args(argv)


def test_dashboard_usage_errors(tmp_path: Path) -> None:
    args = parse(["dashboard", "--from-dynamodb", "--out", str(tmp_path / "r.html")])
    with pytest.raises(UsageError, match="--from and --to"):
        args.handler(args)
    args = parse(["dashboard", "--from-dynamodb", "--from", "2025-07-01", "--to", "2025-07-02",
                  "--out", str(tmp_path / "r.html")])  # fmt: skip
    with pytest.raises(UsageError, match="category names"):
        args.handler(args)
    args = parse(["dashboard", "--from-dir", str(tmp_path / "nope"), "--out", "r.html"])
    with pytest.raises(UsageError, match="does not exist"):
        args.handler(args)
    # --state-table was silently ignored with --from-dir, and beside --categories.
    args = parse(["dashboard", "--from-dir", str(tmp_path), "--state-table", "T", "--out",
                  str(tmp_path / "r.html")])
    with pytest.raises(UsageError, match="goes with --from-dynamodb"):
        args.handler(args)
    args = parse(["dashboard", "--from-dynamodb", "--from", "2025-07-01", "--to", "2025-07-02",
                  "--categories", "Books", "--state-table", "T", "--out",
                  str(tmp_path / "r.html")])
    with pytest.raises(UsageError, match="both say which categories"):
        args.handler(args)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("name", ["category_kpis.parquet", "daily_kpis.csv", "lake/x.html",
                                  "rejected/page.html", "report.json"])
def test_dashboard_out_that_would_replace_data_is_refused(tmp_path: Path, name: str) -> None:
    # --out DIR/category_kpis.parquet replaced the table with the page (exit 0); the next
    # process or reprocess of DIR then failed on it.
    from engine.cli import main

    out = tmp_path / "out"
    assert main(["process", str(FIXTURES / "valid_order.csv"), "--out", str(out), "-q"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["dashboard", "--from-dir", str(out), "--out", str(out / name)]) == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # A page of its own in the folder is fine.
    assert main(["dashboard", "--from-dir", str(out), "--out", str(out / "dashboard.html")]) == 0


@pytest.mark.integration
def test_dynamodb_dashboard_embeds_the_same_data_as_the_local_one(
    loaded_tables: DynamoTables, tmp_path: Path
) -> None:
    spy = NoScanClient(dynamodb())
    out = tmp_path / "ddb.html"
    args = parse(["dashboard", "--from-dynamodb", "--from", "2025-07-01", "--to", "2025-07-31",
                  "--categories", "Books,Electronics,Home & Garden",
                  "--out", str(out)])  # fmt: skip
    assert args.handler(args, client=spy) == 0
    assert set(spy.calls) == {"query", "batch_get_item"}
    embedded = re.search(r'id="kpi-data">([^<]*)<', out.read_text()).group(1)  # type: ignore[union-attr]
    assert json.loads(embedded) == dashboard_data(*frames(oracle()))


@pytest.mark.integration
def test_rejections_from_s3_are_the_newest_reports_and_reach_the_page(
    loaded_tables: DynamoTables, tmp_path: Path
) -> None:
    """On AWS the validator writes rejected/<key>.errors.json to the cleaned bucket; with
    --from-dynamodb the panel said "No rejected files." whatever was there."""
    import time

    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="cleaned")
    finding = {"line": 2, "column": "order_date", "rule": "date", "value": "2025/07/06",
               "message": "must be a real calendar date"}
    for i, name in enumerate(["input/old.csv", "input/mid.csv", "input/new.csv"]):
        if i:
            time.sleep(1.1)  # S3 lists LastModified to the second
        s3.put_object(Bucket="cleaned", Key=f"rejected/{name}.errors.json", Body=json.dumps(
            {"file": f"s3://in/{name}", "findings": [finding] * (i + 1), "summary": name}))
    s3.put_object(Bucket="cleaned", Key="rejected/input/new.csv", Body=b"the bytes, not a report")
    time.sleep(1.1)
    s3.put_object(Bucket="cleaned", Key="rejected/input/bad.csv.errors.json", Body=b"\xff{")
    # The lake's manifests: mid.csv's corrected file entered the lake after its rejection,
    # new.csv's source before it (the rejected upload came later: the rejection stands).
    from datetime import UTC, datetime, timedelta

    from engine.lake import source_id

    later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat(timespec="seconds")
    long_ago = "2000-01-01T00:00:00+00:00"
    for source, at in (("in/input/mid.csv", later), ("in/input/new.csv", long_ago)):
        s3.put_object(Bucket="cleaned", Key=f"lake/_sources/{source_id(source)}.json",
                      Body=json.dumps({"source": source, "ingested_at": at}))
    got = load_rejections_s3("cleaned", "rejected/", limit=3, client=s3)
    assert [r.name for r in got] == ["input/bad.csv", "s3://in/input/new.csv",
                                     "s3://in/input/mid.csv"]
    assert [r.accepted_at for r in got] == [None, None, later]
    assert got[0].summary.startswith("report unreadable")
    assert (got[1].findings, got[1].first[0]["value"]) == (3, "2025/07/06")
    assert load_rejections_s3("cleaned", "nothing-here/", client=s3) == []

    base = ["dashboard", "--from-dynamodb", "--from", "2025-07-01", "--to", "2025-07-31",
            "--categories", "Books"]
    args = parse([*base, "--out", str(tmp_path / "a.html")])
    assert args.handler(args) == 0
    page = (tmp_path / "a.html").read_text()
    assert 'id="rejections-not-read"' in page and "No rejected files" not in page
    args = parse([*base, "--rejections-from", "s3://cleaned", "--out", str(tmp_path / "b.html")])
    assert args.handler(args) == 0
    page = (tmp_path / "b.html").read_text()
    assert page.count('class="rejection"') == 4
    assert 'data-file="s3://in/input/old.csv"' in page and "2025/07/06" in page
    args = parse([*base, "--rejections-from", "cleaned/rejected", "--out", "c.html"])
    with pytest.raises(UsageError, match="not an s3://bucket/prefix URI"):
        args.handler(args)


# ---- the page in a real headless Chromium ---------------------------------------------------


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(INSTALL_HINT)
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
        "--window-size=1280,1700", "--virtual-time-budget=5000", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Return width, height and the unfiltered RGB(A) rows of an 8-bit PNG (pure Python)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format depth={depth} type={colour}"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        ftype, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def assert_script_ran_cleanly(dom: str) -> None:
    html_tag = re.search(r"<html[^>]*>", dom)
    assert html_tag, "no <html> element in the dumped DOM"
    assert 'id="js-error"' not in dom, re.findall(r'id="js-error"[^>]*>([^<]*)', dom)
    assert "data-js-error" not in html_tag.group(0)
    assert 'data-rendered="ok"' in html_tag.group(0), "the page script did not finish"


def card(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"#{element_id} not in the DOM"
    return match.group(1).strip()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("dash")
    out = write_output_folder(base / "out", oracle())
    (out / "rejected").mkdir()
    (out / "rejected" / "bad.csv.errors.json").write_text(
        json.dumps({"file": "bad.csv", "summary": "1 invalid row",
                    "findings": [{"line": 4, "column": "amount", "rule": "ge_0",
                                  "value": "-5", "message": "amount must be >= 0"}]})
    )  # fmt: skip
    args = parse(["dashboard", "--from-dir", str(out), "--out", str(base / "r.html")])
    assert args.handler(args) == 0
    return base / "r.html"


def test_browser_runs_the_scripts_draws_the_charts_and_shows_the_oracle_numbers(
    report: Path, tmp_path: Path
) -> None:
    dom = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "profile").stdout
    assert_script_ran_cleanly(dom)
    for chart in ("revenue", "return-rate", "category-revenue", "aov"):
        assert re.search(rf'<svg[^>]*data-chart="{chart}"[^>]*data-drawn="js"', dom), chart
    # One stacked rectangle per (category, day) row, carrying the exact stored revenue.
    category, daily = frames(oracle())
    bars = re.findall(r'<rect[^>]*data-value="([^"]+)"', dom)
    assert sorted(bars[: category.height]) == sorted(str(v) for v in category["daily_revenue"])
    cards = period_cards(category, daily)
    assert card(dom, "card-revenue") == format_money(cards.revenue) == "2,482.77"
    assert card(dom, "card-orders") == "40"
    assert card(dom, "card-rate") == "10.00%" and card(dom, "card-rate-raw") == "0.1000"
    assert card(dom, "card-customers") == "27"
    assert card(dom, "card-customers-label") == "Sum of daily unique customers"
    assert "bad.csv" in dom and "amount must be &gt;= 0" in dom


def test_browser_period_selection_recomputes_cards_exactly(report: Path, tmp_path: Path) -> None:
    # The JS computes with BigInt; Python computes with Decimal; both must agree exactly.
    category, daily = frames(oracle())
    for start, end in [(date(2025, 7, 1), date(2025, 7, 2)), (date(2025, 7, 1), date(2025, 7, 1))]:
        url = f"{report.as_uri()}#from={start.isoformat()}&to={end.isoformat()}"
        dom = chromium("--dump-dom", url, profile=tmp_path / f"p{start}{end}").stdout
        assert_script_ran_cleanly(dom)
        want = period_cards(category, daily, start, end)
        assert card(dom, "card-revenue") == format_money(want.revenue)
        assert card(dom, "card-orders") == f"{want.orders:,}"
        assert card(dom, "card-rate-raw") == str(want.return_rate)
        assert card(dom, "card-customers") == str(want.customers_sum)
    assert card(dom, "card-rate-raw") == "0.0312"  # the half-even case, 1/32
    assert card(dom, "card-customers-label") == "Unique customers"  # one day: truly distinct


def test_browser_names_a_link_date_that_is_no_date(report: Path, tmp_path: Path) -> None:
    # A link with 2025-02-30 said "Choose a start date on or before the end date".
    for dates, said in ((("2025-02-30", "2025-07-02"), "real calendar dates"),
                        (("2025-07-02", "2025-07-01"), "on or before the end date")):
        url = f"{report.as_uri()}#from={dates[0]}&to={dates[1]}"
        dom = chromium("--dump-dom", url, profile=tmp_path / dates[0]).stdout
        assert_script_ran_cleanly(dom)
        assert said in card(dom, "period-error")


def test_cards_of_some_categories_do_not_mix_them_with_every_order(tmp_path: Path) -> None:
    # --categories reads some categories; the orders card is the day's (every category). The
    # return rate took the named categories' returned orders over every order: neither rate.
    category, daily = frames(oracle())
    names = sorted(set(category["category"]))
    some = category.filter(pl.col("category") == names[0])
    partial = period_cards(some, daily)
    assert (partial.returned, partial.return_rate) == (None, None)
    assert partial.orders == period_cards(category, daily).orders == 40
    whole = period_cards(category.filter(pl.col("category").is_in(names)), daily)
    assert (whole.returned, whole.return_rate) == (4, Decimal("0.1000"))
    out = write_output_folder(tmp_path / "out", oracle())
    for chosen, rate in ((names[:1], "n/a"), (names, "0.1000")):
        page = tmp_path / f"r{len(chosen)}.html"
        args = parse(["dashboard", "--from-dir", str(out), "--categories", ",".join(chosen),
                      "--out", str(page)])
        assert args.handler(args) == 0
        dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / f"p{len(chosen)}").stdout
        assert_script_ran_cleanly(dom)
        assert card(dom, "card-rate-raw") == rate
        note = card(dom, "card-rate-note")
        assert ("categories not read (leave out --categories" in note) == (rate == "n/a")
        if rate == "n/a":
            assert card(dom, "card-returned") == "n/a" and card(dom, "card-orders") == "40"
            assert re.search(r"<td[^>]*>n/a</td>", dom)  # a day's returned, in the table


def test_browser_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    chromium(f"--screenshot={shot}", report.as_uri(), profile=tmp_path / "profile")
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1280, 1700)
    colours: set[bytes] = set()
    for row in rows[::10]:
        colours.update(row[i : i + 3] for i in range(0, len(row), 4 * 7))
    assert len(colours) > 50, f"screenshot looks blank: {len(colours)} colours"
    # The chart area must contain the revenue line's blue (#0072B2), i.e. charts were painted.
    assert bytes([0x00, 0x72, 0xB2]) in colours
    if target := os.environ.get("INSIGHT_SCREENSHOT_OUT"):
        shutil.copyfile(shot, target)


def test_browser_shows_an_empty_range_without_script_errors(tmp_path: Path) -> None:
    category, daily = frames(oracle())
    page = tmp_path / "empty.html"
    page.write_text(build_html(category.clear(), daily.clear()), encoding="utf-8")
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    assert_script_ran_cleanly(dom)
    assert card(dom, "card-revenue") == "0.00" and card(dom, "card-rate") == "n/a"


@pytest.mark.integration
def test_dynamodb_dashboard_takes_categories_from_the_state_fences(
    loaded_tables: DynamoTables, tmp_path: Path
) -> None:
    client = dynamodb()
    client.create_table(
        TableName="State",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    fences = {
        "2025-07-01": {"SS": ["Books", "Electronics", "Home & Garden"]},
        "2025-07-02": {"L": [{"S": "Books"}, {"S": "Home & Garden"}]},
        "2025-07-04": {"SS": ["Books", "Electronics"]},
    }
    for day, categories in fences.items():
        client.put_item(
            TableName="State",
            Item={"pk": {"S": f"date#{day}"}, "sk": {"S": "fence"}, "ticket": {"N": "1"},
                  "categories": categories},
        )  # fmt: skip
    spy = NoScanClient(client)
    out = tmp_path / "state.html"
    args = parse(["dashboard", "--from-dynamodb", "--from", "2025-07-01", "--to", "2025-07-31",
                  "--state-table", "State", "--out", str(out)])  # fmt: skip
    assert args.handler(args, client=spy) == 0
    assert spy.calls["batch_get_item"] == 2 and spy.calls["query"] == 3
    embedded = re.search(r'id="kpi-data">([^<]*)<', out.read_text()).group(1)  # type: ignore[union-attr]
    assert json.loads(embedded) == dashboard_data(*frames(oracle()))


def test_a_rejection_whose_corrected_file_was_accepted_since_says_so(tmp_path: Path) -> None:
    # The panel listed the rejection of a file whose corrected export had entered the lake
    # since, as if it still stood.
    from engine.cli import main

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "orders.csv").write_bytes((FIXTURES / "invalid_order.csv").read_bytes())
    (src / "other.csv").write_bytes((FIXTURES / "invalid_order.csv").read_bytes())
    assert main(["process", str(src / "orders.csv"), str(src / "other.csv"), "--out", str(out),
                 "-q"]) == 1
    assert {r.name: r.accepted_at for r in load_rejections(out)} == {
        str(src / "orders.csv"): None, str(src / "other.csv"): None}
    # No pause: the lake records microseconds (to the second, a correction in the same
    # second as the rejection, as `process jan/orders.csv fix/orders.csv` makes, was older).
    (src / "orders.csv").write_bytes((FIXTURES / "valid_order.csv").read_bytes())
    assert main(["process", str(src / "orders.csv"), "--out", str(out), "-q"]) == 0
    got = {r.name: r.accepted_at for r in load_rejections(out)}
    assert got[str(src / "other.csv")] is None and got[str(src / "orders.csv")] is not None
    assert main(["dashboard", "--from-dir", str(out), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.count("Since accepted: a file of this name entered the lake at") == 1
    # The README's own case, one run: jan/orders.csv rejected, then fix/orders.csv accepted.
    jan, fix, one = tmp_path / "jan", tmp_path / "fix", tmp_path / "one"
    jan.mkdir(), fix.mkdir()
    (jan / "orders.csv").write_bytes((FIXTURES / "invalid_order.csv").read_bytes())
    (fix / "orders.csv").write_bytes((FIXTURES / "valid_order.csv").read_bytes())
    assert main(["process", str(jan / "orders.csv"), str(fix / "orders.csv"), "--out", str(one),
                 "-q"]) == 1
    [rejection] = load_rejections(one)
    assert rejection.accepted_at is not None and not rejection.quarantined


def test_a_quarantine_is_told_apart_from_a_rejection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A quarantined file enters the lake right after its report: it was labelled "since
    # accepted ... this rejection is history" (a large file, written over more than a second
    # after its report), and counted among the rejected files.
    from engine.cli import main

    rows = (FIXTURES / "valid_order.csv").read_text().splitlines()
    bad = tmp_path / "some bad.csv"
    bad.write_text("\n".join([*rows, "X1,C9,2025-07-06,Books,P,-1,1.00,false"]) + "\n")
    out = tmp_path / "out"
    assert main(["process", str(bad), str(FIXTURES / "invalid_order.csv"), "--out", str(out),
                 "-q", "--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.5"]) == 1
    report = json.loads((out / "rejected" / "some bad.csv.errors.json").read_text())
    assert report["outcome"] == "quarantined"
    assert json.loads((out / "rejected" / "invalid_order.csv.errors.json").read_text())[
        "outcome"] == "rejected"
    got = {Path(r.name).name: r for r in load_rejections(out)}
    assert got["some bad.csv"].quarantined and got["some bad.csv"].accepted_at is None
    assert not got["invalid_order.csv"].quarantined
    capsys.readouterr()
    assert main(["dashboard", "--from-dir", str(out), "--out", str(tmp_path / "r.html")]) == 0
    assert "1 rejected files, 1 with rows quarantined)" in capsys.readouterr().err
    page = (tmp_path / "r.html").read_text()
    assert page.count("Quarantined: the rows below were set aside") == 1
    assert "Since accepted" not in page


def test_browser_charts_keep_every_day_of_a_span_over_4000_days(tmp_path: Path) -> None:
    # The calendar behind the charts stopped after 4000 days: the later days, here the one
    # holding nearly all the revenue, were missing from every chart (the cards had them).
    from engine.cli import main

    orders = tmp_path / "span.csv"
    orders.write_text(
        "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"
        "A1,C1,2010-01-01,Books,P,1,10,false\nA2,C1,2020-01-01,Books,P,1,20,false\n"
        "A3,C1,2025-06-01,Books,P,1,30000,true\n")
    out, page = tmp_path / "out", tmp_path / "span.html"
    assert main(["process", str(orders), "--out", str(out), "-q"]) == 0
    assert main(["dashboard", "--from-dir", str(out), "--out", str(page)]) == 0
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    assert_script_ran_cleanly(dom)
    assert card(dom, "card-revenue") == "30,030.00"
    points = re.findall(r'<circle[^>]*data-value="([^"]+)"', dom)
    assert points == ["10.00", "20.00", "30000.00", "0.0000", "0.0000", "1.0000"]
    bars = re.findall(r'<rect[^>]*data-value="([^"]+)"', dom)
    assert "30000.00" in bars


def test_a_rejection_counts_the_findings_its_report_does_not_list(tmp_path: Path) -> None:
    # A file rejected whole lists its first 10,000 findings; the panel said "and 9,997 more"
    # for a file of 3,000,000.
    rejected = tmp_path / "rejected"
    rejected.mkdir()
    listed = [{"line": i + 2, "column": "order_date", "rule": "calendar_date", "value": "x",
               "message": "m"} for i in range(4)]
    (rejected / "big.csv.errors.json").write_text(json.dumps(
        {"file": "big.csv", "summary": "s", "findings": listed, "omitted_findings": 2_999_996}))
    [rej] = load_rejections(tmp_path)
    assert rej.findings == 3_000_000 and len(rej.first) <= 4
