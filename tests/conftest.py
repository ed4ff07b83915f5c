"""Shared fixtures. Keep this file a list of imports; fixtures live in modules by topic."""

from tests.aws.fixtures import (  # noqa: F401
    aws_dummy_env,
    aws_local_env,
    dynamodb_client,
    dynamodb_env,
    dynamodb_local_endpoint,
    moto_server_endpoint,
    s3_env,
)
from tests.aws.stack import stack  # noqa: F401
