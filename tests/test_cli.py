"""The command line as a user runs it: exit codes, outputs, messages, merges, reruns."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from engine.cli import main
from tests import oracle
from tests.insight_aws import moto_endpoint

__all__ = ["moto_endpoint"]  # a fixture, used by name

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
VALID = FIX / "valid_order.csv"
# The rows of invalid_order.csv, each bad in its own way.
VALID_BAD_LINES = (FIX / "invalid_order.csv").read_bytes().splitlines(keepends=True)[1:]
DAY2 = FIX / "orders_2025-07-07.csv"
INVALID = FIX / "invalid_order.csv"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def test_process_sample_files_prints_and_writes_tables_equal_to_oracle(tmp_path: Path) -> None:
    r = run("process", str(VALID), str(DAY2), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "Category KPIs" in r.stdout and "Daily KPIs" in r.stdout
    want_cat, want_day = oracle.kpis_from_paths([VALID, DAY2])
    assert oracle.read_csv_table(tmp_path / "category_kpis.csv") == want_cat
    assert oracle.read_csv_table(tmp_path / "daily_kpis.csv") == want_day
    # The re-sent ORD124 (in the later file) replaced the first one instead of adding to it.
    books_0706 = next(r for r in want_cat if r["category"] == "Books"
                  and r["order_date"] == "2025-07-06")
    assert books_0706["daily_revenue"] == "59.98" and books_0706["returned_orders"] == "0"


def test_csv_columns_order_and_decimal_places(tmp_path: Path) -> None:
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    cat = (tmp_path / "category_kpis.csv").read_text().splitlines()
    day = (tmp_path / "daily_kpis.csv").read_text().splitlines()
    assert cat[0] == ("category,order_date,daily_revenue,avg_order_value,avg_return_rate,"
                      "orders,returned_orders")
    assert day[0] == ("order_date,total_orders,total_revenue,total_items_sold,return_rate,"
                      "unique_customers")
    assert cat[1] == "Books,2025-07-06,29.99,29.99,1.0000,1,1"
    assert day[1] == "2025-07-06,2,429.97,3,0.5000,2"  # the original design's example


def test_parquet_outputs_keep_exact_decimal_types(tmp_path: Path) -> None:
    import polars as pl

    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    cat = pl.read_parquet(tmp_path / "category_kpis.parquet")
    assert cat.schema["daily_revenue"] == pl.Decimal(38, 2)
    assert cat.schema["avg_return_rate"] == pl.Decimal(38, 4)
    assert cat.schema["order_date"] == pl.Date


def test_rerun_of_same_file_leaves_kpis_unchanged(tmp_path: Path) -> None:
    assert main(["process", str(VALID), str(DAY2), "--out", str(tmp_path), "-q"]) == 0
    before = [(tmp_path / n).read_bytes() for n in ("category_kpis.csv", "daily_kpis.csv")]
    assert main(["process", str(VALID), str(DAY2), "--out", str(tmp_path), "-q"]) == 0
    after = [(tmp_path / n).read_bytes() for n in ("category_kpis.csv", "daily_kpis.csv")]
    assert before[0] == after[0]
    # Re-processing VALID last makes it the latest version of ORD124 again.
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    want = oracle.kpis_from_paths([VALID, DAY2, VALID])
    assert oracle.read_csv_table(tmp_path / "category_kpis.csv") == want[0]


def test_second_run_merges_new_files_into_the_tables(tmp_path: Path) -> None:
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    assert main(["process", str(DAY2), "--out", str(tmp_path), "-q"]) == 0
    want_cat, want_day = oracle.kpis_from_paths([VALID, DAY2])
    assert oracle.read_csv_table(tmp_path / "category_kpis.csv") == want_cat
    assert oracle.read_csv_table(tmp_path / "daily_kpis.csv") == want_day


def test_folder_path_processes_its_csv_files(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_bytes(VALID.read_bytes())
    (folder / "notes.txt").write_text("ignored")
    assert main(["process", str(folder), "--out", str(tmp_path / "out"), "-q"]) == 0
    assert oracle.read_csv_table(tmp_path / "out" / "daily_kpis.csv") == \
        oracle.kpis_from_paths([VALID])[1]


def test_invalid_file_is_rejected_with_reasons_and_changes_nothing(tmp_path: Path) -> None:
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    before = (tmp_path / "category_kpis.csv").read_bytes()
    r = run("process", str(INVALID), str(DAY2), "--out", str(tmp_path), "-q")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "invalid_order.csv:2: order_date" in r.stderr and "'2025/07/06'" in r.stderr
    assert "this order_id is on lines 3, 4" in r.stderr
    # The valid file of the same run still went in; the invalid one added nothing.
    want = oracle.kpis_from_paths([VALID, DAY2])
    assert oracle.read_csv_table(tmp_path / "category_kpis.csv") == want[0]
    assert before != (tmp_path / "category_kpis.csv").read_bytes()
    kept = tmp_path / "rejected" / "invalid_order.csv"
    assert kept.read_bytes() == INVALID.read_bytes()
    report = json.loads((tmp_path / "rejected" / "invalid_order.csv.errors.json").read_text())
    assert report["status"] == "invalid" and report["invalid_rows"] == 3
    assert len(report["sha256"]) == 64 and report["size_bytes"] == INVALID.stat().st_size
    lines = {(f["line"], f["column"]) for f in report["findings"]}
    assert {(2, "order_date"), (3, "customer_id"), (3, "category"), (3, "quantity"),
            (3, "returned"), (4, "order_date"), (4, "unit_price"), (3, "order_id"),
            (4, "order_id")} == lines


def test_validate_exit_codes_and_report_json(tmp_path: Path) -> None:
    assert run("validate", str(VALID), str(DAY2)).returncode == 0
    out = tmp_path / "r.json"
    r = run("validate", str(VALID), str(INVALID), "--report-json", str(out))
    assert r.returncode == 1
    payload = json.loads(out.read_text())
    assert payload["valid"] is False
    assert [f["status"] for f in payload["files"]] == ["valid", "invalid"]
    assert not (tmp_path / "out").exists()  # validate changes nothing


@pytest.mark.parametrize(
    "args",
    [("validate",), ("process", str(VALID)), ("process", "nope.csv", "--out", "x"),
     ("validate", "missing.csv"), ("frobnicate",),
     ("process", str(VALID), "--out", "x", "--max-invalid-ratio", "2")],
)
def test_usage_errors_exit_2_without_traceback(args: tuple[str, ...]) -> None:
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr


def test_outputs_the_machine_refuses_exit_74_naming_the_path(tmp_path: Path) -> None:
    # An --out that is a file, a report path that is a folder: the machine's answer, named,
    # not an internal error (exit 70), and no traceback.
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    r = run("process", str(VALID), "--out", str(a_file), "-q")
    assert r.returncode == 74, r.stderr
    assert str(a_file) in r.stderr and "Not a directory" in r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    # A report path that is a folder is refused before any work (exit 2; it was 74 after).
    r = run("validate", str(VALID), "--report-json", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr, r.stderr


def test_a_reader_that_goes_away_stops_the_output_quietly(tmp_path: Path) -> None:
    # `| head` or `| true`: not an error of ours (it was exit 74 "Broken pipe", then 70).
    cmd = (f"{sys.executable} -m engine.cli process {VALID} --out {tmp_path / 'o'} | true;"
           " echo ${PIPESTATUS[0]}")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.stdout.strip() == "141", r.stderr
    assert "error" not in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "o" / "daily_kpis.csv").exists()  # the work itself was done


@pytest.fixture(scope="module")
def many_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder whose daily table prints as ~90-150 KB (3,000 dates)."""
    out = tmp_path_factory.mktemp("many_days")
    rows = ["order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned"]
    rows += [f"O{i},C{i % 7},{dt.date(2000, 1, 1) + dt.timedelta(days=i)},Books,P1,2,9.99,false"
             for i in range(3000)]
    (out / "orders.csv").write_text("\n".join(rows) + "\n")
    assert main(["process", str(out / "orders.csv"), "--out", str(out / "o"), "-q"]) == 0
    return out / "o"


