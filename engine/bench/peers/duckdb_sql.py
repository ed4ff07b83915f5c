"""Peer: DuckDB read_csv into a table, then two GROUP BY queries in DECIMAL arithmetic."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from engine.bench.peers._common import (
    CategoryGroup,
    DailyGroup,
    parse_args,
    unavailable,
    write_kpis,
)

_COLUMNS = (
    "{'order_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'order_date': 'DATE', "
    "'category': 'VARCHAR', 'product_id': 'VARCHAR', 'quantity': 'BIGINT', "
    "'unit_price': 'DECIMAL(18,4)', 'returned': 'BOOLEAN'}"
)
_CATEGORY_SQL = """
SELECT category, strftime(order_date, '%Y-%m-%d'), sum(quantity * unit_price),
       count(*), count_if(returned)
FROM orders GROUP BY category, order_date
"""
_DAILY_SQL = """
SELECT strftime(order_date, '%Y-%m-%d'), count(*), sum(quantity * unit_price), sum(quantity),
       count_if(returned), count(DISTINCT customer_id)
FROM orders GROUP BY order_date
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Compute both KPI tables with DuckDB SQL; return the exit code."""
    src, outdir = parse_args(argv, "duckdb_sql")
    try:
        import duckdb
    except ImportError as exc:
        return unavailable("duckdb", exc)
    con = duckdb.connect()
    path = str(src).replace("'", "''")
    con.execute(
        f"CREATE TABLE orders AS SELECT * FROM read_csv('{path}', header = true, "
        f"columns = {_COLUMNS})"
    )
    cats: list[CategoryGroup] = [
        (str(c), str(d), Decimal(r), int(n), int(ret))
        for c, d, r, n, ret in con.execute(_CATEGORY_SQL).fetchall()
    ]
    days: list[DailyGroup] = [
        (str(d), int(n), Decimal(r), int(i), int(ret), int(u))
        for d, n, r, i, ret, u in con.execute(_DAILY_SQL).fetchall()
    ]
    con.close()
    write_kpis(outdir, cats, days)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
