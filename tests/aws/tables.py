"""Create the project's DynamoDB tables (key schemas as in docs/dynamodb.md) with unique names."""

from __future__ import annotations

import uuid
from typing import Any

from engine.state import KpiTables


def _create(client: Any, name: str, keys: list[tuple[str, str]]) -> str:
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": attr, "KeyType": "HASH" if i == 0 else "RANGE"}
            for i, (attr, _) in enumerate(keys)
        ],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def create_kpi_tables(client: Any) -> KpiTables:
    """Fresh category, daily and state tables; names end with a random suffix."""
    suffix = uuid.uuid4().hex[:8]
    return KpiTables(
        category=_create(
            client, f"category-kpis-{suffix}", [("category", "S"), ("order_date", "S")]
        ),
        daily=_create(client, f"order-kpis-{suffix}", [("order_date", "S")]),
        state=_create(client, f"state-{suffix}", [("pk", "S"), ("sk", "S")]),
    )