QUERY_ALL = ("query", "daily", "--from", "2000-01-01", "--to", "2010-12-31")


def test_a_query_output_the_disk_takes_in_part_exits_74(many_days: Path, tmp_path: Path) -> None:
    # One write of the whole output, larger than Python's buffer: a full disk (here a file-size
    # limit) took its first 64 KiB and the run said nothing, exit 0.
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    with (tmp_path / "q.csv").open("w") as out:
        r = subprocess.run([sys.executable, "-m", "engine.cli", *QUERY_ALL, "--dir",
                            str(many_days), "--format", "csv"], stdout=out, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           preexec_fn=limit, timeout=120)
    assert r.returncode == 74, r.stderr
    assert "the machine refused a write" in r.stderr and "Traceback" not in r.stderr
    whole = run(*QUERY_ALL, "--dir", str(many_days), "--format", "csv")
    assert whole.returncode == 0 and len(whole.stdout) > 65536  # it was cut, and said so


def test_a_query_reader_that_goes_away_gives_141(many_days: Path) -> None:
    cmd = (f"{sys.executable} -m engine.cli {' '.join(QUERY_ALL)} --dir {many_days} | head -1;"
           " echo ${PIPESTATUS[0]}")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    first, code = r.stdout.splitlines()
    assert first.startswith("order_date") and code == "141", r.stderr
    assert "error" not in r.stderr and "Traceback" not in r.stderr


def test_aws_out_of_reach_exits_75_saying_so(tmp_path: Path) -> None:
    from tests.aws.fixtures import free_port

    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_MAX_ATTEMPTS": "1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "query", "daily", "--from", "2025-07-06",
         "--to", "2025-07-07", "--dynamodb"], capture_output=True, text=True, cwd=ROOT,
        env=env, timeout=120)
    assert r.returncode == 75, r.stderr
    assert "AWS could not be reached" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.integration
@pytest.mark.parametrize(("argv", "said", "hint"), [
    (["query", "daily", "--from", "2025-07-06", "--to", "2025-07-07", "--dynamodb",
      "--order-table", "NoSuchTable"], "AWS refused BatchGetItem (ResourceNotFoundException",
     "--order-table"),
    (["query", "category", "--category", "Books", "--from", "2025-07-06", "--to", "2025-07-07",
      "--dynamodb"], "AWS refused Query (ResourceNotFoundException", "--category-table"),
    (["backfill", "s3://some-bucket/input/", "--state-machine-arn",
      "arn:aws:states:us-east-1:123456789012:stateMachine:none"],
     "AWS refused StartExecution (StateMachineDoesNotExist", "BackfillStateMachineArn"),
])
def test_aws_refusing_a_call_is_a_usage_error_in_its_words(
        moto_endpoint: str, capsys: pytest.CaptureFixture[str], argv: list[str], said: str,
        hint: str) -> None:
    # A table or state machine that is not there was "internal error (a bug)", exit 70.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and hint in err and "bug" not in err and "Traceback" not in err


def test_aws_answers_are_sorted_into_refusals_and_failures_to_answer() -> None:
    from botocore.exceptions import ClientError

    from engine.cli import _aws_answer

    def answer(code: str, status: int) -> tuple[int, str] | None:
        return _aws_answer(ClientError({"Error": {"Code": code, "Message": "m"},
                                        "ResponseMetadata": {"HTTPStatusCode": status}}, "Query"))

    assert answer("InternalServerError", 500) == (75, "AWS could not answer Query"
                                                  " (InternalServerError: m).\nNothing was"
                                                  " changed by the call that failed; run the"
                                                  " command again.")
    assert answer("ProvisionedThroughputExceededException", 400)[0] == 75  # type: ignore[index]
    assert answer("SlowDown", 503)[0] == 75  # type: ignore[index]
    assert answer("TooManyRequestsException", 429)[0] == 75  # type: ignore[index]
    assert answer("RequestTimeout", 400)[0] == 75  # type: ignore[index]
    code, text = answer("AccessDeniedException", 400)  # type: ignore[misc]
    assert code == 2 and "get-caller-identity" in text
    code, text = answer("ValidationException", 400)  # type: ignore[misc]
    assert code == 2 and text.startswith("AWS refused Query (ValidationException: m)")
    assert _aws_answer(ValueError("not AWS")) is None


def test_missing_aws_region_is_a_usage_error_with_a_hint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")}
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "query", "daily", "--from", "2025-07-06",
         "--to", "2025-07-07", "--dynamodb"], capture_output=True, text=True, cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), "AWS_CONFIG_FILE": str(tmp_path / "none"),
             "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "AWS_DEFAULT_REGION" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_outputs_follow_the_umask_and_take_long_names(
    tmp_path: Path, umask: int, mode: int
) -> None:
    # They came out 0600 whatever the umask (mkstemp's private mode): unreadable by the
    # other tools the KPI tables are for. Run in a process of its own with that umask.
    long = tmp_path / ("n" * 240 + ".csv")  # a temporary name embedding it whole: too long
    code = ("import os, sys; os.umask(int(sys.argv[2], 8));"
            " from engine.atomic import write_text_atomic, copy_atomic;"
            " write_text_atomic(sys.argv[1], 'a\\n')")
    subprocess.run([sys.executable, "-c", code, str(long), oct(umask)], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert long.read_text() == "a\n"
    assert long.stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == [long.name]  # no temporary left


def test_a_copy_keeps_the_permissions_of_its_source(tmp_path: Path) -> None:
    from engine.atomic import copy_atomic

    private = tmp_path / "private.csv"
    private.write_text("x")
    private.chmod(0o600)
    copy_atomic(private, tmp_path / "rejected" / "private.csv")
    assert (tmp_path / "rejected" / "private.csv").stat().st_mode & 0o777 == 0o600


def test_an_unreadable_rejected_file_gets_its_report_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.pipeline as pipeline

    def refuse(*_: object) -> None:
        raise PermissionError(13, "Permission denied", str(VALID))

    # Root reads any file, so the refusal is simulated where the bytes are copied.
    monkeypatch.setattr(pipeline, "copy_atomic", refuse)
    monkeypatch.setattr(pipeline.os, "access", lambda *_: False)
    res = pipeline.process_paths([INVALID], tmp_path)
    assert [f.outcome for f in res.files] == ["rejected"]
    report = json.loads((tmp_path / "rejected" / f"{INVALID.name}.errors.json").read_text())
    assert "the file could not be kept in rejected/: Permission denied" in report["warnings"]
    assert not (tmp_path / "rejected" / INVALID.name).exists()


def test_categories_from_products_file_replaces_the_allowed_set(tmp_path: Path) -> None:
    toys = tmp_path / "toys.csv"
    toys.write_text(VALID.read_text().replace("Electronics", "Toys"))
    assert run("validate", str(toys)).returncode == 1
    r = run("validate", str(toys), "--categories-from", str(FIX / "sample_products.csv"))
    assert r.returncode == 0, r.stderr
    env_run = subprocess.run(
        [sys.executable, "-m", "engine.cli", "validate", str(toys)], capture_output=True,
        text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT),
             "ORDER_KPIS_CATEGORIES_FROM": str(FIX / "sample_products.csv")},
    )
    assert env_run.returncode == 0, env_run.stderr
    bad = tmp_path / "noc.csv"
    bad.write_text("product_id\nP1\n")
    assert run("validate", str(toys), "--categories-from", str(bad)).returncode == 2


