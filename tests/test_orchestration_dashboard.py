"""Static checks of the CloudWatch dashboard in orchestration/template.yaml (no network)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from engine.containers_support import METRIC_UNITS, METRICS_NAMESPACE

# cfn-lint runs on the whole template, dashboard included, in test_orchestration_static.
from tests.test_orchestration_static import TEMPLATE, resources

PSEUDO = {"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


def dashboards(tpl: dict[str, Any] = TEMPLATE) -> dict[str, dict[str, Any]]:
    return resources(tpl, "AWS::CloudWatch::Dashboard")


def substituted(body: Any, tpl: dict[str, Any] = TEMPLATE) -> str:
    """Return a one-argument ``Fn::Sub`` body with every ``${...}`` replaced by a dummy value."""
    assert isinstance(body, dict) and set(body) == {"Fn::Sub"}, "DashboardBody must be Fn::Sub"
    text = body["Fn::Sub"]
    assert isinstance(text, str), "one-argument Fn::Sub only"
    names = set(tpl["Resources"]) | set(tpl.get("Parameters", {}))

    def dummy(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in PSEUDO:
            return PSEUDO[name]
        assert name.split(".")[0] in names, f"${{{name}}} names nothing in the stack"
        return f"dummy-{name.replace('.', '-')}"

    return re.sub(r"\$\{([^}!]+)\}", dummy, text)


def metrics_of(body: dict[str, Any]) -> list[list[Any]]:
    return [m for w in body["widgets"] for m in w.get("properties", {}).get("metrics", [])]


@pytest.fixture(scope="module")
def body() -> dict[str, Any]:
    (dashboard,) = dashboards().values()
    return json.loads(substituted(dashboard["Properties"]["DashboardBody"]))


def test_one_dashboard_whose_body_parses_after_substitution(body: dict[str, Any]) -> None:
    assert body["widgets"] and all(w["type"] == "metric" for w in body["widgets"])
    for widget in body["widgets"]:
        assert widget["properties"]["region"] == "eu-west-1"
        assert widget["properties"]["title"]


def test_dashboard_shows_the_per_file_state_machine_executions(body: dict[str, Any]) -> None:
    shown = {m[1] for m in metrics_of(body) if m[0] == "AWS/States"}
    assert {"ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed"} <= shown
    for m in metrics_of(body):
        if m[0] == "AWS/States":
            assert m[2:4] == ["StateMachineArn", "dummy-StateMachine"]


def test_dashboard_shows_every_emf_metric_the_containers_print(body: dict[str, Any]) -> None:
    ours = [m for m in metrics_of(body) if m[0] == METRICS_NAMESPACE]
    assert {m[1] for m in ours} == set(METRIC_UNITS)
    assert {m[3] for m in ours} == {"validator", "transformer"}
    assert all(m[2] == "Job" for m in ours)


def test_dashboard_shows_the_dlq_depth(body: dict[str, Any]) -> None:
    sqs = [m for m in metrics_of(body) if m[0] == "AWS/SQS"]
    assert sqs == [
        [
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            "dummy-DeadLetterQueue-QueueName",
            sqs[0][4],
        ]
    ]


def test_a_body_that_is_not_json_fails_the_check() -> None:
    broken = {"Fn::Sub": '{"widgets": [ ${AWS::Region} ]'}
    with pytest.raises(json.JSONDecodeError):
        json.loads(substituted(broken))
    with pytest.raises(AssertionError, match="names nothing"):
        substituted({"Fn::Sub": '{"a": "${NoSuchThing}"}'})

