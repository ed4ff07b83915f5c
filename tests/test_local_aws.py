"""The embedded local AWS (engine.localaws): each adaptation alone, then the whole stack.

The end-to-end tests share one stack (module scope) and run the REAL containers as local
processes; every scenario uploads its files first and the executions run side by side.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest

from engine.localaws import adaptations
from engine.localaws.cli import kpi_rows
from engine.localaws.stack import ACCOUNT
from tests import oracle

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"


# -- adaptations, one by one ---------------------------------------------------------------


def test_refuses_any_other_moto_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto

    monkeypatch.setattr(moto, "__version__", "5.3.0")
    with pytest.raises(adaptations.MotoVersionError, match=r"moto==5\.2\.5.*found moto 5\.3\.0"):
        adaptations.check_moto_version()


def test_s3_event_gets_aws_shape_encoded_key_etag_iso_time() -> None:
    moto_event = {"source": "aws.s3", "id": "17793124", "time": 1764158400.0,
                  "detail": {"object": {"key": "input/my file=1+2.csv", "eTag": '"abc"',
                                        "sequencer": "617f08299329d189"}}}
    a = adaptations.aws_shaped_s3_event(moto_event)
    b = adaptations.aws_shaped_s3_event(moto_event)
    obj = a["detail"]["object"]
    assert obj["key"] == "input/my+file%3D1%2B2.csv"
    assert obj["etag"] == "abc" and "eTag" not in obj
    assert a["time"] == "2025-11-26T12:00:00Z"
    assert a["id"] != b["id"] and obj["sequencer"] < b["detail"]["object"]["sequencer"]
    assert moto_event["detail"]["object"]["key"] == "input/my file=1+2.csv"  # not mutated


def test_other_events_pass_unchanged() -> None:
    event = {"source": "my.app", "detail": {"x": 1}}
    assert adaptations.aws_shaped_s3_event(event) == event


def test_input_transformer_quotes_strings_as_aws_does() -> None:
    transformer = {"InputPathsMap": {"key": "$.detail.k", "n": "$.detail.n", "t": "$.time"},
                   "InputTemplate": '{"key": <key>, "n": <n>, "text": "at <t>"}'}
    event = {"time": "2026-01-01T00:00:00Z", "detail": {"k": 'a "b"', "n": 3}}
    out = json.loads(adaptations.apply_input_transformer(transformer, event))
    assert out == {"key": 'a "b"', "n": 3, "text": "at 2026-01-01T00:00:00Z"}


def test_execution_names_are_unique() -> None:
    assert adaptations.execution_name() != adaptations.execution_name()


def test_container_command_maps_python_entrypoint_to_this_checkout() -> None:
    import sys

    argv = adaptations.container_command(["python", "containers/validator.py"], "img", ROOT)
    assert argv == [sys.executable, str(ROOT / "containers" / "validator.py")]
    with pytest.raises(FileNotFoundError, match="not in the wheel"):
        adaptations.container_command(["python", "containers/nope.py"], "img", ROOT)
    with pytest.raises(ValueError, match="no command"):
        adaptations.container_command(None, "img", ROOT)


def test_container_environment_layers_definition_overrides_endpoint() -> None:
    env = adaptations.container_environment(
        [{"name": "S3_INPUT_KEY", "value": "from-definition"}, {"name": "A", "value": "1"}],
        [{"name": "S3_INPUT_KEY", "value": "input/x+y.csv"}],
        endpoint="http://127.0.0.1:1", region="eu-west-1", root=ROOT,
        base={"PATH": "/bin", "AWS_PROFILE": "real-account", "MOTO_PORT": "5"},
    )
    assert env["S3_INPUT_KEY"] == "input/x+y.csv" and env["A"] == "1"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert "AWS_PROFILE" not in env and "MOTO_PORT" not in env
    assert env["PYTHONPATH"].split(":")[0] == str(ROOT) and env["PATH"] == "/bin"


def test_iso_timestamps_nested() -> None:
    t = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert adaptations.iso_timestamps({"a": [{"b": t}], "c": 1}) == {
        "a": [{"b": "2026-01-02T03:04:05+00:00"}], "c": 1}


def test_patches_install_and_remove_cleanly() -> None:
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.events.models import Rule

    before = (Rule.send_to_targets, EC2ContainerServiceBackend.run_task)
    adaptations.install_all(adaptations.TaskRunner(endpoint="http://127.0.0.1:1"))
    try:
        assert Rule.send_to_targets is not before[0]
        assert len(adaptations.installed()) >= 8
    finally:
        adaptations.remove_all()
    assert (Rule.send_to_targets, EC2ContainerServiceBackend.run_task) == before
    assert adaptations.installed() == []


def _most_at_once(monkeypatch: pytest.MonkeyPatch, cls: Any, names: list[str],
                  install: Any) -> int:
    """Install ``install`` over slow stand-ins of ``cls.names``; call each from two threads
    at once; return how many calls were ever inside at the same time."""
    import threading
    import time

    inside, most = [0], [0]

    def slow_call(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        inside[0] -= 1
        return []

    for name in names:
        monkeypatch.setattr(cls, name, slow_call)
    install()
    try:
        callers = [threading.Thread(target=getattr(cls, name), args=(None,))
                   for name in names for _ in range(2)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(10)
    finally:
        adaptations.remove_all()
    return most[0]


def test_every_patch_is_installed_by_the_stack_and_named_in_the_docs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # install_all is the one list of the runtime patches; docs/local-aws.md's table says what
    # each adapts. A new install_* left out of either fails here.
    import inspect

    patches = {name for name, fn in inspect.getmembers(adaptations, inspect.isfunction)
               if name.startswith("install_") and fn.__module__ == adaptations.__name__}
    patches -= {"install_all", "install_wait_scale"}  # the list itself; a test-only option
    called: list[str] = []
    for name in patches:
        monkeypatch.setattr(adaptations, name, lambda *a, _n=name: called.append(_n))
    try:
        adaptations.install_all(runner=None)  # type: ignore[arg-type]
    finally:
        adaptations.remove_all()
    assert sorted(called) == sorted(patches) and len(called) == len(set(called))
    table = (ROOT / "docs" / "local-aws.md").read_text()
    assert [name for name in sorted(patches) if f"`{name}`" not in table] == []


def test_dynamodb_writes_run_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # DynamoDB applies each write atomically; moto's UpdateItem is a read-modify-write in
    # Python on the server's request threads, so counters (lake seq, date tickets) could
    # hand one number out twice. Here slow writes from several threads never overlap.
    from moto.dynamodb.models import DynamoDBBackend

    # Reads too: TransactWriteItems deep-copies a table that a GetItem of a missing key adds
    # to ("dictionary changed size during iteration", a 500 that failed a transformer).
    # The calls are named here, not taken from the adaptation: dropping one there must fail.
    calls = ["put_item", "update_item", "delete_item", "transact_write_items",
             "batch_write_item", "get_item", "batch_get_item", "query", "scan"]
    assert _most_at_once(monkeypatch, DynamoDBBackend, calls,
                         adaptations.install_dynamodb_one_call_at_a_time) == 1


def test_a_failed_transaction_puts_back_the_items_it_named_and_copies_no_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # moto deep-copied every table a transaction writes, before each one: publishing a file
    # of 2,000 dates took 5.5 minutes and the server grew to 11 GB.
    import copy

    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    copied: list[str] = []
    real = copy.deepcopy
    monkeypatch.setattr(copy, "deepcopy",
                        lambda v, *a: (copied.append(type(v).__name__), real(v, *a))[1])
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}])
        a, b = {"pk": {"S": "a"}, "sk": {"S": "1"}}, {"pk": {"S": "b"}, "sk": {"S": "1"}}
        ddb.put_item(TableName="t", Item={**a, "n": {"N": "1"}})

        def transaction(wanted: str) -> list[dict[str, Any]]:
            return [
                {"Update": {"TableName": "t", "Key": a, "UpdateExpression": "SET n = :two",
                            "ExpressionAttributeValues": {":two": {"N": "2"}}}},
                {"Put": {"TableName": "t", "Item": {**b, "n": {"N": "7"}}}},
                {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "c"},
                                                               "sk": {"S": "1"}},
                                    "ConditionExpression": wanted}},
            ]

        adaptations.install_dynamodb_transaction_rollback_by_item()
        try:
            with pytest.raises(ClientError, match="TransactionCanceled"):
                ddb.transact_write_items(TransactItems=transaction("attribute_exists(pk)"))
            items = {i["pk"]["S"]: i["n"]["N"] for i in ddb.scan(TableName="t")["Items"]}
            assert items == {"a": "1"}  # the update undone, the put removed
            ddb.transact_write_items(TransactItems=transaction("attribute_not_exists(pk)"))
            items = {i["pk"]["S"]: i["n"]["N"] for i in ddb.scan(TableName="t")["Items"]}
            assert items == {"a": "2", "b": "7"}
        finally:
            adaptations.remove_all()
    assert "Table" not in copied and "Item" in copied


def test_ecs_task_calls_run_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto's DescribeTasks iterates the task dicts that a RunTask on another request thread
    # adds to ("dictionary changed size during iteration": the .sync poll's States.Runtime).
    from moto.ecs.models import EC2ContainerServiceBackend

    # Named here, not taken from the adaptation: dropping one there must fail.
    calls = ["run_task", "start_task", "describe_tasks", "list_tasks", "stop_task"]
    assert _most_at_once(monkeypatch, EC2ContainerServiceBackend, calls,
                         adaptations.install_ecs_one_call_at_a_time) == 1


def test_moto_ecs_describe_tasks_breaks_on_a_run_task_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The gap itself, in moto alone and without threads: a RunTask that lands while
    DescribeTasks walks the tasks (here, from inside its walk) breaks the walk. If moto mends
    it, this test says so and the adaptation can go."""
    import boto3
    from moto import mock_aws
    from moto.ecs.models import Task, ecs_backends

    with mock_aws():
        ec2, ecs = (boto3.client(s, region_name="us-east-1") for s in ("ec2", "ecs"))
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        ecs.create_cluster(clusterName="c")
        ecs.register_task_definition(
            family="t", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256",
            memory="512", containerDefinitions=[{"name": "v", "image": "i", "memory": 512}])
        backend = ecs_backends[ACCOUNT]["us-east-1"]
        net = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": []}}

        def run() -> list[Any]:
            return list(backend.run_task("c", "t", 1, None, "", None, "FARGATE",
                                         networking_configuration=net))

        arns = [t.task_arn for t in run()]
        advance = Task.advance

        def advance_while_another_task_starts(self: Any) -> None:
            monkeypatch.setattr(Task, "advance", advance)
            run()
            advance(self)

        monkeypatch.setattr(Task, "advance", advance_while_another_task_starts)
        with pytest.raises(RuntimeError, match="changed size during iteration"):
            backend.describe_tasks("c", arns)


