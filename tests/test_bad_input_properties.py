"""Arbitrary bytes and mutations of a valid file: a clean report or success, never a crash."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.cli import main

VALID = (Path(__file__).resolve().parents[1] / "fixtures" / "orders_2025-07-07.csv").read_bytes()
NASTY = [b"", b",", b'"', b"\n", b"\r", b"\r\n", b"\x00", b"\xef\xbb\xbf", b"\xff", b"\xe9",
         b"=", b"-1", b"2025-02-30", b"Books", b"TRUE", b" ", b"\t", b'""', b"ORD300"]

_FAST = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
_SLOW = settings(max_examples=3000, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """Return the valid file with a few inserts, deletes and replacements of bytes or tokens."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(st.sampled_from(NASTY), st.binary(min_size=1, max_size=4)))
        if op == "insert":
            data[pos:pos] = piece
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            data[pos : pos + len(piece)] = piece
    return bytes(data)


def _check(data: bytes, tmp_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Hypothesis reuses the function's tmp_path for every example: give each its own folder.
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_root))
    src = tmp_path / "input.csv"
    src.write_bytes(data)
    report = tmp_path / "r.json"
    rc = main(["validate", str(src), "--report-json", str(report)])
    err = capsys.readouterr().err
    assert rc in (0, 1), err
    assert "Traceback" not in err and "internal error" not in err, err
    [rep] = json.loads(report.read_text(encoding="utf-8"))["files"]
    assert rep["status"] in ("valid", "invalid", "empty")
    assert (rc == 0) == (rep["status"] != "invalid")
    if rc == 1:
        assert rep["structural"] is not None or rep["findings"], rep
        for f in rep["findings"]:  # every row finding points at a real line of the file
            assert f["line"] is None or 2 <= f["line"] <= data.count(b"\n") + 1, f
    out = tmp_path / "out"
    rc2 = main(["process", "-q", str(src), "--out", str(out),
                "--on-invalid", "quarantine-rows", "--max-invalid-ratio", "0.5"])
    err = capsys.readouterr().err
    assert rc2 in (0, 1), err
    assert "Traceback" not in err and "internal error" not in err, err
    if rc2 == 1 and not (out / "rejected" / f"{src.name}.rows.csv").exists():
        assert (out / "rejected" / src.name).read_bytes() == data


@_FAST
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(
    data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(data, tmp_path, capsys)


@_FAST
@given(data=mutated())
# Found by the slow run: a stray quote in a row that also has too many fields.
@example(data=VALID.replace(b"\nORD300", b'\n,O"RD300', 1))
# Lone CRs: lines are counted as Polars counts them (only LF ends a line).
@example(data=b"," + VALID.replace(b"\nORD300", b"\n\r\rORD300", 1))
def test_mutated_valid_file_never_crashes(
    data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(data, tmp_path, capsys)


@pytest.mark.slow
@_SLOW
@given(data=st.one_of(mutated(), st.binary(max_size=2000)))
def test_long_run_of_bad_bytes_never_crashes(
    data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(data, tmp_path, capsys)
