"""The local lake: cleaned rows as Parquet, partitioned by order_date, one object per source.

Layout under ``ROOT`` (a ``process --out DIR`` writes to ``DIR/lake``)::

    order_date=2025-07-06/<source_id>.parquet   rows of one source file for one date
    _sources/<source_id>.json                   which dates a source holds, its ingestion seq
    _state.json                                 the next ingestion sequence number
    _pending.json                               dates whose KPIs must be recomputed

Every write is atomic. The pending list is written *before* the lake changes and cleared only
after the KPI tables are replaced, so a crash at any point is repaired by the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.atomic import write_parquet_atomic, write_text_atomic
from engine.schema import LAKE_SCHEMA

log = logging.getLogger(__name__)


def source_id(source: str) -> str:
    """Return a file-name-safe id for a source: a readable slug plus a short hash."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source.rsplit("/", 1)[-1])[:80].strip("._") or "src"
    return f"{slug}-{hashlib.sha256(source.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Ingested:
    """What one ``add_source`` changed: the dates whose KPIs must now be recomputed."""

    source: str
    seq: int
    rows: int
    dates: tuple[dt.date, ...]
    affected: tuple[dt.date, ...]


class LocalLake:
    """A lake in a local folder. One writer at a time (an exclusive lock file)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- locking and small JSON state -------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lake's exclusive lock (concurrent local runs wait for each other)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _read_json(self, name: str, default: object) -> object:
        p = self.root / name
        if not p.exists():
            return default
        return json.loads(p.read_text(encoding="utf-8"))

    def _next_seq(self) -> int:
        state = self._read_json("_state.json", {"next_seq": 1})
        assert isinstance(state, dict)
        seq = int(state["next_seq"])
        write_text_atomic(self.root / "_state.json", json.dumps({"next_seq": seq + 1}) + "\n")
        return seq

    def pending(self) -> set[dt.date]:
        """Return the dates whose KPIs are not yet known to match the lake."""
        raw = self._read_json("_pending.json", [])
        assert isinstance(raw, list)
        return {dt.date.fromisoformat(d) for d in raw}

    def mark_pending(self, dates: Iterable[dt.date]) -> None:
        """Add ``dates`` to the pending list (before the lake changes)."""
        allp = sorted(self.pending() | set(dates))
        write_text_atomic(
            self.root / "_pending.json", json.dumps([d.isoformat() for d in allp]) + "\n"
        )

    def clear_pending(self, dates: Iterable[dt.date]) -> None:
        """Remove ``dates`` from the pending list (after the KPI tables are replaced)."""
        left = sorted(self.pending() - set(dates))
        write_text_atomic(
            self.root / "_pending.json", json.dumps([d.isoformat() for d in left]) + "\n"
        )

    def _manifest_path(self, sid: str) -> Path:
        return self.root / "_sources" / f"{sid}.json"

    def source_dates(self, source: str) -> set[dt.date]:
        """Return the dates the lake currently holds for ``source``."""
        p = self._manifest_path(source_id(source))
        if not p.exists():
            return set()
        data = json.loads(p.read_text(encoding="utf-8"))
        return {dt.date.fromisoformat(d) for d in data["dates"]}

    def _partition(self, day: dt.date) -> Path:
        return self.root / f"order_date={day.isoformat()}"

    # -- writes ----------------------------------------------------------------------
    def add_source(self, source: str, rows: pl.DataFrame, *, sha256: str | None = None) -> Ingested:
        """Put ``rows`` (typed, per ``LAKE_SCHEMA``) in the lake as the whole of ``source``.

        A source seen before is replaced, including dates it no longer contains. Must be
        called under ``locked()``.
        """
        sid = source_id(source)
        old_dates = self.source_dates(source)
        new_dates = set(rows["order_date"].unique().to_list()) if rows.height else set()
        affected = old_dates | new_dates
        self.mark_pending(affected)
        seq = self._next_seq()
        stamped = rows.select(list(LAKE_SCHEMA)).with_columns(
            pl.lit(seq, pl.Int64).alias("_seq"), pl.lit(source).alias("_source")
        )
        for (day,), part in stamped.group_by("order_date"):
            assert isinstance(day, dt.date)
            write_parquet_atomic(part, self._partition(day) / f"{sid}.parquet")
        for day in old_dates - new_dates:
            (self._partition(day) / f"{sid}.parquet").unlink(missing_ok=True)
        manifest = {
            "source": source,
            "source_id": sid,
            "seq": seq,
            "rows": rows.height,
            "sha256": sha256,
            "dates": sorted(d.isoformat() for d in new_dates),
            "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        write_text_atomic(self._manifest_path(sid), json.dumps(manifest, indent=2) + "\n")
        log.info("lake: %s -> %d rows, %d dates (seq %d)", source, rows.height,
                 len(new_dates), seq)
        return Ingested(source, seq, rows.height, tuple(sorted(new_dates)),
                        tuple(sorted(affected)))

    # -- reads -----------------------------------------------------------------------
    def dates(self) -> list[dt.date]:
        """Return every date that has at least one object in the lake."""
        out = []
        for p in self.root.glob("order_date=*"):
            if any(p.glob("*.parquet")):
                out.append(dt.date.fromisoformat(p.name.split("=", 1)[1]))
        return sorted(out)

    def scan(self, dates: Iterable[dt.date]) -> pl.LazyFrame:
        """Return a lazy scan of every row stored for ``dates`` (all sources, undeduplicated)."""
        files = [
            str(f) for d in sorted(set(dates)) for f in sorted(self._partition(d).glob("*.parquet"))
        ]
        if not files:
            return pl.DataFrame(
                schema={**LAKE_SCHEMA, "_seq": pl.Int64(), "_source": pl.String()}
            ).lazy()
        return pl.scan_parquet(files, hive_partitioning=False)
