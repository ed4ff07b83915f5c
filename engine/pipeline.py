"""The ``process`` job: validate each file, add the valid ones to the lake, recompute KPIs.

read -> validate -> lake -> KPIs -> outputs. The same functions serve the CLI and benchmarks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from engine.atomic import (
    copy_atomic,
    csv_writer,
    parquet_writer,
    replace_together,
    sweep_temporaries,
    text_writer,
)
from engine.background import InOrder
from engine.columns import (
    CATEGORY_CSV,
    CATEGORY_PARQUET,
    DAILY_CSV,
    DAILY_PARQUET,
    TABLE_FILES,
)
from engine.csvsafe import safe_frame
from engine.errors import UsageError
from engine.kpis import (
    CATEGORY_SCHEMA,
    DAILY_SCHEMA,
    TABLE_SCHEMAS,
    empty_category_table,
    empty_daily_table,
    kpi_tables,
    latest_orders_in_slices,
    scan_table,
)
from engine.lake import Ingested, LocalLake, StagedSource, date_groups
from engine.read import file_digest
from engine.rules import LAKE_SCHEMA
from engine.validate import BATCH_BYTES, ValidationReport, ValidationResult, validate_file

log = logging.getLogger(__name__)

# Lake rows per KPI group: measured ~250 bytes a row at peak (scan, revenue, group-bys).
KPI_BATCH_ROWS = 2_000_000

Policy = Literal["reject", "quarantine-rows"]
Outcome = Literal["accepted", "quarantined", "rejected", "empty"]


@dataclass
class FileOutcome:
    """What happened to one input file."""

    path: str
    outcome: Outcome
    report: ValidationReport
    ingested: Ingested | None = None


@dataclass
class ProcessResult:
    """Every file's outcome and the KPI tables as now written."""

    files: list[FileOutcome] = field(default_factory=list)
    category: pl.DataFrame = field(default_factory=empty_category_table)
    daily: pl.DataFrame = field(default_factory=empty_daily_table)
    recomputed: list[dt.date] = field(default_factory=list)

    @property
    def all_valid(self) -> bool:
        return all(f.outcome in ("accepted", "empty") for f in self.files)


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Return the CSV files named by ``paths`` (a folder stands for its ``*.csv``, hidden
    files left out: ``._x.csv`` is macOS metadata, not an export), in order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            csvs = sorted(x for x in p.iterdir()
                          if x.suffix.lower() == ".csv" and not x.name.startswith("."))
            if dangling := [x for x in csvs if x.is_symlink() and not x.exists()]:
                raise UsageError(f"{dangling[0]}: a link to a file that does not exist",
                                 hint="restore the file, or remove the link")
            if special := [x for x in csvs if x.exists() and not x.is_file() and not x.is_dir()]:
                raise UsageError(f"{special[0]}: not a regular file (a pipe or a device)",
                                 hint="save it to a file first, or move it out of the folder")
            found = [x for x in csvs if x.is_file()]
            if not found:
                hidden = any(x.name.startswith(".") for x in p.glob("*.[cC][sS][vV]"))
                raise UsageError(f"{p}: the folder holds no *.csv file"
                                 + (" but hidden ones, which are left out" if hidden else ""))
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif p.exists():
            raise UsageError(f"{p}: not a regular file (a pipe or a device)",
                             hint="save it to a file first, then give that file's path")
        else:
            raise UsageError(f"{p}: no such file or folder")
    return out


_NAME_MAX = 255  # bytes in one file name (Linux, macOS)


def beside(name: str, suffix: str) -> str:
    """Return ``name + suffix`` as a file name: when that is too long for one (an input named
    with 240+ bytes), ``name`` is cut, and ends in ``~`` and 12 hex digits of its SHA-256
    (the report inside names the file whole)."""
    whole = name + suffix
    if len(whole.encode()) <= _NAME_MAX:
        return whole
    tag = "~" + hashlib.sha256(name.encode()).hexdigest()[:12]
    room = _NAME_MAX - len((tag + suffix).encode())
    cut = name.encode()[:room].decode(errors="ignore")  # whole characters only
    return cut + tag + suffix


