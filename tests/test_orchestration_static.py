"""Static checks of orchestration/: template, workflow definition and deploy scripts (no network).

Each rule is a small predicate; every test also runs it on a mutated copy to show it can fail.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.decode import decode_str
from statelint.linter import Linter

from engine.state import claim_key

ROOT = Path(__file__).resolve().parents[1]
ORCH = ROOT / "orchestration"
TEMPLATE_TEXT = (ORCH / "template.yaml").read_text(encoding="utf-8")
ASL_TEXT = (ORCH / "statemachine.asl.json").read_text(encoding="utf-8")
CONTRACT = (ROOT / "docs" / "CONTRACT.md").read_text(encoding="utf-8")

sys.path.insert(0, str(ORCH))
import embed_asl  # noqa: E402


def load_template(text: str = TEMPLATE_TEXT) -> dict[str, Any]:
    """Return the template as plain dicts; short-form tags become their long form."""
    tpl, errors = decode_str(text)
    assert not errors, errors
    return json.loads(json.dumps(tpl))


TEMPLATE = load_template()
ASL: dict[str, Any] = json.loads(ASL_TEXT)


def resources(tpl: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Return the resources of one type, by logical id."""
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == kind}


def lint_errors(text: str) -> list[str]:
    """Return cfn-lint's errors and warnings for a template text."""
    return [str(m) for m in lint(text) if m.rule.severity in ("error", "warning")]


def contract_env() -> tuple[set[str], set[str]]:
    """Return the (required, optional) container env var names listed in CONTRACT.md."""
    section = CONTRACT.split("## Container environment", 1)[1].split("##", 1)[0]
    required = section.split("Required:", 1)[1].split("Optional:", 1)[0]
    optional = section.split("Optional:", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"`([A-Z0-9_]+)`", required)), set(
        re.findall(r"`([A-Z0-9_]+)`", optional)
    )


# ----------------------------------------------------------------- template: lint and sync


def test_cfn_lint_passes_on_template() -> None:
    assert lint_errors(TEMPLATE_TEXT) == []
    broken = TEMPLATE_TEXT.replace("BillingMode: PAY_PER_REQUEST", "BillingMode: ON_DEMAND", 1)
    assert lint_errors(broken)


def test_template_embeds_exactly_the_asl_file() -> None:
    sub = TEMPLATE["Resources"]["StateMachine"]["Properties"]["DefinitionString"]["Fn::Sub"]
    assert isinstance(sub, str), "one-argument Fn::Sub keeps $$.Execution.Id intact in moto"
    assert json.loads(sub) == ASL
    assert embed_asl.main(["--check"]) == 0
    edited = ASL_TEXT.replace('"TimeoutSeconds": 30', '"TimeoutSeconds": 31', 1)
    assert embed_asl.embedded(TEMPLATE_TEXT, edited) != TEMPLATE_TEXT


def placeholders_unresolved(asl_text: str, tpl: dict[str, Any]) -> set[str]:
    """Return the ${Name} placeholders that are neither a parameter nor a resource."""
    known = set(tpl["Parameters"]) | set(tpl["Resources"])
    names = {m.split(".", 1)[0] for m in re.findall(r"\$\{([^}]+)\}", asl_text)}
    return {n for n in names if n not in known and not n.startswith("AWS::")}


def test_every_placeholder_names_a_stack_resource_or_parameter() -> None:
    assert placeholders_unresolved(ASL_TEXT, TEMPLATE) == set()
    assert "${Cluster}" in ASL_TEXT and "${StateTable}" in ASL_TEXT
    assert placeholders_unresolved(ASL_TEXT + "${ClusterArn}", TEMPLATE) == {"ClusterArn"}


def test_execution_context_paths_survive_substitution() -> None:
    # moto's two-argument Fn::Sub would rewrite $$ to $; the template uses the one-argument form.
    assert "$$.Execution.Id" in ASL_TEXT
    sm = TEMPLATE["Resources"]["StateMachine"]["Properties"]
    assert "DefinitionSubstitutions" not in sm and "Definition" not in sm
    assert sm["StateMachineType"] == "STANDARD"


# ----------------------------------------------------------------- template: security


