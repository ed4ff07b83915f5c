"""An embedded local AWS: moto in server mode on 127.0.0.1 with the real stack deployed on it.

``LocalAws`` starts moto in this process, turns Step Functions execution on, deploys
``orchestration/template.yaml`` through CloudFormation, then applies the adaptations of
``engine.localaws.adaptations`` (each covers one moto 5.2.5 gap). Drive it with any AWS client
pointed at ``endpoint`` (``AWS_ENDPOINT_URL``), dummy credentials and ``region``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.localaws import adaptations

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_NAME = "order-kpis-local"
OUTPUT_KEYS = (
    "InputBucketName", "CleanedBucketName", "CategoryTableName", "OrderTableName",
    "StateTableName", "StateMachineArn", "SuccessTopicArn", "FailureTopicArn",
)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def repo_root() -> Path:
    """Return the checkout that holds ``orchestration/`` and ``containers/`` (beside engine/)."""
    return Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _CfnLoader:
    """A YAML loader that keeps CloudFormation short tags (``!Ref x`` -> ``{"Ref": x}``)."""

    @staticmethod
    def load(text: str) -> dict[str, Any]:
        import yaml

        class Loader(yaml.SafeLoader):  # type: ignore[misc]
            pass

        def tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
            name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
            if isinstance(node, yaml.ScalarNode):
                value: Any = loader.construct_scalar(node)
                if suffix == "GetAtt":
                    value = str(value).split(".", 1)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            return {name: value}

        Loader.add_multi_constructor("!", tag)
        data = yaml.load(text, Loader=Loader)
        return dict(data)


def eventbridge_buckets(template: Mapping[str, Any]) -> list[str]:
    """Return the logical ids of buckets whose template turns EventBridge notifications on."""
    out = []
    for name, res in template.get("Resources", {}).items():
        props = res.get("Properties", {})
        ebc = props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {})
        if res.get("Type") == "AWS::S3::Bucket" and ebc.get("EventBridgeEnabled") in (True,
                                                                                   "true"):
            out.append(name)
    return out


@dataclass
class LocalAws:
    """The embedded local AWS; use as a context manager or call ``start``/``stop``."""

    port: int | None = None
    root: Path = field(default_factory=repo_root)
    prefix: str = "order-kpis"
    log_dir: Path | None = None
    #: Wait states and Retry intervals take this share of their seconds (tests: 0.1).
    wait_scale: float = 1.0
    endpoint: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    inboxes: dict[str, str] = field(default_factory=dict)
    _server: Any = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)
    _tmp: Any = None

    # -- lifecycle
    def __enter__(self) -> LocalAws:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalAws:
        """Start moto, deploy the stack, apply the adaptations; return self."""
        adaptations.check_moto_version()
        from moto.server import ThreadedMotoServer

        self.port = self.port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        if self.log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="order-kpis-localaws-")
            self.log_dir = Path(self._tmp.name)
        # The Step Functions interpreter calls back to localhost:$MOTO_PORT; boto3 in this
        # process needs credentials that never reach a real account.
        self._set_env({"MOTO_PORT": str(self.port), **CREDENTIALS,
                       "AWS_DEFAULT_REGION": REGION})
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        try:
            self._wait_ready()
            # moto keeps its accounts' state per process, not per server: what an earlier
            # LocalAws of this process left (its stack, buckets, tables) would collide with
            # this one's names. A new local stack starts from an empty account.
            self._post("reset", None)
            adaptations.install_all(adaptations.TaskRunner(
                endpoint=self.endpoint, region=REGION, root=self.root, log_dir=self.log_dir))
            adaptations.install_wait_scale(self.wait_scale)
            self._configure_moto({"stepfunctions": {"execute_state_machine": True}})
            self.deploy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop local tasks and the server, undo the patches and the environment."""
        adaptations.remove_all()
        if self._server is not None:
            self._server.stop()
            self._server = None
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved_env.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.log_dir = None

    def _set_env(self, values: Mapping[str, str]) -> None:
        for k, v in values.items():
            self._saved_env.setdefault(k, os.environ.get(k))
            os.environ[k] = v

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not answer on {self.endpoint}") from None
                time.sleep(0.05)

    def _configure_moto(self, config: Mapping[str, Any]) -> None:
        self._post("config", config)

    def _post(self, action: str, body: Mapping[str, Any] | None) -> None:
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/{action}",
            data=json.dumps(body).encode() if body is not None else b"",
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5):
            pass

    # -- clients
    def client(self, service: str) -> Any:
        """Return a boto3 client for ``service`` on this endpoint."""
        import boto3

        return boto3.session.Session().client(
            service, endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing")

    def environment(self) -> dict[str, str]:
        """Return the variables a shell or a process needs to use this endpoint."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION, **CREDENTIALS}

    # -- deployment
    def network(self) -> tuple[str, str]:
        """Create the VPC, subnet and security group the tasks need; return their ids.

        On AWS these exist before the stack (deploy.sh takes them as parameters). moto needs a
        VPC with DNS hostnames or RunTask answers HTTP 500.
        """
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName=f"{self.prefix}-tasks", VpcId=vpc,
                                       Description="order-kpis local tasks")["GroupId"]
        return str(subnet), str(sg)

    def deploy(self) -> dict[str, str]:
        """Deploy the real template, apply the deploy-time adaptations; return the outputs."""
        template_path = self.root / "orchestration" / "template.yaml"
        body = template_path.read_text(encoding="utf-8")
        subnet, sg = self.network()
        cfn = self.client("cloudformation")
        with warnings.catch_warnings():
            # moto warns (and logs) for each resource type it cannot create (bucket and queue
            # policies, alarms); locally they have no effect, and a test run turns warnings
            # into errors inside the server thread.
            warnings.filterwarnings("ignore", message=r"Tried to parse AWS::",
                                    category=UserWarning)
            self._create_stack(cfn, body, subnet, sg)
            stack = self._wait_stack(cfn)
            listed = cfn.describe_stack_resources(StackName=STACK_NAME)["StackResources"]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        resources = {r["LogicalResourceId"]: r for r in listed  # unsupported types: no ids
                     if "LogicalResourceId" in r and "PhysicalResourceId" in r}
        template = _CfnLoader.load(body)
        s3 = self.client("s3")
        for logical in eventbridge_buckets(template):
            adaptations.enable_bucket_eventbridge(s3, resources[logical]["PhysicalResourceId"])
        sfn = self.client("stepfunctions")
        for logical, res in resources.items():
            if res.get("ResourceType") == "AWS::StepFunctions::StateMachine":
                arn = adaptations.register_state_machine(sfn, res["PhysicalResourceId"])
                log.info("state machine %s registered for execution: %s", logical, arn)
        self.inboxes = self.subscribe_inboxes()
        return self.outputs

    def _create_stack(self, cfn: Any, body: str, subnet: str, sg: str) -> None:
        params = {
            "NamePrefix": self.prefix,
            "ImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{self.prefix}:local",
            "SubnetIds": subnet,
            "SecurityGroupIds": sg,
        }
        cfn.create_stack(
            StackName=STACK_NAME, TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])

    def _wait_stack(self, cfn: Any, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stack: dict[str, Any] = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
            status = str(stack["StackStatus"])
            if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
                return stack
            if "FAILED" in status or "ROLLBACK" in status or time.monotonic() > deadline:
                raise RuntimeError(f"stack {STACK_NAME}: {status} {stack.get('StackStatusReason')}")
            time.sleep(0.1)

    def subscribe_inboxes(self) -> dict[str, str]:
        """Subscribe one SQS queue to each topic of the stack; return queue URLs by output key.

        The template leaves subscriptions to the operator (deploy.sh says so); locally the demo
        and the tests read notifications from these queues.
        """
        sqs, sns = self.client("sqs"), self.client("sns")
        out = {}
        for key in ("SuccessTopicArn", "FailureTopicArn"):
            topic = self.outputs[key]
            name = f"{topic.rsplit(':', 1)[1]}-inbox"
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
            out[key] = str(url)
        return out

    # -- reading results
    def notifications(self, key: str, *, wait: float = 0.0) -> list[dict[str, str]]:
        """Return and delete the messages in the inbox of topic ``key`` (Subject, Message)."""
        sqs = self.client("sqs")
        url, out = self.inboxes[key], []
        deadline = time.monotonic() + wait
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                      WaitTimeSeconds=0).get("Messages", [])
            for m in got:
                body = json.loads(m["Body"])
                out.append({"Subject": str(body.get("Subject", "")),
                            "Message": str(body.get("Message", ""))})
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            if not got and (out or time.monotonic() >= deadline):
                return out
            if not got:
                time.sleep(0.1)

    def executions(self) -> list[dict[str, Any]]:
        """Return every execution of the stack's state machine (newest first)."""
        sfn = self.client("stepfunctions")
        return list(sfn.list_executions(
            stateMachineArn=self.outputs["StateMachineArn"])["executions"])

    def wait_executions(self, count: int, *, timeout: float = 60.0,
                        progress: Any = None) -> list[dict[str, Any]]:
        """Wait until ``count`` executions exist and none runs; return them (newest first)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            ex = self.executions()
            running = sum(e["status"] == "RUNNING" for e in ex)
            state = (len(ex), running)
            if progress is not None and state != last:
                progress(f"executions: {len(ex)} started, {running} running")
                last = state
            if len(ex) >= count and running == 0:
                return ex
            if time.monotonic() > deadline:
                raise TimeoutError(f"after {timeout:.0f} s: {len(ex)} of {count} executions "
                                   f"started, {running} still running")
            time.sleep(0.2)


@contextmanager
def local_aws(**kwargs: Any) -> Iterator[LocalAws]:
    """Yield a started ``LocalAws``; stop it on exit."""
    env = LocalAws(**kwargs)
    env.start()
    try:
        yield env
    finally:
        env.stop()
