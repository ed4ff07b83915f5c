"""Parse floor: Polars reads every column typed into memory and does nothing else."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import polars as pl

from engine.bench.peers._common import parse_args
from engine.rules import LAKE_SCHEMA  # Polars only: the floor pays no engine import


def main(argv: Sequence[str] | None = None) -> int:
    """Read the CSV typed and report its height; return the exit code."""
    src, _ = parse_args(argv, "polars_floor")
    df = pl.read_csv(src, schema=LAKE_SCHEMA)
    print(f"{df.height} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
