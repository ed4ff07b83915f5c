"""A moto server on 127.0.0.1 for the insight integration tests, and a client spy."""

from __future__ import annotations

import socket
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from engine.insight.query import DynamoTables
from tests.insight_support import oracle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Start a moto server over HTTP and point boto3 at it with dummy credentials."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its backends in-process: start every test from empty tables and buckets.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield endpoint
    finally:
        server.stop()


class NoScanClient:
    """Wraps a boto3 client: counts the operations called and fails on any Scan."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        if name in ("scan", "get_paginator") or name.startswith("scan"):
            raise AssertionError(f"{name} called: the KPI tables must never be scanned")
        attr = getattr(self._client, name)
        if callable(attr):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


def dynamodb() -> Any:
    return boto3.client("dynamodb")


def _create_tables(client: Any, tables: DynamoTables) -> None:
    client.create_table(
        TableName=tables.category_table,
        KeySchema=[
            {"AttributeName": "category", "KeyType": "HASH"},
            {"AttributeName": "order_date", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "category", "AttributeType": "S"},
            {"AttributeName": "order_date", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName=tables.order_table,
        KeySchema=[{"AttributeName": "order_date", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_date", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def wire(row: dict[str, object]) -> dict[str, dict[str, str]]:
    item: dict[str, dict[str, str]] = {}
    for key, value in row.items():
        if isinstance(value, date):
            item[key] = {"S": value.isoformat()}
        elif isinstance(value, str):
            item[key] = {"S": value}
        else:
            item[key] = {"N": str(value)}
    item["source_files"] = {"SS": ["orders_a.csv"]}
    item["computed_at"] = {"S": "2025-07-05T00:00:00Z"}
    return item


@pytest.fixture
def loaded_tables(moto_endpoint: str) -> DynamoTables:
    tables = DynamoTables("CategoryKPIs", "OrderKPIs")
    client = dynamodb()
    _create_tables(client, tables)
    o = oracle()
    for row in o.category:
        client.put_item(TableName=tables.category_table, Item=wire(row))
    for row in o.daily:
        client.put_item(TableName=tables.order_table, Item=wire(row))
    return tables
