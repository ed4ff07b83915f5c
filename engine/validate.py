"""Run the order rules over a file and report its findings by their lines in the original file.

``rules.py`` says what valid is (and ``schema.py`` wraps it as a pandera model); this module
decides how to run them and how to tell people. A piece that plainly passes is judged by
the rules fused in one select; pandera's failure cases are the source of the findings, and
their row positions are mapped back to file lines (a quoted field spanning lines counted
correctly) only when there are findings.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import shutil
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, fields
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from engine.columns import ORDER_COLUMNS
from engine.errors import InputFileError
from engine.read import (
    MAX_FIELD_BYTES,
    MAX_LINE_BYTES,
    ROW,
    BrokenPiece,
    Layout,
    NulByteError,
    Piece,
    PieceRefused,
    RawOrders,
    file_digest,
    layout,
    newlines_before,
    nul_error,
    open_header,
    oversized_fields,
    oversized_lines,
    read_orders,
    strip_columns,
    text_pieces,
)
from engine.rules import (
    BLANK,
    LAKE_SCHEMA,
    OK,
    UNIQUE_COLUMNS,
    allowed_categories,
    checked_piece,
    typed_columns,
)

if TYPE_CHECKING:
    from pandera.api.polars.container import DataFrameSchema

    from engine.schema import OrderModel

log = logging.getLogger(__name__)

Status = Literal["valid", "invalid", "empty"]
MAX_VALUE_CHARS = 200
MAX_STORED_VALUE_CHARS = 1000  # reports keep this much of a value (a huge field is cut)
ROW_WIDE = "(row)"  # the column shown in counts for a finding about a whole row
# CSV bytes per piece (~0.5M orders at ~70 bytes each). Each extra MB of piece cost ~8 MB of
# peak RSS when measured (text, stripped copy, checks, typed copy, the piece being written).
BATCH_BYTES = 32 * 1024 * 1024
# The most 64-bit id hashes checked for uniqueness at once; the rest wait in bucket files.
HASH_BUCKET_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    """One broken rule: where (line, column), which rule, the value, and a readable message."""

    line: int | None
    column: str | None
    rule: str
    value: str | None
    message: str
    hint: str | None = None

    def text(self) -> str:
        """``column: message: 'value'``; a finding about the whole row is its message alone
        (it already names what is wrong)."""
        if self.column is None:
            return self.message
        return f"{self.column}: {self.message}: {_show(self.value)}"


_FINDINGS_HERE = "\x00findings\x00"  # where ``to_json`` puts the findings' lines


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {"line": f.line, "column": f.column, "rule": f.rule, "value": f.value,
            "message": f.message, "hint": f.hint}


@dataclass
class ValidationReport:
    """Everything known about one file's validity; JSON-ready through ``to_dict``."""

    file: str
    size_bytes: int
    sha256: str | None
    status: Status
    rows: int = 0
    valid_rows: int = 0
    invalid_rows: int = 0
    dates: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    structural: Finding | None = None
    warnings: list[str] = field(default_factory=list)
    omitted_counts: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    """Findings counted but not listed (a rejected file's past ``MAX_LISTED_FINDINGS``), per
    (column, rule); the JSON gives their number (``omitted_findings``) and ``counts``."""

    @property
    def omitted_findings(self) -> int:
        return sum(self.omitted_counts.values())

    @property
    def ok(self) -> bool:
        return self.status != "invalid"

    def counts(self) -> list[dict[str, Any]]:
        """Return failures counted per (column, rule), most frequent first."""
        c = Counter((f.column or ROW_WIDE, f.rule) for f in self.findings)
        c.update(self.omitted_counts)
        if self.structural is not None:
            c[(self.structural.column or ROW_WIDE, self.structural.rule)] += 1
        return [
            {"column": col, "rule": rule, "count": n}
            for (col, rule), n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def summary(self, *, rejected: bool = False) -> str:
        """Return one paragraph for people (SNS, logs); ``rejected`` when the whole file was."""
        if self.structural is not None:
            verdict = "was rejected" if rejected else "is invalid"
            return f"{self.file} {verdict}: {self.structural.message}"
        if self.status == "empty":
            return f"{self.file} has a header and no orders: it changes no KPI."
        if self.status == "valid":
            return f"{self.file}: {self.rows} orders valid, dates {', '.join(self.dates)}."
        parts = ", ".join(f"{d['count']} x {d['column']} {d['rule']}" for d in self.counts()[:8])
        return (
            f"{self.file} {'was rejected' if rejected else 'is invalid'}: "
            f"{self.invalid_rows} of {self.rows} rows are invalid "
            f"({parts})."
        )

    def notice(self, *, rejected: bool = False, first: int = 3) -> str:
        """Return ``summary`` with the ``first`` findings at their lines, columns and values:
        the paragraph a notification carries (the report lists them)."""
        text = self.summary(rejected=rejected)
        if self.structural is not None or not self.findings:
            return text
        shown = []
        for f in self.findings[:first]:
            where = f"line {f.line}" if f.line is not None else "a row"
            shown.append(f"{where}: {f.text()}")
        more = len(self.findings) + self.omitted_findings - first
        return f"{text} First: {'; '.join(shown)}" + (
            f"; and {more} more findings." if more > 0 else ".")

    def render(self, limit: int = 20, *, rejected: bool = False) -> str:
        """Return the terminal text: the first ``limit`` findings and the counts."""
        lines = [self.summary(rejected=rejected)]
        if self.structural is not None:
            if self.structural.hint:
                lines.append(f"Hint: {self.structural.hint}")
            return "\n".join(lines)
        for f in self.findings[:limit]:
            where = f"{self.file}:{f.line}" if f.line is not None else self.file
            lines.append(f"  {where}: {f.text()}")
        if len(self.findings) + self.omitted_findings > limit:
            lines.append(f"  ... and {len(self.findings) + self.omitted_findings - limit:,} more"
                         " findings" + (f" ({self.omitted_findings:,} of them counted, not"
                                        " listed in the report)" if self.omitted_findings
                                        else ""))
        if self.findings:
            lines.append("  counts: " + "; ".join(
                f"{d['column']} {d['rule']}: {d['count']}" for d in self.counts()
            ))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "omitted_counts":
                d["omitted_findings"] = self.omitted_findings  # each is also in "counts"
                continue
            if f.name == "findings":
                value = [_finding_dict(x) for x in value]
            elif f.name == "structural":
                value = None if value is None else _finding_dict(value)
            elif isinstance(value, list):
                value = list(value)
            d[f.name] = value
        d["counts"] = self.counts()
        d["summary"] = self.summary()
        return d

    def to_json(self, *, outcome: str | None = None) -> str:
        """Return the report as JSON text (``write_json``'s)."""
        return "".join(self.json_chunks(outcome=outcome))

    def write_json(self, path: str | Path, *, outcome: str | None = None) -> None:
        """Write the report; ``outcome`` (``process``: "rejected" or "quarantined") is added
        as a key of its own, so that readers tell a file set aside from one partly accepted."""
        from engine.atomic import write_text_chunks_atomic

        write_text_chunks_atomic(path, self.json_chunks(outcome=outcome))

    def json_chunks(self, *, outcome: str | None = None,
                    every: Rejects | None = None) -> Iterator[str]:
        """Yield the report as JSON text, a piece at a time: indented, one finding a line.
        ``every``: list every finding, read batch by batch from the file's ``Rejects`` (a
        quarantine's report, written in the memory of a batch), not only those held here.

        ``json``'s indenting encoder is pure Python: a quarantine of 200,000 rows with 1.4M
        findings spent 24 s and 2.3 GB writing its report. The findings go through the
        C encoder, one line each."""
        data = self.to_dict() if outcome is None else {**self.to_dict(), "outcome": outcome}
        findings: Iterable[Finding] = self.findings
        if every is not None:  # all of them are listed: none is omitted
            findings, data["omitted_findings"] = every.findings(), 0
        data["findings"] = _FINDINGS_HERE
        head, tail = json.dumps(data, indent=2, ensure_ascii=False).split(
            json.dumps(_FINDINGS_HERE), 1)
        yield head
        sep = "[\n    "
        for f in findings:
            yield sep + json.dumps(_finding_dict(f), ensure_ascii=False)
            sep = ",\n    "
        yield "[]" if sep.startswith("[") else "\n  ]"
        yield tail + "\n"


@dataclass
class ValidationResult:
    """A report, the typed rows that passed, and the text rows that failed (with reasons).

    Rows that passed are in ``cleaned``, unless they were handed batch by batch to the
    ``on_rows`` callback of ``validate_file`` (then ``streamed`` is True). For an invalid file
    whose rows were not kept, ``replay`` hands its valid rows, piece by piece, to a callback:
    a second pass over the file, in the same bounded memory as the first.
    """

    report: ValidationReport
    cleaned: pl.DataFrame | None = None
    rejects: Rejects | None = None
    streamed: bool = False
    replay: Callable[[Callable[[pl.DataFrame], None]], None] | None = None

    @property
    def rejected_rows(self) -> pl.DataFrame | None:
        """Every failing row at once (line, the order columns as text, reason); for a file
        of many bad rows, ``rejects.rows()`` hands them out batch by batch."""
        if self.rejects is None:
            return None
        return pl.concat(self.rejects.rows(), how="vertical")


def _show(value: str | None) -> str:
    if value is None:
        return "(none)"
    if value == "":
        return '""'
    return repr(value) if len(value) <= MAX_VALUE_CHARS else repr(value[:MAX_VALUE_CHARS]) + "..."


def _clip(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_STORED_VALUE_CHARS:
        return value
    return value[:MAX_STORED_VALUE_CHARS] + f"... ({len(value.encode())} bytes in all)"


def _structural(path: str, size: int, sha: str | None, err: InputFileError) -> ValidationResult:
    where = path if err.line is None else f"{path}:{err.line}"
    message = err.message.removeprefix(where + ": ")
    if err.line is not None:
        message = f"line {err.line}: {message}"
    f = Finding(line=err.line, column=err.column, rule=err.kind, value=err.value,
                message=message, hint=err.hint)
    report = ValidationReport(file=path, size_bytes=size, sha256=sha, status="invalid",
                              structural=f)
    return ValidationResult(report=report)


def validate_file(
    path: str | Path,
    *,
    categories: Iterable[str] | None = None,
    display_name: str | None = None,
    on_rows: Callable[[pl.DataFrame], None] | None = None,
    on_end: Callable[[], None] | None = None,
    keep_rows: bool = True,
    batch_bytes: int = BATCH_BYTES,
    spill_dir: Path | None = None,
    bucket_bytes: int = HASH_BUCKET_BYTES,
    on_progress: Callable[[int, int], None] | None = None,
    keep_bad_rows: bool = True,
) -> ValidationResult:
    """Validate one order CSV; never raises for bad data (the report says what is wrong).

    The file is read in pieces of about ``batch_bytes`` of CSV, so memory follows the piece
    (and the number of bad rows), not the file. While the file is valid so far, each piece's
    typed rows go to ``on_rows`` when it is given (the result is then ``streamed``), else into
    ``cleaned`` when ``keep_rows``. From the first finding on, the file is invalid: whatever
    ``on_rows`` got must be thrown away, and the rest of the file is only read for findings,
    each named at its line. The valid rows of an invalid file are then in ``cleaned`` (when
    ``keep_rows`` and no ``on_rows``) or handed out by ``replay``. ``on_end`` is called
    once the last piece has gone to ``on_rows``, before the file-wide checks, which can
    still find the file invalid. A structural problem
    (bytes that are not UTF-8, a quoting error, a NUL byte) is named from the piece that
    holds it; rows with too many fields are reported row by row like bad values. Only a
    piece Polars refuses for a reason its bytes do not show sends the file to the whole-file
    path (``read_orders`` + ``validate_raw``), which holds the file in memory.
    The id hashes that check uniqueness across pieces wait in a temporary folder under
    ``spill_dir`` (the system's temporary folder when None), deleted before this returns.
    ``on_progress(bytes_read, rows)`` is called after each piece is judged (for a progress
    line: the bytes of the file read so far and the orders counted in them).
    A bad file's report lists its first ``MAX_LISTED_FINDINGS`` findings and counts the
    others. With ``keep_bad_rows``, every finding and bad row waits in another temporary
    folder under ``spill_dir``, for ``rejects`` to hand out batch by batch (the caller
    ``close``s it, or it goes with the result), and the valid rows are handed out by
    ``replay``. Without, the file is rejected whole: neither is kept. Either way memory stays
    bounded whatever the number of bad rows.
    """
    name = display_name or str(path)
    spool = Rejects(spill_dir) if keep_bad_rows else None
    try:
        with tempfile.TemporaryDirectory(prefix="ids-", dir=spill_dir) as spill:
            streamed = _validate_batches(
                str(path), name, categories, on_rows, on_end, keep_rows=keep_rows,
                batch_bytes=batch_bytes, spill=Path(spill), bucket_bytes=bucket_bytes,
                on_progress=on_progress, spool=spool,
            )
        if streamed is not None:
            return streamed
        if spool is not None:  # the whole-file path holds its rejects in memory
            spool.close()
        raw = read_orders(path, display_name=name)
        # The failure path re-reads the bytes and may find a structural problem Polars let by.
        return validate_raw(raw, Path(path), categories=categories)
    except BaseException as e:
        if spool is not None:
            spool.close()
        if not isinstance(e, InputFileError):
            raise
        try:
            size, sha = file_digest(path)
        except OSError:
            size, sha = 0, None
        return _structural(name, size, sha, e)


@cache
def _row_schema(model: type[OrderModel]) -> DataFrameSchema:
    """Return the model's schema without its file-wide rules (``unique``), to run per piece."""
    schema = model.to_schema()
    for name, col in schema.columns.items():
        if col.unique:
            schema = schema.update_column(name, unique=False)
    return schema


class _HashBuckets:
    """64-bit hashes of one column, spilled piece by piece to bucket files by their top bits.

    A valid row takes at least 18 bytes of CSV (its date alone takes 10), so a file of
    ``file_bytes`` holds at most ``file_bytes / 2`` bytes of hashes: that fixes the number of
    buckets (a power of two, at least 2) that keeps each one under ``bucket_bytes``. When
    they all fit in one bucket, they are simply kept in memory (no folder, no files): for a
    folder of small daily files, spilling and reading back cost more than judging them.
    """

    def __init__(self, folder: Path, file_bytes: int, bucket_bytes: int) -> None:
        self.folder = folder
        most = file_bytes // 2
        self._held: list[pl.Series] | None = [] if most <= bucket_bytes else None
        if self._held is not None:
            return
        folder.mkdir()
        bits = max(1, (-(-most // bucket_bytes) - 1).bit_length())
        self.divisor = 1 << (64 - bits)  # hash // divisor = its top ``bits`` bits

    def add(self, hashes: pl.Series) -> None:
        """Keep each hash, or append it to its bucket's file (raw native uint64 values)."""
        if self._held is not None:
            self._held.append(hashes)
            return
        frame = pl.DataFrame({"h": hashes}).with_columns(b=pl.col("h") // self.divisor)
        for (bucket,), part in frame.partition_by("b", as_dict=True).items():
            arr = part["h"].to_arrow()
            with open(self.folder / f"{bucket}.u64", "ab") as f:
                f.write(arr.buffers()[1].slice(arr.offset * 8, len(arr) * 8))

    def _buckets(self) -> Iterator[pl.Series]:
        if self._held is not None:
            if self._held:
                held = pl.concat(self._held)
                self._held.clear()  # one copy at a time, as a bucket read from disk
                yield held
            return
        import pyarrow as pa

        for p in sorted(self.folder.glob("*.u64")):
            data = pa.py_buffer(p.read_bytes())
            yield pl.Series(pa.Array.from_buffers(pa.uint64(), len(data) // 8, [None, data]))

    def duplicates(self) -> pl.Series:
        """Return the hashes found more than once (a collision only costs a closer look)."""
        found = []
        for bucket in self._buckets():
            if len(bucket) < 2:
                continue
            allh = bucket.sort()
            same = allh.slice(1) == allh.slice(0, len(allh) - 1)
            if same.any():
                found.append(allh.slice(1).filter(same).unique())
        return pl.concat(found) if found else pl.Series("h", [], dtype=pl.UInt64)


def _exact_path(name: str, why: str) -> ValidationResult | None:
    """Log why the streaming pass stops; return None, its answer for "use the exact path"."""
    log.info("%s: %s; validating the whole file at once", name, why)
    return None


def _blank(cols: Iterable[str]) -> pl.Expr:
    return pl.all_horizontal([pl.col(c).str.len_bytes() == 0 for c in cols if c != ROW])


class _Lines:
    """File line numbers of records in a piece, counting the file's LFs only when asked."""

    def __init__(self, path: str, name: str, header: tuple[str, ...]) -> None:
        self.path, self.name, self.header = path, name, header
        self._at = self._lfs = 0  # LFs counted in the bytes before ``_at``

    def layout(self, piece: Piece) -> Layout:
        """Return the piece's records' first lines (in the file) and field counts."""
        self._lfs = newlines_before(self.path, piece.offset, start=self._at, counted=self._lfs)
        self._at = piece.offset
        return layout(self.name, piece.data(self.path), len(self.header), header=piece.first,
                      first_line=self._lfs + 1)


JUDGE_ROWS = 100_000
"""Rows of a piece judged by pandera at a time (its failure cases grow with the rules broken)."""

MAX_LISTED_FINDINGS = 10_000
"""Findings a bad file's report holds; the others are counted (``omitted_findings``).
A file whose every row was bad kept ~1.4 KB per row (its findings, text and lines): 1M rows
took 1.65 GB, 3M rows 4.4 GB. A quarantined file's written report lists them all, read
back from its ``Rejects``."""


_FINDING_SCHEMA = {"line": pl.Int64, "column": pl.String, "rule": pl.String,
                   "value": pl.String, "message": pl.String, "hint": pl.String}
"""Findings in columns (each with its row's ``__row`` too): a ``Finding`` a row."""
_TEXT_SCHEMA = {ROW: pl.Int64, "line": pl.Int64, **dict.fromkeys(ORDER_COLUMNS, pl.String)}
"""A failing row as it is set aside: its ``__row``, its line and its fields as text."""


def _as_findings(listed: pl.DataFrame) -> Iterator[Finding]:
    """Yield the findings of a frame of ``_FINDING_SCHEMA`` columns."""
    for r in listed.select(*_FINDING_SCHEMA).iter_rows():
        yield Finding(*r)


class Rejects:
    """A bad file's findings and failing rows, handed out batch by batch in line order.

    A batch is (its findings in columns, in report order; its rows: ``line``, the order
    columns as text, ``reason``). The whole-file path holds them in memory, as one batch.
    The streaming path spools them to files in a folder of its own (under ``spool``), in
    two runs in line order: the pieces' findings, and the duplicates' (found after every
    piece, of rows of any piece), merged when read back. A quarantine's report and rows
    file are so written in the memory of a piece, whatever the number of bad rows (1M bad
    rows held ~1.9 GB). The folder goes with ``close`` (or with this object).
    """

    def __init__(self, spool: Path | None = None) -> None:
        self._parent = spool
        self._folder: Path | None = None
        self._runs: dict[bool, list[tuple[int, Path]]] = {False: [], True: []}  # by ``late``
        self._held: tuple[pl.DataFrame, pl.DataFrame] | None = None
        self._cleanup: Callable[[], object] | None = None

    @classmethod
    def held(cls, text: pl.DataFrame, listed: pl.DataFrame) -> Rejects:
        """Return the rejects of the whole-file path, as ``add`` takes them."""
        rejects = cls()
        rejects._held = (listed, text)
        return rejects

    def add(self, text: pl.DataFrame, listed: pl.DataFrame, *, late: bool = False) -> None:
        """Keep failing rows (``text``: ``__row``, ``line``, the order columns, in line
        order) and their findings (``listed``, in report order), after the earlier ones of
        their run; ``late``: of the duplicates' run."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="rejects-", dir=self._parent))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._folder, True)
        run = self._runs[late]
        stem = self._folder / f"{'late' if late else 'piece'}-{len(run)}"
        text.write_ipc(stem.with_suffix(".rows"))
        listed.write_ipc(stem.with_suffix(".findings"))
        run.append((listed.select(_LINE.min()).item(), stem))

    def batches(self) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        """Yield (findings, failing rows as ``add`` takes them) batch by batch, in line
        order."""
        if self._held is not None:
            yield self._held
            return
        # A batch ends where a spooled part of either run starts: it holds at most one
        # part of each.
        runs = [_Run(run) for run in self._runs.values()]
        starts = sorted({first for run in self._runs.values() for first, _ in run})
        for upto in [*starts[1:], None]:
            taken = [run.take(upto) for run in runs]
            listed = _in_report_order(pl.concat([f for f, _ in taken]))
            if listed.height:
                yield listed, pl.concat([r for _, r in taken]).unique(
                    ROW, keep="first", maintain_order=True)

    def findings(self) -> Iterator[Finding]:
        """Yield every finding, in report order."""
        for listed, _ in self.batches():
            yield from _as_findings(listed)

    def rows(self) -> Iterator[pl.DataFrame]:
        """Yield the failing rows batch by batch, in line order, each with its line and the
        reasons it failed."""
        for listed, text in self.batches():
            yield _rejected_rows(text, listed)

    def close(self) -> None:
        """Delete the spooled files (a second call does nothing)."""
        if self._cleanup is not None:
            self._cleanup()


_LINE = pl.col("line").fill_null(0)  # a finding's place in line order


class _Run:
    """Spooled parts of findings and rows in line order, read back one part at a time."""

    def __init__(self, parts: list[tuple[int, Path]]) -> None:
        self._parts = iter([stem for _, stem in parts])
        self._open: tuple[pl.DataFrame, pl.DataFrame] | None = None

    def take(self, upto: int | None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Return the findings and rows before line ``upto`` (all that are left: None)
        not taken yet."""
        found: list[pl.DataFrame] = [pl.DataFrame(schema={ROW: pl.Int64, **_FINDING_SCHEMA})]
        rows: list[pl.DataFrame] = [pl.DataFrame(schema=_TEXT_SCHEMA)]
        while True:
            if self._open is None:
                stem = next(self._parts, None)
                if stem is None:
                    break
                self._open = (pl.read_ipc(stem.with_suffix(".findings")),
                              pl.read_ipc(stem.with_suffix(".rows")))
            listed, text = self._open
            if upto is None:
                n_f, n_r = listed.height, text.height
            else:
                n_f = listed.select(_LINE.search_sorted(upto, side="left")).item()
                n_r = text.select(_LINE.search_sorted(upto, side="left")).item()
            found.append(listed.head(n_f))
            rows.append(text.head(n_r))
            if n_f < listed.height:  # the rest is at or past ``upto``
                self._open = (listed.slice(n_f), text.slice(n_r))
                break
            self._open = None
        return pl.concat(found), pl.concat(rows)


@dataclass
class _Invalid:
    """What is wrong with a file so far: findings, and which rows are bad (``__row``).

    The first ``MAX_LISTED_FINDINGS`` findings are kept (``listed``, in report order), the
    others counted, and the bad rows are kept as integer ids. With a ``spool`` (a file whose
    valid rows may be kept: ``--on-invalid quarantine-rows``), every finding and bad row
    also goes there, for the report and the rows file; without, the file is rejected whole.
    """

    spool: Rejects | None = None
    listed: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={ROW: pl.Int64, **_FINDING_SCHEMA}))
    ids: list[pl.Series] = field(default_factory=list)  # the bad rows, never an empty Series
    omitted: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(self.ids)

    def add(self, text: pl.DataFrame, listed: pl.DataFrame, *, late: bool = False) -> None:
        """Record failing rows (``text``: ``__row``, ``line``, the order columns) and their
        findings (``listed``, in report order); ``late``: the duplicates, found last."""
        if text.is_empty():  # a piece sent here by a blank line of commas alone has none
            return
        if self.spool is not None:
            self.spool.add(text, listed, late=late)
        # Past its first MAX_LISTED_FINDINGS, no finding of ``listed`` can be listed.
        merged = _in_report_order(
            pl.concat([self.listed, listed.head(MAX_LISTED_FINDINGS)]))
        self.listed = merged.head(MAX_LISTED_FINDINGS)
        for left_out in (merged.slice(MAX_LISTED_FINDINGS), listed.slice(MAX_LISTED_FINDINGS)):
            counted = left_out.group_by(pl.col("column").fill_null(ROW_WIDE), "rule").len()
            self.omitted.update({(c, r): n for c, r, n in counted.iter_rows()})
        self.ids.append(text[ROW])

    def bad_rows(self) -> pl.Series:
        """Return the bad rows' ids, each once."""
        return pl.concat(self.ids).unique() if self.ids else pl.Series(ROW, [], dtype=pl.Int64)

    def knows(self, rows: pl.Series) -> pl.Series:
        """Return, for each of ``rows``, whether it is bad already."""
        if not self.ids:
            return pl.repeat(False, rows.len(), eager=True)
        self.ids = [pl.concat(self.ids)]  # asked once a piece of duplicates: kept whole
        return rows.is_in(self.ids[0].implode())


@lru_cache(maxsize=16)
def _judges(
    names: tuple[str, ...], allowed: tuple[str, ...]
) -> dict[bool, Callable[[pl.LazyFrame], pl.LazyFrame]]:
    """Return the piece queries, by whether the piece's fields need stripping. Built once per
    header and category set: building them took ~4 ms, paid again by every file of a folder."""
    return {
        strip: checked_piece(names, allowed, max_field_bytes=MAX_FIELD_BYTES,
                             max_line_bytes=MAX_LINE_BYTES, strip=strip)
        for strip in (True, False)
    }


def _validate_batches(
    path: str,
    name: str,
    categories: Iterable[str] | None,
    on_rows: Callable[[pl.DataFrame], None] | None,
    on_end: Callable[[], None] | None,
    *,
    keep_rows: bool,
    batch_bytes: int,
    spill: Path,
    bucket_bytes: int,
    on_progress: Callable[[int, int], None] | None = None,
    spool: Rejects | None = None,
) -> ValidationResult | None:
    """Validate piece by piece; return None when only the whole-file path can say what is wrong.

    Each piece is judged by ``rules.checked_piece`` in one query that also types it; only a
    piece that does not plainly pass (a padded value, a blank line full of spaces, a finding)
    is judged again by the pandera model, on its stripped text, and its findings are mapped
    to lines from the piece's own bytes. File-wide rules (``UNIQUE_COLUMNS``) are run across
    pieces: each piece spills a 64-bit hash per value to bucket files under ``spill``; at the
    end the buckets are checked one by one, and only the rows whose hash repeats are read
    again to compare their text. Parsing the next piece overlaps judging this one.
    """
    size, header, extras, names = open_header(path, name)
    allowed = allowed_categories(categories)
    judge = _judges(names, allowed)
    report = ValidationReport(
        file=name, size_bytes=size, sha256=None, status="valid",
        warnings=["extra columns ignored: " + ", ".join(e or "(unnamed)" for e in extras)]
        if extras else [],
    )
    hashes = {c: _HashBuckets(spill / c, size, bucket_bytes) for c in UNIQUE_COLUMNS}
    lines = _Lines(path, name, header)
    bad = _Invalid(spool=spool)
    kept: list[pl.DataFrame] = []
    dates: Counter[dt.date] = Counter()
    offset = n_blank = n_rows = 0
    pieces = _read_ahead(
        text_pieces(path, names, batch_bytes=batch_bytes, refuse_nul=True, name=name,
                    check_padding=True)
    )
    try:
        for piece in pieces:
            text = piece.frame
            # Lazily: the rules and the typed columns share their parses (one to_date... per
            # column), ~20% less CPU than an eager select.
            checked = judge[not piece.unpadded](text.lazy()).collect()
            n_blank_here, plain = checked.select(
                pl.col(BLANK).sum(), (pl.col(OK) | pl.col(BLANK)).all()
            ).row(0)
            if plain and not piece.ragged:
                good = checked.filter(~pl.col(BLANK)) if n_blank_here else checked
                good = ids = good.drop(OK, BLANK)
            else:
                good, ids, n_blank_here = _judge_piece(piece, names, offset, allowed, lines, bad)
            offset += text.height
            del text, checked
            n_blank += n_blank_here
            n_rows += ids.height
            for c in UNIQUE_COLUMNS:
                hashes[c].add(ids[c].hash())
            dates.update(dict(good["order_date"].value_counts().iter_rows()))
            if bad:
                kept.clear()  # the file is invalid: valid rows come from ``replay`` now
            elif on_rows is not None:
                on_rows(good)
            elif keep_rows:
                kept.append(good)
            if on_progress is not None:
                on_progress(piece.offset + piece.size, n_rows)
    except NulByteError as e:
        # Binary data: a file-level error, named at its line without reading the file whole.
        raise nul_error(path, name, e.offset) from None
    except BrokenPiece as broken:  # named from the piece's own bytes
        raise broken.error from None
    except PieceRefused as refused:  # and its bytes do not say why: let the whole file
        return _exact_path(name, f"Polars refused a piece ({refused.reason[:200]})")
    except pl.exceptions.PolarsError as e:
        return _exact_path(name, f"Polars refused a piece ({str(e).splitlines()[0][:200]})")
    except InputFileError as e:  # a piece's bytes, walked for lines, are malformed after all
        return _exact_path(name, e.message)
    finally:
        pieces.close()
    if on_end is not None and on_rows is not None and not bad:
        on_end()
    dups = pl.concat([hashes[c].duplicates() for c in UNIQUE_COLUMNS])
    if dups.len():
        _find_duplicates(path, names, batch_bytes, dups, lines, bad, dates, spill)
    if n_blank:
        report.warnings.append(f"{n_blank} blank line(s) skipped")
    report.rows = n_rows
    report.dates = sorted(d.isoformat() for d, n in dates.items() if n > 0)
    if not bad:
        report.valid_rows = n_rows
        report.status = "valid" if n_rows else "empty"
        result = ValidationResult(report=report, streamed=on_rows is not None)
        if on_rows is None and keep_rows:
            result.cleaned = pl.concat(kept) if kept else pl.DataFrame(schema=LAKE_SCHEMA)
        return result
    report.findings = list(_as_findings(bad.listed))
    report.omitted_counts = dict(bad.omitted)
    bad_rows = bad.bad_rows().sort()
    report.invalid_rows = bad_rows.len()
    report.valid_rows = n_rows - report.invalid_rows
    report.status = "invalid"
    report.sha256 = file_digest(path)[1]
    if spool is None:  # rejected whole: no rows file, no valid rows to hand out
        return ValidationResult(report=report)
    result = ValidationResult(report=report, rejects=spool)
    if report.valid_rows:
        result.replay = lambda sink: _replay(path, names, batch_bytes, bad_rows, sink)
        if on_rows is None and keep_rows:
            parts: list[pl.DataFrame] = []
            result.replay(parts.append)
            result.cleaned = pl.concat(parts)
    return result


def _judge_piece(
    piece: Piece,
    names: tuple[str, ...],
    offset: int,
    allowed: tuple[str, ...],
    lines: _Lines,
    bad: _Invalid,
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Judge a piece the exact way (pandera, on stripped text); record its findings in ``bad``.

    Returns the typed rows that passed, the stripped ids of every non-blank row (for the
    file-wide ``unique`` rule), and the number of blank lines. The piece is judged
    ``JUDGE_ROWS`` rows at a time: pandera's failure cases and the findings grow with the
    rules each row breaks (a piece of 700,000 rows breaking 7 rules each took 1.8 GB whole).
    """
    import pandera.polars as pa

    from engine.schema import order_model

    frame = strip_columns(piece.frame, names, offset)
    blank = _blank(frame.columns)
    n_blank = frame.select(blank.sum()).item()
    if n_blank:
        frame = frame.filter(~blank)
    schema = _row_schema(order_model(allowed))
    lay: Layout | None = None
    good: list[pl.DataFrame] = []
    for part in frame.iter_slices(JUDGE_ROWS):
        failures: pl.DataFrame | None = None
        try:
            schema.validate(part, lazy=True)
        except pa.errors.SchemaErrors as e:
            failures = e.failure_cases
        big, long_lines = oversized_fields(part), oversized_lines(part)
        if failures is None and big.height == 0 and long_lines.height == 0 and not piece.ragged:
            good.append(part.select(typed_columns()))
            continue
        lay = lay or lines.layout(piece)
        listed = _findings(
            part, failures, big, long_lines, header=lines.header, start_lines=lay.start_lines,
            field_counts=lay.field_counts, extras=lay.extras, first_row=offset,
        )
        del failures
        text = _failing(part, listed)
        bad.add(text, listed)
        good.append(part.join(text, on=ROW, how="anti").select(typed_columns()))
    typed = pl.concat(good) if good else frame.select(typed_columns())
    return typed, frame.select(UNIQUE_COLUMNS), n_blank


def _failing(frame: pl.DataFrame, listed: pl.DataFrame) -> pl.DataFrame:
    """Return the rows of ``frame`` that ``listed`` names: ``__row``, ``line``, the order
    columns as text."""
    rows = listed.select(ROW, "line").unique(ROW, keep="first", maintain_order=True)
    return rows.join(frame.select(ROW, *ORDER_COLUMNS), on=ROW, how="inner")


def _at(starts: list[int], i: int) -> int | None:
    return starts[i] if 0 <= i < len(starts) else None


def _find_duplicates(
    path: str,
    names: tuple[str, ...],
    batch_bytes: int,
    dups: pl.Series,
    lines: _Lines,
    bad: _Invalid,
    dates: Counter[dt.date],
    spill: Path,
) -> None:
    """Read the file again for the rows whose id hash repeats; record true duplicates.

    Equal hashes of different ids (a collision) are not findings. A duplicate that passed
    every other rule leaves the valid rows: its date is counted out of ``dates``. The rows
    read wait under ``spill``, piece by piece, while each id's first lines and count are
    gathered; then each piece's duplicates are recorded. Memory follows a piece and the
    number of repeated ids, not the number of duplicate rows (an export whose order_id
    column is blank has one a row: 3M rows took 1.6 GB held at once).
    """
    from engine.schema import RULE_IDS

    lines = _Lines(path, lines.name, lines.header)  # counts from the start again
    wanted = dups.implode()
    found: list[Path] = []
    per_id: pl.DataFrame | None = None
    offset = 0
    for piece in text_pieces(path, names, batch_bytes=batch_bytes):
        frame = strip_columns(piece.frame, names, offset)
        offset += frame.height
        frame = frame.filter(~_blank(frame.columns))
        hit = frame.filter(pl.col("order_id").hash().is_in(wanted))
        if hit.height:
            lay = lines.layout(piece)
            start = offset - piece.frame.height
            line = [_at(lay.start_lines, row - start) for row in hit[ROW]]
            hit = hit.select(ROW, pl.Series("line", line, dtype=pl.Int64), *ORDER_COLUMNS,
                             _clipped(pl.col("order_id")).alias("value"))
            found.append(spill / f"dups-{len(found)}.arrow")
            hit.write_ipc(found[-1])
            seen = _lines_per_id(hit)
            per_id = seen if per_id is None else pl.concat([per_id, seen]).group_by(_ID).agg(
                pl.col("shown").list.explode(keep_nulls=False, empty_as_null=False).sort()
                .head(DUPLICATE_LINES_SHOWN), pl.col("n").sum())
    if per_id is None:
        return
    repeated = per_id.filter(pl.col("n") > 1)
    for part in found:
        # A row with too few or too many fields is named too: its first field is its
        # order_id all the same, and the other copy's message names its line.
        rows = _said(pl.read_ipc(part).filter(pl.col("value").is_not_null())
                     .with_columns(_ID_KEYS)
                     .join(repeated, on=_ID, how="inner", maintain_order="left"))
        part.unlink()
        if rows.is_empty():
            continue
        # A duplicate that passed every other rule leaves the valid rows (and its date's count).
        for day, n in rows.filter(~bad.knows(rows[ROW]))["order_date"].value_counts().iter_rows():
            dates[dt.date.fromisoformat(day)] -= n
        listed = rows.select(
            ROW, "line", pl.lit("order_id").alias("column"),
            pl.lit(RULE_IDS["field_uniqueness"]).alias("rule"), "value",
            pl.col("said").alias("message"), pl.lit(None, dtype=pl.String).alias("hint"),
        )
        bad.add(rows.select(ROW, "line", *ORDER_COLUMNS), listed, late=True)


_ID = ["id0", "id1"]
_ID_KEYS = [pl.col("value").hash(seed=0).alias("id0"), pl.col("value").hash(seed=1).alias("id1")]
"""An id (``value``) known by a 128-bit hash: the repeated ids' summaries take a fixed
16 bytes an id, where the text took its length (1.5M ids of 300 characters: 2.0 GB)."""


def _lines_per_id(rows: pl.DataFrame) -> pl.DataFrame:
    """Return, per id (``_ID``, of ``value``) of ``rows``, its first ``DUPLICATE_LINES_SHOWN``
    lines (``shown``) and its number of rows (``n``)."""
    return rows.filter(pl.col("value").is_not_null()).with_columns(_ID_KEYS).group_by(_ID).agg(
        pl.col("line").drop_nulls().sort().head(DUPLICATE_LINES_SHOWN).alias("shown"),
        pl.len().cast(pl.Int64).alias("n"))


def _said(rows: pl.DataFrame) -> pl.DataFrame:
    """Return ``rows`` with their duplicates' message (``said``), which names their id's
    first lines (``shown``) and how many more there are (of ``n``)."""
    more = {n: f" and {n - DUPLICATE_LINES_SHOWN:,} more ({n:,} in all)"
            for n in rows.filter(pl.col("n") > DUPLICATE_LINES_SHOWN)["n"].unique()}
    return rows.with_columns(
        pl.when(pl.col("shown").list.len() > 0).then(pl.concat_str(
            pl.lit(f"{_UNIQUE}; this order_id is on lines "),
            pl.col("shown").list.eval(pl.element().cast(pl.String)).list.join(", "),
            pl.col("n").replace_strict(more, default="", return_dtype=pl.String),
        )).otherwise(pl.lit(_UNIQUE)).alias("said"),
    )


def _replay(
    path: str,
    names: tuple[str, ...],
    batch_bytes: int,
    bad_rows: pl.Series,
    sink: Callable[[pl.DataFrame], None],
) -> None:
    """Hand the typed valid rows of an invalid file to ``sink``, piece by piece."""
    skip = bad_rows.implode()
    offset = 0
    for piece in text_pieces(path, names, batch_bytes=batch_bytes):
        frame = strip_columns(piece.frame, names, offset)
        offset += frame.height
        good = frame.filter(~_blank(frame.columns) & ~pl.col(ROW).is_in(skip))
        if good.height:
            sink(good.select(typed_columns()))


def _read_ahead(items: Iterator[Piece]) -> Generator[Piece, None, None]:
    """Yield ``items``, each produced on a worker thread while the previous one is used.

    Parsing a piece (Polars, GIL released) then overlaps judging and staging the one before.
    At most one piece waits. Exceptions reach the consumer in order; closing the generator
    stops the worker.
    """
    slot: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=1)
    stop = threading.Event()
    end = object()

    def offer(item: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                slot.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((True, item)):
                    return
            offer((True, end))
        except BaseException as e:  # handed to the consumer, raised there
            offer((False, e))

    worker = threading.Thread(target=produce, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            ok, item = slot.get()
            if not ok:
                assert isinstance(item, BaseException)
                raise item
            if item is end:
                return
            assert isinstance(item, Piece)
            yield item
    finally:
        stop.set()
        worker.join()


def validate_raw(
    raw: RawOrders, source: Path, *, categories: Iterable[str] | None = None
) -> ValidationResult:
    """Validate records already read; ``source`` is re-read only to map findings to lines."""
    import pandera.polars as pa

    frame = raw.frame
    blank = _blank(frame.columns)
    n_blank = frame.select(blank.sum()).item()
    report = ValidationReport(
        file=raw.path, size_bytes=raw.size_bytes, sha256=None, status="valid",
        warnings=list(raw.warnings),
    )
    if n_blank:
        frame = frame.filter(~blank)
        report.warnings.append(f"{n_blank} blank line(s) skipped")
    report.rows = frame.height

    from engine.schema import order_model

    model = order_model(categories)
    failures: pl.DataFrame | None = None
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as e:
        failures = e.failure_cases
    big = oversized_fields(raw.frame)
    long_lines = oversized_lines(raw.frame)

    if failures is None and big.height == 0 and long_lines.height == 0 and not raw.ragged:
        return _accept(raw, frame, report)

    lay = layout(raw.path, source.read_bytes(), len(raw.header))
    listed = _findings(
        frame, failures, big, long_lines, header=raw.header, start_lines=lay.start_lines,
        field_counts=lay.field_counts, extras=lay.extras,
    )
    if listed.is_empty():  # rows of the wrong width were all blank lines (``,,,``)
        return _accept(raw, frame, report)
    listed = _explain_duplicates(listed)
    text = _failing(frame, listed)
    report.findings = list(_as_findings(listed))
    report.invalid_rows = text.height
    report.valid_rows = report.rows - report.invalid_rows
    report.status = "invalid"
    report.sha256 = file_digest(source)[1]
    good = frame.join(text, on=ROW, how="anti")
    cleaned = good.select(typed_columns()) if good.height else None
    if cleaned is not None:
        report.dates = sorted(d.isoformat() for d in cleaned["order_date"].unique())
    return ValidationResult(report=report, cleaned=cleaned, rejects=Rejects.held(text, listed))


def _accept(raw: RawOrders, frame: pl.DataFrame, report: ValidationReport) -> ValidationResult:
    cleaned = frame.select(typed_columns())
    report.valid_rows = cleaned.height
    if cleaned.height == 0:
        report.status = "empty"
    report.dates = sorted(d.isoformat() for d in cleaned["order_date"].unique())
    return ValidationResult(report=report, cleaned=cleaned)


def _findings(
    frame: pl.DataFrame,
    failures: pl.DataFrame | None,
    big: pl.DataFrame,
    long_lines: pl.DataFrame,
    *,
    header: tuple[str, ...],
    start_lines: list[int],
    field_counts: list[int],
    extras: dict[int, str] | None = None,
    first_row: int = 0,
) -> pl.DataFrame:
    """Turn pandera's failure cases (row positions) into findings at file lines.

    ``start_lines`` and ``field_counts`` give each record's first line and its number of
    fields from ``first_row`` on, and ``extras`` (by the same index) the text past the
    header's fields of a record with too many, which the message quotes: the row as read,
    and so its set-aside copy, holds only the header's fields. Returns the findings in
    columns (``__row`` and ``_FINDING_SCHEMA``), in report order. In columns: a piece of
    700,000 rows each failing 7 rules took 2.8 GB as ``Finding`` objects.
    """
    from engine.schema import RULE_IDS, RULE_MESSAGES

    if failures is not None:
        broken = failures.filter(pl.col("index").is_null())
        if broken.height:
            # A check that raised is a bug in the model, not bad data.
            raise RuntimeError(f"a validation check failed to run: {broken.to_dicts()[0]}")
    n_fields = len(header)
    # A short row whose missing fields are all extra columns loses nothing the contract
    # needs: a row is ragged with more fields, or with fewer that miss an order column.
    last_needed = max((i for i, c in enumerate(header) if c in ORDER_COLUMNS), default=-1)
    counts = pl.DataFrame({ROW: pl.int_range(first_row, first_row + len(field_counts),
                                             eager=True, dtype=pl.Int64),
                           "n": pl.Series(field_counts, dtype=pl.Int64)})
    # A record of empty fields only (``,,,``) is a blank line, skipped with the others (it
    # is not in ``frame``), whatever its field count.
    ragged = counts.filter(
        (pl.col("n") > n_fields) | ((pl.col("n") > 0) & (pl.col("n") <= last_needed))
    ).join(frame.select(ROW), on=ROW, how="semi")
    n = pl.col("n")
    message = pl.concat_str(pl.lit("the row has "), n.cast(pl.String), pl.lit(" field"),
                            pl.when(n != 1).then(pl.lit("s")).otherwise(pl.lit("")),
                            pl.lit(f", expected {n_fields}"))
    if extras and ragged.height:
        past = {first_row + i: f"; the text past field {n_fields}: {_clip(rest)!r}"
                for i, rest in extras.items()}
        message = pl.concat_str(message, pl.col(ROW).replace_strict(
            past, default="", return_dtype=pl.String))
    parts = [ragged.select(ROW, pl.lit(None, pl.String).alias("column"),
                           pl.lit("field_count").alias("rule"),
                           n.cast(pl.String).alias("value"), message.alias("message"))]
    if failures is not None:
        check = pl.col("check")
        cases = pl.DataFrame({ROW: frame[ROW].gather(failures["index"].cast(pl.Int64)),
                              "column": failures["column"].cast(pl.String),
                              "check": failures["check"].cast(pl.String),
                              "value": failures["failure_case"].cast(pl.String)})
        rule = check.replace_strict(RULE_IDS, default=check, return_dtype=pl.String)
        parts.append(cases.select(
            ROW, "column", rule.alias("rule"), _clipped(pl.col("value")).alias("value"),
            check.replace_strict(RULE_MESSAGES, default=check,
                                 return_dtype=pl.String).alias("message"),
        ).filter(  # the field count explains the row; its order_id is still its own
            ~pl.col(ROW).is_in(ragged[ROW].implode()) | (pl.col("rule") == "unique")))
    if big.height:
        parts.append(big.select(
            ROW, pl.col("column").cast(pl.String), pl.lit("field_size").alias("rule"),
            pl.concat_str(pl.col("bytes").cast(pl.String), pl.lit(" bytes")).alias("value"),
            pl.lit(f"is larger than the {MAX_FIELD_BYTES}-byte limit for a field")
            .alias("message")))
    if long_lines.height:
        nbytes = pl.col("bytes").cast(pl.String)
        parts.append(long_lines.filter(~pl.col(ROW).is_in(ragged[ROW].implode())).select(
            ROW, pl.lit(None, pl.String).alias("column"), pl.lit("line_size").alias("rule"),
            pl.concat_str(nbytes, pl.lit(" bytes")).alias("value"),
            pl.concat_str(pl.lit("the line is "), nbytes,
                          pl.lit(f" bytes, above the {MAX_LINE_BYTES}-byte limit"))
            .alias("message")))
    lines = pl.DataFrame({ROW: pl.int_range(first_row, first_row + len(start_lines),
                                            eager=True, dtype=pl.Int64),
                          "line": pl.Series(start_lines, dtype=pl.Int64)})
    listed = pl.concat(parts).join(lines, on=ROW, how="left", maintain_order="left")
    return _in_report_order(listed.with_columns(pl.lit(None, pl.String).alias("hint")))


def _clipped(value: pl.Expr) -> pl.Expr:
    """``_clip`` in columns: a value longer than ``MAX_STORED_VALUE_CHARS`` is cut."""
    return pl.when(value.str.len_chars() > MAX_STORED_VALUE_CHARS).then(pl.concat_str(
        value.str.slice(0, MAX_STORED_VALUE_CHARS), pl.lit("... ("),
        value.str.len_bytes().cast(pl.String), pl.lit(" bytes in all)"),
    )).otherwise(value)


def _in_report_order(listed: pl.DataFrame) -> pl.DataFrame:
    """Return findings in columns in the order reports give them: by line, then column
    order, then rule."""
    return listed.sort(
        pl.col("line").fill_null(0),
        pl.col("column").replace_strict(_COLUMN_ORDER, default=99, return_dtype=pl.Int64)
        .fill_null(99),
        "rule", maintain_order=True,
    ).select(ROW, *_FINDING_SCHEMA)


_COLUMN_ORDER = {c: i for i, c in enumerate(ORDER_COLUMNS)}


DUPLICATE_LINES_SHOWN = 10
"""Lines a duplicate's message names; past them it gives the count. Every line's message
naming every other line made a file of 40,000 empty order_ids take 24 GB (quadratic)."""
_UNIQUE = "must be unique within the file"  # a duplicate's message, before its lines


def _explain_duplicates(listed: pl.DataFrame) -> pl.DataFrame:
    """Name, on each duplicate order_id's finding, the lines that carry the same id (the
    first ``DUPLICATE_LINES_SHOWN``, then how many more)."""
    per_id = _lines_per_id(listed.filter(pl.col("rule") == "unique"))
    keyed = listed.with_columns(_ID_KEYS).join(per_id, on=_ID, how="left", maintain_order="left")
    return _said(keyed).with_columns(
        pl.when(pl.col("rule") == "unique")
        .then(pl.col("said").fill_null(pl.lit(_UNIQUE)))
        .otherwise(pl.col("message")).alias("message")
    ).select(listed.columns)


def _rejected_rows(text: pl.DataFrame, listed: pl.DataFrame) -> pl.DataFrame:
    """Return the failing rows (``text``: ``__row``, ``line``, the order columns) with the
    reasons they failed, from their findings in columns (``listed``, in report order)."""
    part = pl.when(pl.col("column").is_null()).then(pl.col("message")).otherwise(
        pl.concat_str(pl.col("column"), pl.lit(" "), pl.col("message")))
    reasons = listed.group_by(ROW, maintain_order=True).agg(part.str.join("; ").alias("reason"))
    return (
        text.join(reasons, on=ROW, how="left")
        .with_columns(pl.col("reason").fill_null(""))
        .sort(ROW)
        .select("line", *ORDER_COLUMNS, "reason")
    )