# What rejected/ writes beside a file's kept bytes (its quarantined rows, its report), and the
# suffix its bytes take when its name ends like one of them (or like that suffix).
ROWS_SUFFIX, ERRORS_SUFFIX = ".rows.csv", ".errors.json"
KEPT_SUFFIX = ".input"


def names_an_output(name: str) -> bool:
    """Whether ``name`` ends like what rejected/ writes beside a file's bytes (or like the
    suffix its bytes then take): such an input's bytes are kept as ``<name>.input``."""
    return name.endswith((ROWS_SUFFIX, ERRORS_SUFFIX, KEPT_SUFFIX))


def kept_name(name: str) -> str:
    """Return the name under which rejected/ keeps the bytes of the input ``name``.

    It is ``name`` itself, unless that ends in ``.rows.csv`` or ``.errors.json``, which name
    the outputs of another input (``orders.csv.rows.csv`` holds the set-aside rows of
    ``orders.csv``, and is what a user fixes and sends again), or in ``.input``: then
    ``.input`` is added. No two inputs, and no input and another one's outputs, share a name.
    """
    if names_an_output(name):
        return beside(name, KEPT_SUFFIX)  # cut, with a hash tail, when too long
    return name


def rejected_names(name: str) -> tuple[str, str, str]:
    """Return the names of what rejected/ holds for the input ``name``: its kept bytes, its
    quarantined rows, its report."""
    return kept_name(name), beside(name, ROWS_SUFFIX), beside(name, ERRORS_SUFFIX)


def _reject(path: Path, report: ValidationReport, rejected_dir: Path) -> None:
    """Keep the file's bytes unchanged beside a JSON report of everything wrong with it.
    A file that cannot be read (its report says so) gets the report alone. The rows an
    earlier quarantine of this name set aside go: this report replaces that one."""
    (rejected_dir / beside(path.name, ROWS_SUFFIX)).unlink(missing_ok=True)
    kept = rejected_dir / kept_name(path.name)
    try:
        if report.sha256 is None:
            report.size_bytes, report.sha256 = file_digest(path)
        copy_atomic(path, kept)
    except OSError as e:
        if report.sha256 is not None and path.is_file() and os.access(path, os.R_OK):
            raise  # the input was read whole and is readable: the output folder's trouble
        # Reading the input failed (no permission, a bad disk, a mount gone): the report
        # alone says so, and an earlier copy under this name, another upload's, goes.
        kept.unlink(missing_ok=True)
        report.warnings.append(f"the file could not be kept in rejected/: {e.strerror or e}")
    report.write_json(rejected_dir / beside(path.name, ERRORS_SUFFIX), outcome="rejected")