def test_help_is_fast_and_does_not_import_polars() -> None:
    code = ("import sys, engine.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'polars' not in sys.modules and 'pandera' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


# -- progress: on a terminal only ------------------------------------------------------------


def _stderr_of_process(tmp_path: Path, *, tty: bool) -> str:
    """Run ``process`` on two files with stderr on a pseudo-terminal or a pipe; give stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "engine.cli", "process", str(VALID), str(DAY2),
            "--out", str(tmp_path / ("tty" if tty else "pipe")), "--quiet"]  # fmt: skip
    if not tty:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=env, cwd=ROOT)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal's last writer end
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=120) == 0
        assert proc.stdout is not None
        proc.stdout.close()
    finally:
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_line_shows_files_rows_and_rate_on_a_terminal_only(tmp_path: Path) -> None:
    progress = re.compile(r"\[(\d+) files, ([\d,]+) rows, [\d,]+ rows/s\] \S+: accepted")
    on_tty = progress.findall(_stderr_of_process(tmp_path, tty=True))
    assert [(int(f), int(r.replace(",", ""))) for f, r in on_tty] == [(1, 2), (2, 7)]
    assert progress.findall(_stderr_of_process(tmp_path, tty=False)) == []


@pytest.mark.parametrize(("preset", "want"), [(None, "1"), ("3", "3")])
def test_the_command_line_keeps_numpy_from_starting_blas_threads(
    preset: str | None, want: str, tmp_path: Path
) -> None:
    # pyarrow imports numpy where it is installed, and its OpenBLAS would start a spinning
    # thread; the command line asks for none unless the user set a number.
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = (
        "import os, sys\n"
        "from engine.cli import main\n"
        # The setting is read when numpy loads: nothing imported before main() may load it.
        "assert 'numpy' not in sys.modules\n"
        f"code = main(['process', {str(VALID)!r}, '--out', {str(tmp_path)!r}, '-q'])\n"
        "assert code == 0, code\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == want


# -- progress within a file ------------------------------------------------------------------


def test_a_long_file_shows_how_far_it_is_read_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import engine.cli as cli

    class EveryCall(cli._Ticker):  # every piece, not every half second
        def __init__(self) -> None:
            super().__init__(every=0.0)

    monkeypatch.setattr(cli, "_progress", lambda stream=None: True)
    monkeypatch.setattr(cli, "_Ticker", EveryCall)
    for command in (["validate", str(VALID)], ["process", str(VALID), "--out",
                                                str(tmp_path / "o"), "-q"]):
        assert main(command) == 0
        err = capsys.readouterr().err
        n = sum(1 for line in VALID.read_text().splitlines()[1:] if line.strip())
        # Rewritten in place, then cleared before the file's own line is printed.
        assert f"\r{VALID}: 100% read, {n:,} orders, " in err
        ticker_at = err.index(f"\r{VALID}: 100% read")
        assert err.index("\r\x1b[K", ticker_at) < err.index(f"{VALID}", ticker_at + 2)


def test_the_ticker_writes_at_most_every_interval_and_clears_only_what_it_wrote(
    tmp_path: Path,
) -> None:
    import io

    from engine.cli import _Ticker

    f = tmp_path / "orders.csv"
    f.write_bytes(b"x" * 1000)
    out = io.StringIO()
    ticker = _Ticker(out, every=3600)
    ticker.clear()
    ticker(f, 250, 10)
    ticker(f, 500, 20)
    assert out.getvalue() == ""  # within the first interval: nothing written, nothing cleared
    ticker = _Ticker(out, every=0)
    ticker(f, 250, 10)
    ticker(f, 1000, 40)
    ticker.clear()
    ticker.clear()
    lines = out.getvalue().split("\r")
    assert lines[1].startswith(f"{f}: 25% read, 10 orders, ")
    assert lines[2].startswith(f"{f}: 100% read, 40 orders, ")
    assert lines[3:] == ["\x1b[K"]


# ---- what a user gets wrong, and what the machine refuses: a word for each, never a bug ------


def test_paths_that_exist_but_are_the_wrong_kind_are_named_for_what_they_are(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # They said "no such file or folder", "does not exist", "not found".
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert main(["validate", str(fifo)]) == 2
    assert "not a regular file (a pipe or a device)" in capsys.readouterr().err
    assert main(["query", "daily", "--from", "2025-07-06", "--to", "2025-07-06",
                 "--dir", str(VALID)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["validate", str(VALID), "--categories-from", str(tmp_path)]) == 2
    assert "categories file is a folder" in capsys.readouterr().err


def test_a_report_path_that_would_overwrite_an_order_file_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `validate --report-json jan.csv feb.csv` replaced jan.csv with the report, exit 0.
    jan, feb = tmp_path / "jan.csv", tmp_path / "feb.csv"
    jan.write_bytes(VALID.read_bytes())
    feb.write_bytes(DAY2.read_bytes())
    assert main(["validate", "--report-json", str(jan), str(feb)]) == 2
    assert main(["validate", str(feb), "--report-json", str(feb)]) == 2
    assert "would overwrite an order file" in capsys.readouterr().err
    assert main(["validate", str(feb), "--report-json", str(tmp_path / "new.csv")]) == 2
    assert "a .csv path is not taken for the report" in capsys.readouterr().err
    assert not (tmp_path / "new.csv").exists()
    assert (jan.read_bytes(), feb.read_bytes()) == (VALID.read_bytes(), DAY2.read_bytes())


@pytest.mark.parametrize("argv", [
    ["process", str(VALID), "--out", ""],  # an unset shell variable: the current folder
    ["reprocess", "--out", "x", "--date-from", "20250701", "--date-to", "2025-07-02"],
    ["reprocess", "--out", "x", "--date-from", "2025-W27-1", "--date-to", "2025-07-02"],
    ["bench", "--only", "nope", "--rows", "10"],
    ["bench", "--repeats", "0", "--rows", "10"],
    ["query", "daily", "--from", "2025-W27-1", "--to", "2025-07-02", "--dir", "."],
])
def test_usage_mistakes_exit_2(argv: list[str], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written here
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code  # type: ignore[assignment]
    assert code == 2
    assert list(tmp_path.iterdir()) == []


def test_utf16_file_says_so_with_a_hint(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Excel's "Unicode text": it was "binary data ... a NUL byte at byte offset 3".
    path = tmp_path / "excel.csv"
    path.write_bytes(VALID.read_text(encoding="utf-8").encode("utf-16"))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "line 1: the file is UTF-16 text" in err and "CSV UTF-8" in err


@pytest.mark.parametrize(("body", "said"), [
    ("utf-32", "UTF-32"), ("utf-32-be", "UTF-32"), ("utf-16-be", "UTF-16"),
    ("bom only", "UTF-16")])
def test_wide_encodings_are_named_by_their_byte_order_mark(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, said: str) -> None:
    """UTF-32 was called UTF-16 (its little-endian mark starts as UTF-16's), and a file of a
    UTF-16 mark alone was "bytes that are not UTF-8 at byte offset 0"."""
    path = tmp_path / "wide.csv"
    text = VALID.read_text(encoding="utf-8")
    if body == "bom only":
        path.write_bytes(b"\xff\xfe")
    else:  # the codecs without an endianness write a mark; add one to the -be ones
        data = text.encode(body)
        path.write_bytes(("\ufeff" + text).encode(body) if body.endswith("-be") else data)
    assert main(["validate", str(path)]) == 1
    assert f"line 1: the file is {said} text" in capsys.readouterr().err
    assert main(["validate", str(VALID), "--categories-from", str(path)]) == 2
    assert f"the categories file is {said} text" in capsys.readouterr().err


def test_a_full_disk_is_the_machine_refusing_a_write_not_a_bug(tmp_path: Path) -> None:
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "engine.cli", "query", "daily", "--from",
                            "2025-07-06", "--to", "2025-07-06", "--dir", str(tmp_path),
                            "--format", "csv"], stdout=full, stderr=subprocess.PIPE, text=True,
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 74, r.stderr
    assert "No space left on device" in r.stderr and "bug" not in r.stderr


@pytest.mark.parametrize("writer", ["engine.atomic:write_text_atomic",
                                    "engine.insight.dashboard:write_dashboard"])
def test_an_output_that_is_a_pipe_is_written_through_not_replaced(
        tmp_path: Path, writer: str) -> None:
    # --report-json /dev/stdout, dashboard --out a pipe: a rename put a regular file in its place.
    import importlib
    import stat

    module, name = writer.split(":")
    write = getattr(importlib.import_module(module), name)
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write(fifo, '{"valid": true}\n')
        assert os.read(reader, 100) == b'{"valid": true}\n'
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_ctrl_c_while_following_says_the_execution_goes_on(
        capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import _run_workflow

    class Sfn:
        def describe_state_machine(self, **_: object) -> dict[str, str]:
            return {"definition": '{"Comment": "order-kpis backfill: ..."}'}

        def start_execution(self, **_: object) -> dict[str, str]:
            return {"executionArn": "arn:aws:states:us-east-1:1:execution:bf:run-1"}

        def describe_execution(self, **_: object) -> dict[str, str]:
            raise KeyboardInterrupt

    assert _run_workflow("backfill", "arn:sm", {"mode": "files"}, follow=True, sfn=Sfn()) == 130
    err = capsys.readouterr().err
    assert "goes on running on AWS" in err and "stop-execution --execution-arn arn:aws" in err


def test_a_rejected_file_with_a_long_name_keeps_its_report(tmp_path: Path) -> None:
    # A legal 244-byte name: its report's name (+ ".errors.json") was too long for one file
    # name, so the run stopped with exit 74 and the copy in rejected/ had no report.
    from engine.pipeline import beside

    name = "é" * 120 + ".csv"  # 244 bytes, 124 characters
    bad = tmp_path / "in" / name
    bad.parent.mkdir()
    bad.write_bytes((FIX / "invalid_order.csv").read_bytes())
    good = tmp_path / "in" / "z.csv"
    good.write_bytes(VALID.read_bytes())
    assert main(["process", str(bad.parent), "--out", str(tmp_path / "o"), "-q"]) == 1
    rejected = tmp_path / "o" / "rejected"
    [report] = rejected.glob("*.errors.json")
    assert report.name == beside(name, ".errors.json") and len(report.name.encode()) <= 255
    assert report.name.startswith("é" * 100) and "~" in report.name
    assert json.loads(report.read_text())["file"].endswith(name)
    assert (rejected / name).read_bytes() == bad.read_bytes()
    assert (tmp_path / "o" / "daily_kpis.csv").exists()  # the valid file went on
    assert beside("short.csv", ".rows.csv") == "short.csv.rows.csv"


@pytest.mark.parametrize(("name", "text"), [
    ("_state.json", "garbage\n"), ("_state.json", "[1]\n"),
    ("_state.json", '{"next_seq": 1e400}\n'), ("_state.json", '{"next_seq": 2.9}\n'),
    ("_pending.json", '["2025-02-30"]\n'), ("_pending.json", '{"a": 1}\n'),
])
def test_a_damaged_lake_file_is_named_and_nothing_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str) -> None:
    # It was "internal error (a bug)", exit 70, naming no file.
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    (tmp_path / "lake" / name).write_text(text)
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*")
                    if p.is_file())
    assert main(["process", str(DAY2), "--out", str(tmp_path), "-q"]) == 74
    err = capsys.readouterr().err
    assert f"{tmp_path / 'lake' / name}: the lake's bookkeeping file is damaged" in err
    assert "bug" not in err
    after = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*")
                   if p.is_file())
    assert after == before


def test_an_unreadable_categories_file_says_why_without_polars_api_advice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    utf16, open_quote = tmp_path / "u16.csv", tmp_path / "quote.csv"
    utf16.write_bytes("product_id,category\nP1,Books\n".encode("utf-16"))
    open_quote.write_text('product_id,category\nP1,"Books\nP2,Toys\n')
    assert main(["validate", str(VALID), "--categories-from", str(utf16)]) == 2
    assert "the categories file is UTF-16 text" in capsys.readouterr().err
    assert main(["validate", str(VALID), "--categories-from", str(open_quote)]) == 2
    err = capsys.readouterr().err
    assert "cannot read the categories file as CSV" in err and "not properly escaped" in err
    assert "infer_schema_length" not in err and "ignore_errors" not in err


NOT_A_TABLE = ": not a KPI table as this version writes it ("


def test_a_damaged_parquet_output_is_named(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Polars' "File out of specification" names no file: it was exit 70, "a bug".
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    [part] = (tmp_path / "lake").glob("order_date=*/*.parquet")
    part.write_bytes(part.read_bytes()[:100])
    assert main(["reprocess", "--out", str(tmp_path), "--date-from", "2025-07-01",
                 "--date-to", "2025-07-31", "-q"]) == 74
    err = capsys.readouterr().err
    assert f"cannot be read:\n  {part} (" in err and "bug" not in err
    (tmp_path / "daily_kpis.parquet").write_bytes(b"not parquet")
    assert main(["query", "daily", "--from", "2025-07-01", "--to", "2025-07-31",
                 "--dir", str(tmp_path)]) == 74
    assert f"{tmp_path / 'daily_kpis.parquet'}{NOT_A_TABLE}" in capsys.readouterr().err
    # dashboard reads --from-dir and writes --out, a file: the folder is the one it reads
    html = tmp_path.parent / f"{tmp_path.name}.html"
    assert main(["dashboard", "--from-dir", str(tmp_path), "--out", str(html)]) == 74
    assert f"{tmp_path / 'daily_kpis.parquet'}{NOT_A_TABLE}" in capsys.readouterr().err
    assert not html.exists()


def test_a_parquet_output_with_other_columns_is_named(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # A table or lake object that reads, but holds other columns: Polars' "unable to find
    # column" was exit 70, "a bug".
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "category_kpis.parquet")
    assert main(["query", "category", "--category", "Books", "--from", "2025-07-01", "--to",
                 "2025-07-31", "--dir", str(tmp_path)]) == 74
    err = capsys.readouterr().err
    assert f"{tmp_path / 'category_kpis.parquet'}{NOT_A_TABLE}no column category," in err
    assert "daily_kpis" not in err  # only the damaged one is named
    (tmp_path / "category_kpis.parquet").unlink()  # as the hint says; reprocess rebuilds it
    [part] = (tmp_path / "lake").glob("order_date=*/*.parquet")
    pl.DataFrame({"x": [1]}).write_parquet(part)
    assert main(["reprocess", "--out", str(tmp_path), "--date-from", "2025-07-01",
                 "--date-to", "2025-07-31", "-q"]) == 74
    assert f"{part} (no column order_id, customer_id," in capsys.readouterr().err


def test_a_kpi_table_with_a_column_of_another_type_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Dates stored as text: comparing them to the query's dates was exit 70, "a bug", with
    # Polars' plan.
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    table = tmp_path / "category_kpis.parquet"
    pl.read_parquet(table).with_columns(pl.col("order_date").cast(pl.String)).write_parquet(table)
    assert main(["query", "category", "--category", "Books", "--from", "2025-07-01", "--to",
                 "2025-07-31", "--dir", str(tmp_path)]) == 74
    err = capsys.readouterr().err
    assert f"{table}{NOT_A_TABLE}order_date is String, not Date)" in err
    assert "plan" not in err


@pytest.mark.parametrize("change", ["extra column", "money of 3 places", "money as float",
                                    "dates as datetimes"])
def test_a_kpi_table_this_version_did_not_write_is_refused_before_any_change(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str) -> None:
    # An extra column failed process and reprocess with exit 70 (the merge's ShapeError);
    # money of 3 places was rounded by query and kept by reprocess (3-place CSVs); floats
    # were rounded by query. Each command now refuses the table, naming it, and changes nothing.
    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    table = tmp_path / "daily_kpis.parquet"
    frame = pl.read_parquet(table)
    frame = {
        "extra column": frame.with_columns(pl.lit(0).alias("net_revenue")),
        "money of 3 places": frame.with_columns(
            pl.col("total_revenue").cast(pl.Decimal(38, 3)) + pl.lit("0.005").cast(
                pl.Decimal(38, 3))),
        "money as float": frame.with_columns(pl.col("total_revenue").cast(pl.Float64) + 0.005),
        "dates as datetimes": frame.with_columns(pl.col("order_date").cast(pl.Datetime)),
    }[change]
    frame.write_parquet(table)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for argv in (["process", str(DAY2), "--out", str(tmp_path), "-q"],
                 ["reprocess", "--out", str(tmp_path), "--date-from", "2025-07-01",
                  "--date-to", "2025-07-31", "-q"],
                 ["query", "daily", "--from", "2025-07-01", "--to", "2025-07-31", "--dir",
                  str(tmp_path)],
                 ["dashboard", "--from-dir", str(tmp_path), "--out",
                  str(tmp_path.parent / f"{tmp_path.name}.html")]):
        assert main(argv) == 74, argv
        out, err = capsys.readouterr()
        assert f"{table}{NOT_A_TABLE}" in err and out == "", (argv, err)
        assert "reprocess" in err  # the hint: the table is computed from the lake
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    # As the hint says: moved aside, reprocess writes it again from the lake.
    table.rename(tmp_path.parent / "aside.parquet")
    assert main(["reprocess", "--out", str(tmp_path), "--date-from", "2030-01-01",
                 "--date-to", "2030-01-01", "-q"]) == 0
    assert "0 lake dates in 2030-01-01..2030-01-01 recomputed, and 1 more outside it" in (
        capsys.readouterr().err)
    assert oracle.read_csv_table(tmp_path / "daily_kpis.csv") == oracle.kpis_from_paths(
        [VALID])[1]
    assert main(["query", "daily", "--from", "2025-07-01", "--to", "2025-07-31", "--dir",
                 str(tmp_path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == (
        tmp_path / "daily_kpis.csv").read_text().splitlines()[1:]


def test_a_folder_named_like_a_partition_but_not_a_date_is_left_out_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A backup copy (order_date=2025-07-06.bak) or order_date=garbage: reprocess, and process
    # with a KPI table missing, ended in exit 70 ("Invalid isoformat string").
    import shutil

    assert main(["process", str(VALID), "--out", str(tmp_path), "-q"]) == 0
    [day] = (tmp_path / "lake").glob("order_date=*")
    strays = [day.with_name(day.name + ".bak"), day.with_name("order_date=garbage"),
              day.with_name("order_date=2025-02-30"), day.with_name("order_date=20250706")]
    for stray in strays:
        shutil.copytree(day, stray)
    caplog.clear()
    assert main(["reprocess", "--out", str(tmp_path), "--date-from", "2025-07-01",
                 "--date-to", "2025-07-31", "-q"]) == 0
    err = caplog.text
    assert all(f"{s} is not a date's folder of the lake" in err for s in strays), err
    assert err.count("is not a date's folder") == len(strays)  # once each
    (tmp_path / "daily_kpis.parquet").unlink()
    assert main(["process", str(DAY2), "--out", str(tmp_path), "-q"]) == 0
    want_cat, want_day = oracle.kpis_from_paths([VALID, DAY2])  # the copies count nowhere
    assert oracle.read_csv_table(tmp_path / "daily_kpis.csv") == want_day
    assert oracle.read_csv_table(tmp_path / "category_kpis.csv") == want_cat


def test_a_report_through_a_link_to_standard_output_lands_in_the_redirected_file(
        tmp_path: Path) -> None:
    # `--report-json /dev/stdout > file`: the link was replaced by a regular file, the file
    # stayed empty. Here a link of our own to /proc/self/fd/1, as /dev/stdout is.
    link, captured = tmp_path / "so.json", tmp_path / "captured.txt"
    link.symlink_to("/proc/self/fd/1")
    with open(captured, "w") as out:
        r = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(VALID),
                            "--report-json", str(link)], stdout=out, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           timeout=120)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert json.loads(captured.read_text())["valid"] is True


def test_a_link_to_a_file_keeps_the_link_and_replaces_the_file(tmp_path: Path) -> None:
    from engine.atomic import write_text_atomic

    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("old")
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_an_output_that_is_a_socket_is_refused(tmp_path: Path) -> None:
    import socket

    from engine.atomic import write_text_atomic

    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(OSError, match="not a regular file, a pipe or a terminal"):
            write_text_atomic(path, "x")


def test_ctrl_c_during_process_names_the_files_already_in_the_lake(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # It said "outputs were left as they were before", but a file done before the interrupt
    # had entered the lake, and the next run, of any file, added its orders to the tables.
    import engine.pipeline as pipeline

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_bytes(VALID.read_bytes())
    b.write_bytes((FIX / "orders_2025-07-07.csv").read_bytes())
    real = pipeline.validate_file

    def validate_file(path: Path, **kw: Any) -> Any:
        if Path(path).name == "b.csv":
            raise KeyboardInterrupt
        return real(path, **kw)

    monkeypatch.setattr(pipeline, "validate_file", validate_file)
    out = tmp_path / "out"
    assert main(["process", str(a), str(b), "--out", str(out), "-q"]) == 130
    err = capsys.readouterr().err
    assert f"1 file had entered the lake ({a})" in err and "left as they were" not in err
    assert not (out / "daily_kpis.csv").exists()
    # Nothing had entered it yet: the outputs are as they were.
    assert main(["process", str(b), "--out", str(tmp_path / "o2"), "-q"]) == 130
    assert ("No file entered the lake, and the KPI tables were left as they were"
            in capsys.readouterr().err)


def test_the_output_folders_own_files_are_refused_as_inputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `process d --out d` took d's KPI tables for order files on its second run: it rejected
    # them (exit 1) and kept copies of them in d/rejected/.
    d = tmp_path / "d"
    d.mkdir()
    (d / "orders.csv").write_bytes(VALID.read_bytes())
    assert main(["process", str(d), "--out", str(d), "-q"]) == 0
    rejected = tmp_path / "x.csv"
    rejected.write_bytes((FIX / "invalid_order.csv").read_bytes())
    assert main(["process", str(rejected), "--out", str(d), "-q"]) == 1
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert main(["process", str(d), "--out", str(d), "-q"]) == 2
    assert f"{d / 'category_kpis.csv'}: the KPI table category_kpis.csv of --out {d}" in \
        capsys.readouterr().err
    assert main(["process", str(d / "rejected" / "x.csv"), "--out", str(d), "-q"]) == 2
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


def test_small_usage_traps_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path / "o")
    # --max-invalid-ratio without quarantine-rows was ignored without a word.
    assert main(["process", str(VALID), "--out", out, "--max-invalid-ratio", "0.5"]) == 2
    assert "applies only with --on-invalid quarantine-rows" in capsys.readouterr().err
    # A folder as --report-json: refused before validating (it failed after, exit 74,
    # naming a temporary file).
    assert main(["validate", str(VALID), "--report-json", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--report-json {str(tmp_path)!r} is a folder" in err and ".tmp" not in err
    # A categories file named by the environment: the message says where it came from.
    monkeypatch.setenv("ORDER_KPIS_CATEGORIES_FROM", str(tmp_path / "gone.csv"))
    assert main(["validate", str(VALID)]) == 2
    assert "gone.csv (from ORDER_KPIS_CATEGORIES_FROM): categories file not found" in \
        capsys.readouterr().err
    monkeypatch.delenv("ORDER_KPIS_CATEGORIES_FROM")
    # A file separated by semicolons: the hint says so.
    semi = tmp_path / "semi.csv"
    semi.write_text(VALID.read_text().replace(",", ";"))
    assert main(["validate", str(semi)]) == 1
    assert "separated by semicolons: the file must be comma-separated" in capsys.readouterr().err


def test_a_folder_leaves_out_hidden_files_and_refuses_a_dangling_link(tmp_path: Path) -> None:
    from engine.errors import UsageError
    from engine.pipeline import expand_paths

    d = tmp_path / "in"
    d.mkdir()
    (d / "a.csv").write_bytes(VALID.read_bytes())
    (d / "._a.csv").write_bytes(b"\x00\x05\x16\x07 Mac OS X metadata")
    assert expand_paths([d]) == [d / "a.csv"]
    (d / "a.csv").rename(d / ".a.csv")
    with pytest.raises(UsageError, match=r"no \*\.csv file but hidden ones, which are left out"):
        expand_paths([d])
    (d / ".a.csv").rename(d / "a.csv")
    (d / "b.csv").symlink_to(tmp_path / "moved.csv")
    with pytest.raises(UsageError, match=r"b\.csv: a link to a file that does not exist"):
        expand_paths([d])
    # A named pipe among the files was skipped without a word; a folder named *.csv still is.
    (d / "b.csv").unlink()
    (d / "old.csv").mkdir()
    assert expand_paths([d]) == [d / "a.csv"]
    os.mkfifo(d / "c.csv")
    with pytest.raises(UsageError, match=r"c\.csv: not a regular file \(a pipe or a device\)"):
        expand_paths([d])


def test_a_bad_endpoint_setting_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # botocore's ValueError ("Invalid endpoint") was exit 70, "a bug".
    for name, value in {"AWS_ENDPOINT_URL": "notaurl", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}.items():
        monkeypatch.setenv(name, value)
    assert main(["query", "daily", "--from", "2025-01-01", "--to", "2025-01-01",
                 "--dynamodb"]) == 2
    err = capsys.readouterr().err
    assert "Invalid endpoint: notaurl" in err and "Hint: check AWS_ENDPOINT_URL" in err


def test_standard_output_closed_is_refused_before_any_work(tmp_path: Path) -> None:
    # `process ... >&-` wrote every output, then failed on printing: exit 70, "a bug".
    out = tmp_path / "out"
    r = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m engine.cli process "{VALID}" --out "{out}" >&-'],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120, check=False,
    )
    assert r.returncode == 74, r.stderr
    assert "standard output is closed" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("missing", ["moto", "yaml", "template"])
def test_local_aws_without_the_dev_extra_or_a_checkout_is_a_usage_error(
        missing: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # moto is imported when the stack starts: without it, exit 70 "a bug". From an installed
    # wheel, the template is not there: exit 74, as if an output had failed.
    import importlib.util

    import engine.localaws.stack as stack

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the stack was started")

    monkeypatch.setattr(stack, "LocalAws", never)
    if missing == "template":
        monkeypatch.setattr(stack, "repo_root", lambda: tmp_path)
    else:
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == missing else real(name, *a))
    for command in ("up", "demo"):
        assert main(["local-aws", command]) == 2
        err = capsys.readouterr().err
        assert "internal error" not in err and "Traceback" not in err
        assert (f"needs the dev extra ({missing} is missing)" if missing != "template"
                else "orchestration/template.yaml of a checkout") in err, err


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)


def test_ctrl_c_while_the_command_line_is_read_says_interrupted_without_a_traceback() -> None:
    """The console script (`entry`): a Ctrl-C in the first ~0.2 s, while the parser's modules
    are imported, printed a traceback."""
    r = _python("import engine.cli as cli\n"
                "def parser():\n"
                "    raise KeyboardInterrupt\n"
                "cli.build_parser = parser\n"
                "cli.entry()\n")
    assert r.returncode == 130, r.stderr
    assert r.stderr == "order-kpis: interrupted; nothing was changed\n"


def _entry(*argv: object) -> str:
    """The end of a ``_python`` script: the console script run with ``argv``."""
    return ("import sys, engine.cli as cli\n"
            f"sys.argv = ['order-kpis', *{[str(a) for a in argv]!r}]\n"
            "cli.entry()\n")


_QUARANTINE = ("--on-invalid", "quarantine-rows", "--max-invalid-ratio", "1", "-q")


def _mixed(tmp_path: Path, bad: list[bytes]) -> Path:
    """Write ``mixed.csv``: a valid export's 5 rows, then ``bad``."""
    src = tmp_path / "mixed.csv"
    src.write_bytes((FIX / "orders_2025-07-07.csv").read_bytes() + b"".join(bad))
    return src


# Sends the signal to the command itself at a chosen point of its work: while its first
# piece is staged (`staging`), or once the first part of a quarantine's report is written
# (`report`: its rows file is written and both wait, as temporary files, to be renamed).
_STOP_AT = {
    "staging": (
        "import engine.pipeline as p\n"
        "real = p.validate_file\n"
        "def validate_file(path, *, on_rows, **kw):\n"
        "    def staged(rows):\n"
        "        on_rows(rows)\n"
        "        os.kill(os.getpid(), SIG)\n"
        "    return real(path, on_rows=staged, **kw)\n"
        "p.validate_file = validate_file\n"),
    "report": (
        "import engine.pipeline as p\n"
        "real = p.text_writer\n"
        "def text_writer(chunks):\n"
        "    def chunks_then_stop():\n"
        "        for i, c in enumerate(chunks):\n"
        "            yield c\n"
        "            if i == 0:\n"
        "                os.kill(os.getpid(), SIG)\n"
        "    return real(chunks_then_stop())\n"
        "p.text_writer = text_writer\n"),
}


@pytest.mark.parametrize(("name", "at", "code"), [
    ("SIGTERM", "staging", 143), ("SIGTERM", "report", 143), ("SIGHUP", "report", 129)])
def test_sigterm_or_sighup_unwinds_the_command_as_ctrl_c_does(
        tmp_path: Path, name: str, at: str, code: int) -> None:
    """`kill`, `timeout`, a container or a supervisor stopping the command (SIGTERM), or its
    terminal closed (SIGHUP): the signal's default action killed it where it stood (exit 143,
    no word), leaving the staged rows under lake/_staging/, the quarantine's spool, and the
    temporary files of outputs half-written in rejected/. Now it stops as Ctrl-C does: the
    outputs as they were, nothing of the run left behind, a message and 128 + the signal."""
    bad = VALID_BAD_LINES if at == "report" else []  # for the report, three bad rows too
    src = _mixed(tmp_path, bad)
    out = tmp_path / "out"
    r = _python(f"import os, signal\nSIG = signal.{name}\n" + _STOP_AT[at]
                + _entry("process", src, "--out", out, *_QUARANTINE))
    assert r.returncode == code, r.stderr
    assert r.stderr == (f"order-kpis: stopped by {name}. No file entered the lake, and the KPI"
                        " tables were left as they were.\n")
    left = sorted(str(f.relative_to(out)) for f in out.rglob("*"))
    # No staging, spool, temporary file or output (the report's folder was made, empty).
    assert left == ["lake", "lake/.lock"] + (["rejected"] if bad else [])
    # The next run does the whole work, as on a folder never touched.
    again = _python(_entry("process", src, "--out", out, *_QUARANTINE))
    assert again.returncode == (1 if bad else 0), again.stderr
    assert pl.read_csv(out / "daily_kpis.csv")["total_orders"].sum() == 5
    if bad:
        assert sorted(f.name for f in (out / "rejected").iterdir()) == [
            "mixed.csv.errors.json", "mixed.csv.rows.csv"]
        assert pl.read_csv(out / "rejected" / "mixed.csv.rows.csv").height == len(bad)


def test_a_stop_once_the_quarantine_is_written_names_what_stays_in_rejected(
        tmp_path: Path) -> None:
    """Stopped after a quarantine's rows file and report were written, before its valid rows
    entered the lake: it said "outputs were left as they were before", but rejected/ had
    changed."""
    src = _mixed(tmp_path, VALID_BAD_LINES)
    out = tmp_path / "out"
    r = _python("import os, signal\n"
                "import engine.pipeline as p\n"
                "real = p.replace_together\n"
                "def replace_together(writes):\n"
                "    real(writes)\n"
                # another run's, on another input (it held the lock while this one waited)
                f"    open({str(out / 'rejected' / 'other.csv.errors.json')!r}, 'w').close()\n"
                "    os.kill(os.getpid(), signal.SIGTERM)\n"
                "p.replace_together = replace_together\n"
                + _entry("process", src, "--out", out, *_QUARANTINE))
    assert r.returncode == 143, r.stderr
    assert r.stderr == (
        f"order-kpis: stopped by SIGTERM; the 2 files this run wrote to {out / 'rejected'}"
        " (rejected or quarantined rows and their reports) stay there. No file entered the"
        " lake, and the KPI tables were left as they were.\n")
    assert sorted(f.name for f in (out / "rejected").iterdir()) == [
        "mixed.csv.errors.json", "mixed.csv.rows.csv", "other.csv.errors.json"]
    assert not list((out / "lake").glob("order_date=*"))


@pytest.mark.parametrize("at", ["staging", "report"])
def test_what_a_killed_run_left_is_removed_by_the_next_run(tmp_path: Path, at: str) -> None:
    """SIGKILL (the kernel out of memory, `kill -9`) leaves what no handler can clean: a staged
    source under lake/_staging/ (kept until a file of its name was staged again) or the
    temporary files of a quarantine's rows file and report in rejected/ (kept for good). The
    next run into the folder, of any file, removes them (it holds the lake's lock: no other
    run is writing there)."""
    bad = VALID_BAD_LINES if at == "report" else []
    src = _mixed(tmp_path, bad)
    out = tmp_path / "out"
    r = _python("import os, signal\nSIG = signal.SIGKILL\n" + _STOP_AT[at]
                + _entry("process", src, "--out", out, *_QUARANTINE))
    assert r.returncode == -9, r.stderr

    def left() -> list[str]:
        return sorted(str(f.relative_to(out)) for f in out.rglob("*")
                      if "_staging" in f.parts or f.suffix in (".tmp", ".old"))

    before = left()
    assert any(f.startswith("lake/_staging/mixed.csv-") for f in before), before
    # The quarantine's rows file and report, written, not yet renamed.
    assert sum(f.startswith("rejected/.mixed.csv.") for f in before) == (2 if bad else 0)
    assert main(["process", str(VALID), "--out", str(out), "-q"]) == 0
    assert left() == []
    assert {f.name.split("-")[0] for f in (out / "lake").glob("*/*.parquet")} == {
        "valid_order.csv"}


def test_a_closed_terminal_stops_the_command_with_129(tmp_path: Path) -> None:
    """Closing the terminal the command runs in sends SIGHUP, and every later write to it
    fails (EIO): the message could not be printed, that failure was taken for a bug, and the
    command exited 1 (the code of invalid data) with a traceback nobody saw."""
    import fcntl
    import select
    import termios

    out = tmp_path / "out"
    master, slave = os.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    code = _STOP_AT_HOLD + _entry("process", VALID, "--out", out)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=slave, stdout=slave,
                            stderr=slave, preexec_fn=own_terminal, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(slave)
    seen = b""
    try:
        while b"staged" not in seen:
            assert select.select([master], [], [], 30)[0], seen
            seen += os.read(master, 4096)
    finally:
        os.close(master)  # the terminal goes: SIGHUP
    assert proc.wait(timeout=30) == 129
    assert sorted(str(f.relative_to(out)) for f in out.rglob("*")) == ["lake", "lake/.lock"]


# Holds the command once its first piece is staged, till a signal stops it.
_STOP_AT_HOLD = (
    "import sys, time\n"
    "import engine.pipeline as p\n"
    "real = p.validate_file\n"
    "def validate_file(path, *, on_rows, **kw):\n"
    "    def staged(rows):\n"
    "        on_rows(rows)\n"
    "        print('staged', file=sys.stderr, flush=True)\n"
    "        time.sleep(60)\n"
    "    return real(path, on_rows=staged, **kw)\n"
    "p.validate_file = validate_file\n")


def test_a_signal_as_the_command_ends_leaves_its_exit_code() -> None:
    """A SIGTERM between the handlers' switch to ignoring, once the command has returned:
    it raised in the middle of the switch (a traceback, exit 1, for a command that had
    done its work)."""
    r = _python("import os, signal\n"
                "import engine.cli as cli\n"
                "real = signal.signal\n"
                "def switch(s, h):\n"
                "    old = real(s, h)\n"
                "    if s == signal.SIGINT and h is signal.SIG_IGN:\n"
                "        os.kill(os.getpid(), signal.SIGTERM)\n"
                "    return old\n"
                "signal.signal = switch\n"
                "cli.main = lambda argv=None: 0\n"
                "cli.entry()\n")
    assert (r.returncode, r.stderr) == (0, "")


@pytest.mark.parametrize("first, second", [
    (signal.SIGHUP, signal.SIGTERM), (signal.SIGINT, signal.SIGINT)])
def test_local_aws_up_stops_its_servers_whole_whatever_signals_follow(
        first: signal.Signals, second: signal.Signals) -> None:
    """`local-aws up` stops on Ctrl-C, SIGTERM or a hang-up; a second signal while its
    servers stop (a supervisor repeating itself, Ctrl-C pressed twice) cut that stop short
    (the command line's own handler was put back first): the servers were left running,
    exit 143 or 130."""
    code = ("import sys, time\n"
            "import engine.localaws.cli as la\n"
            "class Env:\n"
            "    endpoint, outputs, inboxes = 'http://127.0.0.1:1', {'InputBucketName': 'b'}, {}\n"
            "    def environment(self):\n"
            "        return {}\n"
            "    def stop(self):\n"
            "        print('stopping', file=sys.stderr, flush=True)\n"
            "        time.sleep(1)\n"
            "        print('stopped whole', file=sys.stderr, flush=True)\n"
            "la._start = lambda port, logs=None: Env()\n"
            "la.describe = lambda env: {}\n"
            "sys.argv = ['order-kpis', 'local-aws', 'up']\n"
            "import engine.cli as cli\n"
            "cli.entry()\n")
    lines = []
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("Ctrl-C stops it"):
                proc.send_signal(first)
            elif line == "stopping\n":
                proc.send_signal(second)
    assert proc.returncode == 0, lines
    assert lines[-2:] == ["stopped whole\n", "local AWS stopped\n"]


@pytest.mark.parametrize("then", ["SIGINT", "SIGTERM"])
def test_a_ctrl_c_polars_has_raised_is_not_raised_again_in_its_clean_up(
        tmp_path: Path, then: str) -> None:
    """Polars sees a Ctrl-C too: the query it runs raises KeyboardInterrupt, and Python's
    own handler then raised a second one in the first one's clean-up (pola-rs/polars#23988;
    a probe saw a quarantine's temporary files left in rejected/ 22 times in 25). Here the
    signal comes, as it did then, while the first one is handled; a SIGTERM then (a
    supervisor stopping what a Ctrl-C already stops) changes nothing either."""
    marker = tmp_path / "cleaned"
    r = _python("import os, signal\n"
                "import engine.cli as cli\n"
                "def work(argv=None):\n"
                "    try:\n"
                "        raise KeyboardInterrupt  # as Polars raises it\n"
                "    except KeyboardInterrupt:\n"
                f"        os.kill(os.getpid(), signal.{then})  # its handler runs now\n"
                "        for _ in range(10_000):  # the clean-up\n"
                "            pass\n"
                f"        open({str(marker)!r}, 'w').close()\n"
                "        raise\n"
                "cli.main = work\n"
                "cli.entry()\n")
    assert (r.returncode, r.stderr) == (130, "order-kpis: interrupted; nothing was changed\n")
    assert marker.exists()


_INTERRUPT_ONCE_MADE = {
    # after _temp_beside has returned it, before its caller has recorded it
    "returned": ("import engine.atomic as a\n"
                 "real = a._temp_beside\n"
                 "def temp_beside(path, suffix='.tmp'):\n"
                 "    made = real(path, suffix)\n"
                 "    if path.name == 'daily_kpis.parquet':\n"
                 "        raise KeyboardInterrupt\n"
                 "    return made\n"
                 "a._temp_beside = temp_beside\n"),
    # as the file is made, inside _temp_beside
    "made": ("import os, types\n"
             "import engine.atomic as a\n"
             "def open_(path, flags, mode=0o777):\n"
             "    fd = os.open(path, flags, mode)\n"
             "    if '.daily_kpis.parquet.' in str(path):\n"
             "        os.close(fd)\n"
             "        raise KeyboardInterrupt\n"
             "    return fd\n"
             "a.os = types.SimpleNamespace(**{**vars(os), 'open': open_})\n"),
}


@pytest.mark.parametrize("when", _INTERRUPT_ONCE_MADE)
def test_an_interrupt_between_a_temporary_file_s_making_and_its_record_leaves_nothing(
        tmp_path: Path, when: str) -> None:
    """An interrupt lands between any two steps: one between the making of a KPI table's
    temporary file and its writer's record of it (which the clean-up reads) left the file
    (an aimed probe: 2 stops in 20, then 4 in 20 with the file forgotten when the interrupt
    came inside its making). The command's end sweeps its own."""
    out = tmp_path / "out"
    r = _python(_INTERRUPT_ONCE_MADE[when] + _entry("process", VALID, "--out", out, "-q"))
    assert r.returncode == 130, r.stderr
    assert "1 file had entered the lake" in r.stderr
    assert [f.name for f in out.rglob("*") if f.name.startswith(".") and f.name != ".lock"] == []
    assert not (out / "daily_kpis.parquet").exists()


def test_a_sighup_the_command_was_started_to_ignore_stays_ignored() -> None:
    """`nohup order-kpis ...` starts the command with SIGHUP ignored, so that it outlives its
    terminal: that is kept."""
    r = _python("import os, signal\n"
                "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
                "import engine.cli as cli\n"
                "def work(argv=None):\n"
                "    os.kill(os.getpid(), signal.SIGHUP)\n"
                "    return 0\n"
                "cli.main = work\n"
                "cli.entry()\n")
    assert (r.returncode, r.stderr) == (0, "")


def test_ctrl_c_after_the_command_has_finished_keeps_its_exit_code() -> None:
    """A SIGINT that comes once the work is done, while the interpreter ends (here: while it
    waits for a thread), changes nothing: before, the process died of it (exit 130, no
    message, every output written) or printed a traceback."""
    r = _python("import os, signal, threading, time\n"
                "import engine.cli as cli\n"
                "def late(argv=None):\n"
                "    def kill():\n"
                "        time.sleep(0.3)\n"
                "        os.kill(os.getpid(), signal.SIGINT)\n"
                "        time.sleep(0.3)\n"
                "    threading.Thread(target=kill).start()\n"
                "    return 0\n"
                "cli.main = late\n"
                "cli.entry()\n")
    assert (r.returncode, r.stderr) == (0, "")


@pytest.mark.parametrize(("category", "code"), [
    ("L" * 2048, 0), ("L" * 2049, 2), ("é" * 1024, 0), ("é" * 1025, 2)])
def test_a_category_longer_than_a_dynamodb_key_is_refused_up_front(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], category: str, code: int) -> None:
    """The category is the CategoryKPIs table's partition key (at most 2,048 bytes): a
    longer one allowed by a products file was validated, then every snapshot of its date
    was refused by DynamoDB, for good. Counted in UTF-8 bytes."""
    products = tmp_path / "products.csv"
    products.write_text(f"product_id,category\nP1,{category}\nP2,Books\n", encoding="utf-8")
    orders = tmp_path / "orders.csv"
    orders.write_text(VALID.read_text(encoding="utf-8").splitlines()[0] + "\n"
                      f"O1,C1,2025-07-06,{category},P1,1,1.00,false\n", encoding="utf-8")
    assert main(["validate", str(orders), "--categories-from", str(products)]) == code
    err = capsys.readouterr().err
    assert ("at most 2,048 (UTF-8), DynamoDB's limit on a partition key" in err) == bool(code)


@pytest.mark.parametrize(("argv", "said"), [
    (["query", "daily", "--from", "2025-07-06", "--to", "2025-07-06", "--dir", ""],
     "argument --dir: the output folder is empty"),
    (["dashboard", "--from-dir", " ", "--out", "r.html"],
     "argument --from-dir: the output folder is empty"),
    (["dashboard", "--from-dir", "out", "--out", ""], "argument --out: the page's path is empty"),
    (["process", str(VALID), "--out", ""], "argument --out: the output folder is empty"),
])
def test_an_empty_folder_or_page_path_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], argv: list[str], said: str) -> None:
    # An unset shell variable: query read the current folder ("'daily_kpis.parquet' is
    # missing") and dashboard --out '' was exit 74 ("Device or resource busy").
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and said in capsys.readouterr().err


