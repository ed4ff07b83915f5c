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

    def to_json(self, **extra: Any) -> str:
        """Return the report as JSON text, ``extra`` keys added: indented, one finding a line.

        ``json``'s indenting encoder is pure Python: a quarantine of 200,000 rows with 1.4M
        findings spent 24 s and 2.3 GB writing its report. The findings go through the
        C encoder, one line each."""
        return "".join(self._json_chunks(extra))

    def _json_chunks(self, extra: dict[str, Any], every: Rejects | None = None) -> Iterator[str]:
        data = {**self.to_dict(), **extra}
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

    def write_json(self, path: str | Path, *, outcome: str | None = None,
                   every: Rejects | None = None) -> None:
        """Write the report; ``outcome`` (``process``: "rejected" or "quarantined") is added
        as a key of its own, so that readers tell a file set aside from one partly accepted.
        ``every``: list every finding, read batch by batch from the file's ``Rejects`` (a
        quarantine's report, written in the memory of a batch), not only those held here."""
        from engine.atomic import write_text_chunks_atomic

        extra = {} if outcome is None else {"outcome": outcome}
        write_text_chunks_atomic(path, self._json_chunks(extra, every))


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


MAX_LISTED_FINDINGS = 10_000
"""Findings a bad file's report holds; the others are counted (``omitted_findings``).
A file whose every row was bad kept ~1.4 KB per row (its findings, text and lines): 1M rows
took 1.65 GB, 3M rows 4.4 GB. A quarantined file's written report lists them all, read
back from its ``Rejects``."""


_FINDING_SCHEMA = {"line": pl.Int64, "column": pl.String, "rule": pl.String,
                   "value": pl.String, "message": pl.String, "hint": pl.String}


def _as_findings(listed: pl.DataFrame) -> list[Finding]:
    """Return the findings of a frame of ``_FINDING_SCHEMA``."""
    return [Finding(*r) for r in listed.select(*_FINDING_SCHEMA).iter_rows()]


class Rejects:
    """A bad file's findings and failing rows, handed out batch by batch in line order.

    A batch is (its findings in report order, its rows: ``line``, the order columns as
    text, ``reason``). The whole-file path holds them in memory, as one batch. The streaming
    path spools each piece's to files in a folder of its own (``spool``), and the duplicates
    found at the end are merged in by line: a quarantine's report and rows file are written
    in the memory of a piece, whatever the number of bad rows (1M bad rows held ~1.9 GB).
    The folder goes with ``close`` (or with this object).
    """

    def __init__(self, spool: Path | None = None) -> None:
        self._parent = spool
        self._folder: Path | None = None
        self._pieces: list[tuple[int, Path]] = []  # (a piece's first bad line, its files' stem)
        self._late = pl.DataFrame(schema=_FINDING_SCHEMA)  # the duplicates, found last
        self._late_rows: pl.DataFrame | None = None
        self._held: tuple[list[Finding], pl.DataFrame] | None = None
        self._cleanup: Callable[[], object] | None = None

    @classmethod
    def held(cls, findings: list[Finding], rows: pl.DataFrame) -> Rejects:
        """Return the rejects of the whole-file path: ``findings`` sorted, ``rows`` as
        ``_rejected_rows`` gives them."""
        rejects = cls()
        rejects._held = (findings, rows)
        return rejects

    def add(self, frame: pl.DataFrame, findings: list[Finding],
            rows: dict[int, int | None]) -> None:
        """Keep a piece's ``findings`` and failing ``rows`` (``__row`` -> line), with their
        text (``frame``)."""
        keys = pl.DataFrame({ROW: list(rows), "line": list(rows.values())},
                            schema={ROW: pl.Int64, "line": pl.Int64})
        text = keys.join(frame.select(ROW, *ORDER_COLUMNS), on=ROW, how="inner")
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="rejects-", dir=self._parent))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._folder, True)
        stem = self._folder / str(len(self._pieces))
        text.write_ipc(stem.with_suffix(".rows"))
        listed = pl.DataFrame([_finding_dict(f) for f in findings], schema=_FINDING_SCHEMA)
        listed.write_ipc(stem.with_suffix(".findings"))
        self._pieces.append((min(f.line or 0 for f in findings), stem))

    def add_late(self, rows: pl.DataFrame, listed: pl.DataFrame) -> None:
        """Keep the duplicates (found after every piece, of rows of any piece): their
        ``rows`` (``__row``, ``line``, the order columns) and findings, in line order."""
        self._late = listed.with_columns(pl.col("line").fill_null(0))
        self._late_rows = rows.with_columns(pl.col("line").fill_null(0))

    def batches(self) -> Iterator[tuple[list[Finding], pl.DataFrame]]:
        """Yield (findings, rows) batch by batch, in line order."""
        if self._held is not None:
            yield self._held
            return
        # A piece's batch takes the late ones before the next piece's first bad line.
        stems: list[Path | None] = [stem for _, stem in self._pieces] or [None]
        bounds = [first for first, _ in self._pieces[1:]] + [None]
        starts = self._late["line"]
        cut = 0
        for stem, upto in zip(stems, bounds, strict=True):
            end = starts.len() if upto is None else int(starts.search_sorted(upto, "left"))
            findings = _as_findings(self._late.slice(cut, end - cut))
            parts = [] if self._late_rows is None else [self._late_rows.slice(cut, end - cut)]
            cut = end
            if stem is not None:
                spooled = pl.read_ipc(stem.with_suffix(".findings"))
                findings = _as_findings(spooled) + findings
                parts.insert(0, pl.read_ipc(stem.with_suffix(".rows")))
            if not findings:
                continue
            findings.sort(key=_finding_order)
            rows = pl.concat(parts).unique(ROW, keep="first", maintain_order=True)
            yield findings, _rejected_rows(
                rows.drop("line"), findings, dict(zip(rows[ROW], rows["line"], strict=True)))

    def findings(self) -> Iterator[Finding]:
        """Yield every finding, in report order."""
        for findings, _ in self.batches():
            yield from findings

    def rows(self) -> Iterator[pl.DataFrame]:
        """Yield the failing rows batch by batch, in line order."""
        for _, rows in self.batches():
            yield rows

    def close(self) -> None:
        """Delete the spooled files (a second call does nothing)."""
        if self._cleanup is not None:
            self._cleanup()