def process_paths(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    categories: Iterable[str] | None = None,
    on_invalid: Policy = "reject",
    max_invalid_ratio: float = 0.01,
    on_file: Callable[[FileOutcome], None] | None = None,
    batch_bytes: int = BATCH_BYTES,
    on_progress: Callable[[Path, int, int], None] | None = None,
) -> ProcessResult:
    """Process files into ``out_dir``; see the README's ``process`` section for the layout.

    ``batch_bytes`` is how much of a file (CSV bytes) is validated at a time; memory follows it.
    ``on_file`` is given each file's outcome in file order, once the file is done with: an
    accepted file once it is in the lake, which may be a file or more later (its entry runs
    while the next files are validated). When the run stops on an error, the files done
    with before it are still given. ``on_progress(path, bytes_read, rows)`` follows each
    file's validation piece by piece (``validate_file``).
    """
    files = expand_paths(paths)
    out = Path(out_dir)
    _refuse_own_outputs(files, out)
    lake = LocalLake(out / "lake")
    rejected_dir = out / "rejected"
    cats = tuple(categories) if categories is not None else None
    result = ProcessResult()
    told = 0  # files already given to on_file, in file order

    def tell() -> None:
        # An accepted file is told once it is in the lake (its entry runs on a worker
        # thread), and no file before the ones told before it: the order stays the files'.
        nonlocal told
        while told < len(result.files) and _settled(result.files[told]):
            if on_file is not None:
                on_file(result.files[told])
            told += 1

    with lake.locked():
        _sweep(out)
        check_tables(out)  # before any file enters the lake: a refused table changes nothing
        commits = _Commits(lake)
        try:
            entered: dict[str, Path] = {}  # file name -> the run's file of it in the lake
            rejected: dict[str, Path] = {}  # file name -> the run's file of it in rejected/
            for path in files:
                progress = None if on_progress is None else functools.partial(on_progress, path)
                outcome = _one_file(path, lake, commits, rejected_dir, cats, on_invalid,
                                    max_invalid_ratio, batch_bytes, progress)
                if outcome.outcome in ("accepted", "quarantined"):
                    # The lake knows a source by its file name: a second file of one name
                    # replaces the first one's orders (a corrected export); say so.
                    if path.name in entered:
                        outcome.report.warnings.insert(0, (
                            f"same name as {entered[path.name]}, earlier in this run: as a "
                            "file known by its name, it replaces that file's orders"))
                    entered[path.name] = path
                elif outcome.outcome == "rejected":
                    if path.name in rejected:
                        outcome.report.warnings.insert(0, (
                            f"same name as {rejected[path.name]}, rejected earlier in this run:"
                            " its copy and report in rejected/ replace that file's"))
                    rejected[path.name] = path
                result.files.append(outcome)
                tell()
            commits.wait()
        except BaseException:
            commits.shutdown()  # lets the queued entry finish
            with contextlib.suppress(Exception):  # what stopped the run stands
                tell()  # the files done with before it
            raise
        commits.shutdown()
        tell()
        result.category, result.daily, result.recomputed = refresh_tables(lake, out)
    return result


def _refuse_own_outputs(files: Sequence[Path], out: Path) -> None:
    """Refuse an input that is one of the output folder's own files: ``process d --out d``
    took d's KPI tables for order files on its second run and rejected them."""
    for f in files:
        if (part := output_part(f, out)) is not None:
            raise UsageError(f"{f}: {part} of --out {out}, not an order file",
                             hint="keep the order files and the output folder apart")


def output_part(path: Path, out: Path) -> str | None:
    """Return what ``path`` is of the ``process`` output folder ``out`` (one of its KPI
    tables, or a file under its lake/ or rejected/), or None if it is none of them."""
    folder, where = out.resolve(), path.resolve()
    if where.parent == folder and where.name in TABLE_FILES:
        return f"the KPI table {where.name}"
    for sub in ("lake", "rejected"):
        if where.is_relative_to(folder / sub):
            return f"a file under {sub}/"
    return None


def _settled(outcome: FileOutcome) -> bool:
    """Whether the file is done with: an accepted file once it is in the lake."""
    return outcome.outcome != "accepted" or outcome.ingested is not None


# A queued file of more dates than this enters the lake before the next file is staged:
# each staged date holds an open Parquet file until then, and two files' open files must not
# add up past the open-file limit. Daily, weekly and monthly exports overlap.
OVERLAP_MAX_DATES = 32