def test_ecs_casing_converts_pascal_parameters_to_boto3() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_ecs as ecs_mod,
    )

    adaptations.install_ecs_casing()
    try:
        svc: Any = ecs_mod.StateTaskServiceEcs.__new__(ecs_mod.StateTaskServiceEcs)
        svc._get_boto_service_name = lambda *_: "ecs"
        svc._get_boto_service_action = lambda *_: "run_task"
        params = {"Cluster": "c", "NetworkConfiguration": {"AwsvpcConfiguration": {
            "Subnets": ["s"]}}, "Overrides": {"ContainerOverrides": [
                {"Name": "v", "Environment": [{"Name": "K", "Value": "V"}]}]}}
        svc._normalise_parameters(params)
        assert params == {"cluster": "c", "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": ["s"]}}, "overrides": {"containerOverrides": [
                {"name": "v", "environment": [{"name": "K", "value": "V"}]}]}}
        response = {"tasks": [{"containers": [{"exitCode": 3}], "lastStatus": "STOPPED"}]}
        svc._normalise_response(response, service_action_name="describe_tasks")
        assert response == {"Tasks": [{"Containers": [{"ExitCode": 3}],
                                       "LastStatus": "STOPPED"}]}
    finally:
        adaptations.remove_all()


# -- the whole stack -----------------------------------------------------------------------