def policy_statements(tpl: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (logical id, statement) for every identity and resource policy in the template."""
    for name, res in tpl["Resources"].items():
        props = res.get("Properties", {})
        docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props:
            docs.append(props["PolicyDocument"])
        for doc in docs:
            for stmt in doc["Statement"]:
                yield name, stmt


def wildcard_allows(tpl: dict[str, Any]) -> list[str]:
    """Return 'resource: action' for every Allow whose action contains a wildcard."""
    found = []
    for name, stmt in policy_statements(tpl):
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        if stmt["Effect"] == "Allow":
            found += [f"{name}: {a}" for a in actions if "*" in a]
    return found


def test_no_policy_allows_a_wildcard_action() -> None:
    assert wildcard_allows(TEMPLATE) == []
    bad = copy.deepcopy(TEMPLATE)
    stmts = bad["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    stmts["Statement"][0]["Action"] = "s3:*"
    assert wildcard_allows(bad) == ["TaskRole: s3:*"]


def bucket_problems(tpl: dict[str, Any]) -> list[str]:
    """Return what each bucket lacks: encryption, a full public access block, a TLS-only policy."""
    problems = []
    policies = resources(tpl, "AWS::S3::BucketPolicy").values()
    for name, bucket in resources(tpl, "AWS::S3::Bucket").items():
        props = bucket["Properties"]
        if not props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration"):
            problems.append(f"{name}: no default encryption")
        pab = props.get("PublicAccessBlockConfiguration", {})
        flags = (
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        )
        if not all(pab.get(f) is True for f in flags):
            problems.append(f"{name}: public access not fully blocked")
        tls_denied = any(
            p["Properties"]["Bucket"] == {"Ref": name}
            and any(
                s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
                for s in p["Properties"]["PolicyDocument"]["Statement"]
            )
            for p in policies
        )
        if not tls_denied:
            problems.append(f"{name}: no policy denying non-TLS requests")
    return problems


def test_every_bucket_is_encrypted_private_and_tls_only() -> None:
    assert len(resources(TEMPLATE, "AWS::S3::Bucket")) == 2
    assert bucket_problems(TEMPLATE) == []
    bad = copy.deepcopy(TEMPLATE)
    del bad["Resources"]["CleanedBucketPolicy"]
    bad["Resources"]["InputBucket"]["Properties"]["PublicAccessBlockConfiguration"][
        "RestrictPublicBuckets"
    ] = False
    assert bucket_problems(bad) == [
        "InputBucket: public access not fully blocked",
        "CleanedBucket: no policy denying non-TLS requests",
    ]


def test_input_bucket_sends_events_and_cleaned_bucket_ages_out_archives() -> None:
    inp = TEMPLATE["Resources"]["InputBucket"]["Properties"]
    assert inp["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"]
    rules = TEMPLATE["Resources"]["CleanedBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    by_prefix = {r.get("Prefix"): r for r in rules}
    assert by_prefix["processed/"]["ExpirationInDays"] > 0
    assert by_prefix["processed/"]["Transitions"]
    assert by_prefix["rejected/"]["ExpirationInDays"] > 0


def test_cleaned_bucket_keeps_replaced_archives_and_drops_replaced_working_objects() -> None:
    """A later upload of a key replaces its archive (processed/<key>) or rejected copy: the
    bucket is versioned so the earlier bytes stay, as long as an archive would. Every other
    prefix the jobs and workflows write is rewritten often: its replaced versions, and the
    delete markers left alone, must go, or they pile up unseen."""
    props = TEMPLATE["Resources"]["CleanedBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = props["LifecycleConfiguration"]["Rules"]
    by_prefix = {r.get("Prefix"): r for r in rules}
    assert len(by_prefix) == len(rules)  # one rule per prefix: none hides another
    # An expiring archive becomes a noncurrent version too: the noncurrent days add to the
    # archive's life, so they stay well under it.
    for kept, days in (("processed/", 90), ("rejected/", 30)):
        rule = by_prefix[kept]
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == days
        assert days < rule["ExpirationInDays"]
        # S3 refuses ExpiredObjectDeleteMarker beside Days; with Days it removes them itself.
        assert "ExpiredObjectDeleteMarker" not in rule
    # engine/aws_jobs.py (cleaned/, reports/, rejected/), engine/s3lake.py (lake/),
    # engine/s3export.py (kpis/), the backfill's ResultWriter, and the products file (config/).
    backfill = json.loads((ORCH / "backfill.asl.json").read_text())
    writer = next(s["ResultWriter"] for s in backfill["States"].values() if "ResultWriter" in s)
    written = {"cleaned/", "reports/", "lake/", "kpis/", "config/",
               writer["Parameters"]["Prefix"] + "/"}
    for prefix in written:
        rule = by_prefix[prefix]
        assert rule["Status"] == "Enabled" and rule["ExpiredObjectDeleteMarker"] is True, prefix
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] <= 30, prefix
    assert set(by_prefix) - {None} == written | {"processed/", "rejected/"}


def table_problems(tpl: dict[str, Any]) -> list[str]:
    """Return the tables that are not on-demand with point-in-time recovery and SSE."""
    problems = []
    for name, table in resources(tpl, "AWS::DynamoDB::Table").items():
        props = table["Properties"]
        pitr = props.get("PointInTimeRecoverySpecification", {})
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{name}: billing")
        if pitr.get("PointInTimeRecoveryEnabled") is not True:
            problems.append(f"{name}: pitr")
        if props.get("SSESpecification", {}).get("SSEEnabled") is not True:
            problems.append(f"{name}: sse")
    return problems


def test_tables_have_the_contract_keys_pitr_and_on_demand_billing() -> None:
    tables = resources(TEMPLATE, "AWS::DynamoDB::Table")
    keys = {
        n: [(k["AttributeName"], k["KeyType"]) for k in t["Properties"]["KeySchema"]]
        for n, t in tables.items()
    }
    assert keys == {
        "CategoryKPIs": [("category", "HASH"), ("order_date", "RANGE")],
        "OrderKPIs": [("order_date", "HASH")],
        "StateTable": [("pk", "HASH"), ("sk", "RANGE")],
    }
    assert table_problems(TEMPLATE) == []
    bad = copy.deepcopy(TEMPLATE)
    del bad["Resources"]["StateTable"]["Properties"]["PointInTimeRecoverySpecification"]
    assert table_problems(bad) == ["StateTable: pitr"]


def statements_of(role: str) -> dict[str, dict[str, Any]]:
    """Return a role's inline policy statements by Sid."""
    policies = TEMPLATE["Resources"][role]["Properties"]["Policies"]
    return {s.get("Sid", ""): s for p in policies for s in p["PolicyDocument"]["Statement"]}


def test_state_machine_may_run_and_pass_exactly_the_stack_tasks_and_roles() -> None:
    stmts = statements_of("StateMachineRole")
    assert stmts["RunTheTwoTasks"]["Resource"] == [
        {"Ref": "ValidatorTaskDefinition"},
        {"Ref": "TransformerTaskDefinition"},
    ]
    assert stmts["PassTheTwoRoles"]["Resource"] == [
        {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]},
        {"Fn::GetAtt": ["TaskRole", "Arn"]},
    ]
    assert "StepFunctionsGetEventsForECSTaskRule" in stmts["SyncRule"]["Resource"]["Fn::Sub"]
    assert stmts["StateTable"]["Resource"] == {"Fn::GetAtt": ["StateTable", "Arn"]}
    # The workflow's archive and rejection steps tell "the key holds nothing" by S3's 404,
    # which needs list permission on the input bucket (403 AccessDenied without it).
    assert stmts["ListInput"] == {"Sid": "ListInput", "Effect": "Allow", "Action": "s3:ListBucket",
                                  "Resource": {"Fn::GetAtt": ["InputBucket", "Arn"]}}