class _Commits:
    """Valid staged sources entering the lake on a worker thread, in file order, while the
    next file is validated.

    A file's last staged writes, the flush of its files and its entry into the lake
    (``LocalLake.add_staged``) are most of the time of a small file after its verdict; they
    now overlap the next file's reading and judging (measured: a folder of 90 daily files of
    ~33k orders each, 4.6 -> 3.3 s). At most one entry waits or runs at a time, so memory
    holds at most one more file's last pieces. Sources are staged with the sequence number
    they will take once the entries queued before them are done; any other change to the
    lake (a quarantined or whole-file source) first waits for the queue, and so does the next
    file after one of more than ``OVERLAP_MAX_DATES`` dates, or after one of the same name.
    """

    def __init__(self, lake: LocalLake) -> None:
        self._lake = lake
        self._queue = InOrder("commit", depth=1)
        self._seq = lake.peek_seq()
        self._queued: set[str] = set()  # sources queued since the queue was last seen empty
        self._wide = False  # a queued source holds more than OVERLAP_MAX_DATES open files

    def stage(self, source: str) -> StagedSource:
        """Return ``lake.stage(source)`` with the sequence number it will take."""
        if source in self._queued or self._wide:  # its staging folder or files are in use
            self.wait()
        return self._lake.stage(source, seq=self._seq)

    def submit(self, staged: StagedSource, outcome: FileOutcome) -> None:
        """Queue ``staged``'s entry into the lake; ``outcome.ingested`` is set when it is in.
        Raises what an earlier entry raised (``staged`` is then discarded)."""
        def commit() -> None:
            outcome.ingested = self._lake.add_staged(staged)

        try:
            self._queue.submit(commit)
        except BaseException:
            staged.discard()
            raise
        self._queued.add(staged.source)
        self._wide = self._wide or len(outcome.report.dates) > OVERLAP_MAX_DATES
        self._seq += 1

    def wait(self) -> None:
        """Return when every queued source is in the lake; raise what an entry raised."""
        self._queue.wait()  # every entry took the number it was staged with: _seq is next
        self._queued.clear()
        self._wide = False

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Wait for the queue, let the caller change the lake on this thread, then take the
        next sequence number from the lake again."""
        self.wait()
        try:
            yield
        finally:
            self._seq = self._lake.peek_seq()

    def shutdown(self) -> None:
        self._queue.shutdown()


def _one_file(
    path: Path,
    lake: LocalLake,
    commits: _Commits,
    rejected_dir: Path,
    categories: tuple[str, ...] | None,
    on_invalid: Policy,
    max_ratio: float,
    batch_bytes: int,
    on_progress: Callable[[int, int], None] | None,
) -> FileOutcome:
    staged = commits.stage(path.name)
    try:
        res = validate_file(path, categories=categories, display_name=str(path),
                            on_rows=staged.write, on_end=staged.finish,
                            batch_bytes=batch_bytes,
                            spill_dir=staged.folder, on_progress=on_progress,
                            # only a quarantine uses a bad file's rows
                            keep_bad_rows=on_invalid == "quarantine-rows")
    except BaseException:
        staged.discard()
        raise
    if res.streamed and res.report.status == "valid":
        outcome = FileOutcome(str(path), "accepted", res.report)
        commits.submit(staged, outcome)
        return outcome
    try:
        return _settle(path, res, lake, commits, rejected_dir, on_invalid, max_ratio,
                       staged)
    except BaseException:  # (``_settle`` discards it before the lake changes)
        staged.discard()
        raise
    finally:
        if res.rejects is not None:
            res.rejects.close()


def _settle(
    path: Path,
    res: ValidationResult,
    lake: LocalLake,
    commits: _Commits,
    rejected_dir: Path,
    on_invalid: Policy,
    max_ratio: float,
    staged: StagedSource,
) -> FileOutcome:
    """Return the outcome of a file not streamed into the lake whole: empty, valid on the
    whole-file path, rejected or quarantined. ``staged`` (the rows streamed before the
    file's first bad piece, and a bad file's spooled rejects) is discarded before the lake
    changes."""
    report = res.report
    name = str(path)
    ratio = report.invalid_rows / report.rows if report.rows else 1.0
    quarantine = (
        report.status == "invalid"
        and on_invalid == "quarantine-rows"
        and report.structural is None
        and ratio <= max_ratio
        and (res.cleaned is not None or res.replay is not None)
    )
    if not quarantine:  # its rejects are not read: a rejected file's report is capped
        staged.discard()
    if report.status == "empty":
        # A file is known by its name: one that held orders before and now holds none is a
        # corrected export with no orders left, as on AWS (a zero-row cleaned object).
        with commits.exclusive():
            held = lake.source_dates(path.name)
            if held:
                ing = lake.add_source(path.name, pl.DataFrame(schema=LAKE_SCHEMA))
                report.warnings.append(
                    f"header only: it replaces the earlier file of this name, whose orders of "
                    f"{len(held)} date(s) leave the lake"
                )
                return FileOutcome(name, "accepted", report, ing)
        log.info("%s: header only, no orders; no KPI changes", path)
        return FileOutcome(name, "empty", report)
    if report.status == "valid":
        # found valid on the whole-file path (a piece Polars refused, a 64-bit hash collision)
        assert res.cleaned is not None
        with commits.exclusive():
            ing = lake.add_source(path.name, res.cleaned)
        return FileOutcome(name, "accepted", report, ing)
    if not quarantine:
        if on_invalid == "quarantine-rows" and report.structural is None:
            # The counts, not rounded percentages ("1.00% ... above 1.00%" for 101 of 10,000).
            report.warnings.append(
                f"{report.invalid_rows:,} of {report.rows:,} rows are invalid (a share of"
                f" {ratio:.4g}), above --max-invalid-ratio {max_ratio + 0.0:g}: the whole file"
                " is rejected" if ratio > max_ratio else
                "no valid row is left to process: the whole file is rejected"
            )
        _reject(path, report, rejected_dir)
        return FileOutcome(name, "rejected", report)
    assert res.rejects is not None
    # The rows file and its report are replaced together: a full disk or a kill between
    # them left the new rows beside an earlier run's report.
    replace_together([
        (rejected_dir / beside(path.name, ROWS_SUFFIX),
         csv_writer(map(safe_frame, res.rejects.rows()))),
        (rejected_dir / beside(path.name, ERRORS_SUFFIX),
         text_writer(report.json_chunks(outcome="quarantined", every=res.rejects))),
    ])
    # An earlier rejection of this name left the file's bytes: they would sit beside a report
    # of another file (the reports of one name replace each other, as the copies do).
    (rejected_dir / kept_name(path.name)).unlink(missing_ok=True)
    res.rejects.close()
    staged.discard()  # before the valid rows are staged again under the same name
    with commits.exclusive():  # the lake changes here, on this thread
        if res.cleaned is not None:  # the whole-file path kept them
            ing = lake.add_source(path.name, res.cleaned)
        else:  # a second streamed pass over the file stages the valid rows
            assert res.replay is not None
            again = lake.stage(path.name)
            try:
                res.replay(again.write)
            except BaseException:
                again.discard()
                raise
            ing = lake.add_staged(again)
    return FileOutcome(name, "quarantined", report, ing)


def reprocess_dates(
    out_dir: str | Path, date_from: dt.date, date_to: dt.date
) -> tuple[list[dt.date], ProcessResult]:
    """Recompute the KPIs of every lake date in [date_from, date_to] without reading inputs.

    For a changed KPI definition: the lake holds the cleaned rows, so the CSVs are not needed.
    Dates in the range that are no longer in the lake drop out of the tables.
    """
    if date_from > date_to:
        raise UsageError(f"--date-from {date_from} is after --date-to {date_to}")
    out = Path(out_dir)
    lake = LocalLake(out / "lake")
    if not lake.root.is_dir():
        raise UsageError(f"{out}: no lake here (run `order-kpis process ... --out {out}` first)")
    result = ProcessResult()
    with lake.locked():
        _sweep(out)
        check_tables(out)
        in_lake = [d for d in lake.dates() if date_from <= d <= date_to]
        old = pl.read_parquet(out / DAILY_PARQUET, columns=["order_date"])["order_date"].to_list(
        ) if (out / DAILY_PARQUET).exists() else []
        stale = [d for d in old if date_from <= d <= date_to]
        lake.mark_pending(set(in_lake) | set(stale))
        result.category, result.daily, result.recomputed = refresh_tables(lake, out)
    return in_lake, result


def _sweep(out: Path) -> None:
    """Delete the temporary files a run killed while it wrote the KPI tables, or a file's
    copy, rows or report in rejected/, left there (called under the lake's lock, which every
    run writing them holds; ``LocalLake.locked`` sweeps the lake). In ``out`` itself only the
    tables' are: a dashboard or report a user writes there is written without the lock."""
    left = sweep_temporaries(out, of=TABLE_FILES) + sweep_temporaries(out / "rejected")
    if left:
        log.info("%s: removed the temporary files a killed run left: %s", out,
                 ", ".join(str(p.relative_to(out)) for p in left))


