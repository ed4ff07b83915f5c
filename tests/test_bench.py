"""Tests for the benchmark generator, peers and runner (no timing asserts)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest

from engine.bench.generate import (
    ALL_CATEGORIES,
    COLUMNS,
    DEFAULT_CATEGORIES,
    DIRT_KINDS,
    UNKNOWN_CATEGORY,
    generate_files,
    generate_orders,
)
from engine.bench.peers import UNAVAILABLE
from engine.bench.runner import ContenderResult, _compare, markdown, run_bench

ROOT = Path(__file__).resolve().parents[1]
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --- generator ---------------------------------------------------------------------------


def test_same_seed_gives_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    a = generate_orders(tmp_path / "a.csv", 3_000, seed=7)
    b = generate_orders(tmp_path / "b.csv", 3_000, seed=7)
    c = generate_orders(tmp_path / "c.csv", 3_000, seed=8)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes() != c.path.read_bytes()


def test_generated_file_has_header_row_count_unique_ids_and_dates_in_range(
    tmp_path: Path,
) -> None:
    g = generate_orders(tmp_path / "o.csv", 5_000, seed=1, days=10, start=date(2025, 7, 1))
    assert g.path.read_text().splitlines()[0] == ",".join(COLUMNS)
    rows = _rows(g.path)
    assert len(rows) == g.rows == 5_000
    assert g.bytes == g.path.stat().st_size
    assert len({r["order_id"] for r in rows}) == 5_000
    days = {date.fromisoformat(r["order_date"]) for r in rows}
    assert min(days) >= date(2025, 7, 1) and max(days) <= g.end == date(2025, 7, 10)
    assert len(days) == 10
    assert {r["category"] for r in rows} == set(DEFAULT_CATEGORIES)
    assert {int(r["quantity"]) for r in rows} == set(range(1, 11))
    assert {r["returned"] for r in rows} == {"true", "false"}
    assert all(r["customer_id"] and r["product_id"] for r in rows)
    # Prices carry 2 or 4 decimals, and some end in a half cent (…50), the tie makers.
    decimals = {len(r["unit_price"].split(".")[1]) for r in rows}
    assert decimals == {2, 4}
    assert any(r["unit_price"].endswith("50") and len(r["unit_price"]) > 5 for r in rows)
    # Skewed customers: the most frequent customer has many orders.
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r["customer_id"]] += 1
    assert max(counts.values()) >= 20


def test_generated_file_is_read_typed_by_polars(tmp_path: Path) -> None:
    g = generate_orders(tmp_path / "o.csv", 2_000, categories=ALL_CATEGORIES)
    df = pl.read_csv(g.path, schema_overrides={"unit_price": pl.Decimal(38, 4)})
    assert df.height == 2_000
    assert df.schema["order_date"] == pl.String or df.schema["order_date"] == pl.Date
    assert set(df["category"].unique()) == set(ALL_CATEGORIES)


def test_several_files_have_disjoint_order_ids(tmp_path: Path) -> None:
    made = generate_files(tmp_path, 1_000, files=3, seed=5)
    assert [m.path.name for m in made] == ["orders_000.csv", "orders_001.csv", "orders_002.csv"]
    ids = [r["order_id"] for m in made for r in _rows(m.path)]
    assert len(ids) == len(set(ids)) == 3_000


def test_dirt_injects_each_kind_asked_for(tmp_path: Path) -> None:
    g = generate_orders(tmp_path / "d.csv", 6_000, seed=3, dirt=0.06)
    assert set(g.dirty) == set(DIRT_KINDS)
    assert all(n == 60 for n in g.dirty.values())
    rows = _rows(g.path)
    assert len(rows) == 6_000

    def strict_date(s: str) -> bool:
        if not ISO.match(s):
            return False
        try:
            date.fromisoformat(s)
        except ValueError:
            return False
        return True

    assert sum(not strict_date(r["order_date"]) for r in rows) == g.dirty["bad_date"]
    assert sum(int(r["quantity"]) < 0 for r in rows) == g.dirty["negative_quantity"]
    assert sum(r["category"] == UNKNOWN_CATEGORY for r in rows) == g.dirty["unknown_category"]
    assert sum(r["order_id"] == "" for r in rows) == g.dirty["empty_order_id"]
    assert sum(r["customer_id"] == "" for r in rows) == g.dirty["empty_customer_id"]
    ids = [r["order_id"] for r in rows if r["order_id"]]
    assert len(ids) - len(set(ids)) == g.dirty["duplicate_order_id"]


def test_dirt_can_be_limited_to_some_kinds(tmp_path: Path) -> None:
    g = generate_orders(tmp_path / "d.csv", 2_000, dirt=0.01, dirt_kinds=("bad_date",))
    assert g.dirty == {"bad_date": 20}
    rows = _rows(g.path)
    assert all(int(r["quantity"]) > 0 for r in rows)
    assert len({r["order_id"] for r in rows}) == 2_000


def test_clean_file_has_no_dirt_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    assert generate_orders(tmp_path / "c.csv", 100).dirty == {}
    with pytest.raises(ValueError, match="unknown dirt kinds"):
        generate_orders(tmp_path / "x.csv", 10, dirt=0.1, dirt_kinds=("nope",))
    with pytest.raises(ValueError, match="rows"):
        generate_orders(tmp_path / "x.csv", -1)


# --- peers against an independent oracle -------------------------------------------------

CENT, E4 = Decimal("0.01"), Decimal("0.0001")


def _q(value: Decimal, unit: Decimal) -> str:
    return str(value.quantize(unit, rounding=ROUND_HALF_EVEN))


def _oracle(path: Path) -> tuple[str, str]:
    """Both KPI tables, computed the plainest way, as canonical CSV text."""
    cat: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    day: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 4)
    customers: dict[str, set[str]] = defaultdict(set)
    for r in _rows(path):
        rev = Decimal(r["unit_price"]) * int(r["quantity"])
        ret = Decimal(r["returned"] == "true")
        c = cat[(r["category"], r["order_date"])]
        cat[(r["category"], r["order_date"])] = [c[0] + rev, c[1] + 1, c[2] + ret]
        d = day[r["order_date"]]
        day[r["order_date"]] = [d[0] + 1, d[1] + rev, d[2] + int(r["quantity"]), d[3] + ret]
        customers[r["order_date"]].add(r["customer_id"])
    cat_lines = [
        "category,order_date,daily_revenue,avg_order_value,avg_return_rate,orders,returned_orders"
    ]
    for (c, d), (rev, n, ret) in sorted(cat.items()):
        cat_lines.append(f"{c},{d},{_q(rev, CENT)},{_q(rev / n, CENT)},{_q(ret / n, E4)},{n},{ret}")
    day_lines = [
        "order_date,total_orders,total_revenue,total_items_sold,return_rate,unique_customers"
    ]
    for d, (n, rev, items, ret) in sorted(day.items()):
        day_lines.append(f"{d},{n},{_q(rev, CENT)},{items},{_q(ret / n, E4)},{len(customers[d])}")
    return "\n".join(cat_lines), "\n".join(day_lines)


def _tie_rows() -> list[list[str]]:
    """Rows whose KPIs land exactly on a rounding half, so half-up or floats would differ."""
    rows: list[list[str]] = []
    n = 0

    def add(day: str, cat: str, qty: int, price: str, returned: bool = False) -> None:
        nonlocal n
        n += 1
        rows.append(
            [f"TIE{n:05d}", f"T{n % 3}", day, cat, "SKU1", str(qty), price, str(returned).lower()]
        )

    # 2.005 revenue: half-even 2.00 (half-up 2.01).
    add("2024-12-01", "Books", 1, "2.0050")
    # 16 orders totalling 489.26: avg 30.57875 (the classic float-rounding trap).
    for _ in range(15):
        add("2024-12-02", "Books", 1, "30.00")
    add("2024-12-02", "Books", 1, "39.26")
    # 2 orders totalling 20.05: avg 10.025, half-even 10.02; 1 returned of 2.
    add("2024-12-03", "Clothing", 1, "10.00", returned=True)
    add("2024-12-03", "Clothing", 1, "10.05")
    # 32 orders with 1 returned: rate 0.03125, half-even 0.0312 (half-up 0.0313).
    for i in range(32):
        add("2024-12-04", "Electronics", 3, "0.0150", returned=i == 0)
    return rows


@pytest.fixture(scope="module")
def oracle_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oracle") / "orders.csv"
    generate_orders(path, 3_000, seed=11, days=7, return_share=0.2)
    with path.open("a", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(_tie_rows())
    return path


def test_oracle_rounds_the_ties_half_even(oracle_file: Path) -> None:
    cat, daily = _oracle(oracle_file)
    assert "Books,2024-12-01,2.00,2.00,0.0000,1,0" in cat.splitlines()
    assert "Books,2024-12-02,489.26,30.58,0.0000,16,0" in cat.splitlines()
    assert "Clothing,2024-12-03,20.05,10.02,0.5000,2,1" in cat.splitlines()
    assert "Electronics,2024-12-04,1.44,0.04,0.0312,32,1" in cat.splitlines()
    assert "2024-12-04,32,1.44,96,0.0312,3" in daily.splitlines()


@pytest.mark.parametrize("peer", ["python_loop", "pandas_groupby", "duckdb_sql", "engine_kpis"])
def test_peer_agrees_with_the_oracle(peer: str, oracle_file: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", f"engine.bench.peers.{peer}", str(oracle_file), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode == UNAVAILABLE and not peer.startswith("engine_"):
        pytest.skip(proc.stderr.strip())  # a peer of the bench extra, not installed
    assert proc.returncode == 0, proc.stderr
    want_cat, want_daily = _oracle(oracle_file)
    assert (tmp_path / "category_kpis.csv").read_text().rstrip("\n") == want_cat
    assert (tmp_path / "daily_kpis.csv").read_text().rstrip("\n") == want_daily


def test_polars_floor_reads_the_file_and_writes_no_kpis(oracle_file: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.bench.peers.polars_floor", str(oracle_file), str(tmp_path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{3_000 + len(_tie_rows())} rows" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# --- runner ------------------------------------------------------------------------------


def test_compare_flags_a_wrong_answer_against_the_exact_reference() -> None:
    results = [ContenderResult("engine_kpis", "e"), ContenderResult("python_loop", "p")]
    good = ("h\na,1.00", "h\nb")
    answers = {"engine_kpis": [good, ("h\na,1.01", "h\nb")], "python_loop": [good]}
    assert _compare(results, answers) == "python_loop"
    engine, loop = results
    assert loop.answers_match is True
    assert engine.answers_match is False and engine.status == "mismatch"
    assert "run 2" in engine.note and "'a,1.01'" in engine.note


def test_smoke_run_writes_json_and_markdown_with_every_contender(tmp_path: Path) -> None:
    res = run_bench(
        2_000, repeats=1, workdir=tmp_path / "work", results_dir=tmp_path / "res", seed=2
    )
    data = json.loads(Path(res.json_path).read_text())
    names = [c["name"] for c in data["contenders"]]
    assert names == [
        "engine_process",
        "engine_validate",
        "engine_kpis",
        "engine_kpis_streaming",
        "duckdb_sql",
        "pandas_groupby",
        "python_loop",
        "polars_floor",
    ]
    assert data["answers_match"] is True and data["ok"] is True
    assert data["reference"] == "python_loop"
    assert data["rows"] == 2_000 and data["machine"]["cores"]
    for c in data["contenders"]:
        assert c["status"] in ("ok", "skipped"), c
        assert c["status"] == "ok" or not c["name"].startswith("engine_"), c
        if c["status"] == "ok":
            assert c["median_s"] > 0 and c["peak_rss_mb"] > 0 and c["ratio_to_floor"] > 0
            writes_kpis = c["name"] not in ("polars_floor", "engine_validate")
            assert c["answers_match"] is (writes_kpis or None)
    for peer in ("duckdb_sql", "pandas_groupby", "python_loop", "polars_floor"):
        assert next(c for c in data["contenders"] if c["name"] == peer)["status"] == "ok"
    md = (tmp_path / "res" / "latest.md").read_text()
    assert md == markdown(res)
    assert all(f"| {n} |" in md for n in names)
    assert not (tmp_path / "work").exists()  # made by the run, and removed without keep_data


def test_runs_are_taken_in_rounds_and_ratios_within_a_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A machine that slows down over time: rounds give every contender the same drift,
    # and each ratio compares runs of one round.
    from engine.bench import runner

    calls: list[str] = []
    speed = {"engine_validate": 2.0, "polars_floor": 1.0}

    def fake_run(c: runner.Contender, csv: Path, out: Path, logs: Path) -> runner._Run:
        calls.append(c.name)
        drift = 1 + len(calls)  # every call slower than the one before
        return runner._Run(speed[c.name] * drift, 1024, 0, "")

    monkeypatch.setattr(runner, "_run_once", fake_run)
    monkeypatch.setattr(runner, "generate_orders",
                        lambda path, rows, seed: SimpleNamespace(bytes=1000, seconds=0.0))
    res = run_bench(10, repeats=3, contenders=["engine_validate", "polars_floor"],
                    workdir=tmp_path / "w", results_dir=tmp_path / "r")
    assert calls == ["engine_validate", "polars_floor"] * 4  # warm-ups, then 3 rounds
    validate, floor = res.contenders
    assert validate.times_s == [2.0 * 4, 2.0 * 6, 2.0 * 8]
    assert floor.times_s == [1.0 * 5, 1.0 * 7, 1.0 * 9]
    # The rounds' ratios are 8/5, 12/7 and 16/9: their median.
    assert validate.ratio_to_floor == round(12 / 7, 2)
    assert floor.ratio_to_floor == 1.0


def test_the_latency_proxy_forwards_requests_whole_and_counts_them() -> None:
    import http.client
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from benchmarks.latency_proxy import LatencyProxy

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = f"{self.command} {self.path} ".encode() + self.rfile.read(n)
            self.send_response(201 if self.command == "PUT" else 200)
            self.send_header("ETag", '"e1"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = _answer

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    proxy = LatencyProxy(0, upstream.server_address[1], 0.001)
    servers = [threading.Thread(target=s.serve_forever, daemon=True) for s in (upstream, proxy)]
    for t in servers:
        t.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1])
        conn.request("GET", "/bucket/key?x=1")
        got = conn.getresponse()
        assert (got.status, got.read(), got.getheader("ETag")) == (
            200, b"GET /bucket/key?x=1 ", '"e1"')
        conn.request("PUT", "/bucket/other", body=b"payload" * 1000)  # same connection
        got = conn.getresponse()
        assert (got.status, got.read()) == (201, b"PUT /bucket/other " + b"payload" * 1000)
        # Chunked, as boto3 may send a body of unknown length.
        conn.putrequest("POST", "/")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("X-Amz-Target", "DynamoDB_20120810.UpdateItem")
        conn.endheaders()
        # With a trailer, as aws-chunked checksums come: the connection stays usable.
        conn.send(b"3\r\nabc\r\n2\r\nde\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n")
        assert conn.getresponse().read() == b"POST / abcde"
        conn.request("HEAD", "/bucket/key")
        got = conn.getresponse()
        # The size of what the upstream said (len(b"HEAD /bucket/key ")), not of the empty
        # answer a HEAD gets.
        assert (got.status, got.getheader("Content-Length"), got.read()) == (200, "17", b"")
        conn.close()
        assert proxy.counts == {
            "GET bucket": 1, "PUT bucket": 1, "POST UpdateItem": 1, "HEAD bucket": 1}
    finally:
        for s in (proxy, upstream):
            s.shutdown()
            s.server_close()


def _fake_runs(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str | int | None]) -> None:
    """Replace the contenders' processes: each name writes the KPI CSVs ``answers`` gives it
    (text), exits with that code (int), or writes nothing (None)."""
    from engine.bench import runner

    def fake_run(c: runner.Contender, csv: Path, out: Path, logs: Path) -> runner._Run:
        out.mkdir(parents=True, exist_ok=True)
        given = answers[c.name]
        if isinstance(given, int):
            return runner._Run(1.0, 1024, given, f"unavailable: {c.name}")
        if given is not None:
            (out / "category_kpis.csv").write_text("h\n" + given + "\n")
            (out / "daily_kpis.csv").write_text("d\n1\n")
        return runner._Run(1.0, 1024, 0, "")

    monkeypatch.setattr(runner, "_run_once", fake_run)
    monkeypatch.setattr(runner, "generate_orders",
                        lambda path, rows, seed: SimpleNamespace(bytes=1000, seconds=0.0))


def test_a_wrong_answer_fails_the_run_and_a_missing_engine_is_no_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_runs(monkeypatch, {"engine_kpis": "Books,1.01", "python_loop": "Books,1.00",
                             "duckdb_sql": UNAVAILABLE, "polars_floor": None})
    res = run_bench(10, repeats=1, workdir=tmp_path / "w", results_dir=tmp_path / "r",
                    contenders=["engine_kpis", "duckdb_sql", "python_loop", "polars_floor"])
    status = {c.name: c.status for c in res.contenders}
    assert status == {"engine_kpis": "mismatch", "duckdb_sql": "skipped", "python_loop": "ok",
                      "polars_floor": "ok"}
    assert res.answers_match is False and res.ok is False
    # An engine contender that cannot start (exit 5, as a missing library would) fails.
    _fake_runs(monkeypatch, {"engine_kpis": UNAVAILABLE, "python_loop": "Books,1.00"})
    res = run_bench(10, repeats=1, workdir=tmp_path / "w", results_dir=tmp_path / "r",
                    contenders=["engine_kpis", "python_loop"])
    assert [c.status for c in res.contenders] == ["failed", "ok"] and res.ok is False


def test_one_answer_is_not_checked_and_results_are_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_runs(monkeypatch, {"engine_kpis": "Books,1.00", "polars_floor": None})
    runs = [run_bench(10, repeats=1, workdir=tmp_path / "w", results_dir=tmp_path / "r",
                      contenders=["engine_kpis", "polars_floor"]) for _ in range(2)]
    assert runs[0].answers_match is None and runs[0].ok is True
    assert runs[0].contenders[0].answers_match is None
    assert "Answers match: **not checked (fewer than two answers)**. Run ok" in markdown(runs[0])
    assert runs[0].reference is None
    first, second = (Path(r.json_path) for r in runs)
    assert second.name == first.name.replace(".json", "-2.json")
    assert json.loads(first.read_text())["contenders"][0]["name"] == "engine_kpis"


def test_the_workdir_keeps_what_it_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The run cleaned up `out/` in the workdir, whoever had put it there.
    _fake_runs(monkeypatch, {"python_loop": "Books,1.00"})
    mine = tmp_path / "w" / "out" / "demo" / "category_kpis.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("precious")
    run_bench(10, repeats=1, workdir=tmp_path / "w", results_dir=tmp_path / "r",
              contenders=["python_loop"])
    assert [p.name for p in (tmp_path / "w").iterdir()] == ["out"]
    assert mine.read_text() == "precious"
    kept = run_bench(10, repeats=1, workdir=tmp_path / "w", results_dir=tmp_path / "r",
                     contenders=["python_loop"], keep_data=True)
    assert Path(kept.data_dir).parent == tmp_path / "w"
    assert (Path(kept.data_dir) / "logs").is_dir()


def test_bench_options_come_after_the_global_ones(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    for argv in (["-v", "bench", "--rows", "0"], ["--debug", "bench", "--only", ","],
                 ["bench", "--seed", "-1"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "order-kpis bench: error: --" in err and "unrecognized" not in err, err


def test_the_generator_refuses_bad_options_and_leaves_no_file(tmp_path: Path) -> None:
    from engine.bench.generate import main

    out = tmp_path / "g.csv"
    with pytest.raises(SystemExit) as e:
        main(["--rows", "5", "--files", "0", "--out", str(out)])
    assert e.value.code == 2
    for argv in (["--rows", "-5"], ["--seed", "-1"], ["--days", "0"], ["--customers", "0"],
                 ["--dirt", "0.9"]):
        assert main(["--rows", "5", *argv, "--out", str(out)]) == 2, argv
    assert not out.exists()
    (tmp_path / "file").write_text("")
    assert main(["--rows", "5", "--out", str(tmp_path / "file" / "g.csv")]) == 74
    with pytest.raises(ValueError, match="seed"):
        generate_orders(out, 5, seed=-1)
    assert not out.exists()


def _start_python_loop(
    tmp_path: Path, rows: int, **popen: Any
) -> tuple[subprocess.Popen[bytes], Path, bytes]:
    """Start a benchmark run of the Python loop on ``rows`` rows; return it once its contender
    runs, with its workdir and the CSV path that the contender's command line holds."""
    import time

    work = tmp_path / "w"
    work.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.bench.runner", "--rows", str(rows), "--repeats", "3",
         "--only", "python_loop", "--workdir", str(work), "--results-dir", str(tmp_path / "r")],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), **popen,
    )
    deadline = time.monotonic() + 60
    while not list(work.glob("*/logs/python_loop.stderr")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (run_dir,) = work.iterdir()
    time.sleep(0.3)
    return proc, work, str(run_dir / f"orders-{rows}-seed0.csv").encode()


def _running(text: bytes) -> list[str]:
    """The ids of the processes whose command line holds ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:  # a process that ended meanwhile
            pass
    return found


def test_a_stopped_run_stops_its_contender_and_removes_its_data(tmp_path: Path) -> None:
    import signal

    proc, work, csv_path = _start_python_loop(tmp_path, 300_000, stderr=subprocess.PIPE)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert b"Traceback" not in err
    assert list(work.iterdir()) == [] and not (tmp_path / "r" / "latest.md").exists()
    assert _running(csv_path) == []  # the contender did not run on


def test_main_gives_back_the_callers_signal_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from engine.bench import runner

    _fake_runs(monkeypatch, {"python_loop": "Books,1.00"})
    mine = {s: (lambda *_: None) for s in (signal.SIGTERM, signal.SIGHUP)}
    before = {s: signal.signal(s, h) for s, h in mine.items()}
    try:
        assert runner.main(["--rows", "10", "--repeats", "1", "--only", "python_loop",
                            "--workdir", str(tmp_path / "w"),
                            "--results-dir", str(tmp_path / "r")]) == 0
        assert {s: signal.getsignal(s) for s in mine} == mine
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_a_hang_up_ignored_by_nohup_stays_ignored_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nohup order-kpis bench ...` is meant to outlive its terminal: the runner took SIGHUP
    over for its own stop all the same."""
    import signal

    from engine.bench import runner

    _fake_runs(monkeypatch, {"python_loop": "Books,1.00"})
    seen = []
    real = runner.run_bench
    monkeypatch.setattr(runner, "run_bench", lambda *a, **k: (
        seen.append(signal.getsignal(signal.SIGHUP)), real(*a, **k))[1])
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert runner.main(["--rows", "10", "--repeats", "1", "--only", "python_loop",
                            "--workdir", str(tmp_path / "w"),
                            "--results-dir", str(tmp_path / "r")]) == 0
        assert seen == [signal.SIG_IGN]
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


@pytest.mark.parametrize("how", ["SIGHUP to the group", "SIGKILL to the runner"])
def test_a_contender_does_not_outlive_its_runner(how: str, tmp_path: Path) -> None:
    # The contender runs in a process group of its own: a terminal's hang-up, sent to the
    # runner's group, ended the runner and left the contender running; so did a runner
    # killed outright (library use, no handlers).
    import signal
    import time

    proc, _, csv_path = _start_python_loop(tmp_path, 1_000_000, stderr=subprocess.DEVNULL,
                                           start_new_session=True)
    if how == "SIGHUP to the group":
        os.killpg(proc.pid, signal.SIGHUP)
    else:
        proc.kill()
    proc.wait(timeout=60)
    # A run of the contender takes seconds; stopped with its runner, it is gone at once.
    deadline = time.monotonic() + 2
    while _running(csv_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(csv_path) == []