def test_task_role_reads_only_input_prefix_and_exactly_three_tables() -> None:
    stmts = statements_of("TaskRole")
    assert stmts["ReadInput"]["Resource"] == {"Fn::Sub": "${InputBucket.Arn}/input/*"}
    assert sorted(r["Fn::GetAtt"][0] for r in stmts["ReadWriteTables"]["Resource"]) == [
        "CategoryKPIs",
        "OrderKPIs",
        "StateTable",
    ]
    written = {r["Fn::Sub"].split("/")[1] for r in stmts["ReadWriteCleaned"]["Resource"]}
    assert written == {"cleaned", "lake", "reports", "rejected", "kpis"}
    # The code tells a missing object by its 404, which S3 gives only to a caller that may
    # list the bucket, whatever the key: a prefix condition (a GET carries no prefix) turns
    # it into 403 AccessDenied.
    for sid, bucket in (("ListCleaned", "CleanedBucket"), ("ListInput", "InputBucket")):
        assert stmts[sid] == {"Sid": sid, "Effect": "Allow", "Action": "s3:ListBucket",
                              "Resource": {"Fn::GetAtt": [bucket, "Arn"]}}


def test_the_products_file_is_a_stack_parameter_the_validator_may_read() -> None:
    # CATEGORIES_S3_URI was documented as a container setting no deployed stack could set.
    param = TEMPLATE["Parameters"]["CategoriesS3Uri"]
    assert param["Default"] == ""
    pattern = re.compile(param["AllowedPattern"])
    assert pattern.match("") and pattern.match("s3://my-cleaned-bucket/config/products.csv")
    assert not pattern.match("s3://my-cleaned-bucket/products.csv")
    td = TEMPLATE["Resources"]["ValidatorTaskDefinition"]["Properties"]
    env = {e["Name"]: e["Value"] for e in td["ContainerDefinitions"][0]["Environment"]}
    assert env["CATEGORIES_S3_URI"] == {"Ref": "CategoriesS3Uri"}
    read = statements_of("TaskRole")["ReadConfig"]
    assert (read["Action"], read["Resource"]) == (
        "s3:GetObject", {"Fn::Sub": "${CleanedBucket.Arn}/config/*"})


# ----------------------------------------------------------------- template: tasks and trigger


def test_task_definition_env_matches_contract() -> None:
    required, optional = contract_env()
    assert "S3_INPUT_KEY" in required and "LOG_LEVEL" in optional

    def env_problems(tpl: dict[str, Any], asl: dict[str, Any]) -> list[str]:
        problems = []
        for state, name in (("RunValidator", "validator"), ("RunTransformer", "transformer")):
            td = tpl["Resources"][f"{name.capitalize()}TaskDefinition"]["Properties"]
            (container,) = td["ContainerDefinitions"]
            static = {e["Name"] for e in container["Environment"]}
            (override,) = asl["States"][state]["Parameters"]["Overrides"]["ContainerOverrides"]
            assert override["Name"] == container["Name"] == name
            per_run = {e["Name"] for e in override["Environment"]}
            problems += [f"{name}: unknown {v}" for v in (static | per_run) - required - optional]
            problems += [f"{name}: missing {v}" for v in required - static - per_run]
        return problems

    assert env_problems(TEMPLATE, ASL) == []
    bad = copy.deepcopy(TEMPLATE)
    env = bad["Resources"]["TransformerTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env["Environment"] = [e for e in env["Environment"] if e["Name"] != "STATE_TABLE"]
    env["Environment"].append({"Name": "ORDERS_TABLE", "Value": "x"})
    assert env_problems(bad, ASL) == [
        "transformer: unknown ORDERS_TABLE",
        "transformer: missing STATE_TABLE",
    ]


def test_task_definitions_are_fargate_with_container_memory_and_log_prefixes() -> None:
    for name, prefix in (("Validator", "ecs-validator"), ("Transformer", "ecs-transformer")):
        props = TEMPLATE["Resources"][f"{name}TaskDefinition"]["Properties"]
        (container,) = props["ContainerDefinitions"]
        assert props["RequiresCompatibilities"] == ["FARGATE"]
        assert props["NetworkMode"] == "awsvpc"
        assert container["Memory"] == {"Ref": f"{name}Memory"}
        assert container["Image"] == {"Ref": "ImageUri"}
        assert container["Command"] == ["python", f"containers/{name.lower()}.py"]
        opts = container["LogConfiguration"]["Options"]
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        assert opts["awslogs-stream-prefix"] == prefix
    assert len(resources(TEMPLATE, "AWS::ECS::Cluster")) == 1


def test_trigger_rule_builds_the_contract_workflow_input() -> None:
    line = CONTRACT.split("## Workflow input", 1)[1]
    wanted = dict(re.findall(r'"(\w+)": <([\w.]+)>', line))
    (target,) = TEMPLATE["Resources"]["TriggerRule"]["Properties"]["Targets"]
    paths = target["InputTransformer"]["InputPathsMap"]
    assert {k: v.removeprefix("$.") for k, v in paths.items()} == wanted
    rendered = re.sub(
        r"<(\w+)>",
        lambda m: json.dumps(f"value of {m[1]}"),
        target["InputTransformer"]["InputTemplate"],
    )
    assert json.loads(rendered) == {k: f"value of {k}" for k in wanted}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    pattern = TEMPLATE["Resources"]["TriggerRule"]["Properties"]["EventPattern"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "input/"}]
    (stmt,) = TEMPLATE["Resources"]["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    assert stmt["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["TriggerRule", "Arn"]}