def check_tables(out: Path) -> None:
    """Refuse (``KpiTableDamagedError``) a stored KPI table of ``out`` that this version did
    not write as it is: the merge of new rows would fail on it, or keep its other types."""
    for name, schema in TABLE_SCHEMAS.items():
        if (out / name).exists():
            scan_table(out / name, schema)  # reads the footer only


def refresh_tables(
    lake: LocalLake, out: Path, *, max_rows: int = KPI_BATCH_ROWS
) -> tuple[pl.DataFrame, pl.DataFrame, list[dt.date]]:
    """Recompute the pending dates from the lake and replace both KPI tables atomically;
    return the tables and the dates recomputed.

    The tables hold the whole lake: with one deleted by hand, every lake date is recomputed
    (the pending dates alone would make tables of those dates only). Dates are computed in
    groups of about ``max_rows`` lake rows (a KPI row depends on one date only), so memory
    follows the group, not the lake.
    """
    pending = lake.pending()
    cat_path, day_path = out / CATEGORY_PARQUET, out / DAILY_PARQUET
    missing = next((p for p in (cat_path, day_path) if not p.exists()), None)
    if missing is not None and (others := set(lake.dates()) - pending):  # none on a first run
        log.warning("%s is missing: the KPI tables are recomputed from the whole lake "
                    "(%d more dates)", missing, len(others))
        pending |= others
    old_cat = (scan_table(cat_path, CATEGORY_SCHEMA).collect() if cat_path.exists()
               else empty_category_table())
    old_day = (scan_table(day_path, DAILY_SCHEMA).collect() if day_path.exists()
               else empty_daily_table())
    if pending or not all((out / n).exists() for n in TABLE_FILES):
        keep = ~pl.col("order_date").is_in(sorted(pending))
        cats, days = [old_cat.filter(keep)], [old_day.filter(keep)]
        rows = lake.row_counts(pending)  # the footers, read once
        for group in date_groups(rows, max_rows):
            # One query after the other (``kpi_tables``): a one-date file of 10M orders
            # peaked at 2.3 GB in memory, 1.0 GB streaming both tables at once, and 0.47 GB
            # one after the other, in the same time. A group of several dates holds at most
            # ``max_rows`` rows, few enough for the in-memory engine to count customers.
            new_cat, new_day = kpi_tables(
                _orders(lake, group, rows, max_rows),
                few_rows=sum(rows[d] for d in group) <= max_rows,
            )
            cats.append(new_cat)
            days.append(new_day)
        category = pl.concat(cats).sort("category", "order_date")
        daily = pl.concat(days).sort("order_date")
        write_tables(category, daily, out)
        lake.clear_pending(pending)
        return category, daily, sorted(pending)
    return old_cat, old_day, []


