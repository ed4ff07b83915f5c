"""Metrics of the container entrypoints as CloudWatch Embedded Metric Format (EMF) lines."""

from __future__ import annotations

import json
from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

import engine.aws_jobs as jobs
from engine.config import Settings
from engine.containers_support import (
    EXIT_CONFIG,
    EXIT_REJECTED,
    EXIT_TRANSIENT,
    METRICS_NAMESPACE,
    add_metric,
    emf_record,
    exit_code_for,
    run_entrypoint,
)
from engine.errors import TransientError
from tests.aws.stack import Stack, order_csv

UNITS = {"Count", "Milliseconds", "Seconds", "Bytes", "None"}  # the subset EMF allows we use


def assert_valid_emf(obj: dict[str, Any]) -> None:
    """Check the EMF specification's rules for one log object (the ones that can be checked)."""
    aws = obj["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000  # ms
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for d in directives:
        assert isinstance(d["Namespace"], str) and 1 <= len(d["Namespace"]) <= 255
        assert isinstance(d["Dimensions"], list)
        for dimension_set in d["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(obj[name], str), f"dimension {name} must be a string member"
        assert 1 <= len(d["Metrics"]) <= 100
        for m in d["Metrics"]:
            assert isinstance(m["Name"], str) and m.get("Unit", "None") in UNITS
            value = obj[m["Name"]]
            assert isinstance(value, (int, float)) and not isinstance(value, bool)


def emf_lines(text: str) -> list[dict[str, Any]]:
    return [o for o in map(json.loads, text.splitlines()) if "_aws" in o]


def test_emf_record_follows_the_specification() -> None:
    record = emf_record(
        "validator", {"RowsProcessed": 12, "RowsRejected": 2}, timestamp_ms=1764158400000
    )
    assert_valid_emf(record)
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == METRICS_NAMESPACE == "OrderKpis"
    assert record["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Job"]]
    assert record["Job"] == "validator"
    assert (record["RowsProcessed"], record["RowsRejected"], record["FilesRejected"]) == (12, 2, 0)


def test_every_run_prints_one_emf_line_even_when_it_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def ok() -> int:
        add_metric("RowsProcessed", 5)
        add_metric("RowsProcessed", 2)
        return 0

    def transient() -> int:
        add_metric("RowsProcessed", 1)
        raise TransientError("S3 unavailable")

    assert run_entrypoint("transformer", ok, configure=False) == 0
    assert run_entrypoint("transformer", transient, configure=False) == EXIT_TRANSIENT
    first, second = emf_lines(capsys.readouterr().out)
    for line in (first, second):
        assert_valid_emf(line)
        assert line["Job"] == "transformer" and line["TaskDurationMs"] >= 0
    assert first["RowsProcessed"] == 7 and second["RowsProcessed"] == 1


def test_metrics_added_on_worker_threads_count_in_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from engine.background import map_in_order

    def job() -> int:
        # Dates published side by side add to the run's metrics from their threads.
        map_in_order(lambda i: [add_metric("RowsProcessed", 1) for _ in range(500)],
                     list(range(16)), workers=8, name="t")
        return 0

    assert run_entrypoint("transformer", job, configure=False) == 0
    (line,) = emf_lines(capsys.readouterr().out)
    assert line["RowsProcessed"] == 16 * 500


def test_metrics_outside_an_entrypoint_are_ignored_and_names_are_checked() -> None:
    add_metric("RowsProcessed", 3)  # no run: nothing to add to, nothing printed
    with pytest.raises(ValueError, match="unknown metric"):
        add_metric("RowsProcesed", 1)


@pytest.mark.integration
def test_validator_reports_rows_and_a_rejected_file(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "in/bad.csv"
    rows = [("O1", "C1", "2025-07-06", "Books", "P1", 1, "2.00", "false"),
            ("O2", "", "2025/07/06", "Toys", "P2", -1, "1", "x")]  # fmt: skip
    stack.upload(key, order_csv(rows))
    settings = Settings.from_env(stack.env(key))
    clients = jobs.Clients(stack.s3, stack.dynamodb)
    code = run_entrypoint(
        "validator", lambda: jobs.validate_object(settings, clients), configure=False
    )
    assert code == EXIT_REJECTED
    (line,) = emf_lines(capsys.readouterr().out)
    assert_valid_emf(line)
    assert (line["Job"], line["RowsProcessed"], line["RowsRejected"], line["FilesRejected"]) == (
        "validator", 2, 1, 1,
    )  # fmt: skip


def upload_failure(code: str) -> S3UploadFailedError:
    """The error boto3's ``upload_file`` raises for an S3 refusal (built the same way)."""
    try:
        try:
            raise ClientError({"Error": {"Code": code, "Message": "no"}}, "PutObject")
        except ClientError as e:
            # No ``from``: boto3 leaves the ClientError as the implicit context.
            raise S3UploadFailedError(f"Failed to upload x to b/k: {e}")  # noqa: B904
    except S3UploadFailedError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        ("SlowDown", EXIT_TRANSIENT),
        ("InternalError", EXIT_TRANSIENT),
        ("AccessDenied", EXIT_CONFIG),
    ],
)
def test_a_failed_managed_upload_exits_as_the_s3_error_it_wraps(code: str, exit_code: int) -> None:
    assert exit_code_for(upload_failure(code)) == exit_code


