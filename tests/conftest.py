"""Shared fixtures. Emulator fixtures live in tests/aws/ and are imported here."""

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

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