def test_standard_output_waits_on_a_non_blocking_descriptor() -> None:
    # A non-blocking stdout gave BlockingIOError, "internal error" (70). (And a Ctrl-C in the
    # middle of a write left the whole buffer to the interpreter's last flush, which wrote the
    # part already out a second time: the next test.)
    import io
    import threading

    from engine import cli

    data = b"".join(b"%07d\n" % i for i in range(40_000))  # 320 KB, past any pipe's buffer
    r, w = os.pipe()
    os.set_blocking(w, False)
    got = bytearray()

    def slow_reader() -> None:
        time.sleep(0.3)
        while chunk := os.read(r, 65536):
            got.extend(chunk)

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    try:
        out = io.TextIOWrapper(io.BufferedWriter(cli._WholeWrites(w)), encoding="ascii")
        out.write(data.decode())
        out.flush()
    finally:
        os.close(w)
        reader.join(10)
        os.close(r)
    assert bytes(got) == data


def test_a_write_interrupted_midway_is_never_written_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from engine import cli

    r, w = os.pipe()
    real_write, calls = os.write, []

    def interrupted(fd: int, view: Any) -> int:
        calls.append(len(view))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(fd, bytes(view[:1000]))

    stream = io.TextIOWrapper(io.BufferedWriter(cli._WholeWrites(w)), encoding="ascii")
    monkeypatch.setattr(cli.os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stream.write("y" * 5_000)  # within the buffer: the flush writes it
        stream.flush()
    stream.flush()  # the interpreter's last flush: nothing more goes out
    monkeypatch.undo()
    os.close(w)
    assert os.read(r, 100_000) == b"y" * 1000
    os.close(r)


def test_reprocess_counts_only_dates_past_its_range_as_outside(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A date of the range that left the lake (its rows gone by hand) is recomputed out of
    # the tables; it was called "1 more outside it (a KPI table was missing, or ...)".
    import shutil

    assert main(["process", str(VALID), str(DAY2), "--out", str(tmp_path), "-q"]) == 0
    shutil.rmtree(tmp_path / "lake" / "order_date=2025-07-06")
    capsys.readouterr()
    assert main(["reprocess", "--out", str(tmp_path), "--date-from", "2025-07-06",
                 "--date-to", "2025-07-06", "-q"]) == 0
    err = capsys.readouterr().err
    assert "0 lake dates in 2025-07-06..2025-07-06 recomputed (" in err and "outside" not in err
    assert [r["order_date"] for r in oracle.read_csv_table(tmp_path / "daily_kpis.csv")] == [
        "2025-07-07"]
