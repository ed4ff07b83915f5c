#!/usr/bin/env bash
# Install the AWS CLI (v1, from PyPI) into the git-ignored .local/awscli of the repository, for
# the test that runs orchestration/undeploy.sh against moto. It has a virtualenv of its own:
# awscli pins botocore exactly, and the project's pins of boto3 must not move for it.
# Idempotent: does nothing when the pinned version is already there.
set -euo pipefail
VERSION="${AWSCLI_VERSION:-1.46.3}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PREFIX="$ROOT/.local/awscli"
PYTHON="${PYTHON:-python3}"

if [[ -x "$PREFIX/bin/aws" ]] && [[ "$("$PREFIX/bin/aws" --version 2>&1)" == "aws-cli/$VERSION "* ]]; then
    echo "AWS CLI $VERSION already in $PREFIX"
    exit 0
fi
rm -rf "$PREFIX"
"$PYTHON" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check "awscli==$VERSION"
echo "AWS CLI installed: $("$PREFIX/bin/aws" --version 2>&1)"