# The workflow's waits (30 s before a validator runs again, 10 s between looks at a lock)
# take a tenth of their time here: the states entered do not change.
WAIT_SCALE = 0.1


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    from engine.localaws import LocalAws

    env = LocalAws(wait_scale=WAIT_SCALE)
    env.start()
    try:
        yield env
    finally:
        env.stop()


def _put(stack: Any, name: str, body: bytes) -> str:
    stack.client("s3").put_object(Bucket=stack.outputs["InputBucketName"], Key=name, Body=body)
    return name


def _by_file(stack: Any) -> dict[str, list[dict[str, Any]]]:
    """Return each execution's (described) record by the raw key of its input."""
    sfn = stack.client("stepfunctions")
    out: dict[str, list[dict[str, Any]]] = {}
    for e in stack.executions():
        d = sfn.describe_execution(executionArn=e["executionArn"])
        out.setdefault(json.loads(d["input"])["key"], []).append(d)
    return out


def _transform_seq(stack: Any, raw_key: str) -> int:
    item = stack.client("dynamodb").get_item(
        TableName=stack.outputs["StateTableName"], ConsistentRead=True,
        Key={"pk": {"S": f"file#{stack.outputs['InputBucketName']}/{raw_key}"},
             "sk": {"S": "transform"}})["Item"]
    return int(item["seq"]["N"])


def _num(v: Any) -> Any:
    """DynamoDB numbers compare as Decimals (it may drop trailing zeros); text as text."""
    try:
        return Decimal(str(v))
    except InvalidOperation:
        return str(v)


def _two_files_one_date() -> tuple[bytes, bytes]:
    head = "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"
    a = head + ("T-1,C-1,2025-08-01,Books,P-1,2,10.00,false\n"
                "T-2,C-2,2025-08-01,Clothing,P-2,1,5.50,true\n")
    b = head + "T-3,C-1,2025-08-01,Books,P-1,1,7.25,false\n"
    return a.encode(), b.encode()


@pytest.fixture(scope="module")
def ran(stack: Any) -> dict[str, Any]:
    """Upload every scenario's files at once and wait for all executions."""
    valid = (FIX / "valid_order.csv").read_bytes()
    other = (FIX / "orders_2025-07-07.csv").read_bytes()
    invalid = (FIX / "invalid_order.csv").read_bytes()
    a, b = _two_files_one_date()
    _put(stack, "input/valid order.csv", valid)     # a space: the event encodes it as +
    _put(stack, "input/orders_2025-07-07.csv", other)
    _put(stack, "input/invalid_order.csv", invalid)
    _put(stack, "input/aug-a.csv", a)
    _put(stack, "input/aug-b.csv", b)
    stack.wait_executions(5, timeout=180)
    # The same event twice: the trigger's input for a processed file, sent again.
    first = _by_file(stack)["input/valid+order.csv"][0]
    stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.outputs["StateMachineArn"], name="redelivery",
        input=first["input"])
    stack.wait_executions(6, timeout=90)
    return {"files": {"valid": valid, "other": other, "a": a, "b": b},
            "success": stack.notifications("SuccessTopicArn", wait=2.0),
            "failure": stack.notifications("FailureTopicArn", wait=2.0),
            "executions": _by_file(stack)}


@pytest.mark.integration
def test_valid_file_succeeds_and_kpis_equal_the_oracle(stack: Any, ran: dict[str, Any]) -> None:
    ex = ran["executions"]
    assert [e["status"] for e in ex["input/orders_2025-07-07.csv"]] == ["SUCCEEDED"]
    assert {e["status"] for e in ex["input/valid+order.csv"]} == {"SUCCEEDED"}
    # Overlapping orders: the later file wins, so feed the oracle in the lake's order (seq).
    f = ran["files"]
    seq = {name: _transform_seq(stack, key) for name, key in (
        ("valid", "input/valid+order.csv"), ("other", "input/orders_2025-07-07.csv"),
        ("a", "input/aug-a.csv"), ("b", "input/aug-b.csv"))}
    want_cat, want_day = oracle.kpis(f[name] for name in sorted(seq, key=seq.__getitem__))
    got_cat, got_day = kpi_rows(stack)

    def strings(rows: list[dict[str, Any]], cols: list[str]) -> list[dict[str, Any]]:
        return [{c: _num(r[c]) for c in cols} for r in rows]

    cols_c, cols_d = list(want_cat[0]), list(want_day[0])
    assert strings(got_cat, cols_c) == strings(
        sorted(want_cat, key=lambda r: (r["category"], r["order_date"])), cols_c)
    assert strings(got_day, cols_d) == strings(
        sorted(want_day, key=lambda r: r["order_date"]), cols_d)


@pytest.mark.integration
def test_valid_file_is_archived_and_gone_from_input(stack: Any, ran: dict[str, Any]) -> None:
    s3 = stack.client("s3")
    cleaned = {o["Key"] for o in s3.list_objects_v2(
        Bucket=stack.outputs["CleanedBucketName"]).get("Contents", [])}
    inputs = {o["Key"] for o in s3.list_objects_v2(
        Bucket=stack.outputs["InputBucketName"]).get("Contents", [])}
    assert {"processed/input/valid order.csv", "processed/input/orders_2025-07-07.csv",
            "processed/input/aug-a.csv", "processed/input/aug-b.csv"} <= cleaned
    assert inputs == set()


@pytest.mark.integration
def test_success_message_arrives_on_the_subscribed_queue(ran: dict[str, Any]) -> None:
    files = sorted(m["Message"].split(" | file: ")[1].split(" | ")[0] for m in ran["success"])
    assert len(files) == 4 and all(m["Subject"] == "order-kpis: file processed"
                                   for m in ran["success"])
    # named as the object is, not as the event encodes it (input/valid+order.csv)
    assert any(f.endswith("/input/valid order.csv") for f in files)
    ok = next(m["Message"] for m in ran["success"] if "orders_2025-07-07" in m["Message"])
    assert "rows: 5" in ok and "archived to: processed/input/orders_2025-07-07.csv" in ok
    assert "dates: 2025-07-06, 2025-07-07" in ok