def test_a_body_cut_off_on_its_way_is_transient_not_configuration() -> None:
    # A download that ran out of retries ended the task with exit 2 ("configuration"), and
    # the workflow's notice told people to fix settings instead of running it again.
    from botocore.exceptions import IncompleteReadError, ResponseStreamingError
    from urllib3.exceptions import ProtocolError

    for exc in (IncompleteReadError(actual_bytes=1, expected_bytes=2),
                ResponseStreamingError(error=ProtocolError("reset")),
                ProtocolError("Connection broken"), ConnectionResetError(104, "reset"),
                TimeoutError("timed out")):
        assert exit_code_for(exc) == EXIT_TRANSIENT, exc
    assert exit_code_for(ValueError("a bug")) == 1


def test_a_task_stopped_with_sigterm_removes_its_temporary_folder(tmp_path: Any) -> None:
    # ECS stops a task with SIGTERM (the execution stopped or timed out; the local stack
    # stopping): the signal's default action killed the process and left its temporary
    # folder, which holds a copy of the input. The job now unwinds and exits 143.
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "job.py"
    script.write_text(
        "import sys, tempfile, time\n"
        "from engine.containers_support import run_entrypoint\n"
        "def main():\n"
        "    with tempfile.TemporaryDirectory(dir=sys.argv[1]) as tmp:\n"
        "        print(tmp, flush=True)\n"
        "        time.sleep(60)\n"
        "    return 0\n"
        "sys.exit(run_entrypoint('validator', main))\n")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.stdout is not None
    folder = Path(proc.stdout.readline().strip())
    assert folder.is_dir()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert not folder.exists()
    assert "stopped (SIGTERM)" in out + err  # the JSON log line


def _job(tmp_path: Any, body: str) -> Any:
    """Run ``body`` (Python) as a job script in a process of its own; return the result."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "job.py"
    script.write_text(body)
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=60)


def test_a_sigterm_once_the_job_has_finished_changes_nothing(tmp_path: Any) -> None:
    """A stop that came as the job ended (while its metrics were printed, or while the
    interpreter waited for a thread) gave a traceback, and exit 1 for a finished job."""
    r = _job(tmp_path,
             "import os, signal, sys, threading, time\n"
             "from engine.containers_support import run_entrypoint\n"
             "def main():\n"
             "    def stop():\n"
             "        time.sleep(0.3)\n"
             "        os.kill(os.getpid(), signal.SIGTERM)\n"
             "        time.sleep(0.3)\n"
             "    threading.Thread(target=stop).start()\n"
             "    return 0\n"
             "sys.exit(run_entrypoint('validator', main))\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and '"message": "validator finished"' in r.stdout


def test_a_log_level_that_is_not_one_exits_2_naming_the_variable(tmp_path: Any) -> None:
    r = _job(tmp_path,
             "import sys\n"
             "from engine.containers_support import run_entrypoint\n"
             "def main():\n"
             "    raise AssertionError('the job ran')\n"
             "sys.exit(run_entrypoint('transformer', main, level='verbose'))\n")
    assert r.returncode == 2 and r.stderr == ""
    [line] = [json.loads(x) for x in r.stdout.splitlines() if '"exit_code"' in x]
    assert line["message"].startswith("LOG_LEVEL='verbose' is not a log level")
    assert line["error"] == "ConfigError"
    assert any(x.startswith('{"_aws"') for x in r.stdout.splitlines())  # the metrics, as ever


@pytest.mark.parametrize("level", ["warn", "FATAL", "notset", " Debug "])
def test_every_level_name_python_takes_is_a_log_level(tmp_path: Any, level: str) -> None:
    r = _job(tmp_path,
             "import sys\n"
             "from engine.containers_support import run_entrypoint\n"
             f"sys.exit(run_entrypoint('validator', lambda: 0, level={level!r}))\n")
    assert (r.returncode, r.stderr) == (0, "")


def test_a_missing_bucket_is_named_in_the_error_line(
        caplog: pytest.LogCaptureFixture) -> None:
    def main() -> int:
        raise ClientError({"Error": {"Code": "NoSuchBucket", "BucketName": "gone-bucket",
                                     "Message": "The specified bucket does not exist"}},
                          "ListObjectsV2")

    assert run_entrypoint("reprocess", main, configure=False) == 2
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith("the bucket 'gone-bucket' does not exist: An error occurred")