def test_alarms_watch_failed_executions_and_the_dlq() -> None:
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(TEMPLATE, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {"ExecutionsFailed", "ApproximateNumberOfMessagesVisible"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "FailureTopic"}]


def test_outputs_name_what_the_other_parts_need() -> None:
    assert {
        "InputBucketName",
        "CleanedBucketName",
        "CategoryTableName",
        "OrderTableName",
        "StateTableName",
        "StateMachineArn",
        "SuccessTopicArn",
        "FailureTopicArn",
        "ClusterName",
        "DeadLetterQueueUrl",
    } <= set(TEMPLATE["Outputs"])


# ----------------------------------------------------------------- workflow definition


def test_statelint_passes_on_the_workflow() -> None:
    assert Linter.validate(copy.deepcopy(ASL)) == []
    bad = copy.deepcopy(ASL)
    del bad["States"]["ArchiveFile"]["Next"]
    assert Linter.validate(bad)


def task_problems(asl: dict[str, Any]) -> list[str]:
    """Return Task states without a timeout or a catch-all, and retries of non-transient errors."""
    problems = []
    for name, state in asl["States"].items():
        if state["Type"] != "Task":
            continue
        if "TimeoutSeconds" not in state:
            problems.append(f"{name}: no TimeoutSeconds")
        if not any("States.ALL" in c["ErrorEquals"] for c in state.get("Catch", [])):
            problems.append(f"{name}: no catch-all")
        for retry in state.get("Retry", []):
            never = {"States.ALL", "States.TaskFailed", "States.Timeout"}
            if name == "RunTransformer":
                # The transformer never sees bad data (the validator did) and converges when
                # run again, so a failed task (exit 4: S3 or DynamoDB unavailable) is retried.
                never = never - {"States.TaskFailed"}
            problems += [f"{name}: retries {e}" for e in retry["ErrorEquals"] if e in never]
            if retry.get("JitterStrategy") != "FULL" or "MaxDelaySeconds" not in retry:
                problems.append(f"{name}: retry without capped full jitter")
    return problems


def test_every_task_times_out_catches_all_and_retries_only_transient_errors() -> None:
    assert task_problems(ASL) == []
    bad = copy.deepcopy(ASL)
    del bad["States"]["RunTransformer"]["TimeoutSeconds"]
    bad["States"]["RunValidator"]["Retry"][0]["ErrorEquals"].append("States.TaskFailed")
    bad["States"]["NotifySuccess"]["Catch"][0]["ErrorEquals"] = ["SNS.NotFoundException"]
    assert task_problems(bad) == [
        "RunValidator: retries States.TaskFailed",
        "RunTransformer: no TimeoutSeconds",
        "NotifySuccess: no catch-all",
    ]


def successors(state: dict[str, Any]) -> list[str]:
    """Return every state a state can go to next."""
    nxt = [state["Next"]] if "Next" in state else []
    nxt += [c["Next"] for c in state.get("Catch", [])]
    nxt += [c["Next"] for c in state.get("Choices", [])]
    return nxt + ([state["Default"]] if "Default" in state else [])


def reachable_avoiding(asl: dict[str, Any], target: str, avoid: str) -> bool:
    """Return whether ``target`` can be reached from StartAt without passing ``avoid``."""
    seen, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name == target:
            return True
        if name in seen or name == avoid:
            continue
        seen.add(name)
        todo += successors(asl["States"][name])
    return False


def test_workflow_is_sequential_and_transforms_only_after_a_valid_verdict() -> None:
    # No step runs beside another; the one Map copies the parts of one large file's archive,
    # and runs no task but those copies.
    assert not [s for s in ASL["States"].values() if s["Type"] == "Parallel"]
    maps = {n: s for n, s in ASL["States"].items() if s["Type"] == "Map"}
    assert list(maps) == ["CopyArchiveParts"]
    inner = maps["CopyArchiveParts"]["ItemProcessor"]["States"]
    assert {s.get("Resource") for s in inner.values()} == {
        None, "arn:aws:states:::aws-sdk:s3:uploadPartCopy"}
    for gate in ("RunValidator", "ReadValidation", "CheckVerdict", "RunTransformer"):
        assert not reachable_avoiding(ASL, "ArchiveFile", avoid=gate)
        assert not reachable_avoiding(ASL, "StartArchiveUpload", avoid=gate)
    for gate in ("RunValidator", "ReadValidation", "CheckVerdict"):
        assert not reachable_avoiding(ASL, "RunTransformer", avoid=gate)
    assert reachable_avoiding(ASL, "RunTransformer", avoid="DeleteRejectedSource")
    bad = copy.deepcopy(ASL)
    bad["States"]["ClaimEvent"]["Next"] = "RunTransformer"
    assert reachable_avoiding(bad, "RunTransformer", avoid="RunValidator")


