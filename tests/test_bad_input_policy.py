"""Quarantine policy, usage errors and crash safety around bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import engine.pipeline as pipeline
from engine.cli import main

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "fixtures" / "bad"
GOOD = ROOT / "fixtures" / "valid_order.csv"
HEADER = b"order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"


def snapshot(out: Path) -> dict[str, bytes]:
    """Return every KPI table and lake file under ``out`` (not rejected/), path -> bytes."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and "rejected" not in p.relative_to(out).parts
    }


ROW = b"ORD%d,CUST1,2025-07-06,Electronics,PROD001,2,199.99,false\n"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, err


def test_quarantined_rows_keep_line_reason_and_are_formula_safe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = BAD / "formula_cells_in_bad_rows.csv"
    out = tmp_path / "out"
    rc, err = _run(capsys, "process", "-q", str(src), "--out", str(out),
                   "--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.5")
    assert rc == 1
    assert "1 invalid rows quarantined" in err
    with open(out / "rejected" / f"{src.name}.rows.csv", newline="", encoding="utf-8") as f:
        [row] = list(csv.DictReader(f))
    assert row["line"] == "5"
    assert row["reason"] == "returned must be true or false"
    assert row["customer_id"].startswith("'=")
    assert row["product_id"] == "'@SUM(A1)"
    assert row["returned"] == "'+cmd"
    assert row["quantity"] == "1" and row["unit_price"] == "29.99"  # numbers stay numbers
    assert not (out / "rejected" / src.name).exists()  # only the bad rows are set aside
    daily = (out / "daily_kpis.csv").read_text(encoding="utf-8")
    assert "2025-07-06,3," in daily


def test_quarantine_above_ratio_rejects_the_whole_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = BAD / "formula_cells_in_bad_rows.csv"  # 1 bad row of 4 = 25 %
    out = tmp_path / "out"
    assert _run(capsys, "process", "-q", str(GOOD), "--out", str(out))[0] == 0
    before = snapshot(out)
    rc, err = _run(capsys, "process", "-q", str(src), "--out", str(out),
                   "--on-invalid", "quarantine-rows")  # default ratio 0.01
    assert rc == 1 and "above --max-invalid-ratio" in err
    assert snapshot(out) == before
    assert (out / "rejected" / src.name).read_bytes() == src.read_bytes()


def test_the_ratio_message_gives_counts_not_rounded_percentages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 101 bad rows of 10,000 said "1.00% of rows are invalid, above ... 1.00%".
    header, *rows = GOOD.read_text(encoding="utf-8").splitlines()
    first = rows[0].split(",")
    lines = [",".join([f"R{i}", *first[1:5], "-1" if i < 101 else "1", *first[6:]])
             for i in range(10_000)]
    src = tmp_path / "many.csv"
    src.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    rc, err = _run(capsys, "process", "-q", str(src), "--out", str(tmp_path / "out"),
                   "--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.01")
    assert rc == 1
    assert ("101 of 10,000 rows are invalid (a share of 0.0101), above --max-invalid-ratio 0.01:"
            " the whole file is rejected") in err


def test_a_quarantine_and_a_rejection_of_one_name_leave_one_files_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The kept bytes of a rejected file stayed beside the report of a later quarantine of
    # the same name (and the quarantined rows beside a later rejection's report).
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir(), v2.mkdir()
    (v1 / "o.csv").write_bytes((ROOT / "fixtures" / "invalid_order.csv").read_bytes())
    header, *rows = GOOD.read_text(encoding="utf-8").splitlines()
    (v2 / "o.csv").write_text("\n".join([header, *rows, "X1,C9,2025-07-06,Books,P,-1,1,false"])
                              + "\n", encoding="utf-8")
    out, rejected = tmp_path / "out", tmp_path / "out" / "rejected"
    quarantine = ["--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.5"]
    assert _run(capsys, "process", "-q", str(v1 / "o.csv"), "--out", str(out))[0] == 1
    assert (rejected / "o.csv").exists()
    assert _run(capsys, "process", "-q", str(v2 / "o.csv"), "--out", str(out), *quarantine)[0] == 1
    assert sorted(p.name for p in rejected.iterdir()) == ["o.csv.errors.json", "o.csv.rows.csv"]
    assert _run(capsys, "process", "-q", str(v1 / "o.csv"), "--out", str(out))[0] == 1
    assert sorted(p.name for p in rejected.iterdir()) == ["o.csv", "o.csv.errors.json"]
    report = json.loads((rejected / "o.csv.errors.json").read_text(encoding="utf-8"))
    assert report["outcome"] == "rejected" and report["invalid_rows"] == 3