@pytest.mark.integration
def test_invalid_file_is_rejected_with_summary_and_no_kpis(stack: Any,
                                                           ran: dict[str, Any]) -> None:
    [ex] = ran["executions"]["input/invalid_order.csv"]
    assert ex["status"] == "FAILED"
    [msg] = ran["failure"]
    assert msg["Subject"] == "order-kpis: file rejected"
    assert "summary: s3://" in msg["Message"] and "was rejected: 3 of 3 rows are invalid" in \
        msg["Message"]
    # the first findings at their lines (fixtures/invalid_order.csv, line 2: the date), and
    # where the report with every finding is
    assert "First: line 2: order_date: must be a real calendar date written YYYY-MM-DD: " \
        "'2025/07/06'" in msg["Message"]
    assert "| every finding: s3://" in msg["Message"] and \
        "invalid_order.csv.errors.json" in msg["Message"]
    assert "| moved to: rejected/input/invalid_order.csv in the cleaned bucket |" in msg["Message"]
    s3 = stack.client("s3")
    cleaned = {o["Key"] for o in s3.list_objects_v2(
        Bucket=stack.outputs["CleanedBucketName"]).get("Contents", [])}
    assert not any("invalid_order" in k for k in cleaned if k.startswith("processed/"))
    assert "rejected/input/invalid_order.csv" in cleaned
    # its rows are in no KPI: the days hold exactly the orders of the valid files
    _, day = kpi_rows(stack)
    assert {r["order_date"]: int(r["total_orders"]) for r in day} == {
        "2025-07-06": 2, "2025-07-07": 4, "2025-08-01": 3}


@pytest.mark.integration
def test_same_event_twice_has_one_effect(stack: Any, ran: dict[str, Any]) -> None:
    execs = ran["executions"]["input/valid+order.csv"]
    assert len(execs) == 2 and {e["status"] for e in execs} == {"SUCCEEDED"}
    sfn = stack.client("stepfunctions")
    again = next(e for e in execs if e["name"] == "redelivery")
    states = [ev.get("stateEnteredEventDetails", {}).get("name") for ev in
              sfn.get_execution_history(executionArn=again["executionArn"])["events"]]
    assert "DuplicateDelivery" in states and "RunValidator" not in states
    assert sum("/input/valid order.csv" in m["Message"] for m in ran["success"]) == 1


@pytest.mark.integration
def test_two_files_for_one_date_at_once_are_both_counted(stack: Any,
                                                         ran: dict[str, Any]) -> None:
    _, day = kpi_rows(stack)
    aug = next(r for r in day if r["order_date"] == "2025-08-01")
    assert (int(aug["total_orders"]), str(aug["total_revenue"])) == (3, "32.75")


@pytest.mark.integration
def test_container_failure_fails_the_task_as_on_aws(stack: Any, ran: dict[str, Any]) -> None:
    """The validator's exit 3 surfaced as States.TaskFailed (caught, then ReadValidation)."""
    [ex] = ran["executions"]["input/invalid_order.csv"]
    events = stack.client("stepfunctions").get_execution_history(
        executionArn=ex["executionArn"])["events"]
    failed = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert failed[0]["error"] == "States.TaskFailed", failed[0]
    assert json.loads(failed[0]["cause"])["Containers"][0]["ExitCode"] == 3


@pytest.mark.integration
def test_an_earlier_version_put_back_restores_its_kpis(stack: Any, ran: dict[str, Any]) -> None:
    """A, then B, then A again at one key: three uploads, three runs, and A's KPIs at the end.
    A claim by etag alone took the second A for a duplicate delivery and kept B's KPIs. (Its
    date is its own: the tests above read the shared stack's other dates.)"""
    head = "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"
    a = (head + "R-1,C-1,2025-09-15,Books,P-1,2,5.00,false\n").encode()
    b = (head + "R-1,C-1,2025-09-15,Books,P-1,9,11.00,false\n"
         "R-2,C-2,2025-09-15,Clothing,P-2,1,1.00,true\n").encode()
    for body in (a, b, a):
        started = len(stack.executions())
        _put(stack, "input/revert.csv", body)
        stack.wait_executions(started + 1, timeout=180)
    runs = _by_file(stack)["input/revert.csv"]
    assert [e["status"] for e in runs] == ["SUCCEEDED"] * 3
    want_cat, want_day = oracle.kpis([a])
    got_cat, got_day = kpi_rows(stack)
    mine = [r for r in got_day if r["order_date"] == "2025-09-15"]
    assert [{c: _num(r[c]) for c in want_day[0]} for r in mine] == [
        {c: _num(v) for c, v in want_day[0].items()}]
    mine_cat = [r for r in got_cat if r["order_date"] == "2025-09-15"]
    assert [{c: _num(r[c]) for c in want_cat[0]} for r in mine_cat] == [
        {c: _num(v) for c, v in r.items()} for r in want_cat]
    archived = stack.client("s3").get_object(
        Bucket=stack.outputs["CleanedBucketName"], Key="processed/input/revert.csv")
    assert archived["Body"].read() == a


def _states_entered(stack: Any, arn: str) -> list[tuple[str, Any]]:
    """Return (state name, time) of every state the execution entered, in order."""
    events = stack.client("stepfunctions").get_execution_history(
        executionArn=arn, maxResults=1000)["events"]
    return [(e["stateEnteredEventDetails"]["name"], e["timestamp"]) for e in events
            if "stateEnteredEventDetails" in e]