def test_a_failed_validator_task_still_reads_the_verdict() -> None:
    states = ASL["States"]
    catches = {c["ErrorEquals"][0]: c for c in states["RunValidator"]["Catch"]}
    assert catches["States.TaskFailed"]["Next"] == "ReadValidation"
    assert catches["States.TaskFailed"]["ResultPath"] != "$"  # keep bucket/key for the next steps
    assert states["ReadValidation"]["Parameters"]["ConsistentRead"] is True
    rules = {c.get("StringEquals"): c["Next"] for c in states["CheckVerdict"]["Choices"]}
    # The validator kept the bytes it read in rejected/; the workflow deletes the input.
    assert rules["REJECTED"] == "DeleteRejectedSource"
    assert rules["VALID"] == "RunTransformer"
    path, name = [], "DeleteRejectedSource"
    while "Next" in states[name]:
        path.append(name)
        name = states[name]["Next"]
    assert [*path, name] == [
        "DeleteRejectedSource",
        "NotifyRejected",
        "ReleaseKeyLock",
        "ThenEnd",
    ]
    assert states["NotifyRejected"]["ResultSelector"] == {"then": "FileRejected"}
    assert ends_of(states)["FileRejected"] == "FileRejected"
    assert states["FileRejected"]["Type"] == "Fail"


def ends_of(states: dict[str, Any]) -> dict[str, str]:
    """Return {value of $.end.then: the state ThenEnd goes to} (its Default under '*')."""
    choice = states["ThenEnd"]
    assert all(c["Variable"] == "$.end.then" for c in choice["Choices"])
    return {**{c["StringEquals"]: c["Next"] for c in choice["Choices"]}, "*": choice["Default"]}


def test_every_path_releases_the_key_lock_once_then_ends_where_it_chose() -> None:
    states = ASL["States"]
    assert ends_of(states) == {"Done": "Done", "FileRejected": "FileRejected",
                               "Superseded": "Superseded", "DuplicateDelivery": "DuplicateDelivery",
                               "*": "NotifyFailure"}
    # Only ReleaseKeyLock leads to ThenEnd, and whatever it meets, it goes on there.
    release = states["ReleaseKeyLock"]
    assert release["Next"] == "ThenEnd" and [c["Next"] for c in release["Catch"]] == ["ThenEnd"]
    assert release["Parameters"]["ConditionExpression"] == "#execution = :me"
    into = {n for n, st in states.items() if st.get("Next") == "ReleaseKeyLock"}
    assert into == {"NotifyRejected", "NotifySuccess", "NotifyReplacedBeforeArchive",
                    "NotifySuperseded", "EndInFailure", "DuplicateDeliveryFound"}
    for name in into - {"EndInFailure", "DuplicateDeliveryFound"}:
        assert states[name]["ResultPath"] == "$.end", name
    assert states["DuplicateDeliveryFound"]["Result"] == {"then": "DuplicateDelivery"}
    assert states["EndInFailure"]["Result"] == {"then": "NotifyFailure"}
    # A failure releases its claim first, then the lock (the same item key as the take).
    assert states["ReleaseClaim"]["Next"] == "EndInFailure"
    take = states["TakeKeyLock"]["Parameters"]
    assert take["Item"]["pk"] == release["Parameters"]["Key"]["pk"]
    assert take["Item"]["sk"] == release["Parameters"]["Key"]["sk"] == {"S": "lock"}
    # Every end, the failure notice included, is reached only through ThenEnd: no path skips
    # the release.
    for end in ("Done", "FileRejected", "Superseded", "DuplicateDelivery", "NotifyFailure"):
        assert {n for n, st in states.items() if st.get("Next") == end} == set(), end
        assert {n for n, st in states.items()
                for c in st.get("Catch", []) if c["Next"] == end} == set(), end
    assert states["NotifyFailure"]["Next"] == "PipelineFailed"


