"""The adaptations that let moto 5.2.5 run the real template and workflow end to end.

Each function below covers one gap of moto==5.2.5 (listed in its docstring) and nothing else.
They patch moto's in-process backends, so they work for a ``ThreadedMotoServer`` in this process.
They are pinned: ``check_moto_version`` refuses any other moto, because each patch reaches into
moto's internals and a newer moto may have fixed (or moved) what it patches. ``remove_all``
undoes every patch (tests use it).

What is NOT adapted (moto ignores it, which is harmless locally): IAM policies, bucket and queue
policies, CloudWatch alarms, the rule's retry policy and dead-letter queue.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import importlib
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus

log = logging.getLogger(__name__)

MOTO_VERSION = "5.2.5"

_originals: list[tuple[Any, str, Any]] = []
_lock = threading.Lock()


class MotoVersionError(RuntimeError):
    """The installed moto is not the one these adaptations were written and checked against."""


def check_moto_version() -> str:
    """Return moto's version; raise ``MotoVersionError`` unless it is exactly 5.2.5."""
    import moto

    found = str(getattr(moto, "__version__", "unknown"))
    if found != MOTO_VERSION:
        raise MotoVersionError(
            f"the local AWS needs moto=={MOTO_VERSION}, found moto {found}. Its adaptations patch"
            f" moto internals checked only against {MOTO_VERSION}.\n"
            f"Hint: pip install 'moto[server]=={MOTO_VERSION}' (the dev extra pins it)."
        )
    return found


def _patch(owner: Any, name: str, new: Any) -> None:
    with _lock:
        _originals.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, new)


_MISSING = object()
_SERVICES = "moto.stepfunctions.parser.asl.component.state.exec.state_task.service."


def _mod(name: str) -> Any:
    """Return module ``name`` untyped (moto's internals are not part of its typed API)."""
    return importlib.import_module(name)


def remove_all() -> None:
    """Undo every patch installed by this module, newest first."""
    with _lock:
        while _originals:
            owner, name, old = _originals.pop()
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
        _RUNNER.clear()
        _MAP_RESULTS.clear()
        _MAP_RUNS.clear()


def installed() -> list[str]:
    """Return ``Owner.name`` of every patch in place (for logs and tests)."""
    return [f"{getattr(o, '__name__', o)}.{n}" for o, n, _ in _originals]


# -- (a) state machines created by the stack ------------------------------------------------


def stack_state_machine_definition(arn: str) -> tuple[str, str, str]:
    """Return (name, definition, role ARN) of a state machine that CloudFormation created.

    Gap (moto 5.2.5): a state machine created by a stack lands in ``stepfunctions_backends``,
    but with execution enabled the API reads ``stepfunctions_parser_backends`` and answers
    StateMachineDoesNotExist. The definition here is the template's DefinitionString after
    moto resolved the one-argument ``Fn::Sub``; ``register_state_machine`` re-creates it.
    """
    from moto.stepfunctions.models import stepfunctions_backends

    _, _, _, region, account, _ = arn.split(":", 5)
    sm = stepfunctions_backends[account][region].describe_state_machine(arn)
    return str(sm.name), str(sm.definition), str(sm.roleArn)


def register_state_machine(sfn: Any, stack_arn: str) -> str:
    """Create the stack's state machine where executions look for it; return its ARN.

    Uses the public API (``sfn`` is a boto3 Step Functions client of the local server, with
    execution enabled), so the parser validates the definition as on AWS. Idempotent.
    """
    name, definition, role = stack_state_machine_definition(stack_arn)
    existing = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    if name in existing:
        return str(existing[name])
    arn = sfn.create_state_machine(name=name, definition=definition, roleArn=role,
                                   type="STANDARD")["stateMachineArn"]
    if arn != stack_arn:  # the stack's output must name the machine that runs
        raise RuntimeError(f"re-created state machine has ARN {arn}, the stack says {stack_arn}")
    return str(arn)


# -- (b) the bucket's EventBridge notifications ---------------------------------------------


def enable_bucket_eventbridge(s3: Any, bucket: str) -> None:
    """Turn on EventBridge notifications for ``bucket``.

    Gap (moto 5.2.5): CloudFormation ignores a bucket's
    ``NotificationConfiguration.EventBridgeConfiguration``; the S3 API call works.
    """
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"EventBridgeConfiguration": {}},
    )


# -- (c) S3 event shape and a Step Functions target for rules --------------------------------

_sequencer = itertools.count(1)


