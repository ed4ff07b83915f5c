"""The local lake: replacement per source, later-wins ordering, crash convergence."""

from __future__ import annotations

import datetime as dt
import errno
import os
from pathlib import Path

import polars as pl
import pytest

from engine import pipeline
from engine.cli import main
from engine.lake import LocalLake
from tests import oracle

HEADER = "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"


def write(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_corrected_reupload_replaces_rows_including_dates_it_no_longer_has(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    f = write(src / "orders.csv", "A,c,2025-07-06,Books,P,1,10,false",
              "B,c,2025-07-07,Books,P,1,20,false")
    out = tmp_path / "out"
    assert main(["process", str(f), "--out", str(out), "-q"]) == 0
    first = f.read_bytes()
    write(f, "A,c,2025-07-06,Books,P,3,10,true")  # the same file name, corrected
    assert main(["process", str(f), "--out", str(out), "-q"]) == 0
    want_cat, want_day = oracle.kpis([f.read_bytes()])
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat
    assert LocalLake(out / "lake").dates() == [dt.date(2025, 7, 6)]
    assert first != f.read_bytes()


def test_header_only_file_changes_no_kpi(tmp_path: Path) -> None:
    f = write(tmp_path / "a.csv", "A,c,2025-07-06,Books,P,1,10,false")
    empty = write(tmp_path / "empty.csv")
    out = tmp_path / "out"
    assert main(["process", str(f), "--out", str(out), "-q"]) == 0
    before = (out / "daily_kpis.csv").read_bytes()
    assert main(["process", str(empty), "--out", str(out), "-q"]) == 0
    assert (out / "daily_kpis.csv").read_bytes() == before


def test_a_corrected_export_left_with_no_orders_removes_the_earlier_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same file name again replaces that source, including dates it no longer holds:
    # header only, it holds none (as on AWS, where it is a zero-row cleaned object).
    keep = write(tmp_path / "keep.csv", "K,c,2025-07-07,Books,P,2,3.5,false")
    f = write(tmp_path / "f.csv", "A,c,2025-07-06,Books,P,1,10,false",
              "B,d,2025-07-07,Clothing,P,1,20,true")
    out = tmp_path / "out"
    assert main(["process", str(keep), str(f), "--out", str(out), "-q"]) == 0
    write(f)
    capsys.readouterr()
    assert main(["process", str(f), "--out", str(out), "-q"]) == 0
    assert "header only: it replaces the earlier file of this name" in capsys.readouterr().err
    want_cat, want_day = oracle.kpis([keep.read_bytes()])
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat
    assert LocalLake(out / "lake").dates() == [dt.date(2025, 7, 7)]


def test_crash_while_writing_tables_keeps_old_tables_and_next_run_converges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = write(tmp_path / "a.csv", "A,c,2025-07-06,Books,P,1,10,false")
    b = write(tmp_path / "b.csv", "B,d,2025-07-07,Clothing,P,2,5.5,true")
    c = write(tmp_path / "c.csv", "C,e,2025-07-08,Books,P,1,1,false")
    out = tmp_path / "out"
    assert main(["process", str(a), "--out", str(out), "-q"]) == 0
    before = {n: (out / n).read_bytes() for n in (
        "category_kpis.parquet", "daily_kpis.parquet", "category_kpis.csv", "daily_kpis.csv")}

    real = os.replace
    calls = {"n": 0}

    def dies_on_second_table(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name.endswith("_kpis.parquet"):
            calls["n"] += 1
            if calls["n"] == 2:  # the first table is in place, the second rename fails
                raise OSError(errno.EIO, "Input/output error", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", dies_on_second_table)
    with pytest.raises(OSError):
        pipeline.process_paths([b], out)
    monkeypatch.undo()
    # The table renamed before the failure has its old version back: all four are old.
    for name, old in before.items():
        assert (out / name).read_bytes() == old, name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert dt.date(2025, 7, 7) in LocalLake(out / "lake").pending()
    # The next run, with an unrelated file, also recomputes the date the crash left behind.
    assert main(["process", str(c), "--out", str(out), "-q"]) == 0
    want_cat, want_day = oracle.kpis_from_paths([a, b, c])
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day
    assert LocalLake(out / "lake").pending() == set()


def test_reprocess_recomputes_a_date_range_from_the_lake_without_inputs(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "A,c,2025-07-06,Books,P,1,10,false",
              "B,d,2025-07-07,Books,P,2,3.3333,true")
    out = tmp_path / "out"
    assert main(["process", str(a), "--out", str(out), "-q"]) == 0
    want = (out / "category_kpis.csv").read_bytes()
    # Simulate a stale table (an older KPI definition) and inputs that are gone.
    (out / "category_kpis.csv").write_text("stale\n")
    (out / "category_kpis.parquet").unlink()
    a.unlink()
    assert main(["reprocess", "--out", str(out), "--date-from", "2025-07-01",
                 "--date-to", "2025-07-31", "-q"]) == 0
    assert (out / "category_kpis.csv").read_bytes() == want


@pytest.mark.parametrize("gone", ["category_kpis.parquet", "daily_kpis.parquet", "both"])
def test_a_kpi_table_deleted_by_hand_is_rebuilt_from_the_whole_lake(
    tmp_path: Path, gone: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The tables hold every lake date. With one deleted, the next run recomputed only its
    own dates and wrote tables of those dates alone (the other dates vanished, exit 0)."""
    a = write(tmp_path / "a.csv", "A,c,2025-07-06,Books,P,1,10,false",
              "B,d,2025-07-07,Electronics,P,2,3.3333,true")
    b = write(tmp_path / "b.csv", "C,c,2025-07-08,Books,P,1,2.50,false")
    out = tmp_path / "out"
    assert main(["process", str(a), "--out", str(out), "-q"]) == 0
    for name in (["category_kpis.parquet", "daily_kpis.parquet"] if gone == "both" else [gone]):
        (out / name).unlink()
    assert main(["process", str(b), "--out", str(out), "-q"]) == 0
    want_cat, want_day = oracle.kpis_from_paths([a, b])
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day
    assert "recomputed from the whole lake (2 more dates)" in caplog.text
    # A first run into a new folder has no table either, and nothing to warn about.
    caplog.clear()
    assert main(["process", str(a), "--out", str(tmp_path / "new"), "-q"]) == 0
    assert "whole lake" not in caplog.text


def test_reprocess_usage_errors(tmp_path: Path) -> None:
    assert main(["reprocess", "--out", str(tmp_path / "none"), "--date-from", "2025-07-01",
                 "--date-to", "2025-07-31"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["reprocess", "--out", str(tmp_path), "--date-from", "2025-7-32",
              "--date-to", "2025-07-31"])
    assert e.value.code == 2


def test_a_failed_staging_write_fails_the_file_and_leaves_the_lake_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.lake as lake_mod

    src = tmp_path / "in"
    src.mkdir()
    first = write(src / "a.csv", "A,c,2025-07-06,Books,P,1,10,false")
    out = tmp_path / "out"
    assert main(["process", str(first), "--out", str(out), "-q"]) == 0
    before = sorted(p.relative_to(out) for p in (out / "lake").rglob("*") if p.is_file())
    # Pieces of a few bytes: many batches are queued behind the one that fails.
    rows = [f"B{i},c,2025-07-{6 + i % 3:02d},Books,P,1,10,false" for i in range(40)]
    second = write(src / "b.csv", *rows)
    calls = []
    real = lake_mod.StagedSource._write_now

    def failing(self: lake_mod.StagedSource, batch: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(self, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(lake_mod.StagedSource, "_write_now", failing)
    with pytest.raises(OSError, match="No space left"):
        pipeline.process_paths([second], out, batch_bytes=64)
    after = sorted(p.relative_to(out) for p in (out / "lake").rglob("*") if p.is_file())
    assert after == before  # no staging left behind, nothing of b.csv in the lake
    assert lake_mod.STAGE_QUEUE >= 2 and len(calls) > 3  # later batches were queued


@pytest.mark.parametrize("parity", [0, 1])
def test_a_failed_write_on_either_staging_thread_fails_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parity: int
) -> None:
    import engine.lake as lake_mod

    out = tmp_path / "out"
    rows = [f"B{i},c,2025-07-{6 + i % 4:02d},Books,P,1,10,false" for i in range(40)]
    src = write(tmp_path / "b.csv", *rows)
    real = lake_mod.StagedSource._encode

    def failing(self: lake_mod.StagedSource, slices: list, schema: object) -> None:
        if any(day.toordinal() % 2 == parity and day.day >= 8 for day, _ in slices):
            raise OSError(28, "No space left on device")
        real(self, slices, schema)  # type: ignore[arg-type]

    monkeypatch.setattr(lake_mod.StagedSource, "_encode", failing)
    with pytest.raises(OSError, match="No space left"):
        pipeline.process_paths([src], out, batch_bytes=64)
    assert not [p for p in (out / "lake").rglob("*.parquet")]


def test_each_date_keeps_the_files_row_order_across_both_staging_threads(
    tmp_path: Path,
) -> None:
    # Four dates, two written by each staging thread, in pieces of a few rows each.
    rows = [f"O{i},c{i % 7},2025-07-{6 + (i * 7) % 4:02d},Books,P,{1 + i % 3},1.5,false"
            for i in range(120)]
    # Dates first seen in the last pieces, on each thread: their files are ended too.
    rows += [f"L{i},c,2025-07-{10 + i % 2},Books,P,1,2,true" for i in range(6)]
    src = write(tmp_path / "orders.csv", *rows)
    out = tmp_path / "out"
    pipeline.process_paths([src], out, batch_bytes=100)
    for d in range(6, 12):
        want = [r.split(",")[0] for r in rows if f"2025-07-{d:02d}" in r]
        (obj,) = (out / "lake" / f"order_date=2025-07-{d:02d}").glob("*.parquet")
        got = pl.read_parquet(obj)
        assert got["order_id"].to_list() == want
        assert got["_source"].unique().to_list() == ["orders.csv"]
        assert got["_seq"].unique().to_list() == [1]


@pytest.mark.parametrize("step", ["_write_now", "_end"])
def test_a_failure_in_the_last_write_or_the_flush_leaves_the_lake_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    # Neither is seen by ``write`` (nothing is queued after them): ``add_staged`` sees it.
    import engine.lake as lake_mod

    out = tmp_path / "out"
    first = write(tmp_path / "a.csv", "A,c,2025-07-06,Books,P,1,10,false")
    assert main(["process", str(first), "--out", str(out), "-q"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in (out / "lake").rglob("*")
              if p.is_file()}
    src = write(tmp_path / "b.csv", *[f"B{i},c,2025-07-0{6 + i % 3},Books,P,1,10,false"
                                      for i in range(6)])

    def failing(self: object, *args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lake_mod.StagedSource, step, failing)
    with pytest.raises(OSError, match="No space left"):
        pipeline.process_paths([src], out)  # one piece: only add_staged can see it
    after = {p.relative_to(out): p.read_bytes() for p in (out / "lake").rglob("*")
             if p.is_file()}
    assert after == before
    assert not (out / "lake" / "_staging").exists()  # nothing staged is left behind


def test_on_end_follows_the_last_piece_and_only_while_the_file_is_valid(tmp_path: Path) -> None:
    from engine.validate import validate_file

    rows = [f"O{i},c,2025-07-0{6 + i % 3},Books,P,1,10,false" for i in range(30)]
    calls: list[str] = []

    def run(path: Path) -> str:
        calls.clear()
        res = validate_file(path, on_rows=lambda r: calls.append("rows"),
                            on_end=lambda: calls.append("end"), batch_bytes=64)
        return res.report.status

    assert run(write(tmp_path / "good.csv", *rows)) == "valid"
    assert calls.count("rows") > 1 and calls[-1] == "end" and calls.count("end") == 1
    # A bad value in the last piece: earlier pieces went to on_rows, but the file never ends.
    assert run(write(tmp_path / "bad.csv", *rows, "X,c,2025-07-06,Books,P,0,10,false")) == (
        "invalid")
    assert "rows" in calls and "end" not in calls


def test_finish_ends_the_files_of_writes_still_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``finish`` is called while the writes are still queued: the dates they open must be
    # ended too, however slow the writers are.
    import time

    import engine.lake as lake_mod
    from engine.rules import LAKE_SCHEMA

    real = lake_mod.StagedSource._encode

    def slow(self: lake_mod.StagedSource, slices: list, schema: object) -> None:
        time.sleep(0.2)
        real(self, slices, schema)  # type: ignore[arg-type]

    monkeypatch.setattr(lake_mod.StagedSource, "_encode", slow)
    lake = LocalLake(tmp_path / "lake")
    with lake.locked():
        staged = lake.stage("s.csv")
        for day in (6, 7):
            staged.write(pl.DataFrame({
                "order_id": [f"O{day}"], "customer_id": ["c"],
                "order_date": [dt.date(2025, 7, day)],
                "category": ["Books"], "product_id": ["P"], "quantity": [1],
                "unit_price": [1], "returned": [False],
            }).cast(LAKE_SCHEMA))  # type: ignore[arg-type]
        staged.finish()
        staged.close()
        for day in (6, 7):  # complete before they enter the lake
            path = staged.path(dt.date(2025, 7, day))
            assert pl.read_parquet(path)["order_id"].to_list() == [f"O{day}"]
        lake.add_staged(staged)
    for day in (6, 7):
        (obj,) = (tmp_path / "lake" / f"order_date=2025-07-0{day}").glob("*.parquet")
        assert pl.read_parquet(obj)["order_id"].to_list() == [f"O{day}"]


def test_staged_objects_hold_required_columns_and_a_null_never_enters_the_lake(
    tmp_path: Path,
) -> None:
    import pyarrow.parquet as pq

    from engine.rules import LAKE_SCHEMA

    def typed(oid: str, customer: str | None) -> pl.DataFrame:
        return pl.DataFrame(
            {"order_id": [oid], "customer_id": [customer], "order_date": [dt.date(2025, 7, 6)],
             "category": ["Books"], "product_id": ["P"], "quantity": [2],
             "unit_price": [1], "returned": [False]},
            schema=LAKE_SCHEMA,
        )

    lake = LocalLake(tmp_path / "lake")
    with lake.locked():
        staged = lake.stage("a.csv")
        staged.write(typed("A", "c"))
        lake.add_staged(staged)
    (obj,) = lake.objects(dt.date(2025, 7, 6))
    schema = pq.ParquetFile(obj).schema
    # No definition levels: every column is required, as validation guarantees.
    assert [schema.column(i).max_definition_level for i in range(len(schema))] == [0] * 10
    assert pl.read_parquet(obj)["order_id"].to_list() == ["A"]
    with lake.locked():
        staged = lake.stage("b.csv")
        staged.write(typed("B", None))
        with pytest.raises(ValueError, match="null"):
            lake.add_staged(staged)
    assert lake.objects(dt.date(2025, 7, 6)) == [obj]
    assert not (tmp_path / "lake" / "_staging").exists()


def test_a_second_file_of_one_name_in_a_run_replaces_the_first_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The lake knows a file by its name: the second is a correction of the first. That was
    # done without a word; now a warning names the earlier file.
    (tmp_path / "jan").mkdir()
    (tmp_path / "fix").mkdir()
    a = write(tmp_path / "jan" / "orders.csv", "A,c,2025-01-06,Books,P,1,10,false")
    b = write(tmp_path / "fix" / "orders.csv", "B,c,2025-02-06,Books,P,1,10,false")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["process", str(a), str(b), "--out", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {b}: same name as {a}, earlier in this run" in err
    want_cat, want_day = oracle.kpis([b.read_bytes()])
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat
    assert main(["process", str(a), "--out", str(out), "-q"]) == 0
    assert "same name" not in capsys.readouterr().err  # across runs: the rule as always
    # An earlier file of the name that did not enter the lake is replaced by nothing.
    bad = write(tmp_path / "jan" / "orders.csv", "A,c,2025-01-06,Books,P,0,10,false")
    assert main(["process", str(bad), str(b), "--out", str(tmp_path / "o2"), "-q"]) == 1
    assert "same name" not in capsys.readouterr().err
    # Two rejected files of one name: both were said to be "kept unchanged in rejected/",
    # but rejected/orders.csv and its report held the second's only, without a word.
    worse = write(tmp_path / "fix" / "orders.csv", "B,c,2025-01-06,Books,P,1,-1,false")
    assert main(["process", str(bad), str(worse), "--out", str(tmp_path / "o3"), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"warning: {worse}: same name as {bad}, rejected earlier in this run" in err
    assert f"warning: {bad}" not in err
    assert (tmp_path / "o3" / "rejected" / "orders.csv").read_bytes() == worse.read_bytes()


class Killed(BaseException):
    """Stands for SIGKILL: no handler catches it."""


def test_a_run_killed_between_two_moves_into_the_lake_leaves_nothing_a_correction_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # v2 replaced v1 date by date (one rename each) and was killed after two: the two files
    # were named in no manifest, so the correction v3 deleted v1's dates only and v2's two
    # dates stayed in the KPIs for good.
    for v in ("v1", "v2", "v3"):
        (tmp_path / v).mkdir()
    v1 = write(tmp_path / "v1" / "orders.csv",
               *(f"O{d},C,2025-01-0{d},Books,P,1,10.00,false" for d in range(1, 6)))
    v2 = write(tmp_path / "v2" / "orders.csv",
               *(f"O{d},C,2025-02-0{d},Books,P,2,10.00,false" for d in range(1, 6)))
    v3 = write(tmp_path / "v3" / "orders.csv", "Z,C,2025-03-01,Books,P,1,1.00,false")
    out = tmp_path / "out"
    assert main(["process", str(v1), "--out", str(out), "-q"]) == 0
    real_replace = os.replace
    moved = {"n": 0}

    def killed_after_two_moves(src: object, dst: object) -> None:
        if "order_date=" in str(dst):
            if moved["n"] == 2:
                raise Killed(dst)
            moved["n"] += 1
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", killed_after_two_moves)
    with pytest.raises(Killed):
        main(["process", str(v2), "--out", str(out), "-q"])
    monkeypatch.setattr(os, "replace", real_replace)
    lake = LocalLake(out / "lake")
    assert dt.date(2025, 2, 1) in lake.dates()  # moved in before the kill
    assert main(["process", str(v3), "--out", str(out), "-q"]) == 0
    assert lake.dates() == [dt.date(2025, 3, 1)]
    want_cat, want_day = oracle.kpis([v3.read_bytes()])
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat


def test_a_file_of_more_dates_than_open_files_allowed_stages_the_same_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One open Parquet writer per date: a file of 5,000 dates failed with "too many open
    # files" (exit 70) under a limit of 4,096, and 15,000 dates peaked at 1.2 GB. Now at most
    # MAX_OPEN_DATES stay open; a date seen again continues in a part file, merged at the end.
    import pyarrow.parquet as pq

    from engine import lake as lake_module

    days = [dt.date(2024, 1, 1) + dt.timedelta(n) for n in range(13)]
    rows = [f"O{i},C{i % 5},{days[(i * 5) % 13]},Books,P,{1 + i % 3},{i % 7}.25,{i % 4 == 0}"
            for i in range(400)]  # every date in every piece, in a shifting order
    f = write(tmp_path / "orders.csv", *rows)
    outs: dict[int, Path] = {}
    opened: dict[int, int] = {}
    real_writer = pq.ParquetWriter

    class CountingWriter(real_writer):  # type: ignore[misc, valid-type]
        def __init__(self, where: object, *a: object, **kw: object) -> None:
            opened[cap] += str(where).endswith(".part")
            super().__init__(where, *a, **kw)

    monkeypatch.setattr(pq, "ParquetWriter", CountingWriter)
    for cap in (1024, 4):
        monkeypatch.setattr(lake_module, "MAX_OPEN_DATES", cap)
        outs[cap], opened[cap] = tmp_path / f"out{cap}", 0
        pipeline.process_paths([f], outs[cap], batch_bytes=700)
        # no part file is left behind
        assert not list((outs[cap] / "lake").rglob("*.part"))
    assert opened[1024] == 0 and opened[4] > 13  # the cap closed files, and parts were merged
    wide, capped = (sorted((o / "lake").glob("order_date=*/*.parquet")) for o in outs.values())
    assert [p.relative_to(outs[1024]) for p in wide] == [p.relative_to(outs[4]) for p in capped]
    assert len(wide) == 13
    for a, b in zip(wide, capped, strict=True):
        assert pl.read_parquet(a).equals(pl.read_parquet(b))  # the same rows, in file order
        assert pq.read_schema(a) == pq.read_schema(b)
        assert pq.ParquetFile(b).metadata.num_row_groups > 1
    want_cat, want_day = oracle.kpis([f.read_bytes()])
    assert oracle.read_csv_table(outs[4] / "daily_kpis.csv") == want_day
    assert oracle.read_csv_table(outs[4] / "category_kpis.csv") == want_cat


def test_taking_the_lock_removes_the_temporary_files_of_a_killed_writer(tmp_path: Path) -> None:
    """The lake's bookkeeping files (its state, pending dates, sources' manifests) are
    replaced through temporary files that a writer killed halfway left; the next holder of
    the lock removes those of writers no longer running, and nothing else."""
    import subprocess

    dead = subprocess.Popen(["true"])  # a process number no process has now
    dead.wait()
    lake = LocalLake(tmp_path / "lake")
    (lake.root / "_sources").mkdir(parents=True)
    left = [lake.root / f"._state.json.{dead.pid}.ab12cd0f.tmp",
            lake.root / "_sources" / f".a.csv-1.json.{dead.pid}.ff99ff99.tmp",
            lake.root / f"._pending.json.{dead.pid}.ab12cd0f.old"]
    kept = [lake.root / f"._state.json.{os.getpid()}.ab12cd0f.tmp",  # a live writer's
            lake.root / "_sources" / "a.csv-1.json"]
    for f in left + kept:
        f.write_text("{}", encoding="utf-8")
    with lake.locked():
        assert [f for f in left + kept if f.exists()] == kept


def test_a_run_sweeps_the_tables_temporaries_in_its_folder_not_other_commands(
        tmp_path: Path) -> None:
    """A run removes the temporary files a killed run left of the KPI tables and in
    rejected/; in the folder itself it leaves those of other files, which commands that do
    not take the lake's lock may be writing (a dashboard beside the tables)."""
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "out"
    (out / "rejected").mkdir(parents=True)
    swept = [out / f".category_kpis.parquet.{dead.pid}.0b3e0000.tmp",
             out / "rejected" / f".x.csv.errors.json.{dead.pid}.0b3e0000.tmp"]
    kept = [out / f".dashboard.html.{dead.pid}.0b3e0000.tmp"]
    for f in swept + kept:
        f.write_text("x", encoding="utf-8")
    valid = Path(__file__).resolve().parent.parent / "fixtures" / "valid_order.csv"
    assert main(["process", str(valid), "--out", str(out), "-q"]) == 0
    assert [f.exists() for f in swept + kept] == [False, False, True]
