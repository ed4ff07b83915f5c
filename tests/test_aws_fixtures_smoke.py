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
