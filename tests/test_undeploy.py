"""`orchestration/undeploy.sh --empty-buckets` run for real: the AWS CLI against moto server.

The CLI lives in `.local/awscli` (installed by `tests/aws/install_awscli.sh`, which `make test`
runs); it reaches moto only through `AWS_ENDPOINT_URL`, as the script would reach AWS.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import boto3
import pytest

from tests.aws.fixtures import REPO_ROOT

AWS_BIN = REPO_ROOT / ".local" / "awscli" / "bin"
ACCOUNT = "123456789012"
REGION = "us-east-1"


@pytest.fixture
def cli_env(s3_env: str) -> dict[str, str]:
    """The environment the script runs in: moto's endpoint, dummy keys, the test's AWS CLI."""
    if not (AWS_BIN / "aws").is_file():
        pytest.fail(f"no AWS CLI in {AWS_BIN}: run tests/aws/install_awscli.sh (make test does)")
    return {**os.environ, "PATH": f"{AWS_BIN}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def stack(s3_env: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """A stack and the two buckets `undeploy.sh` derives from a prefix of this test's own
    (the input bucket made, with an object; the cleaned one is the test's to make)."""
    prefix = f"undeploy-{request.node.name[-12:].strip('_').lower().replace('_', '-')}"
    cfn = boto3.client("cloudformation")
    cfn.create_stack(
        StackName=prefix, TemplateBody='{"Resources": {"T": {"Type": "AWS::SNS::Topic"}}}'
    )
    input_bucket = f"{prefix}-input-{ACCOUNT}-{REGION}"
    boto3.client("s3").create_bucket(Bucket=input_bucket)
    boto3.client("s3").put_object(Bucket=input_bucket, Key="input/orders 1+x.csv", Body=b"x")
    yield prefix, input_bucket, f"{prefix}-cleaned-{ACCOUNT}-{REGION}"


def undeploy(env: dict[str, str], prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO_ROOT / "orchestration" / "undeploy.sh"), "--region", REGION,
         "--account", ACCOUNT, "--prefix", prefix, "--stack", prefix, "--empty-buckets"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def stack_status(name: str) -> str:
    summaries = boto3.client("cloudformation").list_stacks()["StackSummaries"]
    return next(s["StackStatus"] for s in summaries if s["StackName"] == name)


def versions(bucket: str) -> list[tuple[str, str]]:
    """Every (key, version id) of a bucket, object versions and delete markers alike."""
    pages = boto3.client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket)
    return [
        (v["Key"], v["VersionId"])
        for page in pages
        for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
    ]


def test_undeploy_empties_both_buckets_over_several_pages_and_deletes_the_stack(
    cli_env: dict[str, str], stack: tuple[str, str, str]
) -> None:
    prefix, input_bucket, cleaned = stack
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=cleaned)
    s3.put_bucket_versioning(Bucket=cleaned, VersioningConfiguration={"Status": "Enabled"})
    for i in range(2, 25):
        s3.put_object(Bucket=input_bucket, Key=f"input/orders {i}+x.csv", Body=b"x")
    # Two versions of 650 keys, 250 of them then deleted: 1,550 entries, two listing pages;
    # keys with spaces, '+', '%' and non-ASCII, as file names make them.
    keys = [f"lake/order_date=2025-01-{i % 28 + 1:02d}/jan {i}+%é.parquet" for i in range(650)]
    for key in keys:
        s3.put_object(Bucket=cleaned, Key=key, Body=b"old")
        s3.put_object(Bucket=cleaned, Key=key, Body=b"new")
    for key in keys[:250]:
        s3.delete_object(Bucket=cleaned, Key=key)
    assert len(versions(cleaned)) == 1550

    proc = undeploy(cli_env, prefix)

    assert proc.returncode == 0, proc.stderr
    assert versions(cleaned) == []
    assert s3.list_objects_v2(Bucket=input_bucket)["KeyCount"] == 0
    assert stack_status(prefix) == "DELETE_COMPLETE"
    # the buckets are empty, so the stack's deletion can remove them on AWS
    s3.delete_bucket(Bucket=cleaned)
    s3.delete_bucket(Bucket=input_bucket)


def test_undeploy_stops_when_s3_keeps_a_version_and_leaves_the_stack(
    cli_env: dict[str, str], stack: tuple[str, str, str]
) -> None:
    prefix, _, cleaned = stack
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=cleaned, ObjectLockEnabledForBucket=True)  # versioned, too
    s3.put_object(Bucket=cleaned, Key="free.parquet", Body=b"a")
    held = s3.put_object(Bucket=cleaned, Key="held.parquet", Body=b"a")["VersionId"]
    s3.put_object_legal_hold(
        Bucket=cleaned, Key="held.parquet", VersionId=held, LegalHold={"Status": "ON"}
    )

    proc = undeploy(cli_env, prefix)

    # Not an endless loop over a version S3 will not delete, and not a usage error.
    assert proc.returncode == 1, proc.stderr
    assert "S3 refused to delete a version (held.parquet" in proc.stderr
    assert "Object Lock" in proc.stderr and "--help" not in proc.stderr
    assert versions(cleaned) == [("held.parquet", held)]
    assert stack_status(prefix) == "CREATE_COMPLETE"
    assert "delete-stack" not in proc.stdout
    s3.put_object_legal_hold(
        Bucket=cleaned, Key="held.parquet", VersionId=held, LegalHold={"Status": "OFF"}
    )
    s3.delete_object(Bucket=cleaned, Key="held.parquet", VersionId=held)


def test_a_failing_aws_call_ends_the_script_with_exit_1(cli_env: dict[str, str]) -> None:
    # Under `set -e` the script ended with the AWS CLI's own code (255), which its usage
    # text did not list.
    from tests.aws.fixtures import free_port

    env = {**cli_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
           "AWS_MAX_ATTEMPTS": "1"}
    proc = undeploy(env, "nobody-listens")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Could not connect to the endpoint URL" in proc.stderr
    assert "undeploy.sh: the last command failed (exit 1); nothing after it ran" in proc.stderr
    assert "delete-stack" not in proc.stdout  # it stopped at the input bucket
