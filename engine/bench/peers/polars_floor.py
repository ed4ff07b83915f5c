"""Parse floor: Polars reads every column typed into memory and does nothing else."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import polars as pl

from engine.bench.peers._common import parse_args

SCHEMA: dict[str, pl.DataType] = {
    "order_id": pl.String(),
    "customer_id": pl.String(),
    "order_date": pl.Date(),
    "category": pl.String(),
    "product_id": pl.String(),
    "quantity": pl.Int64(),
    "unit_price": pl.Decimal(38, 4),
    "returned": pl.Boolean(),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Read the CSV typed and report its height; return the exit code."""
    src, _ = parse_args(argv, "polars_floor")
    df = pl.read_csv(src, schema=SCHEMA)
    print(f"{df.height} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
