"""Shared fixtures. Keep this file a list of imports; fixtures live in modules by topic."""

from __future__ import annotations

from pathlib import Path

import pytest

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

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
