"""``process`` of several files: a valid file enters the lake on a worker thread while the
next one is validated (``pipeline._Commits``), in file order, with the same results."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine import pipeline
from engine.lake import LocalLake, source_id
from tests import oracle

HEADER = "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"


def write(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def orders(prefix: str, day: int, n: int, qty: int = 1) -> list[str]:
    return [f"{prefix}{i},c{i % 5},2025-07-{day:02d},Books,P,{qty + i % 3},{i}.25,"
            f"{'true' if i % 4 == 0 else 'false'}" for i in range(1, n + 1)]


def seqs(out: Path) -> dict[str, int]:
    folder = out / "lake" / "_sources"
    return {m["source"]: m["seq"] for m in
            (json.loads(p.read_text()) for p in folder.glob("*.json"))}


def expect_oracle(out: Path, files: list[Path]) -> None:
    """Both KPI tables in ``out`` equal the oracle over ``files``, processed in that order."""
    want_cat, want_day = oracle.kpis_from_paths(files)
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day


def slow_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every source take 0.3 s more to enter the lake: still entering it when the next
    file is staged."""
    real_add = LocalLake.add_staged

    def slow_add(self: LocalLake, staged: Any, **kw: Any) -> Any:
        time.sleep(0.3)
        return real_add(self, staged, **kw)

    monkeypatch.setattr(LocalLake, "add_staged", slow_add)


def test_files_enter_the_lake_in_order_around_rejected_quarantined_and_empty_ones(
    tmp_path: Path,
) -> None:
    a1 = write(tmp_path / "in1" / "a.csv", orders("A", 6, 30))
    bad = orders("B", 6, 40)
    bad[5] = "B6,c1,2025-07-06,Books,P,0,1.00,false"  # quantity 0: quarantined
    b = write(tmp_path / "in1" / "b.csv", bad)
    c = write(tmp_path / "in1" / "c.csv", orders("A", 7, 30) + orders("C", 6, 10))
    rejected = write(tmp_path / "in1" / "d.csv", ["D1,c,2025-07-06,Books,P,1,oops,false"])
    empty = write(tmp_path / "in1" / "e.csv", [])
    a2 = write(tmp_path / "in2" / "a.csv", orders("A", 6, 20, qty=5))  # a.csv corrected
    f = write(tmp_path / "in1" / "f.csv", orders("C", 6, 5, qty=9))  # later wins C1..C5
    out = tmp_path / "out"
    files = [a1, b, c, rejected, empty, a2, f]
    result = pipeline.process_paths(files, out, on_invalid="quarantine-rows",
                                    max_invalid_ratio=0.1, batch_bytes=200)
    assert [o.outcome for o in result.files] == [
        "accepted", "quarantined", "accepted", "rejected", "empty", "accepted", "accepted"]
    # Sequence numbers in file order, taken only by files that entered the lake; the
    # corrected a.csv replaced the first one whole.
    assert seqs(out) == {"a.csv": 4, "b.csv": 2, "c.csv": 3, "f.csv": 5}
    assert [o.ingested.seq if o.ingested else None for o in result.files] == [
        1, 2, 3, None, None, 4, 5]
    b_valid = HEADER + "".join(r + "\n" for r in bad if r != bad[5])
    want_cat, want_day = oracle.kpis([b_valid.encode(), c.read_bytes(), a2.read_bytes(),
                                      f.read_bytes()])
    assert oracle.read_csv_table(out / "category_kpis.csv") == want_cat
    assert oracle.read_csv_table(out / "daily_kpis.csv") == want_day
    assert not (out / "lake" / "_staging").exists()


