"""``atomic.replace_together``: several files replaced all or none (the four KPI tables)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import atomic
from engine.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TABLES = ("category_kpis.parquet", "daily_kpis.parquet", "category_kpis.csv", "daily_kpis.csv")


def _writer(text: str):  # type: ignore[no-untyped-def]
    return lambda p: Path(p).write_text(text, encoding="utf-8")


def _state(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}


def test_every_file_is_replaced_and_nothing_else_is_left(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("old a", encoding="utf-8")
    atomic.replace_together([(tmp_path / "a", _writer("new a")),
                             (tmp_path / "sub" / "b", _writer("new b"))])
    assert (tmp_path / "a").read_text(encoding="utf-8") == "new a"
    assert (tmp_path / "sub" / "b").read_text(encoding="utf-8") == "new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "sub"]


def test_a_failed_rename_puts_back_the_files_already_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in "abc":
        (tmp_path / name).write_text(f"old {name}", encoding="utf-8")
    real = os.replace

    def third_fails(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == "c":
            raise OSError(errno.EPERM, "Operation not permitted", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", third_fails)
    with pytest.raises(OSError, match="not permitted"):
        atomic.replace_together([(tmp_path / n, _writer(f"new {n}")) for n in "adbc"])
    # a and b were renamed, then given their old version back; d, new, is gone again
    assert _state(tmp_path) == {"a": "old a", "b": "old b", "c": "old c"}


def test_old_versions_are_copied_aside_where_links_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in "ab":
        (tmp_path / name).write_text(f"old {name}", encoding="utf-8")

    def no_links(*args: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    real = os.replace

    def second_fails(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == "b":
            raise OSError(errno.EIO, "Input/output error", str(dst))
        real(src, dst)

    (tmp_path / "a").chmod(0o600)  # a private table stays private when it is put back
    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError):
        atomic.replace_together([(tmp_path / n, _writer(f"new {n}")) for n in "ab"])
    assert _state(tmp_path) == {"a": "old a", "b": "old b"}
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o600
    monkeypatch.setattr(os, "replace", real)
    atomic.replace_together([(tmp_path / n, _writer(f"new {n}")) for n in "ab"])
    assert _state(tmp_path) == {"a": "new a", "b": "new b"}


def test_a_folder_in_a_file_s_place_fails_before_anything_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("old a", encoding="utf-8")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "inside").write_text("kept", encoding="utf-8")
    with pytest.raises(OSError):
        atomic.replace_together([(tmp_path / n, _writer(f"new {n}")) for n in "ab"])
    assert (tmp_path / "a").read_text(encoding="utf-8") == "old a"
    assert (tmp_path / "b" / "inside").read_text(encoding="utf-8") == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_process_that_cannot_replace_one_table_changes_none_of_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder where daily_kpis.csv goes (or a file made immutable): exit 74, and the other
    three tables are the old ones, not the new (before, three were replaced and the CSV and
    Parquet daily tables disagreed)."""
    out = tmp_path / "out"
    assert main(["process", "-q", str(FIXTURES / "valid_order.csv"), "--out", str(out)]) == 0
    before = {n: (out / n).read_bytes() for n in TABLES}
    (out / "daily_kpis.csv").unlink()
    (out / "daily_kpis.csv").mkdir()
    capsys.readouterr()
    code = main(["process", "-q", str(FIXTURES / "orders_2025-07-07.csv"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 74 and "daily_kpis.csv" in err and "Traceback" not in err
    for name in TABLES[:3]:
        assert (out / name).read_bytes() == before[name], name
    (out / "daily_kpis.csv").rmdir()
    # The dates are still pending: the next run's tables are those of both files.
    assert main(["process", "-q", str(FIXTURES / "valid_order.csv"), "--out", str(out)]) == 0
    clean = tmp_path / "clean"  # the same three runs, none failing
    for name in ("valid_order.csv", "orders_2025-07-07.csv", "valid_order.csv"):
        assert main(["process", "-q", str(FIXTURES / name), "--out", str(clean)]) == 0
    for name in TABLES[2:]:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name


def test_two_paths_to_one_file_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    """A link to another of the outputs: its old version was kept aside twice, and a failed
    rename then deleted the file instead of putting it back."""
    (tmp_path / "real").write_text("old", encoding="utf-8")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError, match="two of the outputs are this one file"):
        atomic.replace_together([(tmp_path / "real", _writer("1")),
                                 (tmp_path / "other", _writer("2")),
                                 (tmp_path / "link", _writer("3"))])
    assert (tmp_path / "real").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_file_written_in_batches_is_whole_or_unchanged(tmp_path: Path) -> None:
    # A quarantine's rows file and report are written batch by batch as they are read back
    # from disk: a failure part way leaves the earlier file as it was, and no temporary file.
    from collections.abc import Iterator

    import polars as pl

    target = tmp_path / "rows.csv"
    target.write_text("old\n")

    def frames(fail: bool) -> Iterator[pl.DataFrame]:
        yield pl.DataFrame({"line": [2], "reason": ["x"]})
        if fail:
            raise OSError("disk gone")
        yield pl.DataFrame({"line": [5], "reason": ["y"]})

    with pytest.raises(OSError):
        atomic.replace_together([(target, atomic.csv_writer(frames(True)))])
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["rows.csv"]
    atomic.replace_together([(target, atomic.csv_writer(frames(False)))])
    assert target.read_text() == "line,reason\n2,x\n5,y\n"  # one header
    with pytest.raises(OSError):
        atomic.write_text_chunks_atomic(target, (c if c != "!" else _boom() for c in "ab!"))
    assert target.read_text() == "line,reason\n2,x\n5,y\n"
    atomic.write_text_chunks_atomic(target, iter(["é", "\n"]))
    assert target.read_bytes() == "é\n".encode()


def _boom() -> str:
    raise OSError("disk gone")


def _writing(target: Path) -> subprocess.Popen[str]:
    """A process in the middle of ``write_text_chunks_atomic(target, ...)``: its temporary
    file is there, and it waits (to be killed, or to end) before the rest of the text."""
    code = ("import sys, time\n"
            "from engine import atomic\n"
            "def chunks():\n"
            "    yield 'half'\n"
            "    print('written', flush=True)\n"
            "    time.sleep(60)\n"
            "    yield ' and the rest'\n"
            f"atomic.write_text_chunks_atomic({str(target)!r}, chunks())\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(FIXTURES.parent)})
    assert proc.stdout is not None and proc.stdout.readline() == "written\n"
    return proc


def test_the_temporary_files_of_a_killed_writer_are_swept_and_a_live_one_s_kept(
        tmp_path: Path) -> None:
    """A write killed halfway (SIGKILL, the kernel out of memory) left `.<name>.*.tmp` for
    good: its name now carries the writer's process number, and a process that no longer
    runs has no write to finish."""
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    killed, alive = _writing(target), _writing(target)
    killed.kill()
    killed.communicate()
    mine = {p.name for p in tmp_path.iterdir()} - {"report.json"}
    assert len(mine) == 2 and all(n.startswith(".report.json.") for n in mine)
    # Names the sweep must not take: not its pattern, or a folder.
    others = [".keep", ".report.json.abcdefgh.tmp", f".x.{killed.pid}.abcdef01.tmp.bak"]
    for name in others:
        (tmp_path / name).write_text("not ours", encoding="utf-8")
    (tmp_path / f".d.{killed.pid}.abcdef01.tmp").mkdir()
    try:
        gone = atomic.sweep_temporaries(tmp_path)
        assert [p.name for p in gone] == [n for n in mine if f".{killed.pid}." in n]
        assert {p.name for p in tmp_path.iterdir()} == (
            {"report.json", f".d.{killed.pid}.abcdef01.tmp", *others}
            | {n for n in mine if f".{alive.pid}." in n})
    finally:
        alive.kill()
        alive.communicate()
    assert target.read_text(encoding="utf-8") == "old"  # neither write was whole
    assert atomic.sweep_temporaries(tmp_path / "none") == []  # no folder: nothing to do


def test_the_sweep_takes_only_the_writes_it_is_told_of_and_names_with_line_ends(
        tmp_path: Path) -> None:
    """``of``: in a folder where other commands write without the lake's lock (a dashboard
    beside the KPI tables), only the named files' temporaries are swept: a process number
    says nothing of a writer in another PID namespace (a container). A name may hold a line
    end (an input's copy in rejected/): it was never swept."""
    dead = subprocess.Popen(["true"])  # a process number no process has now
    dead.wait()
    table = tmp_path / f".daily_kpis.csv.{dead.pid}.abcd0123.tmp"
    other = tmp_path / f".dashboard.html.{dead.pid}.abcd0123.tmp"
    odd = tmp_path / f".a\nb.csv.{dead.pid}.abcd0123.old"
    for f in (table, other, odd):
        f.write_text("x", encoding="utf-8")
    assert set(atomic.sweep_temporaries(tmp_path, of=("daily_kpis.csv", "a\nb.csv"))) == {
        table, odd}
    assert [f.exists() for f in (table, other, odd)] == [False, True, False]


def test_the_command_s_end_sweeps_only_the_temporary_files_it_made(tmp_path: Path) -> None:
    """``sweep_own`` removes this process's temporaries that an interrupt left, and only
    those it made: a file named with its number may be another PID namespace's (two
    containers' commands are both process 1) being written beside it, a dashboard's."""
    mine = atomic._temp_beside(tmp_path / "daily_kpis.csv")  # made, then its writer stopped
    theirs = tmp_path / f".dash.html.{os.getpid()}.0123abcd.tmp"
    theirs.write_text("being written", encoding="utf-8")
    done = tmp_path / "done.json"
    atomic.write_text_atomic(done, "{}")  # replaced: nothing of it is left to sweep
    assert atomic.sweep_own() == [mine]
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name, "done.json"]
    assert atomic.sweep_own() == []
