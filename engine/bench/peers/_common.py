"""Canonical KPI CSVs shared by all peers, so that answers compare byte for byte.

Peers do the heavy part (parse and group) with their own tool and hand over exact per-group
sums; the few hundred output rows are finished here with Decimal: averages and rates from the
exact sums, rounded half to even (money 2 places, rates 4), columns as in docs/CONTRACT.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path

from engine.bench.peers import UNAVAILABLE
from engine.columns import CATEGORY_COLUMNS, CATEGORY_CSV, DAILY_COLUMNS, DAILY_CSV

CATEGORY_HEADER = CATEGORY_COLUMNS
DAILY_HEADER = DAILY_COLUMNS
CATEGORY_FILE = CATEGORY_CSV  # the tables every contender writes, named as process names them
DAILY_FILE = DAILY_CSV

# Enough digits that a quotient is never rounded before the final half-even step.
_CTX = Context(prec=80, rounding=ROUND_HALF_EVEN)
_CENT = Decimal("0.01")
_E4 = Decimal("0.0001")

CategoryGroup = tuple[str, str, Decimal, int, int]
"""(category, order_date YYYY-MM-DD, exact revenue, orders, returned orders)."""
DailyGroup = tuple[str, int, Decimal, int, int, int]
"""(order_date, orders, exact revenue, items sold, returned orders, distinct customers)."""


def money(value: Decimal) -> str:
    """Return ``value`` rounded half to even to 2 places, as text with exactly 2 decimals."""
    return str(value.quantize(_CENT, rounding=ROUND_HALF_EVEN, context=_CTX))


def rate(value: Decimal) -> str:
    """Return ``value`` rounded half to even to 4 places, as text with exactly 4 decimals."""
    return str(value.quantize(_E4, rounding=ROUND_HALF_EVEN, context=_CTX))


def ratio(num: Decimal | int, den: int) -> Decimal:
    """Return ``num / den`` with 80 significant digits (exact for what is rounded later)."""
    return _CTX.divide(Decimal(num), Decimal(den))


def category_lines(groups: Iterable[CategoryGroup]) -> list[str]:
    """Return the canonical category CSV lines (header first), sorted by (category, date)."""
    lines = [",".join(CATEGORY_HEADER)]
    for cat, day, revenue, orders, returned in sorted(groups, key=lambda g: (g[0], g[1])):
        lines.append(
            f"{cat},{day},{money(revenue)},{money(ratio(revenue, orders))},"
            f"{rate(ratio(returned, orders))},{orders},{returned}"
        )
    return lines


def daily_lines(groups: Iterable[DailyGroup]) -> list[str]:
    """Return the canonical daily CSV lines (header first), sorted by date."""
    lines = [",".join(DAILY_HEADER)]
    for day, orders, revenue, items, returned, customers in sorted(groups, key=lambda g: g[0]):
        lines.append(
            f"{day},{orders},{money(revenue)},{items},{rate(ratio(returned, orders))},{customers}"
        )
    return lines


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write ``lines`` with ``\\n`` endings and a final newline."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def write_kpis(
    outdir: str | Path, categories: Iterable[CategoryGroup], daily: Iterable[DailyGroup]
) -> None:
    """Write both canonical KPI CSVs into ``outdir`` (created if missing)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    write_lines(out / CATEGORY_FILE, category_lines(categories))
    write_lines(out / DAILY_FILE, daily_lines(daily))


def unavailable(what: str, exc: BaseException) -> int:
    """Report a missing library on stderr and return the ``UNAVAILABLE`` exit code."""
    print(f"unavailable: {what} cannot be imported ({exc})", file=sys.stderr)
    return UNAVAILABLE


def parse_args(argv: Sequence[str] | None, prog: str) -> tuple[Path, Path]:
    """Return (CSV path, output directory) from ``argv``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        raise SystemExit(f"usage: python -m engine.bench.peers.{prog} CSV OUTDIR")
    return Path(args[0]), Path(args[1])
