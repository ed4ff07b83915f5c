"""Deterministic, vectorised generator of synthetic order CSVs for benchmarks and tests.

Columns are built with numpy per chunk of rows and written by Polars, so the cost per row is a
few array operations, never a Python statement. The same seed always gives the same bytes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO

import polars as pl

from engine.columns import DEFAULT_CATEGORIES, ORDER_COLUMNS

logger = logging.getLogger(__name__)

COLUMNS = ORDER_COLUMNS

ALL_CATEGORIES: tuple[str, ...] = (
    "Electronics",
    "Books",
    "Clothing",
    "Home",
    "Toys",
    "Sports",
    "Beauty",
    "Grocery",
)
DIRT_KINDS: tuple[str, ...] = (
    "bad_date",
    "negative_quantity",
    "unknown_category",
    "duplicate_order_id",
    "empty_order_id",
    "empty_customer_id",
)
UNKNOWN_CATEGORY = "Garden"
_TWO_DIGITS = pl.Series([f"{i:02d}" for i in range(100)], dtype=pl.String)
_TAILS = pl.Series(["", *(f"{i:02d}" for i in range(1, 100))], dtype=pl.String)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Fixed, not a parameter: the chunking is part of what makes a seed give the same bytes.
_CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class GeneratedFile:
    """What was written: where, how many rows and bytes, and which rows were made bad."""

    path: Path
    rows: int
    bytes: int
    seed: int
    start: date
    days: int
    categories: tuple[str, ...]
    first_order_number: int
    dirty: dict[str, int] = field(default_factory=dict)
    """Bad rows injected, per kind (see ``DIRT_KINDS``); empty for a clean file."""
    seconds: float = 0.0

    @property
    def end(self) -> date:
        """Return the last date that rows can carry."""
        return self.start + timedelta(days=self.days - 1)


def _numpy() -> object:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from engine.errors import UsageError

        raise UsageError(
            "the benchmark generator needs numpy",
            hint="install the bench extra: pip install 'order-kpis[bench]'",
        ) from exc
    return numpy


def _chunk_frame(
    rows: int,
    *,
    seed: int,
    chunk_index: int,
    first_order_number: int,
    start: date,
    days: int,
    categories: tuple[str, ...],
    customers: int,
    products: int,
    return_share: float,
    four_decimal_share: float,
    dirt: float,
    dirt_kinds: tuple[str, ...],
) -> tuple[pl.DataFrame, dict[str, int]]:
    np = _numpy()
    rng = np.random.default_rng([seed, chunk_index])  # type: ignore[attr-defined]

    # Skewed customer pool: a power of a uniform puts most orders on few customers.
    customer = (customers * rng.random(rows) ** 3).astype(np.int64)  # type: ignore[attr-defined]
    category = rng.integers(0, len(categories), rows, dtype=np.int8)  # type: ignore[attr-defined]
    day = rng.integers(0, days, rows, dtype=np.int32)  # type: ignore[attr-defined]
    product = rng.integers(0, products, rows, dtype=np.int64)  # type: ignore[attr-defined]
    quantity = rng.integers(1, 11, rows, dtype=np.int64)  # type: ignore[attr-defined]
    # Prices log-uniform between 1.00 and 2000.00, in cents.
    cents = np.exp(rng.uniform(np.log(100.0), np.log(200_000.0), rows)).astype(np.int64)  # type: ignore[attr-defined]
    # Some prices carry 4 decimals; half of those end in 50 (a half cent: odd quantities then
    # give revenues that are exact half-cent ties), the rest in 25, 75 or anything else.
    four = rng.random(rows) < four_decimal_share
    tail = np.where(  # type: ignore[attr-defined]
        rng.random(rows) < 0.5,
        50,
        rng.choice(np.array([25, 75, 1, 33, 99], dtype=np.uint32), rows),  # type: ignore[attr-defined]
    )
    tail = np.where(four, tail, 0).astype(np.uint32)  # type: ignore[attr-defined]
    returned = rng.random(rows) < return_share

    df = pl.DataFrame(
        {
            "n": pl.int_range(first_order_number, first_order_number + rows, eager=True),
            "customer": customer,
            "category": category.astype(np.uint32),  # type: ignore[attr-defined]
            "day": day,
            "product": product,
            "quantity": quantity,
            "cents": cents,
            "tail": tail,
            "returned": returned,
        }
    )
    # Lookup tables and a fixed-width offset instead of zfill/format: string building is the
    # costly part of generation, and gather + concat_str is the cheapest form of it in Polars.
    # Ids get a leading 1 from the offset (ORD10000000001): fixed width, still unique.
    two_digits = pl.lit(_TWO_DIGITS)
    out = df.select(
        pl.concat_str([pl.lit("ORD"), (pl.col("n") + 10**10).cast(pl.String)]).alias("order_id"),
        pl.concat_str([pl.lit("CUST"), (pl.col("customer") + 10**7).cast(pl.String)]).alias(
            "customer_id"
        ),
        (pl.lit(start.toordinal() - _EPOCH_ORDINAL) + pl.col("day"))
        .cast(pl.Date)
        .alias("order_date"),
        pl.lit(pl.Series(categories, dtype=pl.String)).gather(pl.col("category")).alias("category"),
        pl.concat_str([pl.lit("SKU"), (pl.col("product") + 10**5).cast(pl.String)]).alias(
            "product_id"
        ),
        pl.col("quantity"),
        pl.concat_str(
            [
                (pl.col("cents") // 100).cast(pl.String),
                pl.lit("."),
                two_digits.gather(pl.col("cents") % 100),
                pl.lit(_TAILS).gather(pl.col("tail")),
            ]
        ).alias("unit_price"),
        pl.col("returned"),
    )

    counts: dict[str, int] = {}
    n_dirt = round(rows * dirt)
    if n_dirt and dirt_kinds:
        # Bad rows sit on odd positions only, so the row before each is clean: a duplicated
        # order_id copies that clean row's id and is therefore a real duplicate.
        n_dirt = min(n_dirt, rows // 2)
        positions = 2 * rng.choice(rows // 2, n_dirt, replace=False) + 1
        kinds = np.full(rows, -1, dtype=np.int8)  # type: ignore[attr-defined]
        kinds[positions] = np.arange(n_dirt) % len(dirt_kinds)  # type: ignore[attr-defined]
        for i, kind in enumerate(dirt_kinds):
            counts[kind] = int((kinds == i).sum())
        code = {kind: i for i, kind in enumerate(dirt_kinds)}
        k = pl.Series("_k", kinds)
        bad_date = (
            pl.when(pl.int_range(pl.len()) % 3 == 0)
            .then(pl.col("order_date").dt.strftime("%Y/%m/%d"))
            .when(pl.int_range(pl.len()) % 3 == 1)
            .then(pl.col("order_date").dt.strftime("%d/%m/%Y"))
            .otherwise(pl.lit("2025-02-30"))
        )

        def fix(name: str, kind: str, bad: pl.Expr, base: pl.Expr) -> pl.Expr:
            if kind not in code:
                return base.alias(name)
            return pl.when(pl.col("_k") == code[kind]).then(bad).otherwise(base).alias(name)

        empty = pl.lit("")
        order_id = pl.col("order_id")
        order_id_fixed = (
            pl.when(pl.col("_k") == code.get("duplicate_order_id", -2))
            .then(order_id.shift(1))
            .when(pl.col("_k") == code.get("empty_order_id", -2))
            .then(empty)
            .otherwise(order_id)
            .alias("order_id")
        )
        out = (
            out.with_columns(k)
            .with_columns(
                order_id_fixed,
                fix("customer_id", "empty_customer_id", empty, pl.col("customer_id")),
                fix(
                    "order_date",
                    "bad_date",
                    bad_date,
                    pl.col("order_date").dt.strftime("%Y-%m-%d"),
                ),
                fix("category", "unknown_category", pl.lit(UNKNOWN_CATEGORY), pl.col("category")),
                fix("quantity", "negative_quantity", -pl.col("quantity"), pl.col("quantity")),
            )
            .select(COLUMNS)
        )
    return out, counts


def _write(frame: pl.DataFrame, fh: BinaryIO, header: bool) -> None:
    frame.write_csv(fh, include_header=header)


def generate_orders(
    path: str | Path,
    rows: int,
    *,
    seed: int = 0,
    days: int = 90,
    start: date = date(2025, 1, 1),
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    customers: int = 1_000_000,
    products: int = 20_000,
    return_share: float = 0.08,
    four_decimal_share: float = 0.2,
    dirt: float = 0.0,
    dirt_kinds: Sequence[str] = DIRT_KINDS,
    first_order_number: int = 1,
) -> GeneratedFile:
    """Return a description of the order CSV written to ``path`` (``rows`` rows plus a header).

    ``dirt`` is the share of rows replaced by bad ones, spread over ``dirt_kinds`` in turn.
    Order ids are ``ORD`` + a 10-digit number starting at ``first_order_number``: unique within
    a clean file, and across files when their number ranges do not overlap.
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    cats = tuple(categories)
    if not cats:
        raise ValueError("categories must not be empty")
    unknown = set(dirt_kinds) - set(DIRT_KINDS)
    if unknown:
        raise ValueError(f"unknown dirt kinds {sorted(unknown)}; known: {list(DIRT_KINDS)}")
    if not 0.0 <= dirt <= 0.5:
        raise ValueError(f"dirt must be within [0, 0.5], got {dirt}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    dirty: dict[str, int] = {}
    try:
        _write_chunks(target, rows, dirty, seed=seed, start=start, days=days, categories=cats,
                      customers=customers, products=products, return_share=return_share,
                      four_decimal_share=four_decimal_share, dirt=dirt,
                      dirt_kinds=tuple(dirt_kinds), first_order_number=first_order_number)
    except BaseException:  # a file cut short would pass for a smaller benchmark file
        target.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - began
    size = target.stat().st_size
    logger.info(
        "wrote %s: %d rows, %.1f MB in %.2f s (%.1f M rows/s)",
        target,
        rows,
        size / 1e6,
        seconds,
        rows / seconds / 1e6 if seconds else 0.0,
    )
    return GeneratedFile(
        path=target,
        rows=rows,
        bytes=size,
        seed=seed,
        start=start,
        days=days,
        categories=cats,
        first_order_number=first_order_number,
        dirty=dirty,
        seconds=seconds,
    )


def _write_chunks(
    target: Path, rows: int, dirty: dict[str, int], *, seed: int, start: date, days: int,
    categories: tuple[str, ...], customers: int, products: int, return_share: float,
    four_decimal_share: float, dirt: float, dirt_kinds: tuple[str, ...],
    first_order_number: int,
) -> None:
    # One thread writes chunk k while the caller builds chunk k+1 (Polars releases the GIL).
    with target.open("wb") as fh, ThreadPoolExecutor(max_workers=1) as writer:
        if rows == 0:
            fh.write((",".join(COLUMNS) + "\n").encode())
        pending: Future[None] | None = None
        done = 0
        chunk_index = 0
        while done < rows:
            n = min(_CHUNK_ROWS, rows - done)
            frame, counts = _chunk_frame(
                n,
                seed=seed,
                chunk_index=chunk_index,
                first_order_number=first_order_number + done,
                start=start,
                days=days,
                categories=categories,
                customers=customers,
                products=products,
                return_share=return_share,
                four_decimal_share=four_decimal_share,
                dirt=dirt,
                dirt_kinds=dirt_kinds,
            )
            if pending is not None:
                pending.result()
            pending = writer.submit(_write, frame, fh, chunk_index == 0)
            for kind, count in counts.items():
                dirty[kind] = dirty.get(kind, 0) + count
            done += n
            chunk_index += 1
        if pending is not None:
            pending.result()


def generate_files(
    directory: str | Path,
    rows: int,
    *,
    files: int,
    seed: int = 0,
    prefix: str = "orders",
    **options: object,
) -> list[GeneratedFile]:
    """Return the descriptions of ``files`` CSVs of ``rows`` rows each, with disjoint order ids.

    File ``i`` uses seed ``seed + i``; ``options`` are passed on to ``generate_orders``.
    """
    out = Path(directory)
    return [
        generate_orders(
            out / f"{prefix}_{i:03d}.csv",
            rows,
            seed=seed + i,
            first_order_number=1 + i * rows,
            **options,  # type: ignore[arg-type]
        )
        for i in range(files)
    ]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine.bench.generate", description="Write synthetic order CSVs."
    )
    p.add_argument("--rows", type=int, required=True, help="rows per file")
    p.add_argument("--out", required=True, help="CSV path, or a directory with --files")
    p.add_argument("--files", type=int, default=1, help="number of files (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1))
    p.add_argument(
        "--categories",
        default=",".join(DEFAULT_CATEGORIES),
        help="comma-separated, or 'all' for the 8 built-in ones (default: the allowed 3)",
    )
    p.add_argument("--customers", type=int, default=1_000_000, help="customer pool size")
    p.add_argument("--return-share", type=float, default=0.08)
    p.add_argument("--four-decimal-share", type=float, default=0.2)
    p.add_argument("--dirt", type=float, default=0.0, help="share of bad rows (default 0)")
    p.add_argument(
        "--dirt-kinds", default=",".join(DIRT_KINDS), help="comma-separated subset of kinds"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    from engine.errors import UsageError

    if args.files < 1:  # the other values are checked by generate_orders, before any write
        parser.error("--files must be at least 1")
    try:
        _numpy()  # before any file is opened: none is left empty behind
        return _main(args)
    except (UsageError, ValueError) as e:
        print(f"generate: error: {e}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError):
        print(f"generate: error: {args.out}: a part of its path is a file, not a folder",
              file=sys.stderr)
        return 74
    except OSError as e:
        print(f"generate: error: {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
        return 74


def _main(args: argparse.Namespace) -> int:
    cats = ALL_CATEGORIES if args.categories == "all" else tuple(args.categories.split(","))
    options: dict[str, object] = {
        "days": args.days,
        "start": args.start,
        "categories": cats,
        "customers": args.customers,
        "return_share": args.return_share,
        "four_decimal_share": args.four_decimal_share,
        "dirt": args.dirt,
        "dirt_kinds": tuple(k for k in args.dirt_kinds.split(",") if k),
    }
    if args.files > 1:
        made = generate_files(
            args.out,
            args.rows,
            files=args.files,
            seed=args.seed,
            **options,  # type: ignore[arg-type]
        )
    else:
        made = [generate_orders(args.out, args.rows, seed=args.seed, **options)]  # type: ignore[arg-type]
    for g in made:
        rate = g.rows / g.seconds / 1e6 if g.seconds else 0.0
        extra = f", bad rows {g.dirty}" if g.dirty else ""
        print(f"{g.path}: {g.rows} rows, {g.bytes / 1e6:.1f} MB, {rate:.1f} M rows/s{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