def _orders(
    lake: LocalLake, dates: Sequence[dt.date], rows: Mapping[dt.date, int], max_rows: int
) -> pl.LazyFrame:
    """Return the orders of ``dates``: ``latest_orders`` only where sources share a date.

    ``rows``: each date's lake rows (``LocalLake.row_counts``).

    Within one source an order_id is unique (validation says so), so a date held by a single
    source needs no de-duplication, the costliest step of the KPI query. Shared dates of
    more than ``max_rows`` rows are de-duplicated in slices of about ``max_rows`` rows, so
    the window's memory does not grow with the date.
    """
    shared = [d for d in dates if len(lake.objects(d)) > 1]
    alone = [d for d in dates if d not in shared]
    if not shared:
        return lake.scan(alone)
    slices = -(-sum(rows[d] for d in shared) // max(max_rows, 1))
    latest = latest_orders_in_slices(lake.scan(shared), slices)
    return latest if not alone else pl.concat([lake.scan(alone), latest])


def write_tables(category: pl.DataFrame, daily: pl.DataFrame, out: Path) -> None:
    """Write both tables as Parquet (typed) and CSV (text, formula-safe): the four files are
    replaced together, all or none (``atomic.replace_together``)."""
    category_csv = safe_frame(category)
    replace_together([
        (out / CATEGORY_PARQUET, parquet_writer(category)),
        (out / DAILY_PARQUET, parquet_writer(daily)),
        (out / CATEGORY_CSV, category_csv.write_csv),
        (out / DAILY_CSV, daily.write_csv),
    ])