def test_an_execution_waits_for_the_key_then_runs_the_validator() -> None:
    states = ASL["States"]
    # The lock before the claim: an execution stopped while it waits holds neither.
    assert ASL["StartAt"] == "IsFolderMarker"  # a key ending in "/" ends at once (NotAFile)
    assert states["IsFolderMarker"]["Default"] == "StartKeyLockWait"
    assert states["IsFolderMarker"]["Choices"] == [
        {"Variable": "$.key", "StringMatches": "*/", "Next": "NotAFile"}]
    assert states["StartKeyLockWait"]["Next"] == "TakeKeyLock"
    assert states["TakeKeyLock"]["Next"] == "ClaimEvent"
    assert states["ClaimEvent"]["Next"] == "RunValidator"
    # Failing before the claim releases only the lock.
    for name in ("TakeKeyLock", "ReadKeyLock", "BreakKeyLock", "ClaimEvent"):
        (catch_all,) = [c for c in states[name]["Catch"] if "States.ALL" in c["ErrorEquals"]]
        assert states[catch_all["Next"]]["Next"] == "EndInFailure", name
    held = next(c for c in states["TakeKeyLock"]["Catch"]
                if c["ErrorEquals"] == ["DynamoDB.ConditionalCheckFailedException"])
    assert held["Next"] == "ReadKeyLock"
    assert states["ReadKeyLock"]["Parameters"]["ConsistentRead"] is True
    assert states["IsKeyLockHolderRunning"]["Choices"] == [
        {"Variable": "$.key_lock_holder.status", "StringEquals": "RUNNING",
         "Next": "CountKeyLockPoll"}]
    assert states["IsKeyLockHolderRunning"]["Default"] == "BreakKeyLock"
    # A poll is ~25 history events and a history holds 25,000: the polls are counted,
    # spaced out after 30, and capped at 800 (~13 h), after which the execution fails with
    # a notice (holding no claim yet) instead of dying at the history limit with none.
    assert states["StartKeyLockWait"]["Result"] == {"polls": 0}
    assert states["CountKeyLockPoll"]["Parameters"] == {
        "polls.$": "States.MathAdd($.key_lock_wait.polls, 1)"}
    how = states[states["CountKeyLockPoll"]["Next"]]
    assert [(c["NumericLessThanEquals"], c["Next"]) for c in how["Choices"]] == [
        (30, "WaitForKeyLock"), (800, "WaitLongerForKeyLock")]
    assert (states["WaitForKeyLock"]["Seconds"], states["WaitLongerForKeyLock"]["Seconds"]) == (
        10, 60)
    assert states["WaitForKeyLock"]["Next"] == states["WaitLongerForKeyLock"]["Next"] == (
        "TakeKeyLock")
    too_long = states[how["Default"]]
    assert too_long["ResultPath"] == "$.error"
    assert states[too_long["Next"]]["Next"] == "EndInFailure"
    # Breaking deletes the lock only if the holder that was seen finished still holds it.
    brk = states["BreakKeyLock"]["Parameters"]
    assert brk["ExpressionAttributeValues"][":holder"] == {"S.$": "$.key_lock.Item.execution.S"}
    assert states["BreakKeyLock"]["Next"] == "TakeKeyLock"
    # Only the upload of the event is read, copied and deleted: everything names its etag.
    env = states["RunValidator"]["Parameters"]["Overrides"]["ContainerOverrides"][0]
    assert {"Name": "S3_INPUT_ETAG", "Value.$": "$.etag"} in env["Environment"]
    assert states["ArchiveFile"]["Parameters"]["CopySourceIfMatch.$"] == "$.etag"
    for name in ("DeleteRejectedSource", "DeleteSource"):
        assert states[name]["Parameters"]["IfMatch.$"] == "$.etag", name
    transformer = states["RunTransformer"]["Parameters"]["Overrides"]["ContainerOverrides"][0]
    assert {"Name": "S3_INPUT_ETAG", "Value.$": "$.etag"} in transformer["Environment"]
    # What S3 answers a conditional copy or delete that must not fail the execution: 412 (a
    # later upload holds the key), 404 (nothing does), and for a delete 409 (a write to the
    # key at that moment). Other errors go to the step's failure.
    # A 404 counts only for the key's absence (NoSuchKey), not a missing bucket.
    answers = {"412": "*Status Code: 412*", "409": "*Status Code: 409*",
               "404": "*The specified key does not exist*"}
    for name, then, codes in (
        ("DeleteRejectedSource", "NotifyRejected", {"412", "409", "404"}),
        ("ArchiveFile", "NotifyReplacedBeforeArchive", {"412", "404"}),
        ("DeleteSource", "NotifySuccess", {"412", "409", "404"}),
    ):
        (catch,) = states[name]["Catch"]
        choice = states[catch["Next"]]
        no_cause, rule = choice["Choices"]
        assert no_cause == {"Variable": "$.error.Cause", "IsPresent": False,
                            "Next": f"{name}Failed"}
        assert rule["Next"] == then and choice["Default"] == f"{name}Failed"
        assert {r["StringMatches"] for r in rule["Or"]} == {answers[c] for c in codes}
        assert all(r["Variable"] == "$.error.Cause" for r in rule["Or"])
    rules = {c.get("StringEquals"): c["Next"] for c in states["CheckVerdict"]["Choices"]}
    assert rules["SUPERSEDED"] == "NotifySuperseded"
    # ...but a backfill child outside input/ fails (no event will follow the change).
    in_backfill = next(c for c in states["CheckVerdict"]["Choices"] if "And" in c)
    assert in_backfill["Next"] == "SupersededInBackfill"
    assert {"Variable": "$.backfill", "IsPresent": True} in in_backfill["And"]
    assert {"Not": {"Variable": "$.key", "StringMatches": "input/*"}} in in_backfill["And"]
    assert states["CheckVerdict"]["Choices"].index(in_backfill) < [
        c.get("StringEquals") for c in states["CheckVerdict"]["Choices"]].index("SUPERSEDED")
    assert states["SupersededInBackfill"]["Next"] == "VerdictFailed"