def test_the_next_file_is_validated_while_the_last_one_enters_the_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = write(tmp_path / "a.csv", orders("A", 6, 30))
    b = write(tmp_path / "b.csv", orders("B", 7, 30))
    b_started = threading.Event()
    real_add, real_validate = LocalLake.add_staged, pipeline.validate_file

    def add_staged(self: LocalLake, staged: Any, **kw: Any) -> Any:
        if staged.source == "a.csv":  # waits for b's validation: it must not wait for a
            assert b_started.wait(10), "b.csv was not validated while a.csv entered the lake"
        return real_add(self, staged, **kw)

    def validate_file(path: Path, **kw: Any) -> Any:
        if Path(path).name == "b.csv":
            b_started.set()
        return real_validate(path, **kw)

    monkeypatch.setattr(LocalLake, "add_staged", add_staged)
    monkeypatch.setattr(pipeline, "validate_file", validate_file)
    out = tmp_path / "out"
    pipeline.process_paths([a, b], out, batch_bytes=200)
    assert seqs(out) == {"a.csv": 1, "b.csv": 2}
    expect_oracle(out, [a, b])


def test_each_file_is_told_in_file_order_and_an_accepted_one_once_it_is_in_the_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_entries(monkeypatch)
    a = write(tmp_path / "a.csv", orders("A", 6, 30))
    bad = write(tmp_path / "b.csv", ["B1,c,2025-07-06,Books,P,1,oops,false"])
    c = write(tmp_path / "c.csv", orders("C", 7, 30))
    empty = write(tmp_path / "d.csv", [])
    out = tmp_path / "out"
    told: list[tuple[str, str, bool]] = []

    def on_file(o: pipeline.FileOutcome) -> None:
        in_lake = (out / "lake" / "_sources" / f"{source_id(Path(o.path).name)}.json").exists()
        told.append((Path(o.path).name, o.outcome, in_lake))

    pipeline.process_paths([a, bad, c, empty], out, on_file=on_file, batch_bytes=200)
    # a.csv's entry takes 0.3 s: b.csv's verdict comes first, and is told after a.csv's.
    assert told == [("a.csv", "accepted", True), ("b.csv", "rejected", False),
                    ("c.csv", "accepted", True), ("d.csv", "empty", False)]
    expect_oracle(out, [a, c])


def test_files_done_with_before_an_error_are_still_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = write(tmp_path / "a.csv", orders("A", 6, 30))
    bad = write(tmp_path / "b.csv", ["B1,c,2025-07-06,Books,P,1,oops,false"])
    c = write(tmp_path / "c.csv", orders("C", 7, 30))
    c_failed = threading.Event()
    real_add, real_validate = LocalLake.add_staged, pipeline.validate_file

    def add_staged(self: LocalLake, staged: Any, **kw: Any) -> Any:
        assert c_failed.wait(10)  # a.csv is in the lake only after c.csv has failed
        return real_add(self, staged, **kw)

    def validate_file(path: Path, **kw: Any) -> Any:
        if Path(path).name == "c.csv":
            c_failed.set()
            raise OSError(5, "Input/output error")
        return real_validate(path, **kw)

    monkeypatch.setattr(LocalLake, "add_staged", add_staged)
    monkeypatch.setattr(pipeline, "validate_file", validate_file)
    told: list[tuple[str, str]] = []
    with pytest.raises(OSError, match="Input/output"):
        pipeline.process_paths([a, bad, c], tmp_path / "out", batch_bytes=200,
                               on_file=lambda o: told.append((Path(o.path).name, o.outcome)))
    # a.csv's entry, still running when c.csv failed, was let finish: it is in the lake, and
    # told, and so is b.csv, behind it.
    assert told == [("a.csv", "accepted"), ("b.csv", "rejected")]
    assert seqs(tmp_path / "out") == {"a.csv": 1}


def test_a_failed_entry_stops_the_run_and_the_next_run_converges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [write(tmp_path / f"{x}.csv", orders(x.upper(), 6 + i, 25))
             for i, x in enumerate("abc")]
    real_add = LocalLake.add_staged

    def add_staged(self: LocalLake, staged: Any, **kw: Any) -> Any:
        if staged.source == "b.csv":
            raise OSError(28, "No space left on device")
        return real_add(self, staged, **kw)

    monkeypatch.setattr(LocalLake, "add_staged", add_staged)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left"):
        pipeline.process_paths(files, out, batch_bytes=200)
    assert seqs(out) == {"a.csv": 1}
    # c.csv, staged while b.csv's entry failed, was thrown away.
    assert not (out / "lake" / "_staging" / source_id("c.csv")).exists()
    assert not any(t.name.startswith("commit") for t in threading.enumerate())
    monkeypatch.setattr(LocalLake, "add_staged", real_add)
    pipeline.process_paths(files, out, batch_bytes=200)
    assert seqs(out) == {"a.csv": 2, "b.csv": 3, "c.csv": 4}
    expect_oracle(out, files)


