"""The backfill workflow: its pieces alone, then 50 files over 20 dates on the embedded AWS.

The end-to-end test deploys the real template (``orchestration/template.yaml``, with
``backfill.asl.json`` embedded) and runs the real containers as local processes; the
Distributed Map runs through the adaptations of ``engine.localaws.adaptations`` (g).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine import backfill
from engine.config import LakeTuning, ReprocessSettings, backfill_state_machine
from engine.errors import ConfigError, UsageError
from engine.localaws import adaptations
from engine.localaws.cli import kpi_rows
from tests import oracle

# -- pieces ---------------------------------------------------------------------------------


def test_s3_uri_must_name_a_source_prefix_of_the_input_bucket() -> None:
    assert backfill.parse_s3_uri("s3://in/backfill/2024/") == ("in", "backfill/2024/")
    assert backfill.parse_s3_uri("s3://in/input/") == ("in", "input/")
    for bad in ("in/backfill/", "s3:///backfill/", "s3://in/lake/", "s3://in"):
        with pytest.raises(UsageError):
            backfill.parse_s3_uri(bad)


def test_inputs_carry_only_what_was_given_and_check_ranges() -> None:
    assert backfill.files_input("b", "backfill/") == {"mode": "files", "bucket": "b",
                                                      "prefix": "backfill/"}
    got = backfill.files_input("b", "input/", max_concurrency=4, tolerated_failure_percentage=0)
    assert got["max_concurrency"] == 4 and got["tolerated_failure_percentage"] == 0
    with pytest.raises(UsageError):
        backfill.files_input("b", "input/", max_concurrency=0)
    with pytest.raises(UsageError):
        backfill.files_input("b", "input/", tolerated_failure_percentage=101)
    assert backfill.reprocess_input(dt.date(2025, 1, 1), dt.date(2025, 1, 31)) == {
        "mode": "reprocess", "date_from": "2025-01-01", "date_to": "2025-01-31"}
    with pytest.raises(UsageError):
        backfill.reprocess_input(dt.date(2025, 2, 1), dt.date(2025, 1, 1))


def test_execution_names_leave_room_for_child_indexes() -> None:
    a, b = backfill.execution_name("backfill"), backfill.execution_name("backfill")
    assert a != b and len(a) + len("-9999999") <= 80


def test_state_machine_arn_from_flag_or_environment() -> None:
    assert backfill_state_machine("arn:x", {}) == "arn:x"
    assert backfill_state_machine(None, {"ORDER_KPIS_BACKFILL_STATE_MACHINE": "arn:y"}) == "arn:y"
    with pytest.raises(UsageError, match="--state-machine-arn"):
        backfill_state_machine(None, {})


def test_reprocess_settings_need_a_valid_range() -> None:
    env = {"S3_CLEANED_BUCKET": "c", "ORDER_KPI_TABLE": "o", "CATEGORY_KPI_TABLE": "k",
           "STATE_TABLE": "s", "REPROCESS_DATE_FROM": "2025-01-01",
           "REPROCESS_DATE_TO": "2025-01-31"}
    s = ReprocessSettings.from_env(env)
    assert (s.date_from, s.date_to) == (dt.date(2025, 1, 1), dt.date(2025, 1, 31))
    assert s.lake == LakeTuning()
    tuned = ReprocessSettings.from_env({**env, "DATE_WORKERS": "2", "LOCAL_READ_MB": "1"})
    assert tuned.lake == LakeTuning(date_workers=2, local_read_bytes=1024 * 1024)
    with pytest.raises(ConfigError, match="DATE_WORKERS"):
        ReprocessSettings.from_env({**env, "DATE_WORKERS": "-2"})
    with pytest.raises(ConfigError, match="REPROCESS_DATE_TO"):
        ReprocessSettings.from_env({**env, "REPROCESS_DATE_TO": ""})
    with pytest.raises(ConfigError, match="not a date"):
        ReprocessSettings.from_env({**env, "REPROCESS_DATE_FROM": "01/01/2025"})
    for loose in ("20250101", "2025-W01-3"):  # fromisoformat alone takes these
        with pytest.raises(ConfigError, match="not a date"):
            ReprocessSettings.from_env({**env, "REPROCESS_DATE_FROM": loose})
    with pytest.raises(ConfigError, match="after"):
        ReprocessSettings.from_env({**env, "REPROCESS_DATE_FROM": "2025-02-01"})


def test_tolerance_follows_aws_rules() -> None:
    assert not adaptations.exceeds_tolerance(0, 10, percentage=0, count=0)
    assert adaptations.exceeds_tolerance(1, 10, percentage=0, count=0)
    assert not adaptations.exceeds_tolerance(1, 10, percentage=10, count=0)
    assert adaptations.exceeds_tolerance(2, 10, percentage=10, count=0)
    assert not adaptations.exceeds_tolerance(2, 10, percentage=0, count=2)
    assert adaptations.exceeds_tolerance(3, 10, percentage=50, count=2)


def test_listing_items_have_the_aws_item_reader_shape() -> None:
    class Paginator:
        def paginate(self, **kw: Any) -> Iterator[dict[str, Any]]:
            assert kw == {"Bucket": "b", "Prefix": "p/"}
            t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
            yield {"Contents": [{"Key": "p/a.csv", "ETag": '"e1"', "LastModified": t,
                                 "Size": 3, "StorageClass": "STANDARD"}]}
            yield {}  # a page without Contents (an empty listing)

    class S3:
        def get_paginator(self, name: str) -> Paginator:
            assert name == "list_objects_v2"
            return Paginator()

    assert adaptations.s3_listing_items(S3(), "b", "p/") == [
        {"Etag": '"e1"', "Key": "p/a.csv", "LastModified": 1767225600, "Size": 3,
         "StorageClass": "STANDARD"}]


def test_progress_reads_map_run_counts_and_results() -> None:
    class Sfn:
        def describe_execution(self, executionArn: str) -> dict[str, Any]:
            out = {"map": {"ResultWriterDetails": {"Bucket": "c", "Key": "r/m.json"}}}
            return {"status": "SUCCEEDED", "output": json.dumps(out)}

        def list_map_runs(self, executionArn: str) -> dict[str, Any]:
            return {"mapRuns": [{"mapRunArn": "mr"}]}

        def describe_map_run(self, mapRunArn: str) -> dict[str, Any]:
            return {"itemCounts": {"total": 5, "succeeded": 3, "failed": 1, "timedOut": 1,
                                   "running": 0, "pending": 0}}

    seen: list[backfill.Progress] = []
    p = backfill.follow(Sfn(), "ex", on_progress=seen.append, interval=0)
    assert (p.total, p.succeeded, p.failed, p.results) == (5, 3, 2, "s3://c/r/m.json")
    assert seen == [p] and p.line().startswith("SUCCEEDED: 5/5 files done, 2 failed")


def test_lake_dates_are_the_order_date_partitions() -> None:
    from engine.aws_reprocess import lake_dates

    class Paginator:
        def paginate(self, **kw: Any) -> Iterator[dict[str, Any]]:
            assert kw == {"Bucket": "c", "Prefix": "lake/", "Delimiter": "/"}
            yield {"CommonPrefixes": [{"Prefix": "lake/order_date=2024-03-02/"},
                                      {"Prefix": "lake/_sources/"}]}
            yield {"CommonPrefixes": [{"Prefix": "lake/order_date=2024-03-01/"},
                                      {"Prefix": "lake/order_date=junk/"},
                                      {"Prefix": "lake/order_date=20240303/"},  # not the lake's
                                      {"Prefix": "lake/order_date=2024-03-04.bak/"}]}

    class S3:
        def get_paginator(self, name: str) -> Paginator:
            return Paginator()

    assert lake_dates(S3(), "c") == [dt.date(2024, 3, 1), dt.date(2024, 3, 2)]


BACKFILL_DEFINITION = (Path(__file__).resolve().parent.parent / "orchestration"
                       / "backfill.asl.json").read_text(encoding="utf-8")
PER_FILE_DEFINITION = (Path(__file__).resolve().parent.parent / "orchestration"
                       / "statemachine.asl.json").read_text(encoding="utf-8")


class FollowedSfn:
    """A backfill state machine whose execution starts, then ``describe_execution`` does
    ``then`` (raises it)."""

    def __init__(self, then: BaseException, definition: str = BACKFILL_DEFINITION,
                 describe: BaseException | None = None) -> None:
        self.then, self.definition, self.describe = then, definition, describe
        self.started: list[dict[str, Any]] = []

    def describe_state_machine(self, stateMachineArn: str) -> dict[str, Any]:
        if self.describe is not None:
            raise self.describe
        return {"definition": self.definition}

    def start_execution(self, **kw: Any) -> dict[str, Any]:
        self.started.append(kw)
        return {"executionArn": "arn:aws:states:us-east-1:1:execution:bf:run-1"}

    def describe_execution(self, **_: Any) -> dict[str, Any]:
        raise self.then


def test_losing_aws_while_following_says_the_execution_goes_on_not_to_run_again(
        capsys: pytest.CaptureFixture[str]) -> None:
    """It said "Nothing was changed by the call that failed; run the command again", which
    starts a second backfill of the same prefix."""
    from botocore.exceptions import EndpointConnectionError

    from engine.cli import EXIT_UNREACHABLE, _run_workflow

    sfn = FollowedSfn(EndpointConnectionError(endpoint_url="http://127.0.0.1:4599/"))
    assert _run_workflow("backfill", "arn:sm", {"mode": "files"}, follow=True,
                         sfn=sfn) == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "AWS could not be reached" in err and "goes on running on AWS" in err
    assert "Do not run the command again" in err and "run the command again;" not in err
    assert "describe-execution --execution-arn arn:aws:states:us-east-1:1:execution" in err


def test_the_per_file_state_machine_is_refused_as_the_backfill(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The outputs list StateMachineArn beside BackfillStateMachineArn: given the first, the
    per-file workflow ran with a backfill's input, failed at its first step, and the message
    pointed to a failure notice that was never sent."""
    from botocore.exceptions import ClientError

    from engine.cli import _run_workflow

    sfn = FollowedSfn(AssertionError("started"), definition=PER_FILE_DEFINITION)
    with pytest.raises(UsageError, match="is not the backfill state machine") as info:
        _run_workflow("reprocess", "arn:sm", {"mode": "reprocess"}, follow=True, sfn=sfn)
    assert "BackfillStateMachineArn" in str(info.value.hint) and sfn.started == []
    # A caller that may not describe state machines is not stopped by the check.
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                         "DescribeStateMachine")
    sfn = FollowedSfn(KeyboardInterrupt(), definition=PER_FILE_DEFINITION, describe=denied)
    assert _run_workflow("reprocess", "arn:sm", {"mode": "reprocess"}, follow=True,
                         sfn=sfn) == 130
    assert len(sfn.started) == 1