def test_duplicate_delivery_is_claimed_once_and_ends_quietly() -> None:
    claim = ASL["States"]["ClaimEvent"]
    assert claim["Resource"] == "arn:aws:states:::dynamodb:putItem"
    # Not taken, or taken by this very execution (a retried put that had applied).
    assert claim["Parameters"]["ConditionExpression"] == (
        "attribute_not_exists(pk) OR #execution = :me")
    assert claim["Parameters"]["ExpressionAttributeValues"] == {":me": {"S.$": "$$.Execution.Id"}}
    assert "'claim#{}/{}', $.bucket, $.key" in claim["Parameters"]["Item"]["pk"]["S.$"]
    # One upload is one claim: its etag and S3 sequencer, as engine.state.claim_key states.
    sk = "States.Format('etag#{}/seq#{}', $.etag, $.sequencer)"
    assert claim["Parameters"]["Item"]["sk"]["S.$"] == sk
    assert ASL["States"]["ReleaseClaim"]["Parameters"]["Key"]["sk"]["S.$"] == sk
    assert claim_key("b", "k", "E", "S") == ("claim#b/k", "etag#E/seq#S")
    dup = next(
        c
        for c in claim["Catch"]
        if c["ErrorEquals"] == ["DynamoDB.ConditionalCheckFailedException"]
    )
    # Claimed already: by whom, and how that execution ended (its claim is released on every
    # failure path, but not when it was stopped, timed out or broke down midway).
    states = ASL["States"]
    assert dup["Next"] == "ReadClaim"
    assert states["ReadClaim"]["Parameters"]["Key"]["sk"]["S.$"] == sk
    assert states["CheckClaimHolder"]["Resource"].endswith(":sfn:describeExecution")
    finished = {c["StringEquals"]: c["Next"] for c in states["DidClaimHolderFinish"]["Choices"]}
    assert finished == {"SUCCEEDED": "DuplicateDeliveryFound", "RUNNING": "MayWaitForClaimHolder",
                        "FAILED": "WasClaimHolderRejection"}
    # A claimant still running holds no lock any more (this execution has it): it is ending,
    # so it is asked again, 30 times at most, before being taken for a duplicate.
    assert states["WaitForClaimHolder"]["Next"] == "ReadClaim"
    assert states["MayWaitForClaimHolder"]["Default"] == "DuplicateDeliveryFound"
    # No verdict for this upload, none or another upload's: the validator runs again.
    assert states["CheckVerdict"]["Choices"][0]["Next"] == "MayRetryValidator"
    assert states["IsVerdictRecorded"]["Choices"][0]["Next"] == "MayRetryValidator"
    assert states["DidClaimHolderFinish"]["Default"] == "TakeOverClaim"  # ABORTED, TIMED_OUT
    rejection = states["WasClaimHolderRejection"]["Choices"]
    assert rejection[1] == {"Variable": "$.claim_holder.Error", "StringEquals": "FileRejected",
                            "Next": "DuplicateDeliveryFound"}
    assert states["FileRejected"]["Error"] == "FileRejected"  # a rejected file keeps its claim
    take = states["TakeOverClaim"]["Parameters"]
    assert take["ConditionExpression"] == "#execution = :claimant OR #execution = :me"
    assert take["Item"]["sk"]["S.$"] == sk and states["TakeOverClaim"]["Next"] == "RunValidator"
    found = states["DuplicateDeliveryFound"]
    assert (found["Next"], found["Result"]) == ("ReleaseKeyLock", {"then": "DuplicateDelivery"})
    assert states["DuplicateDelivery"]["Type"] == "Succeed"


def test_failure_notices_carry_execution_file_step_and_error() -> None:
    msg = ASL["States"]["NotifyFailure"]["Parameters"]["Message.$"]
    for part in (
        "$$.Execution.Id",
        "$.bucket",
        "$.key",
        "$.failed_step",
        "$.error.Error",
        "$.error.Cause",
    ):
        assert part in msg
    # Every catch-all of a task leads, through one Pass naming the step, to the notice;
    # through a Choice first where some errors are expected (a 412 from a copy or delete of
    # an upload a later one replaced, a lock holder too old to describe), whose Default is
    # that Pass.
    for name, state in ASL["States"].items():
        if state["Type"] not in ("Task", "Map") or name in (
                "NotifyFailure", "ReleaseClaim", "ReleaseKeyLock", "AbortArchiveUpload"):
            continue
        (catch_all,) = [c for c in state["Catch"] if "States.ALL" in c["ErrorEquals"]]
        marker = ASL["States"][catch_all["Next"]]
        if marker["Type"] == "Choice":
            marker = ASL["States"][marker["Default"]]
        assert catch_all["ResultPath"] == "$.error"
        assert (marker["Type"], marker["Result"], marker["ResultPath"]) == (
            "Pass",
            name,
            "$.failed_step",
        )
        # A copy in parts first aborts its upload (AbortArchiveUpload, then the claim).
        assert marker["Next"] in ("ReleaseClaim", "EndInFailure", "AbortArchiveUpload")


def risky_paths(asl_text: str) -> list[str]:
    """Return JSONPath uses that moto 5.2.5 gets wrong: indexed steps and && filters."""
    return re.findall(r"\$[\w.$]*\[\d+\]\.\w+", asl_text) + re.findall(r"\?\([^)]*&&", asl_text)


def test_no_jsonpath_that_the_local_emulator_mishandles() -> None:
    assert risky_paths(ASL_TEXT) == []
    assert risky_paths('{"a.$": "$.Item.dates[0].S"}') == ["$.Item.dates[0].S"]


def _compared_variables(rule: dict[str, Any]) -> list[str]:
    """The paths a Choice rule compares (IsPresent excluded), through And, Or and Not."""
    nested = rule.get("And", []) + rule.get("Or", []) + ([rule["Not"]] if "Not" in rule else [])
    if nested:
        return [v for r in nested for v in _compared_variables(r)]
    return [] if "IsPresent" in rule else [rule["Variable"]]


def test_a_caught_errors_cause_is_compared_only_once_known_present() -> None:
    # A comparison on a missing field fails the execution with States.Runtime, past every
    # Catch and without a notice; a caught error need not carry a Cause.
    checked = 0
    for name, state in ASL["States"].items():
        guarded = False
        for rule in state.get("Choices", []):
            if rule.get("Variable") == "$.error.Cause" and rule.get("IsPresent") is False:
                guarded = True
            if "$.error.Cause" in _compared_variables(rule):
                assert guarded, name
                checked += 1
    assert checked == 6


def test_notices_after_the_verdict_name_the_file_by_its_decoded_key() -> None:
    # They named it as the event had it, URL-encoded (input/my+orders.csv, caf%C3%A9.csv),
    # which is no object's name. Only a pipeline failure may come before the verdict.
    messages = {name: state["Parameters"]["Message.$"] for name, state in ASL["States"].items()
                if state.get("Resource") == "arn:aws:states:::sns:publish"}
    assert len(messages) == 5
    for name, message in messages.items():
        file_arg = message.split("$$.Execution.Id, $.bucket, ", 1)[1].split(",", 1)[0]
        want = "$.key" if name == "NotifyFailure" else "$.validation.Item.decoded_key.S"
        assert file_arg == want, name