def test_a_rejected_input_named_like_an_output_does_not_replace_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # o.csv.rows.csv holds the rows set aside from o.csv: an input of that name (the rows,
    # fixed, sent again) that is rejected keeps its bytes as o.csv.rows.csv.input.
    out, rejected = tmp_path / "out", tmp_path / "out" / "rejected"
    src = tmp_path / "o.csv"
    src.write_bytes(HEADER + ROW % 1 + b"ORD2,CUST1,2025-07-06,Books,P,-1,1,false\n")
    quarantine = ["--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.5"]
    assert _run(capsys, "process", "-q", str(src), "--out", str(out), *quarantine)[0] == 1
    set_aside = (rejected / "o.csv.rows.csv").read_bytes()
    assert b"ORD2" in set_aside
    again = tmp_path / "fixed" / "o.csv.rows.csv"
    again.parent.mkdir()
    again.write_bytes(HEADER + b"ORD2,CUST1,2025-07-06,Books,P,one,1,false\n")
    assert _run(capsys, "process", "-q", str(again), "--out", str(out))[0] == 1
    assert (rejected / "o.csv.rows.csv").read_bytes() == set_aside
    assert (rejected / "o.csv.rows.csv.input").read_bytes() == again.read_bytes()
    report = json.loads((rejected / "o.csv.rows.csv.errors.json").read_text(encoding="utf-8"))
    assert report["outcome"] == "rejected"
    # Quarantined instead, the same input leaves them alone too (its quarantine removes an
    # earlier rejection's kept bytes: those of o.csv.rows.csv.input, not o.csv.rows.csv).
    again.write_bytes(HEADER + ROW % 7 + ROW % 8 + b"ORD2,CUST1,2025-07-06,Books,P,one,1,false\n")
    assert _run(capsys, "process", "-q", str(again), "--out", str(out), *quarantine)[0] == 1
    assert (rejected / "o.csv.rows.csv").read_bytes() == set_aside
    assert not (rejected / "o.csv.rows.csv.input").exists()
    assert b"ORD2" in (rejected / "o.csv.rows.csv.rows.csv").read_bytes()
    assert pipeline.kept_name("o.csv.input") == "o.csv.input.input"
    assert pipeline.kept_name("o.csv.errors.json") == "o.csv.errors.json.input"
    assert pipeline.kept_name("o.csv") == "o.csv"


def test_a_long_input_named_like_an_output_is_kept_under_a_cut_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 250 bytes + ".input" is too long for a file name: exit 74, and no report.
    name = "a" * 241 + ".rows.csv"
    src = tmp_path / name
    src.write_bytes((ROOT / "fixtures" / "invalid_order.csv").read_bytes())
    out, rejected = tmp_path / "out", tmp_path / "out" / "rejected"
    for _ in range(2):  # the second time, rejected/ exists and its earlier outputs go
        assert _run(capsys, "process", "-q", str(src), "--out", str(out))[0] == 1
        kept = [p for p in rejected.iterdir() if p.name.endswith(".input")]
        assert [p.read_bytes() for p in kept] == [src.read_bytes()]
        assert all(len(p.name.encode()) <= 255 for p in rejected.iterdir())
    src.write_bytes(HEADER + ROW % 1 + ROW % 2 + b"ORD3,CUST1,2025-07-06,Books,P,-1,1,false\n")
    assert _run(capsys, "process", "-q", str(src), "--out", str(out), "--on-invalid",
                "quarantine-rows", "--max-invalid-ratio", "0.5")[0] == 1
    assert not [p for p in rejected.iterdir() if p.name.endswith(".input")]


def test_quarantine_of_a_file_with_no_valid_row_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Within the ratio (1.0), but nothing is left: the reason is not the ratio.
    src = ROOT / "fixtures" / "invalid_order.csv"  # 3 bad rows of 3
    rc, err = _run(capsys, "process", "-q", str(src), "--out", str(tmp_path / "out"),
                   "--on-invalid", "quarantine-rows", "--max-invalid-ratio", "1")
    assert rc == 1 and "no valid row is left to process" in err
    assert "above --max-invalid-ratio" not in err