@pytest.mark.parametrize(("n", "ok"), [(1, True), (10_000, True), (0, False), (10_001, False),
                                       (99_999_999_999, False)])
def test_max_concurrency_is_within_what_a_distributed_map_runs(n: int, ok: bool) -> None:
    """An unbounded value started a map run that launched that many workers: the local
    stack never finished an empty backfill and grew past 2 GB."""
    if ok:
        assert backfill.files_input("b", "backfill/", max_concurrency=n)["max_concurrency"] == n
    else:
        with pytest.raises(UsageError, match="from 1 to 10,000"):
            backfill.files_input("b", "backfill/", max_concurrency=n)


def test_cli_reprocess_on_aws_starts_reprocess_mode(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import engine.cli as cli

    started: list[dict[str, Any]] = []

    class Sfn:
        def describe_state_machine(self, stateMachineArn: str) -> dict[str, Any]:
            return {"definition": BACKFILL_DEFINITION}

        def start_execution(self, **kw: Any) -> dict[str, Any]:
            started.append(kw)
            return {"executionArn": "arn:aws:states:r:1:execution:b:x"}

        def describe_execution(self, executionArn: str) -> dict[str, Any]:
            return {"status": "FAILED", "error": "States.TaskFailed", "cause": "exit 4"}

        def list_map_runs(self, executionArn: str) -> dict[str, Any]:
            return {"mapRuns": []}

    monkeypatch.setattr(cli, "_sfn_client", Sfn)
    code = cli.main(["reprocess", "--state-machine-arn", "arn:sm", "--date-from", "2024-01-01",
                     "--date-to", "2024-12-31", "--follow"])
    assert code == 1
    [kw] = started
    assert kw["stateMachineArn"] == "arn:sm" and kw["name"].startswith("reprocess-")
    assert json.loads(kw["input"]) == {"mode": "reprocess", "date_from": "2024-01-01",
                                       "date_to": "2024-12-31"}
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(": FAILED; States.TaskFailed: exit 4"), last


def test_patches_install_and_remove_cleanly_with_the_map_ones() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap

    before = StateMap._eval_execution
    adaptations.install_all(adaptations.TaskRunner(endpoint="http://127.0.0.1:1"))
    try:
        assert StateMap._eval_execution is not before
    finally:
        adaptations.remove_all()
    assert StateMap._eval_execution is before


# -- the whole stack ------------------------------------------------------------------------

# A daily export per file (file i is dated day i % DATES, so 2-3 files share each date).
# Two interpreters per file on 2 CPUs make about 4 files a minute locally, so the suite runs
# 10; ORDER_KPIS_BACKFILL_FILES=50 runs the full-size case (50 files over 20 dates).
FILES = int(os.environ.get("ORDER_KPIS_BACKFILL_FILES", "10"))
DATES = max(1, FILES * 2 // 5)
ROWS = 40


@pytest.fixture(scope="module")
def bstack() -> Iterator[Any]:
    from engine.localaws import LocalAws

    env = LocalAws()
    env.start()
    try:
        yield env
    finally:
        env.stop()


def _files(tmp: Path) -> list[bytes]:
    """Return FILES order CSVs, file i dated day i % DATES, with disjoint order ids."""
    from engine.bench.generate import generate_orders

    made = [generate_orders(tmp / f"orders_{i:03d}.csv", ROWS, seed=7 + i, days=1,
                            start=dt.date(2024, 3, 1) + dt.timedelta(days=i % DATES),
                            first_order_number=1 + i * ROWS) for i in range(FILES)]
    return [f.path.read_bytes() for f in made]


def _run(stack: Any, payload: dict[str, Any], timeout: float = 300) -> backfill.Progress:
    sfn = stack.client("stepfunctions")
    arn = backfill.start(sfn, stack.outputs["BackfillStateMachineArn"], payload,
                         backfill.execution_name(payload["mode"]))
    return backfill.follow(sfn, arn, interval=0.3, timeout=timeout)


def _dec(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: Decimal(str(v)) if k not in ("category", "order_date") else str(v)
             for k, v in r.items()} for r in rows]


def _kpis(stack: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cat, day = kpi_rows(stack)
    cols_c = ["category", "order_date", "daily_revenue", "avg_order_value", "avg_return_rate",
              "orders", "returned_orders"]
    cols_d = ["order_date", "total_orders", "total_revenue", "total_items_sold", "return_rate",
              "unique_customers"]
    return (_dec([{c: r[c] for c in cols_c} for r in cat]),
            _dec([{c: r[c] for c in cols_d} for r in day]))


@pytest.fixture(scope="module")
def backfilled(bstack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    bodies = _files(tmp_path_factory.mktemp("backfill"))
    s3, bucket = bstack.client("s3"), bstack.outputs["InputBucketName"]
    for i, body in enumerate(bodies):
        s3.put_object(Bucket=bucket, Key=f"backfill/2024/orders_{i:03d}.csv", Body=body)
    t0 = time.perf_counter()
    first = _run(bstack, backfill.files_input(bucket, "backfill/", max_concurrency=4))
    seconds = time.perf_counter() - t0
    after_first = _kpis(bstack)
    # The same object versions again (same keys, same bytes, so the same etags).
    for i, body in enumerate(bodies):
        s3.put_object(Bucket=bucket, Key=f"backfill/2024/orders_{i:03d}.csv", Body=body)
    second = _run(bstack, backfill.files_input(bucket, "backfill/", max_concurrency=4))
    after_second = _kpis(bstack)
    return {"bodies": bodies, "first": first, "second": second, "seconds": seconds,
            "after_first": after_first, "after_second": after_second}


def _oracle(bodies: list[bytes]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cat, day = oracle.kpis(bodies)
    return (_dec(sorted(cat, key=lambda r: (r["category"], r["order_date"]))),
            _dec(sorted(day, key=lambda r: r["order_date"])))


@pytest.mark.integration
def test_backfill_of_50_files_equals_the_oracle(backfilled: dict[str, Any]) -> None:
    first = backfilled["first"]
    assert first.status == "SUCCEEDED", first
    assert (first.total, first.succeeded, first.failed) == (FILES, FILES, 0)
    cat, day = backfilled["after_first"]
    want_cat, want_day = _oracle(backfilled["bodies"])
    assert len(day) == DATES
    assert (cat, day) == (want_cat, want_day)
    print(f"backfill of {FILES} files: {backfilled['seconds']:.1f} s")


@pytest.mark.integration
def test_rerun_of_the_backfill_changes_nothing(bstack: Any, backfilled: dict[str, Any]) -> None:
    second = backfilled["second"]
    assert second.status == "SUCCEEDED" and second.succeeded == FILES
    assert backfilled["after_second"] == backfilled["after_first"]
    # every child of the rerun found its object version claimed and stopped there
    sfn = bstack.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=bstack.outputs["StateMachineArn"])[
        "executions"]
    assert len(executions) == 2 * FILES and {e["status"] for e in executions} == {"SUCCEEDED"}


@pytest.mark.integration
def test_files_are_archived_and_results_are_in_s3(bstack: Any,
                                                  backfilled: dict[str, Any]) -> None:
    s3 = bstack.client("s3")
    cleaned = bstack.outputs["CleanedBucketName"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=cleaned).get("Contents", [])]
    assert sum(k.startswith("processed/backfill/2024/") for k in keys) == FILES
    uri = backfilled["first"].results
    assert uri is not None and uri.startswith(f"s3://{cleaned}/backfill-results/")
    manifest = json.loads(s3.get_object(Bucket=cleaned, Key=uri.split("/", 3)[3])["Body"]
                          .read())
    [succeeded] = manifest["ResultFiles"]["SUCCEEDED"]
    rows = json.loads(s3.get_object(Bucket=cleaned, Key=succeeded["Key"])["Body"].read())
    assert len(rows) == FILES and manifest["ResultFiles"]["FAILED"] == []


@pytest.mark.integration
def test_reprocess_mode_recomputes_from_the_lake(bstack: Any, backfilled: dict[str, Any]) -> None:
    ddb, table = bstack.client("dynamodb"), bstack.outputs["OrderTableName"]
    day = backfilled["after_first"][1][3]["order_date"]
    ddb.delete_item(TableName=table, Key={"order_date": {"S": day}})  # a "stale" definition
    done = _run(bstack, backfill.reprocess_input(dt.date(2024, 3, 1), dt.date(2024, 3, 31)))
    assert done.status == "SUCCEEDED", done
    assert _kpis(bstack) == backfilled["after_first"]


@pytest.mark.integration
def test_rejected_files_count_against_the_tolerated_share(bstack: Any,
                                                          backfilled: dict[str, Any]) -> None:
    s3, bucket = bstack.client("s3"), bstack.outputs["InputBucketName"]
    bad = Path(__file__).resolve().parent.parent / "fixtures" / "invalid_order.csv"
    s3.put_object(Bucket=bucket, Key="backfill/bad/invalid.csv", Body=bad.read_bytes())
    s3.put_object(Bucket=bucket, Key="backfill/bad/a+b.csv", Body=b"x")
    s3.put_object(Bucket=bucket, Key="backfill/bad/what?.csv", Body=b"x")
    p = _run(bstack, backfill.files_input(bucket, "backfill/bad/",
                                          tolerated_failure_percentage=50))
    assert p.status == "FAILED" and p.error == "States.ExceedToleratedFailureThreshold"
    assert (p.total, p.failed) == (3, 3)
    assert _kpis(bstack) == backfilled["after_first"]


# -- the definition and the template (static) -----------------------------------------------

ORCH = Path(__file__).resolve().parent.parent / "orchestration"


def _template() -> dict[str, Any]:
    from cfnlint.decode import decode_str

    tpl, errors = decode_str((ORCH / "template.yaml").read_text(encoding="utf-8"))
    assert not errors, errors
    return dict(json.loads(json.dumps(tpl)))


def test_backfill_definition_passes_statelint_and_is_embedded() -> None:
    import sys

    from statelint.linter import Linter

    text = (ORCH / "backfill.asl.json").read_text(encoding="utf-8")
    asl = json.loads(text)
    assert Linter.validate(asl) == []
    sub = _template()["Resources"]["BackfillStateMachine"]["Properties"]["DefinitionString"]
    assert json.loads(sub["Fn::Sub"]) == asl  # one-argument Fn::Sub, as for the per-file machine
    sys.path.insert(0, str(ORCH))
    try:
        import embed_asl
    finally:
        sys.path.remove(str(ORCH))
    assert embed_asl.main(["--check"]) == 0
    edited = text.replace('"TimeoutSeconds": 7200', '"TimeoutSeconds": 7201')
    current = (ORCH / "template.yaml").read_text(encoding="utf-8")
    assert embed_asl.embedded(current, edited, "backfill.asl.json") != current


def test_backfill_map_is_distributed_over_s3_and_starts_the_per_file_workflow() -> None:
    states = json.loads((ORCH / "backfill.asl.json").read_text(encoding="utf-8"))["States"]
    m = states["ProcessFiles"]
    assert m["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert m["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert m["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert {"MaxConcurrencyPath", "ToleratedFailurePercentagePath"} <= set(m)
    run = m["ItemProcessor"]["States"]["RunFile"]
    assert run["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert run["Parameters"]["StateMachineArn"] == "${StateMachine}"
    child = {k.removesuffix(".$") for k in run["Parameters"]["Input"]}
    assert {"bucket", "key", "etag", "sequencer", "event_id", "event_time"} <= child


def test_template_placeholders_and_parameters_of_the_backfill_exist() -> None:
    import re

    tpl = _template()
    text = (ORCH / "backfill.asl.json").read_text(encoding="utf-8")
    names = {m.split(".", 1)[0] for m in re.findall(r"\$\{([^}]+)\}", text)}
    assert names <= set(tpl["Parameters"]) | set(tpl["Resources"])
    assert {"BackfillMaxConcurrency", "BackfillToleratedFailurePercentage"} <= set(
        tpl["Parameters"])
    assert "BackfillStateMachineArn" in tpl["Outputs"]


def _statements(res: dict[str, Any]) -> list[dict[str, Any]]:
    props = res["Properties"]
    docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
    if "PolicyDocument" in props:
        docs.append(props["PolicyDocument"])
    return [s for d in docs for s in d["Statement"]]


def test_backfill_iam_is_least_privilege() -> None:
    tpl = _template()
    res = tpl["Resources"]
    for name in ("BackfillRole", "BackfillSourceReadForTasks", "BackfillSourceMoveForWorkflow"):
        for s in _statements(res[name]):
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            assert all("*" not in a for a in actions), (name, actions)
            assert s["Resource"] != "*", (name, s)
    by_sid = {s["Sid"]: s for s in _statements(res["BackfillRole"])}
    assert by_sid["RunPerFileWorkflow"] == {"Sid": "RunPerFileWorkflow", "Effect": "Allow",
                                            "Action": "states:StartExecution",
                                            "Resource": {"Ref": "StateMachine"}}
    assert set(by_sid["WatchPerFileWorkflow"]["Action"]) == {"states:DescribeExecution",
                                                             "states:StopExecution"}
    assert by_sid["ListSources"]["Condition"]["StringLike"]["s3:prefix"] == ["input/*",
                                                                             "backfill/*"]
    assert "backfill-results/*" in json.dumps(by_sid["WriteResults"]["Resource"])
    rule = json.dumps(by_sid["SyncRules"]["Resource"])
    assert "StepFunctionsGetEventsForStepFunctionsExecutionRule" in rule


def test_reprocess_task_runs_the_reprocess_entrypoint_with_contract_env() -> None:
    task = _template()["Resources"]["ReprocessTaskDefinition"]["Properties"]
    [container] = task["ContainerDefinitions"]
    assert container["Command"] == ["python", "containers/reprocess.py"]
    env = {e["Name"] for e in container["Environment"]}
    assert env == {"S3_CLEANED_BUCKET", "ORDER_KPI_TABLE", "CATEGORY_KPI_TABLE", "STATE_TABLE",
                   "LOG_LEVEL", "DATE_WORKERS", "LOCAL_READ_MB"}
    states = json.loads((ORCH / "backfill.asl.json").read_text(encoding="utf-8"))["States"]
    [override] = states["RunReprocess"]["Parameters"]["Overrides"]["ContainerOverrides"]
    assert override["Name"] == container["Name"]
    assert {e["Name"] for e in override["Environment"]} == {"REPROCESS_DATE_FROM",
                                                            "REPROCESS_DATE_TO"}


@pytest.mark.integration
def test_cli_backfill_follow_prints_one_final_line_when_not_a_tty(
        bstack: Any, backfilled: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    for k, v in bstack.environment().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("ORDER_KPIS_BACKFILL_STATE_MACHINE",
                       bstack.outputs["BackfillStateMachineArn"])
    uri = f"s3://{bstack.outputs['InputBucketName']}/backfill/nothing-here/"
    assert main(["backfill", uri, "--max-concurrency", "2", "--follow"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines()  # the server logs too
           if line.startswith("backfill")]
    assert err[0].startswith("backfill started: arn:aws:states:")
    assert len(err) == 2 and "SUCCEEDED: 0/0 files done, 0 failed" in err[1]
    assert main(["backfill", "s3://elsewhere/lake/"]) == 2  # not a source prefix