def _wait_for_state(stack: Any, key: str, state: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in _by_file(stack).get(key, []):
            if any(name == state for name, _ in _states_entered(stack, e["executionArn"])):
                return e
        time.sleep(0.2)
    raise AssertionError(f"no execution of {key} entered {state} within {timeout} s")


@pytest.mark.integration
def test_a_later_upload_during_a_run_waits_for_it_and_wins(stack: Any,
                                                           ran: dict[str, Any]) -> None:
    """B uploaded at A's key while A's execution runs its transformer. Executions of one key
    run one at a time (the key lock), and A's archive copy and delete name A's etag: A's
    bytes are gone (B replaced them), so A is not archived and B is neither archived in A's
    place nor deleted unprocessed (as it was before); B's run comes after A's and its KPIs
    are the date's."""
    head = "order_id,customer_id,order_date,category,product_id,quantity,unit_price,returned\n"
    a = (head + "Q-1,C-1,2025-10-01,Books,P-1,2,5.00,false\n").encode()
    b = (head + "Q-1,C-1,2025-10-01,Books,P-1,3,7.00,false\n"
         "Q-2,C-2,2025-10-01,Clothing,P-2,1,2.50,true\n").encode()
    started = len(stack.executions())
    stack.notifications("SuccessTopicArn")  # drop earlier tests' notices
    _put(stack, "input/race.csv", a)
    first = _wait_for_state(stack, "input/race.csv", "RunTransformer")
    _put(stack, "input/race.csv", b)
    stack.wait_executions(started + 2, timeout=240)
    runs = {e["executionArn"]: e for e in _by_file(stack)["input/race.csv"]}
    assert len(runs) == 2 and {e["status"] for e in runs.values()} == {"SUCCEEDED"}
    [second] = [arn for arn in runs if arn != first["executionArn"]]
    a_states = _states_entered(stack, first["executionArn"])
    b_states = _states_entered(stack, second)
    names_a = [n for n, _ in a_states]
    assert "NotifyReplacedBeforeArchive" in names_a and "DeleteSource" not in names_a
    # B's validator started only after A let go of the key.
    a_released = max(t for n, t in a_states if n == "ReleaseKeyLock")
    b_validated = min(t for n, t in b_states if n == "RunValidator")
    assert b_validated >= a_released
    assert [n for n, _ in b_states].count("RunTransformer") == 1
    s3 = stack.client("s3")
    archived = s3.get_object(Bucket=stack.outputs["CleanedBucketName"],
                             Key="processed/input/race.csv")["Body"].read()
    assert archived == b
    inputs = [o["Key"] for o in s3.list_objects_v2(
        Bucket=stack.outputs["InputBucketName"]).get("Contents", [])]
    assert "input/race.csv" not in inputs
    _, want_day = oracle.kpis([b])
    _, got_day = kpi_rows(stack)
    mine = [{c: _num(r[c]) for c in want_day[0]} for r in got_day
            if r["order_date"] == "2025-10-01"]
    assert mine == [{c: _num(v) for c, v in want_day[0].items()}]
    notices = [m for m in stack.notifications("SuccessTopicArn", wait=2.0)
               if "/input/race.csv" in m["Message"]]
    assert sorted(m["Subject"] for m in notices) == [
        "order-kpis: file processed", "order-kpis: file processed, then replaced"]
    lock = stack.client("dynamodb").get_item(
        TableName=stack.outputs["StateTableName"], ConsistentRead=True,
        Key={"pk": {"S": f"lock#{stack.outputs['InputBucketName']}/input/race.csv"},
             "sk": {"S": "lock"}})
    assert "Item" not in lock


@pytest.mark.integration
def test_an_upload_gone_before_it_is_read_changes_nothing(stack: Any,
                                                          ran: dict[str, Any]) -> None:
    """An event whose upload the key no longer holds (replaced, or removed): the validator
    reads nothing, the execution ends as superseded with a notice, and the object the key
    holds now is left alone."""
    bucket = stack.outputs["InputBucketName"]
    s3 = stack.client("s3")
    # Outside input/, so that no event starts a run of its own.
    s3.put_object(Bucket=bucket, Key="held/now.csv", Body=ran["files"]["b"])
    started = len(stack.executions())
    stack.notifications("SuccessTopicArn")
    sfn = stack.client("stepfunctions")
    for n, key in enumerate(("held/now.csv", "input/never-there.csv")):
        sfn.start_execution(stateMachineArn=stack.outputs["StateMachineArn"],
                            name=f"superseded-{n}", input=json.dumps(
            {"bucket": bucket, "key": key, "etag": "0123456789abcdef0123456789abcdef",
             "sequencer": "0A", "event_id": "e", "event_time": "2025-10-01T00:00:00Z"}))
    stack.wait_executions(started + 2, timeout=180)
    for key in ("held/now.csv", "input/never-there.csv"):
        [ex] = _by_file(stack)[key]
        assert ex["status"] == "SUCCEEDED", key
        names = [n for n, _ in _states_entered(stack, ex["executionArn"])]
        assert names[-2:] == ["ThenEnd", "Superseded"] and "RunTransformer" not in names
    assert s3.get_object(Bucket=bucket, Key="held/now.csv")["Body"].read() == ran["files"]["b"]
    notices = stack.notifications("SuccessTopicArn", wait=2.0)
    assert sorted(m["Subject"] for m in notices) == ["order-kpis: upload superseded"] * 2
    assert all("no longer holds that upload" in m["Message"] for m in notices)


@pytest.mark.integration
def test_a_lock_left_by_an_execution_that_no_longer_runs_is_broken(
        stack: Any, ran: dict[str, Any]) -> None:
    """A lock whose holder ended without releasing it (stopped by hand) does not block the
    key: the next execution sees the holder is not running, breaks the lock and goes on."""
    finished = ran["executions"]["input/orders_2025-07-07.csv"][0]["executionArn"]
    stack.client("dynamodb").put_item(TableName=stack.outputs["StateTableName"], Item={
        "pk": {"S": f"lock#{stack.outputs['InputBucketName']}/input/stale.csv"},
        "sk": {"S": "lock"}, "execution": {"S": finished}})
    started = len(stack.executions())
    _put(stack, "input/stale.csv", ran["files"]["a"])
    stack.wait_executions(started + 1, timeout=180)
    [ex] = _by_file(stack)["input/stale.csv"]
    assert ex["status"] == "SUCCEEDED"
    names = [n for n, _ in _states_entered(stack, ex["executionArn"])]
    assert names[:7] == ["IsFolderMarker", "StartKeyLockWait", "TakeKeyLock", "ReadKeyLock",
                         "IsKeyLockHeld", "CheckKeyLockHolder", "IsKeyLockHolderRunning"]
    assert names[7:11] == ["BreakKeyLock", "TakeKeyLock", "ClaimEvent", "RunValidator"]


def _running_execution(stack: Any, machine: str) -> str:
    """Start an execution of a new state machine ``machine`` that waits 5 minutes (scaled);
    return its ARN (a holder of a lock or claim that is still running until stopped)."""
    sfn = stack.client("stepfunctions")
    arn = sfn.create_state_machine(
        name=machine, roleArn=f"arn:aws:iam::{ACCOUNT}:role/x",
        definition=json.dumps({"StartAt": "Hold", "States": {
            "Hold": {"Type": "Wait", "Seconds": round(300 / WAIT_SCALE), "End": True}}}))[
        "stateMachineArn"]
    return str(sfn.start_execution(stateMachineArn=arn, name="holder")["executionArn"])


@pytest.mark.integration
def test_an_execution_waits_while_the_lock_holder_runs(stack: Any, ran: dict[str, Any]) -> None:
    """The key's lock held by an execution that is still running: the next execution of the
    key polls (counting its polls) and runs nothing until the holder has ended; a holder
    stopped by hand never releases it, so the waiter then breaks it and goes on."""
    sfn = stack.client("stepfunctions")
    holder = _running_execution(stack, "lock-holder")
    stack.client("dynamodb").put_item(TableName=stack.outputs["StateTableName"], Item={
        "pk": {"S": f"lock#{stack.outputs['InputBucketName']}/input/held.csv"},
        "sk": {"S": "lock"}, "execution": {"S": holder}})
    started = len(stack.executions())
    _put(stack, "input/held.csv", ran["files"]["a"])
    waiter = _wait_for_state(stack, "input/held.csv", "WaitForKeyLock")
    time.sleep(3)
    names = [n for n, _ in _states_entered(stack, waiter["executionArn"])]
    assert "RunValidator" not in names and "CountKeyLockPoll" in names
    sfn.stop_execution(executionArn=holder)
    stack.wait_executions(started + 1, timeout=180)
    [ex] = _by_file(stack)["input/held.csv"]
    assert ex["status"] == "SUCCEEDED"
    names = [n for n, _ in _states_entered(stack, ex["executionArn"])]
    broke = names.index("BreakKeyLock")
    assert names[broke - 2:broke] == ["CheckKeyLockHolder", "IsKeyLockHolderRunning"]
    assert names[broke + 1:broke + 4] == ["TakeKeyLock", "ClaimEvent", "RunValidator"]


@pytest.mark.integration
def test_waits_and_retry_intervals_take_the_stack_s_share_of_their_seconds(stack: Any) -> None:
    """A Wait of 30 s and a Retry 20 s after a failed task end in a tenth of that (the
    test stack's scale), and the retry is still made: two attempts at the task."""
    sfn = stack.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="scaled-waits", roleArn=f"arn:aws:iam::{ACCOUNT}:role/x",
        definition=json.dumps({"StartAt": "Hold", "States": {
            "Hold": {"Type": "Wait", "Seconds": 30, "Next": "Read"},
            "Read": {
                "Type": "Task", "Resource": "arn:aws:states:::dynamodb:getItem",
                "Parameters": {"TableName": "no-such-table", "Key": {"pk": {"S": "x"}}},
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 20,
                           "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}],
                "End": True},
            "Done": {"Type": "Succeed"}}}))["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=arn, name="scaled")["executionArn"]
    ex = _finished(stack, run, timeout=60)
    assert ex["status"] == "SUCCEEDED"
    events = sfn.get_execution_history(executionArn=run, maxResults=1000)["events"]
    [entered] = [e["timestamp"] for e in events if e["type"] == "WaitStateEntered"]
    [left] = [e["timestamp"] for e in events if e["type"] == "WaitStateExited"]
    first, second = [e["timestamp"] for e in events if e["type"] == "TaskScheduled"]
    # Unscaled: 30 s, then 20 s between the two attempts (no jitter). Each bound fails alone.
    assert 2 <= (left - entered).total_seconds() < 15
    assert 1 <= (second - first).total_seconds() < 10


def test_a_wait_scale_outside_zero_to_one_is_refused() -> None:
    before = adaptations.installed()
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="wait scale"):
            adaptations.install_wait_scale(bad)
    adaptations.install_wait_scale(1)  # as on AWS: nothing to patch
    assert adaptations.installed() == before


