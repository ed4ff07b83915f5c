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
import importlib
import json
import logging
import os
import re
import resource
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from engine.atomic import sweep_temporaries, write_parquet_atomic, write_text_atomic
from engine.background import InOrder
from engine.errors import LakeDamagedError
from engine.rules import LAKE_SCHEMA

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: A lake object's columns: the typed rows, then the ingestion that wrote them.
LAKE_COLUMNS: dict[str, pl.DataType] = {**LAKE_SCHEMA, "_seq": pl.Int64(), "_source": pl.String()}


def source_id(source: str) -> str:
    """Return a file-name-safe id for a source: a readable slug plus a short hash."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source.rsplit("/", 1)[-1])[:80].strip("._") or "src"
    return f"{slug}-{hashlib.sha256(source.encode()).hexdigest()[:10]}"


def manifest_record(
    source: str, *, seq: int | None, rows: int, sha256: str | None, dates: Iterable[dt.date],
    ingested: bool,
) -> dict[str, Any]:
    """Return the manifest of ``source``: its ``dates``, ingestion ``seq``, ``rows``, digest.

    ``ingested`` stamps ``ingested_at`` now, to the microsecond (a rejection of the same name
    in the same second is older); without it, the stub a first ingestion writes before its
    files move in, which no reader takes for an ingestion.
    """
    return {
        "source": source,
        "source_id": source_id(source),
        "seq": seq,
        "rows": rows,
        "sha256": sha256,
        "dates": sorted(d.isoformat() for d in set(dates)),
        "ingested_at": (dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
                        if ingested else None),
    }


def partition_date(name: str) -> dt.date | None:
    """Return the date of a lake folder named ``order_date=YYYY-MM-DD``, or None for any other
    name (a copy such as ``order_date=2025-07-06.bak``, or ``order_date=20250706``, which
    Python's ``fromisoformat`` would take)."""
    text = name.removeprefix("order_date=")
    if text == name:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    return day if day.isoformat() == text else None


@dataclass(frozen=True)
class Ingested:
    """What one ``add_source`` changed: the dates whose KPIs must now be recomputed."""

    source: str
    seq: int
    rows: int
    dates: tuple[dt.date, ...]
    affected: tuple[dt.date, ...]


def _count(raw: Any) -> int:
    """Return a bookkeeping file's positive whole number (not 2.9, not true, not 1e400)."""
    if type(raw) is not int or raw < 1:
        raise ValueError(f"expected a whole number from 1, found {raw!r}")
    return raw


def _dates(raw: Any) -> set[dt.date]:
    """Return the dates of a JSON list of YYYY-MM-DD texts (a bookkeeping file's)."""
    if not isinstance(raw, list):
        raise TypeError(f"expected a list of dates, found {type(raw).__name__}")
    return {dt.date.fromisoformat(d) for d in raw}


class LocalLake:
    """A lake in a local folder. One writer at a time (an exclusive lock file)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._strays: set[Path] = set()  # folders named like partitions, warned about once

    # -- locking and small JSON state -------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lake's exclusive lock (concurrent local runs wait for each other)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                self._sweep()
                yield
            finally:
                # Only the lock holder stages: ``_staging`` goes when nothing is left in it
                # (a source still staged by a killed run stays, until its name is staged again).
                with contextlib.suppress(OSError):
                    (self.root / "_staging").rmdir()
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _sweep(self) -> None:
        """Delete what a run killed while it held the lock left (SIGKILL, the kernel out of
        memory, the machine stopped; a stopped or interrupted run cleans up after itself):
        its staged sources, which no run but the lock holder stages, and the temporary files
        of its bookkeeping writes. The lake itself was whole, as each file is replaced whole."""
        staging = self.root / "_staging"
        left = list(staging.iterdir()) if staging.is_dir() else []
        for staged in left:
            if staged.is_dir() and not staged.is_symlink():
                shutil.rmtree(staged, ignore_errors=True)
            else:
                staged.unlink(missing_ok=True)
        left += (sweep_temporaries(self.root, of=("_state.json", "_pending.json"))
                 + sweep_temporaries(self.root / "_sources"))
        if left:
            log.info("%s: removed what a run killed while it wrote there left: %s", self.root,
                     ", ".join(str(p.relative_to(self.root)) for p in left))

    def _read_json(self, path: Path, default: _T, parse: Callable[[Any], _T]) -> _T:
        """Return ``parse`` of the JSON file ``path`` (``default`` if there is none); raise
        ``LakeDamagedError`` naming it when it is not what the lake writes."""
        if not path.exists():
            return default
        try:
            return parse(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, OverflowError) as e:  # JSON, UTF-8: ValueError
            raise LakeDamagedError(path, e) from None

    def peek_seq(self) -> int:
        """Return the sequence number the next source to enter the lake will take."""
        return self._read_json(self.root / "_state.json", 1, lambda d: _count(d["next_seq"]))

    def _take_seq(self) -> int:
        seq = self.peek_seq()
        write_text_atomic(self.root / "_state.json", json.dumps({"next_seq": seq + 1}) + "\n")
        return seq

    def pending(self) -> set[dt.date]:
        """Return the dates whose KPIs are not yet known to match the lake."""
        return self._read_json(self.root / "_pending.json", set(), _dates)

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
        return self._read_json(self._manifest_path(source_id(source)), set(),
                               lambda data: _dates(data["dates"]))

    def ingested_at(self, source: str) -> str | None:
        """Return when ``source`` last entered the lake (ISO 8601), or None if it never did."""
        return self._read_json(self._manifest_path(source_id(source)), None,
                               lambda data: None if data["ingested_at"] is None
                               else str(data["ingested_at"]))

    def _partition(self, day: dt.date) -> Path:
        return self.root / f"order_date={day.isoformat()}"

    # -- writes ----------------------------------------------------------------------
    def add_source(self, source: str, rows: pl.DataFrame, *, sha256: str | None = None) -> Ingested:
        """Put ``rows`` (typed, per ``LAKE_SCHEMA``) in the lake as the whole of ``source``.

        A source seen before is replaced, including dates it no longer contains. Must be
        called under ``locked()``.
        """
        by_date = rows.partition_by("order_date", as_dict=True) if rows.height else {}
        new_dates = {day for (day,) in by_date}
        affected = self._begin_replace(source, new_dates)
        seq = self._take_seq()
        for (day,), part in by_date.items():
            assert isinstance(day, dt.date)
            write_parquet_atomic(_stamped(part, seq, source), self._object(day, source))
        return self._end_replace(source, seq, new_dates, affected, rows.height, sha256)

    def stage(self, source: str, *, seq: int | None = None) -> StagedSource:
        """Return a writer that collects ``source``'s rows, batch by batch, outside the lake.

        Nothing is visible to readers until ``add_staged``; ``discard`` throws it away.
        Must be used under ``locked()``. ``seq``: the sequence number the source will take,
        when sources staged before it have yet to enter the lake (default: the next one).
        """
        folder = self.root / "_staging" / source_id(source)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        # The sequence number is only taken (written) when the source enters the lake, so a
        # rejected file leaves the lake's state untouched; the lock keeps it free till then.
        return StagedSource(source, folder, self.peek_seq() if seq is None else seq)

    def add_staged(self, staged: StagedSource, *, sha256: str | None = None) -> Ingested:
        """Move a staged source into the lake (one rename per date), replacing what it had.

        If the last writes or the flush fail, the staged files are deleted and the lake is
        left as it was.
        """
        try:
            staged.close()
        except BaseException:
            staged.discard()
            raise
        try:  # nothing of the lake has moved yet: a failure here leaves no staged files
            affected = self._begin_replace(staged.source, staged.dates)
            if self._take_seq() != staged.seq:
                raise RuntimeError("the lake's sequence moved while a source was staged"
                                   " (no lock?)")
        except BaseException:
            staged.discard()
            raise
        for day in sorted(staged.dates):
            target = self._object(day, staged.source)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged.path(day), target)
        ing = self._end_replace(staged.source, staged.seq, staged.dates, affected, staged.rows,
                                sha256)
        staged.discard()
        return ing

    def _object(self, day: dt.date, source: str) -> Path:
        return self._partition(day) / f"{source_id(source)}.parquet"

    def _begin_replace(self, source: str, new_dates: set[dt.date]) -> set[dt.date]:
        held = self.source_dates(source)
        affected = held | new_dates
        self.mark_pending(affected)  # before the lake changes: a crash is repaired next run
        if new_dates - held:
            # The manifest names the new dates before their files move in: a run killed between
            # two moves leaves no file that the next replacement of this source (a correction
            # without those dates) would not delete.
            path = self._manifest_path(source_id(source))
            old: dict[str, Any] = self._read_json(path, {}, dict)
            intent = old or manifest_record(source, seq=None, rows=0, sha256=None, dates=(),
                                            ingested=False)
            intent["dates"] = sorted(d.isoformat() for d in affected)
            write_text_atomic(path, json.dumps(intent, indent=2) + "\n")
        return affected

    def _end_replace(
        self, source: str, seq: int, new_dates: set[dt.date], affected: set[dt.date],
        n_rows: int, sha256: str | None,
    ) -> Ingested:
        sid = source_id(source)
        for day in affected - new_dates:
            self._object(day, source).unlink(missing_ok=True)
        manifest = manifest_record(source, seq=seq, rows=n_rows, sha256=sha256, dates=new_dates,
                                   ingested=True)
        write_text_atomic(self._manifest_path(sid), json.dumps(manifest, indent=2) + "\n")
        log.info("lake: %s -> %d rows, %d dates (seq %d)", source, n_rows, len(new_dates), seq)
        return Ingested(source, seq, n_rows, tuple(sorted(new_dates)), tuple(sorted(affected)))

    # -- reads -----------------------------------------------------------------------
    def dates(self) -> list[dt.date]:
        """Return every date that has at least one object in the lake."""
        out = []
        for p in self.root.glob("order_date=*"):
            if not any(p.glob("*.parquet")):
                continue
            if (day := partition_date(p.name)) is None:  # a copy (".bak"), not a date's folder
                if p not in self._strays:
                    self._strays.add(p)
                    log.warning("%s is not a date's folder of the lake (YYYY-MM-DD): its files"
                                " are not read", p)
                continue
            out.append(day)
        return sorted(out)

    def objects(self, day: dt.date) -> list[Path]:
        """Return the Parquet objects (one per source) stored for ``day``."""
        return sorted(self._partition(day).glob("*.parquet"))

    def row_counts(self, dates: Iterable[dt.date]) -> dict[dt.date, int]:
        """Return how many rows the lake holds for each of ``dates`` (all sources), in date
        order, from the Parquet footers."""
        import pyarrow.parquet as pq

        return {
            d: sum(pq.ParquetFile(f).metadata.num_rows for f in self.objects(d))
            for d in sorted(set(dates))
        }

    def scan(self, dates: Iterable[dt.date]) -> pl.LazyFrame:
        """Return a lazy scan of every row stored for ``dates`` (all sources, undeduplicated)."""
        files = [
            str(f) for d in sorted(set(dates)) for f in sorted(self._partition(d).glob("*.parquet"))
        ]
        if not files:
            return pl.DataFrame(schema=LAKE_COLUMNS).lazy()
        return pl.scan_parquet(files, hive_partitioning=False)



def date_groups(rows: Mapping[dt.date, int], max_rows: int) -> list[list[dt.date]]:
    """Return the dates of ``rows`` (date -> row count) in order, grouped so a group holds
    about ``max_rows`` rows at most; a single date larger than ``max_rows`` is a group of its
    own."""
    groups: list[list[dt.date]] = []
    size = 0
    for day in sorted(rows):
        if not groups or size + rows[day] > max_rows:
            groups.append([])
            size = 0
        groups[-1].append(day)
        size += rows[day]
    return groups


# Dictionaries only where values repeat, statistics only where a reader filters, LZ4 rather
# than zstd: measured on 1M orders split over 90 dates, this writes the staged lake in ~0.3
# CPU-seconds instead of ~0.8 with the defaults, for files ~1.7x the size of zstd's (ids are
# near-unique, so a dictionary there is pure overhead).
_WRITER_OPTIONS: dict[str, object] = {
    "compression": "lz4",
    # quantity: few distinct values; ~9% smaller files for the same encoding time.
    "use_dictionary": ["category", "returned", "_source", "quantity"],
    "write_statistics": ["order_date", "_seq"],
    # No Arrow schema in the footer: readers then see ``_source`` as the plain string column
    # it is in every other lake object, not as the dictionary it was written from.
    "store_schema": False,
}


# Batches handed to the staging thread and not yet written, at most (each holds one piece's
# typed rows, ~35 MB for a 32 MB piece). Two let the validator judge the next piece while the
# writer is behind: measured on the 10M-row file, alternated, 3 runs each, `process` took
# 11.1 s instead of 12.3 s, for ~60 MB more at peak (687 against 624 MB). A second piece read
# ahead as well gained little more and slowed files with findings (`validate`: 38 -> 44-48 s).
STAGE_QUEUE = 2

# Date files a staged source keeps open, at most (fewer if the hard limit on open files is
# lower). A file of more dates closes, on the thread that needs a new one, the file of its
# date written last: a piece's dates come in date order, so that one is needed again only at
# the next piece, after every other (closing the oldest instead, as an LRU would, closed
# every date of a piece that cycles through more dates than the cap holds). A closed date
# continues, when it comes again, in a part file merged at the end. Open files and the
# writers' memory (~80 KB each: 15,000 dates had peaked at 1.2 GB) stay bounded.
MAX_OPEN_DATES = 2048


def required(schema: pa.Schema) -> pa.Schema:
    """Return ``schema`` with every column required. Validation lets no null through, so
    Parquet then stores no definition levels (measured ~9% less encoding time per piece),
    and a null that got this far fails the cast, and with it the file."""
    import pyarrow as pa

    return pa.schema([f.with_nullable(False) for f in schema])


def _stamped(
    rows: pl.DataFrame, seq: int, source: str, *, dictionary: bool = False
) -> pl.DataFrame:
    """Return ``rows``' lake columns with ``_seq`` and ``_source`` appended.

    ``dictionary``: ``_source`` as a one-value Enum (a dictionary in Arrow: no string per
    row), for the staging writer. The columns are made by Polars: ``pyarrow.scalar`` looks
    for pandas, and imported it (~0.3-0.9 s, on the staging thread) where pandas is installed.
    """
    name = pl.lit(source, pl.Enum([source])) if dictionary else pl.lit(source)
    return rows.select(list(LAKE_SCHEMA)).with_columns(
        pl.lit(seq, pl.Int64).alias("_seq"), name.alias("_source")
    )


class StagedSource:
    """A source's typed rows on their way into the lake: one open Parquet file per date (up
    to ``MAX_OPEN_DATES`` open; beyond, a date whose file was closed continues in a part
    file, merged when the source is finished).

    Each ``write`` adds one row group to the file of every date the batch holds, so memory
    follows the batch and the lake objects are complete when the last batch is written.
    Writing happens on worker threads while the caller validates the next batch; at most
    ``STAGE_QUEUE`` batches wait to be written. Parquet encoding is single-threaded and
    releases the GIL, so a batch's dates are encoded by two threads: those of even day
    number (``date.toordinal()``) by the thread that sorted the batch, the others by a
    second one. A date always goes to the same thread, which gets its batches in order, so
    each file's row groups follow the input. Measured on the 10M-row file over 90 dates,
    alternated: ``process`` 11.1 -> 9.7 s, peak 668 -> 618 MB; the validator had waited
    ~2.5 s for the one writer, and now waits ~0.2 s.
    """

    def __init__(self, source: str, folder: Path, seq: int) -> None:
        self.source = source
        self.folder = folder
        self.seq = seq
        self.rows = 0
        # The open writers, by the thread that writes their dates (even, odd day number),
        # least recently written first; and every file of each date, in input order.
        self._open: tuple[OrderedDict[dt.date, pq.ParquetWriter], ...] = (
            OrderedDict(), OrderedDict())
        self._files: dict[dt.date, list[Path]] = {}
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self._max_open = MAX_OPEN_DATES if hard == resource.RLIM_INFINITY else max(
            2, min(MAX_OPEN_DATES, hard - 256))
        self._queue = InOrder("stage", STAGE_QUEUE)
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-odd")
        self._finished = False
        # pyarrow's import (~0.12 s) happens here, while the first piece is parsed and
        # judged, rather than in front of the first write.
        self._queue.submit(importlib.import_module, "pyarrow.parquet")

    @property
    def dates(self) -> set[dt.date]:
        self._queue.wait()
        return set(self._files)

    def path(self, day: dt.date) -> Path:
        return self.folder / f"{day.isoformat()}.parquet"

    def write(self, rows: pl.DataFrame) -> None:
        """Queue typed rows (per ``LAKE_SCHEMA``) for their dates' files; raise what failed."""
        if self._finished:
            raise RuntimeError("rows written to a staged source after finish()")
        self.rows += rows.height
        self._queue.submit(self._write_now, rows)

    def _write_now(self, rows: pl.DataFrame) -> None:
        # One sort and one Arrow table per batch; each date is a zero-copy slice of it. The
        # sort runs on this thread only: the validator keeps the other core busy, and Polars'
        # parallel sort cost ~2.5x the CPU for the same wall time here. The text columns go
        # to Arrow as string views (Polars' own layout, no copy; Parquet stores them as any
        # string); only the one-value ``_source`` dictionary, whose string-view form
        # pyarrow's writer refuses, is converted. Measured per 32 MB piece: 0.32-0.39 ->
        # 0.24-0.27 CPU-s for sort, conversion and encoding together, the same files.
        rows = rows.select(list(LAKE_SCHEMA)).sort(
            "order_date", maintain_order=True, multithreaded=False
        )
        runs = rows.select(pl.col("order_date").rle()).unnest("order_date")
        stamped = _stamped(rows, self.seq, self.source, dictionary=True)
        table = stamped.drop("_source").to_arrow(compat_level=pl.CompatLevel.newest())
        source = stamped.select("_source").to_arrow()
        table = table.append_column(source.schema.field(0), source.column(0))
        table = table.cast(required(table.schema))
        slices = []
        start = 0
        for length, day in runs.iter_rows():
            assert isinstance(day, dt.date)
            slices.append((day, table.slice(start, length)))
            start += length
        self._on_both_threads(lambda part: self._encode(part, table.schema), slices)

    def _on_both_threads(
        self, work: Callable[[list[tuple[dt.date, _T]]], None], items: list[tuple[dt.date, _T]]
    ) -> None:
        """Run ``work`` on the items of even day number here and on the others on the
        second thread, at once; return when both are done, raising what either raised.
        A date always falls on the same thread."""
        odd = self._helper.submit(work, [(d, x) for d, x in items if d.toordinal() % 2])
        try:
            work([(d, x) for d, x in items if not d.toordinal() % 2])
        finally:
            odd.result()

    def _encode(self, slices: list[tuple[dt.date, pa.Table]], schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        for day, part in slices:
            side = self._open[day.toordinal() % 2]  # this thread's dates only
            writer = side.get(day)
            if writer is None:
                if side and sum(map(len, self._open)) >= self._max_open:
                    side.popitem(last=True)[1].close()  # its date written last, see above
                files = self._files.setdefault(day, [])
                files.append(self.path(day) if not files
                             else self.folder / f"{day.isoformat()}.{len(files)}.part")
                # Headroom for the process's other files, and for the few date files of
                # a source still entering the lake (``pipeline.OVERLAP_MAX_DATES``).
                _allow_open_files(sum(map(len, self._open)) + 128)
                writer = pq.ParquetWriter(files[-1], schema, **_WRITER_OPTIONS)
                side[day] = writer
            else:
                side.move_to_end(day)
            writer.write_table(part)

    def finish(self) -> None:
        """Queue the end of every date's file (its footer, then a flush to disk) behind the
        writes, so that it overlaps what the caller does next (``process``: the file-wide
        uniqueness check, ~0.3 s for the 90 files of the 10M-row benchmark file); ``close``
        waits for it. No rows may be written after this."""
        if not self._finished:
            self._finished = True
            self._queue.submit(self._end_files, room=False)

    def _end_files(self) -> None:
        # Runs behind every queued write, so every date's files exist by now.
        self._on_both_threads(self._end, list(self._files.items()))

    def _end(self, dates: list[tuple[dt.date, list[Path]]]) -> None:
        import pyarrow.parquet as pq

        for day, files in dates:
            writer = self._open[day.toordinal() % 2].pop(day, None)
            if writer is not None:
                writer.close()
            if len(files) > 1:  # a date written again after its file was closed
                merged = self.folder / f"{day.isoformat()}.merged"
                with pq.ParquetWriter(merged, pq.read_schema(files[0]),
                                      **_WRITER_OPTIONS) as out:
                    for part in files:
                        with pq.ParquetFile(part) as f:
                            for i in range(f.num_row_groups):
                                out.write_table(f.read_row_group(i))
                os.replace(merged, self.path(day))
                for part in files[1:]:
                    part.unlink()
            with open(self.path(day), "rb+") as f:
                os.fsync(f.fileno())

    def close(self) -> None:
        """Finish every date's file and flush it to disk (``finish``, and wait for it)."""
        self.finish()
        self._queue.wait()
        self._queue.shutdown()
        self._helper.shutdown()

    def discard(self) -> None:
        """Close and delete whatever was staged."""
        self._queue.shutdown()
        self._helper.shutdown()
        for side in self._open:
            for writer in side.values():
                with contextlib.suppress(Exception):
                    writer.close()
            side.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def _allow_open_files(n: int) -> None:
    """Raise the soft limit on open files to ``n`` if the hard limit allows it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        want = n if hard == resource.RLIM_INFINITY else min(n, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
