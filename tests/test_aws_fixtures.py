import boto3
import pytest


@pytest.mark.integration
def test_ddb(dynamodb_client):
    assert dynamodb_client.list_tables()["TableNames"] == []


@pytest.mark.integration
def test_s3(s3_env):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bkt-one")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["bkt-one"]


@pytest.mark.integration
def test_both(aws_local_env):
    boto3.client("s3").create_bucket(Bucket="bkt-two")
    assert "bkt-two" in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert boto3.client("dynamodb").list_tables()["TableNames"] == []


@pytest.mark.integration
def test_missing_jar_fails_and_says_to_run_make_test(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DYNAMODB_LOCAL_JAR": str(tmp_path / "absent.jar")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_aws_fixtures.py::test_ddb"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout
    assert "DynamoDB Local is not installed" in proc.stdout and "make test" in proc.stdout
    assert "skipped" not in proc.stdout
