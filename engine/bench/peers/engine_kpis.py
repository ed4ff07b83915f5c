"""Contender: this engine's KPI functions alone (typed scan, no validation, no lake).

``--polars-engine`` picks Polars' collect engine (default ``in-memory``: the streaming engine
was measured slower for these n_unique group-bys).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from decimal import Decimal

from engine.bench.peers._common import (
    CATEGORY_FILE,
    CATEGORY_HEADER,
    DAILY_FILE,
    DAILY_HEADER,
    unavailable,
    write_lines,
)


def _text(value: object) -> str:
    if isinstance(value, Decimal):
        # Printed as held: the engine must already have rounded to the contract's scale.
        return format(value, "f")
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Compute both KPI tables with engine.kpis; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    engine = "in-memory"
    if len(args) == 4 and args[0] == "--polars-engine":
        engine, args = args[1], args[2:]
    if len(args) != 2:
        raise SystemExit(
            "usage: python -m engine.bench.peers.engine_kpis [--polars-engine E] CSV OUTDIR"
        )
    try:
        import polars as pl

        from engine.kpis import category_sums, tables_from, unique_customers
        from engine.read import scan_orders_typed
    except ImportError as exc:
        return unavailable("engine.kpis / engine.read", exc)
    from pathlib import Path

    src, outdir = Path(args[0]), Path(args[1])
    lf = scan_orders_typed(src)
    # One collect_all so that the shared scan is read once for both queries.
    sums, customers = pl.collect_all(  # type: ignore[call-overload]
        [category_sums(lf), unique_customers(lf)], engine=engine
    )
    cat, day = tables_from(sums, customers)
    problems = []
    for frame, header in ((cat, CATEGORY_HEADER), (day, DAILY_HEADER)):
        if tuple(frame.columns) != header:
            problems.append(f"columns {frame.columns} differ from the contract's {list(header)}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    outdir.mkdir(parents=True, exist_ok=True)
    for frame, name in ((cat, CATEGORY_FILE), (day, DAILY_FILE)):
        lines = [",".join(frame.columns)]
        lines += [",".join(_text(v) for v in row) for row in frame.iter_rows()]
        write_lines(outdir / name, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