def _finished(stack: Any, arn: str, timeout: float = 180.0) -> dict[str, Any]:
    """Wait for one execution to end; return its description."""
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while (d := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still running after {timeout:.0f} s"
        time.sleep(0.2)
    return d


@pytest.mark.integration
def test_a_claim_left_by_a_stopped_execution_is_taken_over(stack: Any,
                                                            ran: dict[str, Any]) -> None:
    """An execution stopped by hand (or timed out) after claiming its upload never released
    the claim: before, every later run of that upload ended as a duplicate delivery and the
    file stayed in input/ unprocessed, with no notice. The next execution now finds the
    claimant stopped, takes the claim over and processes the file."""
    sfn = stack.client("stepfunctions")
    holder = _running_execution(stack, "claim-holder")
    table, bucket = stack.outputs["StateTableName"], stack.outputs["InputBucketName"]
    ddb = stack.client("dynamodb")
    # The stopped execution held the key's lock and had claimed this very upload.
    ddb.put_item(TableName=table, Item={"pk": {"S": f"lock#{bucket}/input/claimed.csv"},
                                        "sk": {"S": "lock"}, "execution": {"S": holder}})
    _put(stack, "input/claimed.csv", ran["files"]["b"])  # the same orders as aug-b: same KPIs
    waiter = _wait_for_state(stack, "input/claimed.csv", "WaitForKeyLock")
    event = json.loads(waiter["input"])
    claim = {"pk": {"S": f"claim#{bucket}/input/claimed.csv"},
             "sk": {"S": f"etag#{event['etag']}/seq#{event['sequencer']}"}}
    ddb.put_item(TableName=table, Item={**claim, "execution": {"S": holder}})
    sfn.stop_execution(executionArn=holder)
    ex = _finished(stack, waiter["executionArn"])
    assert ex["status"] == "SUCCEEDED"
    names = [n for n, _ in _states_entered(stack, ex["executionArn"])]
    claimed = names.index("ClaimEvent")
    assert names[claimed + 1:claimed + 7] == [
        "ReadClaim", "IsClaimHeld", "CheckClaimHolder", "DidClaimHolderFinish", "TakeOverClaim",
        "RunValidator"]
    assert "ArchiveFile" in names and names[-1] == "Done"
    item = ddb.get_item(TableName=table, Key=claim, ConsistentRead=True)["Item"]
    assert item["execution"]["S"] == ex["executionArn"]
    assert item["taken_over_from"]["S"] == holder


@pytest.mark.integration
def test_a_rejected_file_delivered_again_stays_a_duplicate(stack: Any,
                                                           ran: dict[str, Any]) -> None:
    """A rejected file keeps its claim on purpose: the same event again finds its claimant
    failed with FileRejected, and ends as a duplicate delivery (no second rejection notice)."""
    first = ran["executions"]["input/invalid_order.csv"][0]
    arn = stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.outputs["StateMachineArn"], name="rejected-redelivery",
        input=first["input"])["executionArn"]
    ex = _finished(stack, arn)
    assert ex["status"] == "SUCCEEDED"
    names = [n for n, _ in _states_entered(stack, arn)]
    assert "WasClaimHolderRejection" in names and names[-1] == "DuplicateDelivery"
    assert "RunValidator" not in names and "TakeOverClaim" not in names