def test_ragged_row_is_quarantined_with_its_field_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = BAD / "too_many_fields_line_3.csv"
    out = tmp_path / "out"
    rc, _ = _run(capsys, "process", "-q", str(src), "--out", str(out),
                 "--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.5")
    assert rc == 1
    text = (out / "rejected" / f"{src.name}.rows.csv").read_text(encoding="utf-8")
    assert "3,ORD2," in text and "the row has 9 fields, expected 8" in text
    # The set-aside row holds the header's 8 fields; the reason keeps the 9th, which the
    # file's other rows (processed) do not need, so nothing of the row is lost.
    assert "the text past field 8: 'EXTRA'" in text


def test_a_decimal_comma_row_is_set_aside_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 29,99 unquoted splits the price: the row has 9 fields, and its last one, the returned
    # flag, was in no output at all (rows.csv kept the first 8).
    src = tmp_path / "o.csv"
    src.write_bytes(HEADER + ROW % 1 + b"ORD2,CUST1,2025-07-06,Books,P,1,29,99,true\r\n")
    rc, _ = _run(capsys, "process", "-q", str(src), "--out", str(tmp_path / "out"),
                   "--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.5")
    assert rc == 1
    report = json.loads((tmp_path / "out" / "rejected" / "o.csv.errors.json").read_text("utf-8"))
    (finding,) = report["findings"]
    assert (finding["line"], finding["rule"], finding["message"]) == (
        3, "field_count", "the row has 9 fields, expected 8; the text past field 8: 'true'")
    with open(tmp_path / "out" / "rejected" / "o.csv.rows.csv", newline="",
              encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["unit_price"], row["returned"]) == ("29", "99")
    assert row["reason"].endswith("the text past field 8: 'true'")