def aws_shaped_s3_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of moto's S3 ``Object Created`` event in the shape AWS delivers.

    Gaps (moto 5.2.5): the object key is not URL-encoded (AWS encodes it like ``quote_plus``,
    keeping ``/``); the etag field is ``eTag`` (AWS: ``etag``); ``time`` is a Unix number
    (AWS: ISO 8601); ``id`` and ``sequencer`` are constants (AWS: unique, increasing).
    Events from other sources are returned unchanged (copied).
    """
    out = copy.deepcopy(dict(event))
    if out.get("source") != "aws.s3":
        return out
    obj = out.get("detail", {}).get("object")
    if isinstance(obj, dict):
        if "key" in obj:
            obj["key"] = quote_plus(str(obj["key"]), safe="/")
        if "eTag" in obj:
            obj["etag"] = str(obj.pop("eTag")).strip('"')
        obj["sequencer"] = f"{next(_sequencer):016X}"
    if isinstance(out.get("time"), int | float):
        out["time"] = dt.datetime.fromtimestamp(float(out["time"]), dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    out["id"] = str(uuid.uuid4())
    return out


def apply_input_transformer(transformer: Mapping[str, Any] | None, event: Mapping[str, Any]) -> str:
    """Return the target input EventBridge builds from ``event`` (AWS semantics).

    A placeholder inside quotes gets the value's text; outside quotes it gets the value as JSON
    (strings quoted), as AWS does. (moto's own parser inserts strings unquoted, which makes the
    contract's template ``{"bucket": <bucket>, ...}`` invalid JSON.) Without a transformer the
    whole event is the input.
    """
    if not transformer:
        return json.dumps(event)
    parse = _mod("jsonpath_ng").parse
    values: dict[str, Any] = {}
    for name, path in (transformer.get("InputPathsMap") or {}).items():
        matches = parse(path).find(event)
        values[name] = matches[0].value if matches else None
    template = str(transformer.get("InputTemplate", ""))
    out, in_string, i = [], False, 0
    while i < len(template):
        ch = template[i]
        if ch == "<":
            end = template.find(">", i)
            name = template[i + 1:end] if end > 0 else ""
            if name in values:
                value = values[name]
                if in_string:  # inside "...": the value's text, escaped for JSON
                    text = value if isinstance(value, str) else json.dumps(value)
                    out.append(json.dumps(text)[1:-1])
                else:
                    out.append(json.dumps(value))
                i = end + 1
                continue
        if ch == "\\" and in_string:
            out.append(template[i:i + 2])
            i += 2
            continue
        if ch == '"':
            in_string = not in_string
        out.append(ch)
        i += 1
    return "".join(out)


def execution_name() -> str:
    """Return a fresh execution name (moto names an unnamed execution ``None``, then clashes)."""
    return f"evb-{uuid.uuid4()}"


def _start_execution(target: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    from moto.stepfunctions.responses import get_backend

    _, _, _, region, account, _ = str(target["Arn"]).split(":", 5)
    payload = apply_input_transformer(target.get("InputTransformer"), event)
    json.loads(payload)  # a broken template must fail loudly here, not inside the workflow
    ex = get_backend(account, region).start_execution(
        str(target["Arn"]), name=execution_name(), execution_input=payload)
    log.info("rule target started %s", getattr(ex, "execution_arn", ex))


def install_rule_state_machine_targets() -> None:
    """Make EventBridge rules start Step Functions executions for state-machine targets.

    Gaps (moto 5.2.5): a rule target whose ARN is a state machine raises NotImplementedError
    (swallowed by S3, and it stops the rule's later targets); S3 events skip the input
    transformer. Here every event is first put in AWS's shape (``aws_shaped_s3_event``); each
    state-machine target starts an execution with a name and the input transformer's output;
    the remaining targets go through moto's own code.
    """
    from moto.events.models import Rule

    original: Any = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        event = aws_shaped_s3_event(original_event)
        sfn = [t for t in self.targets if str(t.get("Arn", "")).split(":")[2:3] == ["states"]]
        if not sfn:
            original(self, event, transform_input)
            return
        if self.event_pattern.matches_event(event):
            for target in sfn:
                try:
                    _start_execution(target, event)
                except Exception:  # AWS would retry, then use the DLQ; say it loudly here
                    log.exception("could not start the workflow for rule %s", self.name)
        rest = copy.copy(self)
        rest.targets = [t for t in self.targets if t not in sfn]
        if rest.targets:
            original(rest, event, transform_input)
        return None

    _patch(Rule, "send_to_targets", send_to_targets)


# -- (d) request/response casing of the ECS optimised integration ----------------------------


def _operation_model(service: str, snake_action: str) -> Any:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    for op in model.operation_names:
        if xform_name(op) == snake_action:
            return model.operation_model(op)
    raise KeyError(f"{service} has no operation {snake_action}")


def install_ecs_casing() -> None:
    """Convert the ECS integration's PascalCase parameters to boto3's casing, and back.

    Gap (moto 5.2.5): ``_normalise_parameters``/``_normalise_response`` of the service
    integrations are no-ops, so ``ecs:runTask(.sync)`` passes ``Cluster`` etc. to boto3 and
    fails with ``States.Runtime`` (KeyError ``Cluster``), and the ``.sync`` poller reads
    ``Tasks`` from a response that has ``tasks``. Fixed upstream after 5.2.5 (moto issue
    10076). Patched on the ECS integration only (sns, sqs, dynamodb, aws-sdk work as they are),
    with moto's own converters (``_to_boto_request``/``_from_boto_response``).
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_ecs as ecs_mod,
    )

    _install_boto_casing(ecs_mod.StateTaskServiceEcs, keep_moto_normalising=False)


def _install_boto_casing(
    cls: Any,
    *,
    keep_moto_normalising: bool,
    fix_response: Callable[[dict[str, Any]], None] | None = None,
    only_service: str | None = None,
) -> None:
    """Make a service integration convert parameters to boto3's casing and responses back.

    Uses moto's own converters (``_to_boto_request``/``_from_boto_response``) with botocore's
    shapes; ``keep_moto_normalising`` runs moto's own normalisation first. ``only_service``:
    convert the calls to that boto3 service only (for the generic AWS SDK integration).
    """
    params_original: Any = cls._normalise_parameters
    response_original: Any = cls._normalise_response

    def _normalise_parameters(self: Any, parameters: dict[str, Any],
                              boto_service_name: str | None = None,
                              service_action_name: str | None = None) -> None:
        if keep_moto_normalising:
            params_original(self, parameters, boto_service_name, service_action_name)
        service = self._get_boto_service_name(boto_service_name)
        if only_service not in (None, service):
            return
        op = _operation_model(service, self._get_boto_service_action(service_action_name))
        if op.input_shape is not None:
            self._to_boto_request(parameters, op.input_shape)

    def _normalise_response(self: Any, response: Any, boto_service_name: str | None = None,
                            service_action_name: str | None = None) -> None:
        if keep_moto_normalising:
            response_original(self, response, boto_service_name, service_action_name)
        service = self._get_boto_service_name(boto_service_name)
        if only_service not in (None, service):
            return
        op = _operation_model(service, self._get_boto_service_action(service_action_name))
        if op.output_shape is not None:
            self._from_boto_response(response, op.output_shape)
        if fix_response is not None:
            fix_response(response)

    _patch(cls, "_normalise_parameters", _normalise_parameters)
    _patch(cls, "_normalise_response", _normalise_response)


def install_ecs_sync_exit_code() -> None:
    """Fail ``ecs:runTask.sync`` with ``States.TaskFailed`` when a container exits non-zero.

    Gap (moto 5.2.5): the ``.sync`` poller returns the STOPPED task as a success whatever its
    containers' exit codes; AWS fails the state with ``States.TaskFailed`` and the task
    description as the cause.
    """
    api = _mod("moto.stepfunctions.parser.api")
    errors = "moto.stepfunctions.parser.asl.component.common.error_name."
    failure = _mod(errors + "failure_event")
    states_error_name = _mod(errors + "states_error_name").StatesErrorName
    error_type = _mod(errors + "states_error_name_type").StatesErrorNameType
    event_details = _mod("moto.stepfunctions.parser.asl.eval.event.event_detail").EventDetails
    ecs_mod = _mod(_SERVICES + "state_task_service_ecs")

    cls = ecs_mod.StateTaskServiceEcs
    original: Any = cls._build_sync_resolver

    def _build_sync_resolver(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        inner = original(self, env, *args, **kwargs)

        def resolver() -> Any:
            task = inner()
            if not task:
                return task
            codes = [c.get("ExitCode") for c in task.get("Containers", [])]
            if all(code in (0, None) for code in codes):
                return task
            cause = json.dumps(task, default=str)
            error = error_type.StatesTaskFailed.to_name()
            raise failure.FailureEventException(failure_event=failure.FailureEvent(
                env=env,
                error_name=states_error_name(typ=error_type.StatesTaskFailed),
                event_type=api.HistoryEventType.TaskFailed,
                event_details=event_details(taskFailedEventDetails=api.TaskFailedEventDetails(
                    error=error, cause=cause,
                    resource=self._get_sfn_resource(),
                    resourceType=self._get_sfn_resource_type(),
                )),
            ))

        return resolver

    _patch(cls, "_build_sync_resolver", _build_sync_resolver)


# -- (f) aws-sdk:s3 copy source and timestamps ---------------------------------------------


def _aws_sdk_class() -> Any:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as sdk_mod,
    )

    return sdk_mod.StateTaskServiceAwsSdk


def install_aws_sdk_s3_copy_source() -> None:
    """Pass ``aws-sdk:s3:copyObject``'s ``CopySource`` to boto3 decoded.

    Gap (moto 5.2.5): on AWS, ``CopySource`` is sent as given, URL-encoded (the workflow gives
    the key exactly as the event delivered it: ``input/my+file.csv``), and S3 decodes it. moto's
    interpreter calls boto3, which URL-encodes a string ``CopySource`` again, so S3 looks for
    the literal key ``input/my+file.csv``. Decoding it first (``+`` is a space, as in the event)
    makes boto3's encoding the only one, as on AWS.
    """
    from urllib.parse import unquote_plus

    cls = _aws_sdk_class()
    original = cls._eval_service_task

    def _eval_service_task(self: Any, env: Any, resource_runtime_part: Any,
                           normalised_parameters: dict[str, Any], *args: Any,
                           **kwargs: Any) -> Any:
        source = normalised_parameters.get("CopySource")
        if (self._get_boto_service_name() == "s3" and isinstance(source, str)
                and self._get_boto_service_action() in ("copy_object", "upload_part_copy")):
            normalised_parameters = {**normalised_parameters, "CopySource": unquote_plus(source)}
        return original(self, env, resource_runtime_part, normalised_parameters, *args, **kwargs)

    _patch(cls, "_eval_service_task", _eval_service_task)


def install_aws_sdk_sfn_casing() -> None:
    """Convert ``aws-sdk:sfn:*`` parameters to boto3's casing, and responses back.

    Gap (moto 5.2.5): its generic AWS SDK integration hands ``ExecutionArn`` to boto3, whose
    Step Functions client names it ``executionArn``, and returns ``status`` where AWS gives
    ``Status``. The workflow's ``aws-sdk:sfn:describeExecution`` (is the execution holding a
    key's lock still running?) needs both. Other services' calls are left as they are.
    """
    _install_boto_casing(_aws_sdk_class(), keep_moto_normalising=True,
                         fix_response=_dates_as_text, only_service="stepfunctions")


def install_s3_one_event_per_multipart_upload() -> None:
    """Send one ``Object Created`` event for an upload in parts, as AWS does.

    Gap (moto 5.2.5): ``complete_multipart_upload`` stores the object through ``put_object``,
    which sends an ``ObjectCreated:Put`` event, then sends ``CompleteMultipartUpload``: two
    events, so two executions, for one upload (the ``aws s3 cp`` of a file of 8 MB or more);
    the second found its upload handled and sent a false "superseded" notice.
    """
    from moto.s3.models import S3Backend

    completing = threading.local()
    complete, put = S3Backend.complete_multipart_upload, S3Backend.put_object

    def complete_multipart_upload(self: Any, *args: Any, **kwargs: Any) -> Any:
        completing.active = True
        try:
            return complete(self, *args, **kwargs)
        finally:
            completing.active = False

    def put_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(completing, "active", False):
            kwargs.setdefault("disable_notification", True)
        return put(self, *args, **kwargs)

    _patch(S3Backend, "complete_multipart_upload", complete_multipart_upload)
    _patch(S3Backend, "put_object", put_object)


def install_s3_copy_source_if_match() -> None:
    """Answer ``CopyObject`` 412 when the source is not the version ``CopySourceIfMatch`` names.

    Gap (moto 5.2.5): its ``CopyObject`` honours ``x-amz-copy-source-if-none-match`` only and
    copies whatever the key holds. The workflow archives an upload with
    ``CopySourceIfMatch`` its etag, so that a later upload of the key is never archived (and
    then deleted) in its place.
    """
    from urllib.parse import parse_qs, unquote, urlparse

    s3_responses = _mod("moto.s3.responses")
    precondition_failed = _mod("moto.s3.exceptions").PreconditionFailed
    cls = s3_responses.S3Response
    original = cls.copy_object

    def copy_object(self: Any) -> Any:
        wanted = self.headers.get("x-amz-copy-source-if-match")
        if wanted:
            source = self.headers.get("x-amz-copy-source")
            if isinstance(source, bytes):
                source = source.decode("utf-8")
            parsed = urlparse(source)
            bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
            version = parse_qs(parsed.query).get("versionId", [None])[0]
            found = self.backend.get_object(bucket, key, version_id=version)
            if found is not None and found.etag.strip('"') != wanted.strip('"'):
                raise precondition_failed("x-amz-copy-source-If-Match")
        return original(self)

    _patch(cls, "copy_object", copy_object)


def _one_call_at_a_time(cls: Any, names: Sequence[str]) -> None:
    """Make the backend methods ``names`` of ``cls`` run one at a time, under one lock."""
    lock = threading.RLock()
    for name in names:
        original = getattr(cls, name, None)
        if original is None:
            continue

        def locked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        _patch(cls, name, functools.wraps(original)(locked))


DYNAMODB_CALLS = ("put_item", "update_item", "delete_item", "transact_write_items",
                  "batch_write_item", "get_item", "batch_get_item", "transact_get_items",
                  "query", "scan")


def install_dynamodb_one_call_at_a_time() -> None:
    """Run moto's DynamoDB item calls one at a time, as DynamoDB applies each atomically.

    Gaps (moto 5.2.5): ``UpdateItem`` reads the item, copies it, creates it if missing and
    stores the result, in Python, while the server answers requests on many threads; two
    ``ADD`` calls that meet there can both return the same number. The lake's sequence
    numbers and the per-date tickets are such counters (two sources with one ``_seq`` would
    both count in a shared date), so every write goes through one lock here. Reads too:
    ``TransactWriteItems`` deep-copies each table it writes (its rollback), while a
    ``GetItem`` or ``Query`` of a missing key adds one to the table's items: "dictionary
    changed size during iteration", a 500, and a transformer publishing a file of 2,000
    dates failed with 107 of them written.
    """
    _one_call_at_a_time(_mod("moto.dynamodb.models").DynamoDBBackend, DYNAMODB_CALLS)


def install_dynamodb_transaction_rollback_by_item() -> None:
    """Let ``TransactWriteItems`` keep, for its rollback, a copy of the items it writes.

    Gap (moto 5.2.5): before every transaction it deep-copies each whole table the
    transaction writes, to put it back on failure. The transformer publishes each date in one
    transaction over both KPI tables and the state table: a file of 2,000 dates took 5.5 min
    to publish and the server grew to 11 GB. Here the copy of a table is the table itself, the
    items the transaction names are copied first, and those are put back if it fails (as
    DynamoDB, it then changes nothing). Install before ``install_dynamodb_one_call_at_a_time``, so
    that the one lock holds around this too.
    """
    models = _mod("moto.dynamodb.models")
    dynamo_type = _mod("moto.dynamodb.models.dynamo_type").DynamoType
    table_class = _mod("moto.dynamodb.models.table").Table
    in_transaction = threading.local()

    class _Copy:
        """``copy`` for moto's module: a table deep-copied inside a transaction is itself."""

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value: Any, *args: Any) -> Any:
            if getattr(in_transaction, "on", False) and isinstance(value, table_class):
                return value
            return copy.deepcopy(value, *args)

    backend = models.DynamoDBBackend
    original = backend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        saved = []
        for entry in transact_items:
            op: Any = next(iter(entry.values()), None)
            if not isinstance(op, dict):
                continue
            table = self.tables.get(op.get("TableName"))
            attrs = (op.get("Key") or op.get("Item") or {}) if table is not None else {}
            if table is None or table.hash_key_attr not in attrs or (
                    table.range_key_attr is not None and table.range_key_attr not in attrs):
                continue
            key = (dynamo_type(attrs[table.hash_key_attr]),
                   None if table.range_key_attr is None
                   else dynamo_type(attrs[table.range_key_attr]))
            saved.append((table, key, copy.deepcopy(table.get_item(*key))))
        in_transaction.on = True
        try:
            return original(self, transact_items)
        except BaseException:
            for table, (hash_key, range_key), item in reversed(saved):
                if item is None:
                    table.delete_item(hash_key, range_key)
                elif range_key is None:
                    table.items[hash_key] = item
                else:
                    table.items[hash_key][range_key] = item
            raise
        finally:
            in_transaction.on = False

    _patch(models, "copy", _Copy())
    _patch(backend, "transact_write_items", functools.wraps(original)(transact_write_items))