def test_an_error_in_the_next_file_lets_the_queued_entry_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = write(tmp_path / "a.csv", orders("A", 6, 30))
    b = write(tmp_path / "b.csv", orders("B", 7, 30))
    real_validate = pipeline.validate_file

    def validate_file(path: Path, **kw: Any) -> Any:
        if Path(path).name == "b.csv":
            raise KeyboardInterrupt
        return real_validate(path, **kw)

    monkeypatch.setattr(pipeline, "validate_file", validate_file)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pipeline.process_paths([a, b], out, batch_bytes=200)
    assert seqs(out) == {"a.csv": 1}  # validated before the interruption: it is in
    assert LocalLake(out / "lake").pending()  # its KPIs wait for the next run
    assert not any(t.name.startswith("commit") for t in threading.enumerate())
    assert not (out / "lake" / "_staging").exists()


def test_files_of_many_dates_do_not_hold_their_open_files_at_once(tmp_path: Path) -> None:
    # Each staged date holds an open file until its source enters the lake: a file of more
    # than OVERLAP_MAX_DATES dates enters it before the next one is staged, so two such
    # files stay within an open-file limit that fits one of them (here 256, 200 dates each).
    import datetime as dt
    import os
    import resource
    import subprocess
    import sys

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for this test")
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(200)]
    assert pipeline.OVERLAP_MAX_DATES < 200
    files = [write(tmp_path / "in" / f"{x}.csv",
                   [f"{x}{i},c,{d},Books,P,1,2.5,false" for i, d in enumerate(days)])
             for x in "ab"]
    out = tmp_path / "out"
    root = Path(__file__).resolve().parent.parent
    code = (
        "import resource, sys\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from engine.cli import main\n"
        f"sys.exit(main(['process', {str(tmp_path / 'in')!r}, '--out', {str(out)!r}, '-q']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert seqs(out) == {"a.csv": 1, "b.csv": 2}
    expect_oracle(out, files)


def test_a_file_of_the_same_name_waits_for_the_last_one_to_enter_the_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both are the source "a.csv": one staging folder, which the second must not take over
    # while the first is still being moved into the lake.
    first = write(tmp_path / "in1" / "a.csv", orders("A", 6, 40))
    second = write(tmp_path / "in2" / "a.csv", orders("A", 6, 30, qty=4))
    slow_entries(monkeypatch)
    out = tmp_path / "out"
    pipeline.process_paths([first, second], out, batch_bytes=200)
    assert seqs(out) == {"a.csv": 2}
    expect_oracle(out, [second])


def test_a_whole_file_source_waits_for_the_queued_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # b.csv goes through the whole-file path (as after a 64-bit hash collision) and enters
    # the lake on the main thread: only once a.csv, still entering it, is in.
    a = write(tmp_path / "a.csv", orders("A", 6, 30))
    b = write(tmp_path / "b.csv", orders("A", 6, 20, qty=7))  # the same orders, later
    real_validate = pipeline.validate_file

    def validate_file(path: Path, **kw: Any) -> Any:
        if Path(path).name == "b.csv":
            kw.pop("on_rows")
            kw.pop("on_end")
            res = real_validate(path, **kw)
            assert not res.streamed and res.cleaned is not None
            return res
        return real_validate(path, **kw)

    slow_entries(monkeypatch)
    monkeypatch.setattr(pipeline, "validate_file", validate_file)
    out = tmp_path / "out"
    pipeline.process_paths([a, b], out, batch_bytes=200)
    assert seqs(out) == {"a.csv": 1, "b.csv": 2}
    expect_oracle(out, [a, b])