@pytest.mark.parametrize("ratio", ["-0.1", "1.5", "nan", "abc"])
def test_max_invalid_ratio_out_of_bounds_is_a_usage_error(
    ratio: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        rc = main(["process", str(GOOD), "--out", str(tmp_path), "--max-invalid-ratio", ratio])
        raise SystemExit(rc)
    assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_missing_file_and_folder_without_csv_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, err = _run(capsys, "validate", str(tmp_path / "nope.csv"))
    assert rc == 2 and "no such file or folder" in err
    (tmp_path / "empty_dir").mkdir()
    rc, err = _run(capsys, "validate", str(tmp_path / "empty_dir"))
    assert rc == 2 and "holds no *.csv" in err
    rc, err = _run(capsys, "process", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert rc == 2


def test_validate_a_folder_reports_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.json"
    rc, _ = _run(capsys, "validate", str(BAD), "--report-json", str(report))
    assert rc == 1
    files = json.loads(report.read_text(encoding="utf-8"))["files"]
    assert len(files) == len(list(BAD.glob("*.csv")))
    assert all(f["sha256"] and len(f["sha256"]) == 64 for f in files)


def test_terminal_shows_20_findings_and_json_holds_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "many.csv"
    src.write_bytes(HEADER + b"".join(
        b"ORD%d,CUST1,2025-07-06,Toys,PROD001,2,199.99,false\n" % i for i in range(30)))
    report = tmp_path / "r.json"
    rc, err = _run(capsys, "validate", str(src), "--report-json", str(report))
    assert rc == 1
    assert err.count("is not an allowed category") == 20
    assert "... and 10 more findings" in err and "category allowed_category: 30" in err
    [rep] = json.loads(report.read_text(encoding="utf-8"))["files"]
    assert len(rep["findings"]) == 30
    assert rep["counts"] == [{"column": "category", "rule": "allowed_category", "count": 30}]


def test_crash_while_writing_kpis_leaves_old_tables_and_next_run_converges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert _run(capsys, "process", "-q", str(GOOD), "--out", str(out))[0] == 0
    tables = {p: (out / p).read_bytes() for p in
              ("category_kpis.parquet", "daily_kpis.parquet", "category_kpis.csv",
               "daily_kpis.csv")}
    new = tmp_path / "orders_2025-07-07.csv"
    new.write_bytes(HEADER + ROW % 900 + (ROW % 901).replace(b"07-06", b"07-07"))

    real = pl.DataFrame.write_parquet
    calls = {"n": 0}

    def failing(df: pl.DataFrame, path: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the first table is written, the second write dies
            raise OSError("disk full")
        real(df, path, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", failing)
    with pytest.raises(OSError):
        pipeline.process_paths([new], out)
    monkeypatch.undo()
    for name, old in tables.items():  # none replaced, and no temporary file left
        assert (out / name).read_bytes() == old, name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    pending = json.loads((out / "lake" / "_pending.json").read_text(encoding="utf-8"))
    assert pending == ["2025-07-06", "2025-07-07"]

    assert _run(capsys, "process", "-q", str(GOOD), "--out", str(out))[0] == 0
    assert json.loads((out / "lake" / "_pending.json").read_text(encoding="utf-8")) == []
    converged = snapshot(out)

    clean = tmp_path / "clean"
    assert _run(capsys, "process", "-q", str(GOOD), str(new), "--out", str(clean))[0] == 0
    for name in tables:
        assert converged[name] == (clean / name).read_bytes(), name


# A file that exists and opens but fails when read (a bad disk, a network mount gone): reading
# /proc/self/mem from its start fails with EIO. Before, `process`, `validate --report-json` and
# `--categories-from` ended in "internal error" (exit 70) while computing its digest.
FAILS_ON_READ = Path("/proc/self/mem")
needs_proc = pytest.mark.skipif(not FAILS_ON_READ.exists(), reason="needs Linux's /proc")


@needs_proc
def test_an_input_that_fails_when_read_is_rejected_with_its_report_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rejected = tmp_path / "out" / "rejected"
    rejected.mkdir(parents=True)
    (rejected / "mem").write_bytes(b"another upload's bytes")  # a stale copy of this name
    code, err = _run(capsys, "process", "-q", str(FAILS_ON_READ), "--out", str(tmp_path / "out"))
    assert code == 1 and "internal error" not in err
    assert "cannot be read" in err and f"its report is in {rejected}" in err
    report = json.loads((rejected / "mem.errors.json").read_text(encoding="utf-8"))
    assert report["structural"]["rule"] == "io" and report["sha256"] is None
    assert any("could not be kept" in w for w in report["warnings"])
    assert sorted(p.name for p in rejected.iterdir()) == ["mem.errors.json"]


@needs_proc
def test_validate_report_json_of_an_input_that_fails_when_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code, err = _run(capsys, "validate", str(FAILS_ON_READ), str(GOOD), "--report-json", str(out))
    assert code == 1 and "internal error" not in err
    bad, good = json.loads(out.read_text(encoding="utf-8"))["files"]
    assert bad["structural"]["rule"] == "io" and bad["sha256"] is None
    assert good["status"] == "valid" and len(good["sha256"]) == 64


@needs_proc
def test_a_categories_file_that_fails_when_read_is_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "validate", str(GOOD), "--categories-from", str(FAILS_ON_READ))
    assert code == 2 and "the categories file cannot be read" in err
    assert "internal error" not in err


def test_a_quarantine_s_rows_file_and_report_are_replaced_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A probe filled the disk between the two writes: the new rows file sat beside the last
    # run's report (a rejection's), and the rejected copy was gone. Now both are replaced,
    # and the copy removed, only once both are written.
    import engine.validate as validate

    src = tmp_path / "orders.csv"
    src.write_bytes(HEADER + b"".join(ROW % i for i in range(20)) + b"BAD,,2025-07-06,X,P,0,1,no\n")
    out = tmp_path / "out"
    rc, _ = _run(capsys, "process", str(src), "--out", str(out))
    assert rc == 1
    rejected = out / "rejected"
    before = {p.name: p.read_bytes() for p in rejected.iterdir()}
    assert set(before) == {"orders.csv", "orders.csv.errors.json"}
    chunks = validate.ValidationReport.json_chunks

    def fail_late(self: validate.ValidationReport, **kwargs: Any) -> Any:
        yield from list(chunks(self, **kwargs))[:2]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(validate.ValidationReport, "json_chunks", fail_late)
    rc, err = _run(capsys, "process", str(src), "--out", str(out),
                   "--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.5")
    assert rc == 74 and "No space left on device" in err
    assert {p.name: p.read_bytes() for p in rejected.iterdir()} == before
    monkeypatch.undo()
    rc, _ = _run(capsys, "process", str(src), "--out", str(out),
                 "--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.5")
    assert rc == 1
    assert sorted(p.name for p in rejected.iterdir()) == ["orders.csv.errors.json",
                                                          "orders.csv.rows.csv"]
    report = json.loads((rejected / "orders.csv.errors.json").read_text(encoding="utf-8"))
    assert report["outcome"] == "quarantined" and report["invalid_rows"] == 1