def test_string_matches_has_only_the_star_wildcard_as_on_aws() -> None:
    import fnmatch

    from engine.localaws.adaptations import aws_string_matches as matches

    # The gap: moto matched with fnmatch, where "?" is any one character.
    assert fnmatch.fnmatch("backfill/ab.csv", "*?*")
    assert not matches("backfill/ab.csv", "*?*") and matches("backfill/what?.csv", "*?*")
    assert matches("a[b", "*[*") and not matches("ab", "a[b]")
    assert matches("x/", "*/") and matches("a*b", "a\\*b") and not matches("axb", "a\\*b")
    assert matches("line\nbreak", "*break")


@pytest.mark.integration
def test_a_file_past_one_copy_is_archived_in_parts(stack: Any, ran: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 copies at most 5 GiB in one CopyObject: a larger file had its KPIs published, then
    failed at the archive step on every run, and stayed in input/. The validator now lists
    the parts' byte ranges, and the workflow copies them one by one (here with the limit
    lowered to 5 MiB, the smallest part S3 takes) and deletes the source as before."""
    monkeypatch.setenv("ARCHIVE_SINGLE_COPY_MAX_MB", "5")  # the local tasks inherit these
    monkeypatch.setenv("ARCHIVE_PART_MB", "5")
    # aug-a's two orders (the same KPIs), made 6 MiB by blank lines, which are skipped.
    body = ran["files"]["a"] + b"\n" * (6 * 1024 * 1024 + 100)
    started = len(stack.executions())
    _put(stack, "input/large.csv", body)
    stack.wait_executions(started + 1, timeout=240)
    [ex] = _by_file(stack)["input/large.csv"]
    assert ex["status"] == "SUCCEEDED", ex
    names = [n for n, _ in _states_entered(stack, ex["executionArn"])]
    assert names.count("CopyArchivePart") == 2 and "ArchiveFile" not in names
    done = names.index("CompleteArchiveUpload")
    assert names[done + 1:done + 3] == ["DeleteSource", "NotifySuccess"]
    s3 = stack.client("s3")
    archived = s3.get_object(Bucket=stack.outputs["CleanedBucketName"],
                             Key="processed/input/large.csv")["Body"].read()
    assert archived == body
    listed = s3.list_objects_v2(Bucket=stack.outputs["InputBucketName"], Prefix="input/large")
    assert listed.get("KeyCount", 0) == 0


@pytest.mark.integration
def test_a_validator_that_stops_without_a_verdict_runs_again(
        stack: Any, ran: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A validator that exits 4 (S3 or DynamoDB unavailable past its own retries) records no
    verdict for its upload (the key's record stays an earlier upload's): the execution failed
    at once, and someone had to start it again. It now runs
    the task again after 30 s (twice at most). The fault: the first validator task of this
    test finds S3 unavailable (a ``sitecustomize`` on the tasks' PYTHONPATH, which they
    inherit, makes its first call fail as a transient error)."""
    marker = _fail_first_task(tmp_path, monkeypatch)
    # A new upload of a key processed before (aug-b's orders and a blank line: the same
    # KPIs): the key's status record is the earlier upload's, which the first run leaves.
    started = len(stack.executions())
    _put(stack, "input/aug-b.csv", ran["files"]["b"] + b"\n")
    stack.wait_executions(started + 1, timeout=300)
    ex = max(_by_file(stack)["input/aug-b.csv"], key=lambda d: d["startDate"])
    assert ex["status"] == "SUCCEEDED", ex
    assert marker.exists()
    names = [n for n, _ in _states_entered(stack, ex["executionArn"])]
    assert names.count("RunValidator") == 2
    first = names.index("MayRetryValidator")
    assert names[first - 1:first + 4] == ["CheckVerdict", "MayRetryValidator",
                                          "FirstValidatorRetry", "WaitBeforeValidatorRetry",
                                          "RunValidator"]
    assert names[-1] == "Done"