def install_sync_retry_with_a_fresh_callback() -> None:
    """Give each attempt of a ``.sync`` task (``runTask.sync``, ``startExecution.sync:2``) a
    callback endpoint of its own.

    Gap (moto 5.2.5): the endpoint is made once when the state is entered and closed
    (``interrupt_all``) when an attempt ends; a ``Retry`` then waited on the closed one, so
    the retried task timed out ~10 ms after it was submitted (``States.Timeout``, no cause)
    while its process ran on: a transformer retried after a failure published for another
    minute after the failure notice.
    """
    service = _mod(_SERVICES + "state_task_service_callback")
    condition = _mod(_SERVICES + "resource").ResourceCondition
    cls = service.StateTaskServiceCallback
    original = cls._eval_integration_pattern

    def _eval_integration_pattern(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        context = env.states.context_object
        if (self.resource.condition in (condition.Sync, condition.Sync2)
                and "Task" in context.context_object_data):
            env.callback_pool_manager.add(context.update_task_token())
        return original(self, env, *args, **kwargs)

    _patch(cls, "_eval_integration_pattern",
           functools.wraps(original)(_eval_integration_pattern))


ECS_TASK_CALLS = ("run_task", "start_task", "describe_tasks", "list_tasks", "stop_task")


def install_ecs_one_call_at_a_time() -> None:
    """Run moto's ECS task calls one at a time, as ECS answers each consistently.

    Gap (moto 5.2.5): the backend keeps tasks in dicts that ``DescribeTasks`` iterates while
    ``RunTask``, on another of the server's request threads, adds to them: "dictionary
    changed size during iteration", a 500. The interpreter's ``ecs:runTask.sync`` poll has
    no retries and turns it into ``States.Runtime``: in CI, five executions started at once
    and a rejected file was reported as a pipeline failure. Install after
    ``install_ecs_local_tasks``, so that starting and polling the local process is inside too.
    """
    from moto.ecs.models import EC2ContainerServiceBackend

    _one_call_at_a_time(EC2ContainerServiceBackend, ECS_TASK_CALLS)


def iso_timestamps(value: Any) -> Any:
    """Return ``value`` with every datetime replaced by its ISO 8601 text (nested)."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: iso_timestamps(v) for k, v in value.items()}
    if isinstance(value, list):
        return [iso_timestamps(v) for v in value]
    return value


def install_aws_sdk_timestamps() -> None:
    """Render timestamps in ``aws-sdk:*`` results as text.

    Gap (moto 5.2.5): boto3 returns datetimes (``CopyObjectResult.LastModified``) that the
    interpreter cannot serialise to JSON, so the state fails; AWS returns them as strings.
    """
    cls = _aws_sdk_class()
    original = cls._eval_service_task

    def _eval_service_task(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, env, *args, **kwargs)
        if env.stack:
            env.stack[-1] = iso_timestamps(env.stack[-1])
        return result

    _patch(cls, "_eval_service_task", _eval_service_task)


def install_context_start_time_text() -> None:
    """Give ``$$.Execution.StartTime`` as ISO 8601 text.

    Gap (moto 5.2.5): the context object's ``Execution.StartTime`` is a datetime, so any
    ``States.Format`` that uses it fails with ``States.Runtime`` (not JSON serialisable); on
    AWS it is text like ``2026-11-26T12:00:00.000Z``.
    """
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    original = ExecutionWorker._get_evaluation_environment

    def _get_evaluation_environment(self: Any) -> Any:
        env = original(self)
        execution = env.states.context_object.context_object_data["Execution"]
        start = execution.get("StartTime")
        if isinstance(start, dt.datetime):
            execution["StartTime"] = start.astimezone(dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
        return env

    _patch(ExecutionWorker, "_get_evaluation_environment", _get_evaluation_environment)


# -- (e) ECS tasks as local processes -------------------------------------------------------


@dataclass
class TaskRunner:
    """How RunTask starts a container locally: where, with which endpoint, logging where."""

    endpoint: str = ""
    region: str = "us-east-1"
    root: Path = field(default_factory=Path.cwd)
    log_dir: Path | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def clear(self) -> None:
        """Stop every task still running and forget them all."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.processes.clear()
        self.logs.clear()


_RUNNER = TaskRunner()


def container_command(command: Sequence[str] | None, image: str, root: Path) -> list[str]:
    """Return the local command for a container: ``python x.py`` -> this interpreter, ``root/x.py``.

    The image is not run (no Docker here); the task definition's command names the entrypoint
    inside the image, which is this repository's ``containers/<name>.py``.
    """
    if not command:
        raise ValueError(f"container with image {image!r} has no command; cannot run it locally")
    argv = list(command)
    if Path(argv[0]).name.startswith("python"):
        argv[0] = sys.executable
        if len(argv) > 1 and not Path(argv[1]).is_absolute():
            script = root / argv[1]
            if not script.is_file():
                raise FileNotFoundError(
                    f"{script}: entrypoint of image {image!r} not found. Hint: run from a"
                    " checkout of the repository (containers/ is not in the wheel).")
            argv[1] = str(script)
    return argv


def container_environment(
    definition_env: Sequence[Mapping[str, str]] | None,
    override_env: Sequence[Mapping[str, str]] | None,
    *, endpoint: str, region: str, root: Path, base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the process environment of a local task.

    The task definition's environment, then the overrides (later wins, as on ECS), then the
    local endpoint, dummy credentials and region. Our own AWS_* settings are not inherited.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(("AWS_", "MOTO_"))}
    for item in [*(definition_env or []), *(override_env or [])]:
        env[str(item["name"])] = str(item["value"])
    env.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p),
    })
    return env