def test_sdk_results_with_datetimes_are_never_kept_whole() -> None:
    for name, state in ASL["States"].items():
        if state.get("Resource", "").startswith("arn:aws:states:::aws-sdk:s3:"):
            assert "ResultSelector" in state or state.get("ResultPath", "") is None, name


# ----------------------------------------------------------------- deploy scripts


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an orchestration script with bash and return the finished process."""
    return subprocess.run(
        ["bash", str(ORCH / name), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_deploy_dry_run_prints_every_command_and_runs_none() -> None:
    proc = run_script(
        "deploy.sh",
        "--dry-run",
        "--subnets",
        "subnet-0a,subnet-0b",
        "--security-groups",
        "sg-01",
        "--region",
        "eu-west-1",
        "--account",
        "123456789012",
        "--tag",
        "t1",
        "--prefix",
        "kpis",
        "--param",
        "CategoriesS3Uri=s3://kpis-cleaned/config/products.csv",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(line.startswith("+ ") for line in lines)
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kpis:t1"
    assert [line.split()[1:3] for line in lines] == [
        ["aws", "ecr"],
        ["aws", "ecr"],
        ["docker", "build"],
        ["docker", "push"],
        ["aws", "cloudformation"],
        ["aws", "cloudformation"],
    ]
    assert "docker login --username AWS --password-stdin 123456789012.dkr.ecr" in lines[1]
    assert f"-f {ROOT}/containers/Dockerfile -t {image} {ROOT}" in lines[2]
    # The image is built for the tasks' CPU, whatever the machine that builds it.
    arches = {
        t["Properties"]["RuntimePlatform"]["CpuArchitecture"]
        for t in resources(TEMPLATE, "AWS::ECS::TaskDefinition").values()
    }
    assert arches == {"X86_64"} and "docker build --platform linux/amd64 " in lines[2]
    deploy = lines[4]
    for part in (
        "deploy",
        "--stack-name order-kpis",
        "CAPABILITY_IAM",
        f"ImageUri={image}",
        r"SubnetIds=subnet-0a\,subnet-0b",
        "SecurityGroupIds=sg-01",
        "NamePrefix=kpis",
        f"--template-file {ORCH}/template.yaml",
        "CategoriesS3Uri=s3://kpis-cleaned/config/products.csv",
    ):
        assert part in deploy


def test_deploy_refuses_missing_or_malformed_arguments() -> None:
    proc = run_script("deploy.sh", "--dry-run", "--security-groups", "sg-01")
    assert proc.returncode == 2
    assert "missing --subnets" in proc.stderr and proc.stdout == ""
    proc = run_script(
        "deploy.sh",
        "--dry-run",
        "--subnets",
        "subnet-0a, subnet-0b",
        "--security-groups",
        "sg-01",
        "--region",
        "r",
        "--account",
        "1",
    )
    assert proc.returncode == 2 and "bad --subnets" in proc.stderr
    assert run_script("deploy.sh", "--help").stdout.startswith("Usage:")


def test_undeploy_dry_run_prints_the_deletion_and_needs_a_region() -> None:
    proc = run_script(
        "undeploy.sh",
        "--dry-run",
        "--region",
        "eu-west-1",
        "--empty-buckets",
        "--account",
        "123456789012",
    )
    assert proc.returncode == 0, proc.stderr
    rm = "+ aws s3 rm --region eu-west-1 --recursive s3://order-kpis"
    cfn = "+ aws cloudformation"
    cleaned = "s3://order-kpis-cleaned-123456789012-eu-west-1"
    assert proc.stdout.splitlines() == [
        f"{rm}-input-123456789012-eu-west-1",
        # versioned: a recursive rm would only add delete markers, and the stack's
        # deletion would then fail on a bucket that is not empty
        f"+ delete every version and delete marker of {cleaned} "
        "(list-object-versions, delete-objects, 1000 at a time)",
        f"{cfn} delete-stack --region eu-west-1 --stack-name order-kpis",
        f"{cfn} wait stack-delete-complete --region eu-west-1 --stack-name order-kpis",
    ]
    proc = run_script("undeploy.sh", "--dry-run")
    assert proc.returncode == 2 and "missing --region" in proc.stderr


@pytest.mark.parametrize("name", ["deploy.sh", "undeploy.sh"])
def test_scripts_are_strict_bash(name: str) -> None:
    text = (ORCH / name).read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert subprocess.run(["bash", "-n", str(ORCH / name)], check=False).returncode == 0


# Names that must be unique in an account and region; a second stack (staging beside
# production) differs from the first only by NamePrefix.
_ACCOUNT_WIDE_NAMES = (
    "BucketName", "TableName", "TopicName", "LogGroupName", "ClusterName", "StateMachineName",
    "AlarmName", "QueueName", "DashboardName", "Name",
)


def test_every_account_wide_name_holds_the_name_prefix() -> None:
    named = 0
    for logical_id, resource in TEMPLATE["Resources"].items():
        for prop in _ACCOUNT_WIDE_NAMES:
            value = resource.get("Properties", {}).get(prop)
            if value is None:
                continue
            named += 1
            text = json.dumps(value)
            assert "${NamePrefix}" in text or value == {"Ref": "NamePrefix"}, (logical_id, value)
    assert named >= 15
