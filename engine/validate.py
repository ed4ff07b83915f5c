"""Run the order model over a file and report every finding by its line in the original file.

``schema.py`` says what valid is; this module decides how to run it and how to tell people.
Pandera's failure cases are the source of the findings; their row positions are mapped back
to file lines (a quoted field spanning lines counted correctly) only when there are findings.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from engine.columns import DEFAULT_CATEGORIES, ORDER_COLUMNS
from engine.errors import InputFileError
from engine.read import (
    MAX_FIELD_BYTES,
    MAX_LINE_BYTES,
    ROW,
    NulByteError,
    RawOrders,
    file_digest,
    layout,
    open_header,
    oversized_fields,
    oversized_lines,
    read_orders,
    strip_columns,
    text_batches,
)
from engine.rules import BLANK, LAKE_SCHEMA, OK, UNIQUE_COLUMNS, checked_piece, typed_columns

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

    @property
    def ok(self) -> bool:
        return self.status != "invalid"

    def counts(self) -> list[dict[str, Any]]:
        """Return failures counted per (column, rule), most frequent first."""
        c = Counter((f.column or ROW_WIDE, f.rule) for f in self.findings)
        if self.structural is not None:
            c[(self.structural.column or ROW_WIDE, self.structural.rule)] += 1
        return [
            {"column": col, "rule": rule, "count": n}
            for (col, rule), n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def summary(self, *, rejected: bool = False) -> str:
        """Return one paragraph for people (SNS, logs); ``rejected`` when the whole file was."""
        if self.structural is not None:
            return f"{self.file} was rejected: {self.structural.message}"
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

    def render(self, limit: int = 20, *, rejected: bool = False) -> str:
        """Return the terminal text: the first ``limit`` findings and the counts."""
        lines = [self.summary(rejected=rejected)]
        if self.structural is not None:
            if self.structural.hint:
                lines.append(f"Hint: {self.structural.hint}")
            return "\n".join(lines)
        for f in self.findings[:limit]:
            where = f"{self.file}:{f.line}" if f.line is not None else self.file
            if f.column is None:  # the whole row: the message already names what is wrong
                lines.append(f"  {where}: {f.message}")
            else:
                lines.append(f"  {where}: {f.column}: {f.message}: {_show(f.value)}")
        if len(self.findings) > limit:
            lines.append(f"  ... and {len(self.findings) - limit} more findings")
        if self.findings:
            lines.append("  counts: " + "; ".join(
                f"{d['column']} {d['rule']}: {d['count']}" for d in self.counts()
            ))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = self.counts()
        d["summary"] = self.summary()
        return d

    def write_json(self, path: str | Path) -> None:
        from engine.atomic import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")


@dataclass
class ValidationResult:
    """A report, the typed rows that passed, and the text rows that failed (with reasons).

    Rows that passed are in ``cleaned``, unless they were handed batch by batch to the
    ``on_rows`` callback of ``validate_file`` (then ``streamed`` is True).
    """

    report: ValidationReport
    cleaned: pl.DataFrame | None = None
    rejected_rows: pl.DataFrame | None = None
    streamed: bool = False


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
    keep_rows: bool = True,
    batch_bytes: int = BATCH_BYTES,
    spill_dir: Path | None = None,
    bucket_bytes: int = HASH_BUCKET_BYTES,
) -> ValidationResult:
    """Validate one order CSV; never raises for bad data (the report says what is wrong).

    The file is read in batches of about ``batch_bytes`` of CSV, so memory follows the batch, not
    the file. Each batch's valid typed rows go to ``on_rows`` when it is given (the result is
    then ``streamed``), else into ``cleaned`` when ``keep_rows``. The first sign of a bad file
    (a finding, a duplicate id, Polars refusing the bytes) switches to the whole-file path
    (``read_orders`` + ``validate_raw``), which names every finding at its line and returns
    the valid rows in ``cleaned``: whatever ``on_rows`` got by then must be thrown away.
    The id hashes that check uniqueness across batches wait in a temporary folder under
    ``spill_dir`` (the system's temporary folder when None), deleted before this returns.
    """
    name = display_name or str(path)
    try:
        with tempfile.TemporaryDirectory(prefix="ids-", dir=spill_dir) as spill:
            streamed = _validate_batches(
                str(path), name, categories, on_rows, keep_rows=keep_rows,
                batch_bytes=batch_bytes, spill=Path(spill), bucket_bytes=bucket_bytes,
            )
        if streamed is not None:
            return streamed
        raw = read_orders(path, display_name=name)
        # The failure path re-reads the bytes and may find a structural problem Polars let by.
        return validate_raw(raw, Path(path), categories=categories)
    except InputFileError as e:
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


def _allowed(categories: Iterable[str] | None) -> tuple[str, ...]:
    return DEFAULT_CATEGORIES if categories is None else tuple(sorted(set(categories)))


class _HashBuckets:
    """64-bit hashes of one column, spilled piece by piece to bucket files by their top bits.

    A valid row takes at least 18 bytes of CSV (its date alone takes 10), so a file of
    ``file_bytes`` holds at most ``file_bytes / 2`` bytes of hashes: that fixes the number of
    buckets (a power of two, at least 2) that keeps each one under ``bucket_bytes``.
    """

    def __init__(self, folder: Path, file_bytes: int, bucket_bytes: int) -> None:
        folder.mkdir()
        self.folder = folder
        bits = max(1, (-(-file_bytes // 2 // bucket_bytes) - 1).bit_length())
        self.divisor = 1 << (64 - bits)  # hash // divisor = its top ``bits`` bits

    def add(self, hashes: pl.Series) -> None:
        """Append each hash to its bucket's file (raw native uint64 values)."""
        frame = pl.DataFrame({"h": hashes}).with_columns(b=pl.col("h") // self.divisor)
        for (bucket,), part in frame.partition_by("b", as_dict=True).items():
            arr = part["h"].to_arrow()
            with open(self.folder / f"{bucket}.u64", "ab") as f:
                f.write(arr.buffers()[1].slice(arr.offset * 8, len(arr) * 8))

    def has_duplicates(self) -> bool:
        """Return whether two rows share a hash (a collision only leads to the exact path)."""
        import pyarrow as pa

        for p in self.folder.glob("*.u64"):
            data = pa.py_buffer(p.read_bytes())
            allh = pl.Series(pa.Array.from_buffers(pa.uint64(), len(data) // 8, [None, data]))
            del data
            allh = allh.sort()
            if (allh.slice(1) == allh.slice(0, len(allh) - 1)).any():
                return True
        return False


def _exact_path(name: str, why: str) -> ValidationResult | None:
    """Log why the streaming pass stops; return None, its answer for "use the exact path"."""
    log.info("%s: %s; validating the whole file at once to name every finding", name, why)
    return None


def _validate_batches(
    path: str,
    name: str,
    categories: Iterable[str] | None,
    on_rows: Callable[[pl.DataFrame], None] | None,
    *,
    keep_rows: bool,
    batch_bytes: int,
    spill: Path,
    bucket_bytes: int,
) -> ValidationResult | None:
    """Validate piece by piece; return None as soon as the file is not plainly valid.

    Each piece is judged by ``rules.checked_piece`` in one select that also types it; only a
    piece that does not plainly pass (a padded value, a blank line full of spaces, a finding)
    is judged again by the pandera model, on its stripped text. File-wide rules
    (``UNIQUE_COLUMNS``) are run here across pieces: each piece spills a 64-bit hash per value
    to bucket files under ``spill``; the buckets are checked one by one at the end, and equal
    hashes send the file to the exact path, which compares the text itself. Parsing the next
    piece overlaps checking this one (``_read_ahead``).
    """
    size, _, extras, names = open_header(path, name)
    allowed = _allowed(categories)
    judge = checked_piece(names, allowed, max_field_bytes=MAX_FIELD_BYTES,
                          max_line_bytes=MAX_LINE_BYTES)
    report = ValidationReport(
        file=name, size_bytes=size, sha256=None, status="valid",
        warnings=["extra columns ignored: " + ", ".join(e or "(unnamed)" for e in extras)]
        if extras else [],
    )
    hashes = {c: _HashBuckets(spill / c, size, bucket_bytes) for c in UNIQUE_COLUMNS}
    kept: list[pl.DataFrame] = []
    dates: set[dt.date] = set()
    offset = n_blank = n_rows = 0
    pieces = _read_ahead(text_batches(path, names, batch_bytes=batch_bytes, refuse_nul=True))
    try:
        for text in pieces:
            checked = text.select(judge)
            n_blank_here, plain = checked.select(
                pl.col(BLANK).sum(), (pl.col(OK) | pl.col(BLANK)).all()
            ).row(0)
            if plain:
                typed = checked.filter(~pl.col(BLANK)) if n_blank_here else checked
                typed = typed.drop(OK, BLANK)
            else:
                judged = _judge_with_pandera(text, names, offset, allowed)
                if judged is None:
                    return _exact_path(name, f"findings near record {offset + text.height}")
                typed, n_blank_here = judged
            offset += text.height
            del text, checked
            n_blank += n_blank_here
            n_rows += typed.height
            for c in UNIQUE_COLUMNS:
                hashes[c].add(typed[c].hash())
            dates.update(typed["order_date"].unique().to_list())
            if on_rows is not None:
                on_rows(typed)
            elif keep_rows:
                kept.append(typed)
    except NulByteError:
        return _exact_path(name, "a NUL byte")
    except pl.exceptions.PolarsError as e:
        return _exact_path(name, f"Polars refused a piece ({str(e).splitlines()[0][:200]})")
    finally:
        pieces.close()
    if any(h.has_duplicates() for h in hashes.values()):
        return _exact_path(name, "a repeated order_id hash")
    if n_blank:
        report.warnings.append(f"{n_blank} blank line(s) skipped")
    report.rows = report.valid_rows = n_rows
    report.status = "valid" if n_rows else "empty"
    report.dates = sorted(d.isoformat() for d in dates)
    result = ValidationResult(report=report, streamed=on_rows is not None)
    if on_rows is None and keep_rows:
        result.cleaned = (
            pl.concat(kept) if kept else pl.DataFrame(schema=LAKE_SCHEMA)
        )
    return result


def _judge_with_pandera(
    text: pl.DataFrame, names: tuple[str, ...], offset: int, allowed: tuple[str, ...]
) -> tuple[pl.DataFrame, int] | None:
    """Judge a piece the slow, exact way; return its typed rows and blank lines, or None.

    None means the piece has findings (or an oversized field or line): only the whole-file
    path can name them at their lines.
    """
    import pandera.polars as pa

    from engine.schema import order_model

    frame = strip_columns(text, names, offset)
    cols = [c for c in frame.columns if c != ROW]
    blank = pl.all_horizontal([pl.col(c).str.len_bytes() == 0 for c in cols])
    too_big = pl.any_horizontal([pl.col(c).str.len_bytes() > MAX_FIELD_BYTES for c in cols])
    line_bytes = pl.sum_horizontal([pl.col(c).str.len_bytes() for c in cols])
    n_blank, n_big = frame.select(
        blank.sum().alias("blank"),
        (too_big | (line_bytes + len(cols) - 1 > MAX_LINE_BYTES)).sum().alias("big"),
    ).row(0)
    if n_big:
        return None
    if n_blank:
        frame = frame.filter(~blank)
    try:
        _row_schema(order_model(allowed)).validate(frame, lazy=True)
    except pa.errors.SchemaErrors:
        return None
    return frame.select(typed_columns()), n_blank


def _read_ahead(items: Iterator[pl.DataFrame]) -> Generator[pl.DataFrame, None, None]:
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
            assert isinstance(item, pl.DataFrame)
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
    blank = pl.all_horizontal(
        [pl.col(c).str.len_bytes() == 0 for c in frame.columns if c != ROW]
    )
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
    big = oversized_fields(raw)
    long_lines = oversized_lines(raw)

    if failures is None and big.height == 0 and long_lines.height == 0 and not raw.ragged:
        return _accept(raw, frame, report)

    findings, bad_rows = _findings(raw, frame, failures, big, long_lines, source)
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
    return ValidationResult(report=report, cleaned=cleaned, rejected_rows=rejected)


def _accept(raw: RawOrders, frame: pl.DataFrame, report: ValidationReport) -> ValidationResult:
    cleaned = frame.select(typed_columns())
    report.valid_rows = cleaned.height
    if cleaned.height == 0:
        report.status = "empty"
    report.dates = sorted(d.isoformat() for d in cleaned["order_date"].unique())
    return ValidationResult(report=report, cleaned=cleaned)


def _findings(
    raw: RawOrders,
    frame: pl.DataFrame,
    failures: pl.DataFrame | None,
    big: pl.DataFrame,
    long_lines: pl.DataFrame,
    source: Path,
) -> tuple[list[Finding], dict[int, int | None]]:
    """Turn pandera's failure cases (row positions) into findings at file lines.

    Returns the findings and, for every failing record, its first line in the file.
    """
    from engine.schema import RULE_IDS, RULE_MESSAGES

    if failures is not None:
        broken = failures.filter(pl.col("index").is_null())
        if broken.height:
            # A check that raised is a bug in the model, not bad data.
            raise RuntimeError(f"a validation check failed to run: {broken.to_dicts()[0]}")
    lay = layout(raw.path, source.read_bytes(), len(raw.header))
    n_fields = len(raw.header)

    def line_of(row: int) -> int | None:
        return lay.start_lines[row] if row < len(lay.start_lines) else None

    findings: list[Finding] = []
    bad: dict[int, int | None] = {}
    # A short row whose missing fields are all extra columns loses nothing the contract needs.
    ragged = {
        i: n
        for i, n in enumerate(lay.field_counts)
        if n not in (n_fields, 0)
        and (n > n_fields or any(c in ORDER_COLUMNS for c in raw.header[n:]))
    }
    for i, n in ragged.items():
        bad[i] = line_of(i)
        findings.append(Finding(
            line=line_of(i), column=None, rule="field_count", value=str(n),
            message=f"the row has {n} field{'s' if n != 1 else ''}, expected {n_fields}",
        ))
    if failures is not None:
        rows = frame[ROW].gather(failures["index"].cast(pl.Int64))
        cases = zip(rows, failures["column"], failures["check"], failures["failure_case"],
                    strict=True)
        for row, column, check, value in cases:
            if row in ragged:
                continue  # the field count already explains the row
            bad[row] = line_of(row)
            findings.append(Finding(
                line=line_of(row), column=column, rule=RULE_IDS.get(check, check),
                value=_clip(value),
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
    _explain_duplicates(findings)
    order = {c: i for i, c in enumerate(ORDER_COLUMNS)}
    findings.sort(key=lambda f: (f.line or 0, order.get(f.column or "", 99), f.rule))
    return findings, bad


def _explain_duplicates(findings: list[Finding]) -> None:
    """Name, on each duplicate order_id, every line that carries the same id."""
    lines_by_id: dict[str | None, list[int]] = {}
    for f in findings:
        if f.rule == "unique" and f.line is not None:
            lines_by_id.setdefault(f.value, []).append(f.line)
    for i, f in enumerate(findings):
        if f.rule == "unique":
            lines = sorted(lines_by_id.get(f.value, []))
            findings[i] = Finding(
                line=f.line, column=f.column, rule=f.rule, value=f.value,
                message="must be unique within the file; this order_id is on lines "
                + ", ".join(str(n) for n in lines),
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