def _start_task_process(task: Any, task_definition: Any) -> None:
    runner = _RUNNER
    container = task_definition.container_definitions[0]
    overrides = {o.get("name"): o for o in task.overrides.get("containerOverrides", [])}
    override = overrides.get(container.get("name"), {})
    argv = container_command(override.get("command") or container.get("command"),
                             str(container.get("image")), runner.root)
    env = container_environment(container.get("environment"), override.get("environment"),
                                endpoint=runner.endpoint, region=runner.region, root=runner.root)
    out: Any = subprocess.DEVNULL
    if runner.log_dir is not None:
        runner.log_dir.mkdir(parents=True, exist_ok=True)
        path = runner.log_dir / f"{container.get('name')}-{task.id}.log"
        runner.logs[task.task_arn] = path
        out = path.open("wb")
    log.info("task %s: %s", task.id, " ".join(argv))
    proc = subprocess.Popen(argv, cwd=runner.root, env=env, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if out is not subprocess.DEVNULL:
        out.close()
    runner.processes[task.task_arn] = proc


def _sync_task_status(task: Any) -> None:
    proc = _RUNNER.processes.get(task.task_arn)
    if proc is None:
        return
    code = proc.poll()
    if code is None:
        task.last_status = "RUNNING"
        for c in task.containers:
            c.last_status = "RUNNING"
        return
    task.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.stopped_reason = "Essential container in task exited"
    for c in task.containers:
        c.last_status = "STOPPED"
        c.exitCode = code


def install_ecs_local_tasks(runner: TaskRunner) -> None:
    """Make ECS RunTask start each task's container command as a local subprocess.

    Gap (moto 5.2.5): RunTask runs nothing and DescribeTasks walks RUNNING -> STOPPED one step
    per call with exit code 0. Here RunTask starts ``container_command`` with
    ``container_environment`` (task definition + overrides + local endpoint); DescribeTasks
    reports RUNNING while the process lives, then STOPPED with its exit code on the container,
    so ``.sync`` sees what ECS would report.
    """
    from moto.ecs.models import EC2ContainerServiceBackend

    _RUNNER.endpoint, _RUNNER.region = runner.endpoint, runner.region
    _RUNNER.root, _RUNNER.log_dir = runner.root, runner.log_dir
    run_original = EC2ContainerServiceBackend.run_task
    describe_original = EC2ContainerServiceBackend.describe_tasks

    def run_task(self: Any, cluster_str: str, task_definition_str: str, *args: Any,
                 **kwargs: Any) -> Any:
        tasks = run_original(self, cluster_str, task_definition_str, *args, **kwargs)
        definition = self.describe_task_definition(task_definition_str)
        for task in tasks:
            _start_task_process(task, definition)
            _sync_task_status(task)
        return tasks

    def describe_tasks(self: Any, cluster_str: str, tasks: list[str]) -> Any:
        found = describe_original(self, cluster_str, tasks)
        for task in found:
            _sync_task_status(task)
        return found

    _patch(EC2ContainerServiceBackend, "run_task", run_task)
    _patch(EC2ContainerServiceBackend, "describe_tasks", describe_tasks)


def task_logs() -> dict[str, Path]:
    """Return the log file of every local task started so far, by task ARN."""
    return dict(_RUNNER.logs)


# -- (g) the backfill: Distributed Map over S3 and startExecution.sync:2 ----------------------

_MAP = "moto.stepfunctions.parser.asl.component.state.exec.state_map."
_MAP_RESULTS: dict[str, list[dict[str, Any]]] = {}
_MAP_RUNS: dict[str, Any] = {}


def install_sfn_casing() -> None:
    """Convert the ``states:startExecution`` integration's parameters to boto3's casing, and back.

    Gap (moto 5.2.5): as for ECS (``install_ecs_casing``), ``StateMachineArn``/``Input``/``Name``
    reach boto3 unchanged (``States.Runtime``, KeyError ``StateMachineArn``) and the ``.sync:2``
    poller reads ``ExecutionArn`` from a response that has ``executionArn``. moto's own
    normalisation (``Input`` as JSON text) runs first.
    """
    _install_boto_casing(
        _mod(_SERVICES + "state_task_service_sfn").StateTaskServiceSfn,
        keep_moto_normalising=True,
        fix_response=_dates_as_text,
    )


def _dates_as_text(response: dict[str, Any]) -> None:
    """Step Functions' results give dates (StartDate, StopDate...) as text, boto3 datetimes."""
    for k, v in list(response.items()):
        if isinstance(v, dt.datetime):
            response[k] = v.isoformat()


def s3_listing_items(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Return every object under ``prefix`` as AWS's ``s3:listObjectsV2`` ItemReader gives it.

    AWS pages through the whole listing and gives each object as ``Key``, ``Etag`` (quoted, as
    S3 has it), ``LastModified`` (epoch seconds), ``Size``, ``StorageClass``.
    """
    items: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            modified = o.get("LastModified")
            items.append({
                "Etag": str(o.get("ETag", "")),
                "Key": str(o["Key"]),
                "LastModified": int(modified.timestamp()) if isinstance(modified, dt.datetime)
                else modified,
                "Size": int(o.get("Size", 0)),
                "StorageClass": str(o.get("StorageClass", "STANDARD")),
            })
    return items


def install_item_reader_s3_listing() -> None:
    """Make the Distributed Map's ``s3:listObjectsV2`` ItemReader read the whole listing.

    Gaps (moto 5.2.5): one ``ListObjectsV2`` call only (the first 1,000 keys); an empty prefix
    fails with KeyError ``Contents``; items carry boto3's ``ETag`` and a datetime where AWS
    gives ``Etag`` and epoch seconds (``s3_listing_items``).
    """
    cls = _mod(_MAP + "item_reader.eval.resource_eval_s3").ResourceEvalS3

    def _handle_list_objects_v2(env: Any, resource_runtime_part: Any,
                                state_credentials: Any) -> None:
        s3 = cls._get_s3_client(resource_runtime_part=resource_runtime_part,
                                state_credentials=state_credentials)
        parameters = env.stack.pop()
        env.stack.append(s3_listing_items(s3, str(parameters["Bucket"]),
                                          str(parameters.get("Prefix", ""))))

    _patch(cls, "_handle_list_objects_v2", staticmethod(_handle_list_objects_v2))


def exceeds_tolerance(failed: int, total: int, *, percentage: float, count: int) -> bool:
    """Return whether ``failed`` of ``total`` items breaks the map's tolerated failure threshold.

    AWS: with neither threshold set any failure fails the map run; with one or both set, the run
    fails when a set threshold is exceeded.
    """
    if failed <= 0:
        return False
    if percentage <= 0 and count <= 0:
        return True
    over_pct = percentage > 0 and failed * 100.0 / max(total, 1) > percentage
    over_count = count > 0 and failed > count
    if percentage > 0 and count > 0:
        return over_pct or over_count
    return over_pct if percentage > 0 else over_count


def install_distributed_map_results_and_tolerance() -> None:
    """Honour ``ToleratedFailurePercentage``/``Count`` and write the ResultWriter's result files.

    Gaps (moto 5.2.5): a Distributed Map whose items fail still succeeds (its parser logs that
    the tolerated-failure fields "have no effect"); the ResultWriter writes a manifest whose
    ``ResultFiles`` are always empty and no result files. Here each item's outcome is recorded
    by its map run; the writer puts ``SUCCEEDED_0.json`` / ``FAILED_0.json`` (AWS's names and
    fields: ``Input``, ``Output`` or ``Error``/``Cause``, ``Status``) and lists them in
    ``manifest.json``; after the results are written, a run beyond its threshold fails the state
    with ``States.ExceedToleratedFailureThreshold`` (which a ``Catch`` can handle), as on AWS.
    """
    worker_cls = _mod(_MAP + "iteration.itemprocessor.distributed_item_processor_worker"
                      ).DistributedItemProcessorWorker
    program_state = _mod("moto.stepfunctions.parser.asl.eval.program_state")
    eval_job: Any = worker_cls._eval_job

    def _eval_job(self: Any, env: Any, job: Any) -> None:
        eval_job(self, env, job)
        state = env.program_state()
        record: dict[str, Any] = {"Index": job.job_index,
                                  "Input": json.dumps(job.job_input, default=str)}
        if job.job_output is not None and not isinstance(state, program_state.ProgramError):
            record.update(Status="SUCCEEDED", Output=json.dumps(job.job_output, default=str))
        else:
            error = getattr(state, "error", None) or {}
            record.update(Status="FAILED", Error=str(error.get("error", "States.TaskFailed")),
                          Cause=str(error.get("cause", "")))
        with _lock:
            _MAP_RESULTS.setdefault(self._map_run_record.map_run_arn, []).append(record)

    writer_cls = _mod(_MAP + "result_writer.resource_eval.resource_eval_s3").ResourceEvalS3

    def _handle_put_object(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        parameters = env.stack.pop()
        env.stack.pop()  # the items' outputs: the records above say more
        s3 = writer_cls._get_s3_client(resource_runtime_part=resource_runtime_part,
                                       state_credentials=state_credentials)
        run = env.map_run_record_pool_manager.get_all()[-1]
        bucket, prefix = str(parameters["Bucket"]), str(parameters.get("Prefix", ""))
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        base = f"{prefix}{run.map_run_arn.split(':')[-1]}/"
        with _lock:
            records = sorted(_MAP_RESULTS.pop(run.map_run_arn, []), key=lambda r: r["Index"])
        files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        for status in ("SUCCEEDED", "FAILED"):
            rows = [{k: v for k, v in r.items() if k != "Index"} for r in records
                    if r["Status"] == status]
            if rows:
                body = json.dumps(rows, indent=2).encode()
                s3.put_object(Bucket=bucket, Key=f"{base}{status}_0.json", Body=body)
                files[status].append({"Key": f"{base}{status}_0.json", "Size": len(body)})
        manifest = {"DestinationBucket": bucket, "MapRunArn": run.map_run_arn,
                    "ResultFiles": files}
        s3.put_object(Bucket=bucket, Key=f"{base}manifest.json",
                      Body=json.dumps(manifest, indent=2).encode())
        env.stack.append({"MapRunArn": run.map_run_arn, "ResultWriterDetails": {
            "Bucket": bucket, "Key": f"{base}manifest.json"}})

    map_cls = _mod(_MAP + "state_map").StateMap
    eval_execution: Any = map_cls._eval_execution
    errors = "moto.stepfunctions.parser.asl.component.common.error_name."
    failure = _mod(errors + "failure_event")
    states_error_name = _mod(errors + "states_error_name").StatesErrorName
    error_type = _mod(errors + "states_error_name_type").StatesErrorNameType
    api = _mod("moto.stepfunctions.parser.api")
    event_details = _mod("moto.stepfunctions.parser.asl.eval.event.event_detail").EventDetails
    distributed = _mod(_MAP + "iteration.distributed_iteration_component"
                       ).DistributedIterationComponent

    def _eval_execution(self: Any, env: Any) -> None:
        eval_execution(self, env)
        if not isinstance(self.iteration_component, distributed):
            return
        run = env.map_run_record_pool_manager.get_all()[-1]
        counts = run.item_counter
        failed = counts.failed.get() + counts.timed_out.get() + counts.aborted.get()
        if not exceeds_tolerance(failed, counts.total.get(),
                                 percentage=float(run.tolerated_failure_percentage or 0),
                                 count=int(run.tolerated_failure_count or 0)):
            return
        run.set_stop(status=api.MapRunStatus.FAILED)
        name = error_type.StatesExceedToleratedFailureThreshold
        cause = (f"The specified tolerated failure threshold was exceeded: {failed} of "
                 f"{counts.total.get()} items failed")
        raise failure.FailureEventException(failure_event=failure.FailureEvent(
            env=env, error_name=states_error_name(typ=name),
            event_type=api.HistoryEventType.MapRunFailed,
            event_details=event_details(mapRunFailedEventDetails=api.MapRunFailedEventDetails(
                error=name.to_name(), cause=cause)),
        ))

    _patch(worker_cls, "_eval_job", _eval_job)
    _patch(writer_cls, "_handle_put_object", staticmethod(_handle_put_object))
    _patch(map_cls, "_eval_execution", _eval_execution)


def install_map_run_api() -> None:
    """Answer ``DescribeMapRun``/``ListMapRuns`` whatever other executions have finished.

    Gap (moto 5.2.5): both look the map run up through every execution's live worker, and a
    finished execution has none, so once any execution of the account has ended they fail with
    HTTP 500 (AttributeError). Here map runs are kept by ARN when they start (as AWS keeps them)
    and answered from there.
    """
    worker_cls = _mod(_MAP + "iteration.itemprocessor.distributed_item_processor_worker"
                      ).DistributedItemProcessorWorker
    init: Any = worker_cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        run = self._map_run_record
        with _lock:
            _MAP_RUNS[str(run.map_run_arn)] = run

    backend = _mod("moto.stepfunctions.parser.models").StepFunctionsParserBackend
    describe: Any = backend.describe_map_run
    listing: Any = backend.list_map_runs

    def describe_map_run(self: Any, map_run_arn: str) -> dict[str, Any]:
        run = _MAP_RUNS.get(map_run_arn)
        return dict(run.describe()) if run is not None else dict(describe(self, map_run_arn))

    def list_map_runs(self: Any, execution_arn: str) -> dict[str, Any]:
        runs = [r for r in list(_MAP_RUNS.values()) if r.execution_arn == execution_arn]
        if runs:
            return {"mapRuns": [r.list_item() for r in runs]}
        try:
            return dict(listing(self, execution_arn))
        except AttributeError:  # finished before any item ran: no map run to list
            return {"mapRuns": []}

    _patch(worker_cls, "__init__", __init__)
    _patch(backend, "describe_map_run", describe_map_run)
    _patch(backend, "list_map_runs", list_map_runs)


def aws_string_matches(value: str, pattern: str) -> bool:
    """``StringMatches`` as AWS defines it: ``*`` matches any run of characters, ``\\*`` a
    literal ``*`` (and ``\\\\`` a backslash); every other character, ``?`` and ``[`` too,
    matches itself."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.fullmatch("".join(parts), value, flags=re.DOTALL) is not None


def install_string_matches_as_aws() -> None:
    """Match ``StringMatches`` patterns as AWS does.

    Gap (moto 5.2.5): the interpreter matches with ``fnmatch``, where ``?`` is any one
    character and ``[...]`` a set, so the backfill's check for keys holding a ``?``
    (``"*?*"``) took every key for one; on AWS only ``*`` is a wildcard.
    """
    cls = _mod(
        "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator."
        "implementations.string_operators"
    ).StringMatches

    def _compare(variable: Any, comparison_value: Any) -> bool:
        return isinstance(variable, str) and aws_string_matches(variable, str(comparison_value))

    _patch(cls, "_compare", staticmethod(_compare))


def install_wait_scale(scale: float) -> None:
    """Make Wait states and Retry intervals take ``scale`` times their seconds.

    Not a gap: AWS waits as written, and so does the local AWS by default (``scale`` 1 installs
    nothing). The test suite passes 0.1, so that a run which waits as the workflow says (30 s
    before a validator runs again, 10 s between two looks at a key's lock) takes a tenth of
    that; the states entered, and their order, do not change. Task timeouts are not scaled.
    """
    import time

    if not 0 < scale <= 1:
        raise ValueError(f"wait scale must be in (0, 1], got {scale!r}")
    if scale == 1:
        return
    wait_function = _mod("moto.stepfunctions.parser.asl.component.state.wait.wait_function."
                         "wait_function").WaitFunction

    def _wait_interval(self: Any, env: Any, wait_seconds: float) -> None:
        # moto's own loop counts whole seconds waited: under a second it would never end.
        deadline = time.monotonic() + max(0.0, wait_seconds) * scale
        while env.is_running() and (left := deadline - time.monotonic()) > 0:
            env.program_state_event.wait(left)

    _patch(wait_function, "_wait_interval", _wait_interval)
    retrier = _mod("moto.stepfunctions.parser.asl.component.common.retry.retrier_decl")
    _patch(retrier, "time", SimpleNamespace(sleep=lambda seconds: time.sleep(seconds * scale)))


def install_all(runner: TaskRunner) -> None:
    """Check moto's version and install every runtime patch (idempotent: removes old ones)."""
    check_moto_version()
    remove_all()
    install_rule_state_machine_targets()
    install_ecs_casing()
    install_ecs_sync_exit_code()
    install_ecs_local_tasks(runner)
    install_ecs_one_call_at_a_time()
    install_sync_retry_with_a_fresh_callback()
    install_aws_sdk_s3_copy_source()
    install_aws_sdk_timestamps()
    install_context_start_time_text()
    install_sfn_casing()
    install_item_reader_s3_listing()
    install_distributed_map_results_and_tolerance()
    install_map_run_api()
    install_dynamodb_transaction_rollback_by_item()
    install_dynamodb_one_call_at_a_time()
    install_s3_copy_source_if_match()
    install_s3_one_event_per_multipart_upload()
    install_aws_sdk_sfn_casing()
    install_string_matches_as_aws()