@dataclass
class _Invalid:
    """What is wrong with a file so far: findings, and which rows are bad (``__row``).

    The first ``MAX_LISTED_FINDINGS`` findings are kept, the others counted, and the bad
    rows are kept as integer ids. With a ``spool`` (a file whose valid rows may be kept:
    ``--on-invalid quarantine-rows``), every finding and bad row also goes there, for the
    report and the rows file; without, the file is rejected whole.
    """

    spool: Rejects | None = None
    findings: list[Finding] = field(default_factory=list)
    ids: list[pl.Series] = field(default_factory=list)  # the bad rows, never an empty Series
    omitted: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(self.ids)

    def add(self, frame: pl.DataFrame, findings: list[Finding],
            rows: dict[int, int | None]) -> None:
        """Record a piece's findings and bad rows."""
        if not rows:  # a piece sent here by a blank line of commas alone has none
            return
        if self.spool is not None:
            self.spool.add(frame, findings, rows)
        self.findings.extend(findings)
        if len(self.findings) > 2 * MAX_LISTED_FINDINGS:
            self.trim()
        self.ids.append(pl.Series(ROW, list(rows), dtype=pl.Int64))

    def trim(self) -> None:
        """Keep the ``MAX_LISTED_FINDINGS`` first findings by line (a piece's come by column,
        duplicates at the end); count the others."""
        if len(self.findings) <= MAX_LISTED_FINDINGS:
            return
        self.findings.sort(key=_finding_order)
        self.omitted.update((f.column or ROW_WIDE, f.rule)
                            for f in self.findings[MAX_LISTED_FINDINGS:])
        del self.findings[MAX_LISTED_FINDINGS:]

    def bad_rows(self) -> pl.Series:
        """Return the bad rows' ids, each once."""
        return pl.concat(self.ids).unique() if self.ids else pl.Series(ROW, [], dtype=pl.Int64)

    def add_late(self, rows: pl.DataFrame, listed: pl.DataFrame) -> None:
        """Record the duplicates, found after every piece: their ``rows`` (``__row``,
        ``line``, the order columns) and findings (``listed``, in columns), by line."""
        if self.spool is not None:
            self.spool.add_late(rows, listed)
        first = listed.head(MAX_LISTED_FINDINGS)  # no later one can be listed
        self.findings.extend(_as_findings(first))
        if listed.height > first.height:
            self.omitted[("order_id", "unique")] += listed.height - first.height
        self.trim()
        self.ids.append(rows[ROW])

    def knows(self, rows: pl.Series) -> pl.Series:
        """Return, for each of ``rows``, whether it is bad already."""
        if not self.ids:
            return pl.repeat(False, rows.len(), eager=True)
        return rows.is_in(pl.concat(self.ids).implode())


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
        _find_duplicates(path, names, batch_bytes, dups, lines, bad, dates)
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
    bad.trim()
    report.findings = _sorted_findings(bad.findings, explain=False)
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
    file-wide ``unique`` rule), and the number of blank lines.
    """
    import pandera.polars as pa

    from engine.schema import order_model

    frame = strip_columns(piece.frame, names, offset)
    blank = _blank(frame.columns)
    n_blank = frame.select(blank.sum()).item()
    if n_blank:
        frame = frame.filter(~blank)
    failures: pl.DataFrame | None = None
    try:
        _row_schema(order_model(allowed)).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as e:
        failures = e.failure_cases
    big, long_lines = oversized_fields(frame), oversized_lines(frame)
    ids = frame.select(UNIQUE_COLUMNS)
    if failures is None and big.height == 0 and long_lines.height == 0 and not piece.ragged:
        return frame.select(typed_columns()), ids, n_blank
    lay = lines.layout(piece)
    findings, rows = _findings(
        frame, failures, big, long_lines, header=lines.header,
        line_of=lambda row: _at(lay.start_lines, row - offset),
        field_counts=lay.field_counts, extras=lay.extras, first_row=offset,
    )
    bad.add(frame, findings, rows)
    keys = pl.Series(ROW, list(rows), dtype=pl.Int64).implode()
    good = frame.filter(~pl.col(ROW).is_in(keys)).select(typed_columns())
    return good, ids, n_blank


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
) -> None:
    """Read the file again for the rows whose id hash repeats; record true duplicates.

    Equal hashes of different ids (a collision) are not findings. A duplicate that passed
    every other rule leaves the valid rows: its date is counted out of ``dates``.
    """
    from engine.schema import RULE_IDS

    lines = _Lines(path, lines.name, lines.header)  # counts from the start again
    wanted = dups.implode()
    found: list[pl.DataFrame] = []
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
            found.append(hit.with_columns(pl.Series("__line", line, dtype=pl.Int64)))
    if not found:
        return
    rows = pl.concat(found).filter(pl.col("order_id").count().over("order_id") > 1)
    if rows.is_empty():
        return
    # A duplicate that passed every other rule leaves the valid rows (and its date's count).
    new = rows.filter(~bad.knows(rows[ROW]))["order_date"].value_counts()
    for day, n in new.iter_rows():
        dates[dt.date.fromisoformat(day)] -= n
    # A row with too few or too many fields is named too: its first field is its order_id
    # all the same, and the other copy's message names its line. In columns: an export
    # whose order_id column is blank has as many duplicates as rows (Finding objects took
    # ~1 KB each).
    lines_of = pl.col("__line").drop_nulls()
    per_id = rows.group_by("order_id").agg(
        lines_of.sort().head(DUPLICATE_LINES_SHOWN).alias("shown"), lines_of.len().alias("n"))
    more = {value: f" and {n - DUPLICATE_LINES_SHOWN:,} more ({n:,} in all)"
            for value, n in per_id.filter(pl.col("n") > DUPLICATE_LINES_SHOWN)
            .select("order_id", "n").iter_rows()}
    said = per_id.select(
        "order_id",
        pl.when(pl.col("n") > 0).then(pl.concat_str(
            pl.lit(f"{_UNIQUE}; this order_id is on lines "),
            pl.col("shown").list.eval(pl.element().cast(pl.String)).list.join(", "),
            pl.col("order_id").replace_strict(more, default="", return_dtype=pl.String),
        )).otherwise(pl.lit(_UNIQUE)).alias("message"),
    )
    value = pl.col("order_id")
    rows = rows.sort(ROW).rename({"__line": "line"})
    listed = rows.join(said, on="order_id", how="left", maintain_order="left").select(
        "line", pl.lit("order_id").alias("column"),
        pl.lit(RULE_IDS["field_uniqueness"]).alias("rule"),
        pl.when(value.str.len_chars() > MAX_STORED_VALUE_CHARS).then(pl.concat_str(
            value.str.slice(0, MAX_STORED_VALUE_CHARS), pl.lit("... ("),
            value.str.len_bytes().cast(pl.String), pl.lit(" bytes in all)"),
        )).otherwise(value).alias("value"),  # as ``_clip``
        "message", pl.lit(None, dtype=pl.String).alias("hint"),
    )
    bad.add_late(rows.select(ROW, "line", *ORDER_COLUMNS), listed)


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
    findings, bad_rows = _findings(
        frame, failures, big, long_lines, header=raw.header,
        line_of=lambda row: _at(lay.start_lines, row),
        field_counts=lay.field_counts, extras=lay.extras,
    )
    if not findings:  # rows of the wrong width were all blank lines (``,,,``)
        return _accept(raw, frame, report)
    findings = _sorted_findings(findings)
    report.findings = findings
    report.invalid_rows = len(bad_rows)
    report.valid_rows = report.rows - report.invalid_rows
    report.status = "invalid"
    report.sha256 = file_digest(source)[1]
    bad = pl.Series(ROW, sorted(bad_rows), dtype=pl.Int64)
    good = frame.filter(~pl.col(ROW).is_in(bad.implode()))
    rejected = _rejected_rows(frame, findings, bad_rows)
    cleaned = good.select(typed_columns()) if good.height else None
    if cleaned is not None:
        report.dates = sorted(d.isoformat() for d in cleaned["order_date"].unique())
    return ValidationResult(report=report, cleaned=cleaned,
                            rejects=Rejects.held(findings, rejected))


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
    line_of: Callable[[int], int | None],
    field_counts: list[int],
    extras: dict[int, str] | None = None,
    first_row: int = 0,
) -> tuple[list[Finding], dict[int, int | None]]:
    """Turn pandera's failure cases (row positions) into findings at file lines.

    ``line_of`` gives a record's (``__row``) first line; ``field_counts`` the number of fields
    of each record from ``first_row`` on, and ``extras`` (by the same index) the text past the
    header's fields of a record with too many, which the message quotes: the row as read, and
    so its set-aside copy, holds only the header's fields. Returns the findings, unsorted, and
    for every failing record its first line.
    """
    from engine.schema import RULE_IDS, RULE_MESSAGES

    if failures is not None:
        broken = failures.filter(pl.col("index").is_null())
        if broken.height:
            # A check that raised is a bug in the model, not bad data.
            raise RuntimeError(f"a validation check failed to run: {broken.to_dicts()[0]}")
    n_fields = len(header)
    findings: list[Finding] = []
    bad: dict[int, int | None] = {}
    # A short row whose missing fields are all extra columns loses nothing the contract needs.
    ragged = {}
    if field_counts.count(n_fields) + field_counts.count(0) < len(field_counts):
        ragged = {
            first_row + i: n
            for i, n in enumerate(field_counts)
            if n not in (n_fields, 0)
            and (n > n_fields or any(c in ORDER_COLUMNS for c in header[n:]))
        }
    if ragged:
        # A record of empty fields only (``,,,``) is a blank line, skipped with the others
        # (it is not in ``frame``), whatever its field count: it was a bad row only when
        # another row of its piece was bad, and counted twice (valid rows went negative).
        kept = frame.filter(pl.col(ROW).is_in(list(ragged)))[ROW].to_list()
        ragged = {row: ragged[row] for row in kept}
    for i, n in ragged.items():
        bad[i] = line_of(i)
        message = f"the row has {n} field{'s' if n != 1 else ''}, expected {n_fields}"
        if n > n_fields and extras is not None and (rest := extras.get(i - first_row)) is not None:
            message += f"; the text past field {n_fields}: {_clip(rest)!r}"
        findings.append(Finding(
            line=line_of(i), column=None, rule="field_count", value=str(n), message=message,
        ))
    if failures is not None:
        rows = frame[ROW].gather(failures["index"].cast(pl.Int64))
        cases = zip(rows, failures["column"], failures["check"], failures["failure_case"],
                    strict=True)
        for row, column, check, value in cases:
            rule = RULE_IDS.get(check, check)
            if row in ragged and rule != "unique":
                continue  # the field count explains the row; its order_id is still its own
            bad[row] = line_of(row)
            findings.append(Finding(
                line=line_of(row), column=column, rule=rule, value=_clip(value),
                message=RULE_MESSAGES.get(check, check),
            ))
    for row, column, nbytes in big.iter_rows():
        bad[row] = line_of(row)
        findings.append(Finding(
            line=line_of(row), column=column, rule="field_size", value=f"{nbytes} bytes",
            message=f"is larger than the {MAX_FIELD_BYTES}-byte limit for a field",
        ))
    for row, nbytes in long_lines.iter_rows():
        if row in ragged:
            continue
        bad[row] = line_of(row)
        findings.append(Finding(
            line=line_of(row), column=None, rule="line_size", value=f"{nbytes} bytes",
            message=f"the line is {nbytes} bytes, above the {MAX_LINE_BYTES}-byte limit",
        ))
    return findings, bad


_COLUMN_ORDER = {c: i for i, c in enumerate(ORDER_COLUMNS)}


def _finding_order(f: Finding) -> tuple[int, int, str]:
    """The order findings are reported in: by line, then column order, then rule."""
    return (f.line or 0, _COLUMN_ORDER.get(f.column or "", 99), f.rule)


def _sorted_findings(findings: list[Finding], *, explain: bool = True) -> list[Finding]:
    """Return the findings in report order; ``explain``: duplicates name their lines (the
    streaming path names them in ``_find_duplicates``, from all of them)."""
    findings = list(findings)
    if explain:
        _explain_duplicates(findings)
    return sorted(findings, key=_finding_order)


DUPLICATE_LINES_SHOWN = 10
_UNIQUE = "must be unique within the file"  # a duplicate's message, before its lines
"""Lines a duplicate's message names; past them it gives the count. Every line's message
naming every other line made a file of 40,000 empty order_ids take 24 GB (quadratic)."""


def _explain_duplicates(findings: list[Finding]) -> None:
    """Name, on each duplicate order_id, the lines that carry the same id (the first
    ``DUPLICATE_LINES_SHOWN``, then how many more)."""
    lines_by_id: dict[str | None, list[int]] = {}
    for f in findings:
        if f.rule == "unique" and f.line is not None:
            lines_by_id.setdefault(f.value, []).append(f.line)
    said: dict[str | None, str] = {}  # one message per id, shared by its findings
    for value, lines in lines_by_id.items():
        lines.sort()
        shown = ", ".join(str(n) for n in lines[:DUPLICATE_LINES_SHOWN])
        if len(lines) > DUPLICATE_LINES_SHOWN:
            shown += f" and {len(lines) - DUPLICATE_LINES_SHOWN:,} more ({len(lines):,} in all)"
        said[value] = f"{_UNIQUE}; this order_id is on lines {shown}"
    for i, f in enumerate(findings):
        if f.rule == "unique":
            findings[i] = Finding(
                line=f.line, column=f.column, rule=f.rule, value=f.value,
                message=said.get(f.value, _UNIQUE),
            )


def _rejected_rows(
    frame: pl.DataFrame, findings: list[Finding], bad: dict[int, int | None]
) -> pl.DataFrame:
    """Return the failing rows as text, each with its line and the reasons it failed."""
    reasons: dict[int | None, list[str]] = {}
    for f in findings:
        reasons.setdefault(f.line, []).append(
            f.message if f.column is None else f"{f.column} {f.message}"
        )
    keys = pl.DataFrame(
        {
            ROW: list(bad),
            "line": list(bad.values()),
            "reason": ["; ".join(reasons.get(line, [])) for line in bad.values()],
        },
        schema={ROW: pl.Int64, "line": pl.Int64, "reason": pl.String},
    )
    return (
        frame.join(keys, on=ROW, how="inner")
        .sort(ROW)
        .select("line", *ORDER_COLUMNS, "reason")
    )