def _fail_first_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          job: str = "validate_object") -> Path:
    """Make the first task of ``job`` (the validator's, or ``transform_object``) in the
    stack's next runs exit 4 (S3 unavailable), through a ``sitecustomize`` the tasks inherit;
    return the marker it leaves."""
    marker = tmp_path / "failed-once"
    (tmp_path / "sitecustomize.py").write_text(
        "import os, pathlib\n"
        "import engine.aws_jobs as jobs\n"
        "from engine.errors import TransientError\n"
        f"real = jobs.{job}\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "def once(*args, **kwargs):\n"
        "    if not marker.exists():\n"
        "        marker.write_text('x')\n"
        "        raise TransientError('injected: S3 unavailable')\n"
        "    return real(*args, **kwargs)\n"
        f"jobs.{job} = once\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p))
    return marker


@pytest.mark.integration
def test_a_verdict_left_by_another_run_for_the_same_bytes_is_never_acted_on(
        stack: Any, ran: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The key's status record holds a verdict for an earlier upload of the same bytes (the
    same etag): SUPERSEDED, left by a run that found the key replaced. This run's validator
    stops without writing one (exit 4): the workflow took the old verdict for its own, ended
    as superseded and left the file in input/. The record names the run that wrote it."""
    body = ran["files"]["a"]
    etag = hashlib.md5(body).hexdigest()  # a single-part upload's ETag
    other_run = ran["executions"]["input/orders_2025-07-07.csv"][0]["executionArn"]
    stack.client("dynamodb").put_item(TableName=stack.outputs["StateTableName"], Item={
        "pk": {"S": f"file#{stack.outputs['InputBucketName']}/input/same-bytes.csv"},
        "sk": {"S": "status"}, "status": {"S": "SUPERSEDED"}, "etag": {"S": etag},
        "run": {"S": other_run}})
    marker = _fail_first_task(tmp_path, monkeypatch)
    started = len(stack.executions())
    _put(stack, "input/same-bytes.csv", body)
    stack.wait_executions(started + 1, timeout=300)
    [ex] = _by_file(stack)["input/same-bytes.csv"]
    assert ex["status"] == "SUCCEEDED", ex
    assert marker.exists()
    names = [n for n, _ in _states_entered(stack, ex["executionArn"])]
    assert names.count("RunValidator") == 2 and "NotifySuperseded" not in names
    first = names.index("MayRetryValidator")
    assert names[first - 2:first] == ["NoteThisRun", "CheckVerdict"]
    assert names[-1] == "Done"
    s3 = stack.client("s3")
    assert s3.list_objects_v2(Bucket=stack.outputs["InputBucketName"],
                              Prefix="input/same-bytes.csv")["KeyCount"] == 0  # archived


@pytest.mark.integration
def test_a_transformer_that_fails_once_is_retried_and_the_retry_runs(
        stack: Any, ran: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """RunTransformer retries a failed task (30 s later at most). moto closed the task's
    callback endpoint after the first attempt, so the retry timed out ~10 ms after it was
    submitted (States.Timeout, a failure notice) while its process published on."""
    marker = _fail_first_task(tmp_path, monkeypatch, job="transform_object")
    started = len(stack.executions())
    _put(stack, "input/retried.csv", ran["files"]["a"])
    stack.wait_executions(started + 1, timeout=300)
    [ex] = _by_file(stack)["input/retried.csv"]
    assert ex["status"] == "SUCCEEDED", ex
    assert marker.exists()
    events = stack.client("stepfunctions").get_execution_history(
        executionArn=ex["executionArn"], maxResults=1000)["events"]
    kinds = [e["type"] for e in events]
    assert "TaskTimedOut" not in kinds
    assert kinds.count("TaskSubmitted") >= 3  # the validator, the transformer twice
    assert [n for n, _ in _states_entered(stack, ex["executionArn"])][-1] == "Done"
    assert not stack.notifications("FailureTopicArn", wait=1.0)


@pytest.mark.integration
def test_a_folder_marker_ends_at_once_with_no_notice(stack: Any, ran: dict[str, Any]) -> None:
    """The S3 console's "Create folder" writes an empty object whose key ends in "/": it was
    taken for an order file, rejected as empty, and the failure topic said so."""
    started = len(stack.executions())
    _put(stack, "input/new folder/", b"")
    stack.wait_executions(started + 1, timeout=120)
    [ex] = _by_file(stack)["input/new+folder/"]
    assert ex["status"] == "SUCCEEDED"
    assert [n for n, _ in _states_entered(stack, ex["executionArn"])] == [
        "IsFolderMarker", "NotAFile"]
    assert not stack.notifications("FailureTopicArn", wait=1.0)


def test_local_aws_up_refuses_what_it_cannot_serve_before_deploying(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from engine.cli import main

    with pytest.raises(SystemExit) as e:
        main(["local-aws", "up", "--port", "70000"])
    assert e.value.code == 2
    # A port in use: moto's server failed to bind on its thread and the start waited forever.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["local-aws", "up", "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is not free" in capsys.readouterr().err
    # Output paths that cannot be written: refused before the deploy, not after (or never:
    # a --task-logs file failed every task).
    (tmp_path / "a-file").write_text("x")
    assert main(["local-aws", "up", "--task-logs", str(tmp_path / "a-file")]) == 2
    assert main(["local-aws", "up", "--outputs-json", str(tmp_path / "no" / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "does not exist" in err


@pytest.mark.integration
def test_local_aws_demo_that_runs_out_of_time_exits_1_saying_so() -> None:
    import subprocess
    import sys

    # In a process of its own: a second embedded stack in this one would share moto's
    # backends and, stopping, remove the adaptations under the module's stack.
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "engine.cli", "local-aws", "demo", "--timeout",
                        "0.01"], capture_output=True, text=True, cwd=root, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 1, r.stderr  # was 70, "a bug"
    assert "the demo's executions did not end in time" in r.stderr


@pytest.mark.integration
def test_an_upload_in_parts_starts_one_execution(stack: Any, ran: dict[str, Any]) -> None:
    """``aws s3 cp`` uploads a file of 8 MB or more in parts: moto sent two Object Created
    events for it (Put, then CompleteMultipartUpload), so two executions ran, and the second
    sent a false "superseded" notice. AWS sends one."""
    import io

    from boto3.s3.transfer import TransferConfig

    body = ran["files"]["a"] + b"\n" * (6 * 1024 * 1024)  # aug-a's orders: the same KPIs
    started = len(stack.executions())
    stack.client("s3").upload_fileobj(
        io.BytesIO(body), stack.outputs["InputBucketName"], "input/multi.csv",
        Config=TransferConfig(multipart_threshold=5 * 1024 * 1024,
                              multipart_chunksize=5 * 1024 * 1024))
    stack.wait_executions(started + 1, timeout=180)
    time.sleep(2)  # a second event would have started its execution by now
    stack.wait_executions(started + 1, timeout=180)
    runs = _by_file(stack)["input/multi.csv"]
    assert len(runs) == 1 and runs[0]["status"] == "SUCCEEDED"
