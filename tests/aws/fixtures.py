"""Pytest fixtures that start local AWS emulators: DynamoDB Local (AWS's jar) and moto server.

The emulators are reached the way production code reaches AWS: through the standard
environment (`AWS_ENDPOINT_URL`, dummy keys, region), never through emulator branches in
the library. DynamoDB Local is installed by `tests/aws/install_dynamodb_local.sh` (which
`make test` runs); when its jar is missing the fixture fails instead of skipping, so CI
cannot go green without having run these tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DYNAMODB_LOCAL_DIR = REPO_ROOT / ".local" / "dynamodb"
STARTUP_TIMEOUT_S = 60.0

DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# Variables that would make boto3 look beyond the dummy keys (profiles, SSO, metadata).
_UNSET_AWS_ENV = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_dynamodb_local_jar() -> Path | None:
    """The DynamoDBLocal.jar installed under .local/dynamodb, or $DYNAMODB_LOCAL_JAR."""
    override = os.environ.get("DYNAMODB_LOCAL_JAR")
    if override:
        path = Path(override)
        return path if path.is_file() else None
    if not DYNAMODB_LOCAL_DIR.is_dir():
        return None
    jars = sorted(DYNAMODB_LOCAL_DIR.rglob("DynamoDBLocal.jar"))
    return jars[-1] if jars else None


def _wait_until_answers(url: str, proc: subprocess.Popen[bytes] | None, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"emulator exited with code {proc.returncode} before answering on {url};"
                f" its output:\n{log.read_text(errors='replace')[-4000:]}"
            )
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer (DynamoDB says 400 to a bare GET) means it is up
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"emulator did not answer on {url} within {STARTUP_TIMEOUT_S:.0f} s; see {log}")


@pytest.fixture(scope="session")
def dynamodb_local_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a DynamoDB Local (in-memory) started for this test session."""
    jar = find_dynamodb_local_jar()
    if jar is None:
        pytest.fail(
            f"DynamoDB Local is not installed (no DynamoDBLocal.jar under {DYNAMODB_LOCAL_DIR}).\n"
            "Hint: run `make test` (or `tests/aws/install_dynamodb_local.sh`) once."
        )
    java = shutil.which("java")
    if java is None:
        pytest.fail("DynamoDB Local needs Java 17+ on PATH.\nHint: install a JRE, e.g. openjdk-17.")
    port = free_port()
    log = tmp_path_factory.mktemp("dynamodb-local") / "dynamodb-local.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                java,
                "-Djava.library.path=./DynamoDBLocal_lib",
                "-jar",
                "DynamoDBLocal.jar",
                "-inMemory",
                "-port",
                str(port),
            ],
            cwd=jar.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answers(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def moto_server_endpoint() -> Iterator[str]:
    """The URL of a moto server (any service, used here for S3) started for this session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_dummy_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Dummy credentials and region in the environment; no endpoint, profile or token."""
    for name in _UNSET_AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(DUMMY_AWS_ENV)


@pytest.fixture
def dynamodb_env(
    aws_dummy_env: dict[str, str], dynamodb_local_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """AWS_ENDPOINT_URL pointing at DynamoDB Local; gives the endpoint URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", dynamodb_local_endpoint)
    return dynamodb_local_endpoint


@pytest.fixture
def s3_env(
    aws_dummy_env: dict[str, str], moto_server_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """AWS_ENDPOINT_URL pointing at moto server (S3, and Polars' s3:// I/O); gives the URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_endpoint)
    return moto_server_endpoint


@pytest.fixture
def aws_local_env(
    aws_dummy_env: dict[str, str],
    moto_server_endpoint: str,
    dynamodb_local_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """Both emulators at once: moto for everything, DynamoDB Local for DynamoDB.

    Uses the SDK's standard service-specific variable `AWS_ENDPOINT_URL_DYNAMODB`, which
    boto3 prefers over `AWS_ENDPOINT_URL` for DynamoDB clients only.
    """
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local_endpoint)
    return {"s3": moto_server_endpoint, "dynamodb": dynamodb_local_endpoint}


@pytest.fixture
def dynamodb_client(dynamodb_env: str) -> object:
    """A low-level boto3 DynamoDB client built from the environment alone."""
    import boto3

    return boto3.client("dynamodb")
