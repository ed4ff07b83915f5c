"""Order CSV -> a frame of text columns, with the structure checked and every row's line known.

The fast path hands the file to Polars' CSV reader (all columns as text, nothing inferred).
Only when Polars refuses the file, or validation finds bad rows, does ``diagnose`` walk the raw
bytes to name the exact line, byte offset and field counts; a clean file never pays for that.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import mmap
import operator
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from pathlib import Path

import polars as pl

from engine.columns import ORDER_COLUMNS
from engine.errors import InputFileError
from engine.rules import LAKE_SCHEMA, is_true

log = logging.getLogger(__name__)

ROW = "__row"  # position of the record in the file (0 = first record after the header)
BOM = b"\xef\xbb\xbf"
HEAD_BYTES = 64 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024
# A sane order line is under 200 bytes; anything near this is not an order.
MAX_LINE_BYTES = 256 * 1024
# A quote inside a field that did not start with one (``ab"c``): RFC 4180 forbids it and Polars
# refuses it, so it is only looked for once Polars has refused a file. A quoted field is
# matched whole (the first alternative), so a comma or line end inside it never starts a
# field: ``"Mug, large"`` is not `` large"``.
_QUOTED_OR_STRAY = re.compile(r'"(?:[^"]|"")*"|([^,\r\n"]+"[^,\r\n]*)')
# What could be such a field, quoting aside (one search, at regex speed): without one there is
# no stray quote, and the walk over every quoted field above is spared.
_STRAY_CANDIDATE = re.compile(r'(?m)(?:^|,)[^,"\r\n]+"')
_LONE_CR = re.compile("\r(?!\n)")
_LOOKS_LIKE_DATA = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]+(\.[0-9]+)?|true|false)$", re.I)


@dataclass(frozen=True)
class RawOrders:
    """A file's records as text columns named by the contract, plus ``__row``."""

    path: str
    frame: pl.DataFrame
    header: tuple[str, ...]
    extra_columns: tuple[str, ...]
    size_bytes: int
    warnings: tuple[str, ...] = field(default=())
    # True when Polars refused the file and it was read past rows with too many fields:
    # validation must then look at every record's field count.
    ragged: bool = False


@dataclass(frozen=True)
class Layout:
    """Where each record starts, and how many fields it has, from a byte-level walk.

    ``extras``: for each record with more fields than the header (by its index), the fields
    past the header's as CSV text, which reading keeps no column for.
    """

    start_lines: list[int]
    field_counts: list[int]
    extras: dict[int, str] = field(default_factory=dict)


def file_digest(path: str | Path) -> tuple[int, str]:
    """Return the size in bytes and the sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _decode_or_raise(path: str, data: bytes, *, base_offset: int = 0, first_line: int = 1) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        offset = base_offset + e.start
        line = data.count(b"\n", 0, e.start) + first_line
        bad = data[e.start : e.start + 4]
        raise InputFileError(
            path,
            f"bytes that are not UTF-8 at byte offset {offset} (0x{bad.hex()})",
            line=line,
            byte_offset=offset,
            value=bad.hex(),
            kind="encoding",
            hint="Export the file as UTF-8 (with or without a BOM).",
        ) from None


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # little- and big-endian: Excel's "Unicode text"
UTF16_HINT = "Export or save it as CSV UTF-8 (in Excel: Save As > CSV UTF-8)."
_UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")  # checked first: LE starts as UTF-16's


def wide_encoding(head: bytes) -> str | None:
    """Return "UTF-32" or "UTF-16" when ``head`` starts with that encoding's byte-order mark."""
    if head.startswith(_UTF32_BOMS):
        return "UTF-32"
    return "UTF-16" if head.startswith(UTF16_BOMS) else None


_HEADER_HINT = "The first line must name the columns: " + ",".join(ORDER_COLUMNS)
_SEPARATORS = ((";", "semicolons"), ("\t", "tabs"), ("|", "bars"))


def _read_header(path: str, head: bytes) -> tuple[str, ...]:
    """Return the header's column names as written, stripped (``check_header`` matches them
    in lower case)."""
    if not head:
        raise InputFileError(
            path, "the file is empty (0 bytes)", kind="empty",
            hint="Send the file again; nothing was read.",
        )
    if (wide := wide_encoding(head)) is not None:
        raise InputFileError(
            path, f"the file is {wide} text (it starts with a {wide} byte-order mark), not"
            " UTF-8", line=1, byte_offset=0, kind="encoding", hint=UTF16_HINT,
        )
    if b"\x00" in head:
        offset = head.index(b"\x00")
        raise InputFileError(
            path,
            f"binary data, not a CSV text file (a NUL byte at byte offset {offset})",
            line=head.count(b"\n", 0, offset) + 1,
            byte_offset=offset,
            kind="binary",
        )
    body = head[len(BOM) :] if head.startswith(BOM) else head
    if not body:
        raise InputFileError(
            path, "the file is empty apart from a byte-order mark", kind="empty",
            hint="Send the file again; nothing was read.",
        )
    if b"\n" not in body and b"\r" in body.rstrip(b"\r"):
        raise InputFileError(
            path, "lines end with a bare carriage return (CR), not LF or CRLF", line=1,
            kind="structure", hint="Save the file with Unix (LF) or Windows (CRLF) line ends.",
        )
    end = body.find(b"\n")
    if end < 0 and len(head) >= MAX_HEADER_BYTES:
        raise InputFileError(
            path, f"the header line is longer than {MAX_HEADER_BYTES} bytes", line=1,
            kind="size",
        )
    first = body if end < 0 else body[:end]
    text = _decode_or_raise(path, first, base_offset=len(head) - len(body))
    try:
        names = next(csv.reader([text.rstrip("\r")]))
    except (csv.Error, StopIteration):
        names = [text]
    names = [n.strip() for n in names]
    if not any(names):
        raise InputFileError(
            path, "no header row: line 1 is blank", line=1, kind="header",
            hint=_HEADER_HINT,
        )
    return tuple(names)


def _separator_hint(header: tuple[str, ...]) -> str:
    """Say so when the header is one field naming several columns, separated by something
    other than commas (an export with semicolons or tabs); else ''."""
    if len(header) != 1 or sum(c in header[0] for c in ORDER_COLUMNS) < 2:
        return ""
    what = next((w for sep, w in _SEPARATORS if sep in header[0]), None)
    return "" if what is None else (f"The columns are separated by {what}: the file must be"
                                    " comma-separated (re-export it as CSV with commas). ")


def check_header(path: str, written: tuple[str, ...]) -> tuple[str, ...]:
    """Raise if the header (its names as ``written``) cannot serve the contract; return the
    extra (ignored) columns. Names match in lower case; messages quote them as written."""
    header = tuple(n.lower() for n in written)
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if name in seen and name:
            raise InputFileError(
                path,
                f"duplicate column name '{written[i - 1]}' (columns {seen[name]} and {i})",
                line=1, column=name, kind="header",
            )
        seen[name] = i
    required = set(ORDER_COLUMNS)
    present = required & set(header)
    if not present:
        if any(_LOOKS_LIKE_DATA.match(n) for n in header):
            raise InputFileError(
                path,
                "no header row: line 1 looks like data (" + ",".join(written)[:120] + ")",
                line=1, kind="header",
                hint=_HEADER_HINT,
            )
        raise InputFileError(
            path,
            "unrecognised header (" + ",".join(written)[:120] + ")",
            line=1, kind="header", hint=_separator_hint(header) + _HEADER_HINT,
        )
    missing = [c for c in ORDER_COLUMNS if c not in present]
    if missing:
        raise InputFileError(
            path,
            "missing required column" + ("s" if len(missing) > 1 else "") + ": "
            + ", ".join(missing),
            line=1, column=missing[0], kind="header",
        )
    return tuple(w for n, w in zip(header, written, strict=True) if n not in required)


def layout(
    path: str, data: bytes, n_columns: int, *, header: bool = True, first_line: int = 1,
    offset: int = 0,
) -> Layout:
    """Walk the raw bytes once and return each record's first line and field count.

    ``data`` is a whole file (``header``: it starts with the header, perhaps after a BOM), or
    a piece of one cut at a record end whose first line is line ``first_line`` of the file
    and first byte is at ``offset``. Raises ``InputFileError`` for bytes that are not UTF-8
    and for an unclosed quote, at the file's line and byte offset.
    """
    body = data[len(BOM) :] if header and data.startswith(BOM) else data
    text = _decode_or_raise(
        path, body, base_offset=offset + len(data) - len(body), first_line=first_line
    )
    fast = _line_layout(body, first_line, n_columns)
    skip = 1 if header else 0  # the header's record
    if fast is not None:
        return Layout(start_lines=fast.start_lines[skip:], field_counts=fast.field_counts[skip:],
                      extras={i - skip: x for i, x in fast.extras.items() if i >= skip})
    # Polars ends a line only at "\n"; a lone "\r" is an ordinary character to it. The csv
    # module would end a line there, so hide lone CRs to count lines the way Polars reads them.
    text = _LONE_CR.sub("\x1f", text)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    csv.field_size_limit(2**31 - 1)
    starts: list[int] = []
    counts: list[int] = []
    extras: dict[int, str] = {}
    prev = first_line - 1
    try:
        for rec in reader:
            if len(rec) > n_columns:
                extras[len(counts) - skip] = _csv_text(_lone_crs_back(rec[n_columns:], body))
            starts.append(prev + 1)
            counts.append(len(rec))
            prev = first_line - 1 + reader.line_num
    except csv.Error as e:
        line = prev + 1
        if "end of data" in str(e) or "unexpected end" in str(e):
            raise InputFileError(
                path, "an unclosed quote: the quoted field that starts on this line never ends",
                line=line, kind="quote",
                hint='Close the quote, or double any quote inside a quoted field ("").',
            ) from None
        if "expected after" in str(e):
            raise InputFileError(
                path, "text after the closing quote of a quoted field", line=line, kind="quote",
                hint='Quote the whole field and double any quote inside it ("ab""c").',
            ) from None
        raise InputFileError(path, f"malformed CSV ({e})", line=line, kind="quote") from None
    extras.pop(-1, None)  # the header's own
    if not header:
        return Layout(start_lines=starts, field_counts=counts, extras=extras)
    # starts[0] is the header.
    return Layout(start_lines=starts[1:], field_counts=counts[1:], extras=extras)


def _lone_crs_back(fields: Sequence[str], raw: bytes) -> list[str]:
    """Undo the walk's stand-in for a lone CR (``\x1f``) in ``fields`` read from ``raw``."""
    if b"\x1f" in raw:  # the stand-in was in the bytes too: it cannot be told apart
        return list(fields)
    return [f.replace("\x1f", "\r") for f in fields]


def _csv_text(fields: Sequence[str]) -> str:
    """Return ``fields`` as one CSV line's text (quoted where needed), without its line end."""
    out = io.StringIO()  # the line end names the characters that need quotes: CR and LF
    csv.writer(out, lineterminator="\r\n").writerow(fields)
    return out.getvalue().removesuffix("\r\n")


_EMPTY_LINES = frozenset((b"", b"\r"))


def _quoted_lines(body: bytes, lines: list[bytes]) -> list[int]:
    """Return the indexes of the lines of ``body`` (split at LF into ``lines``) holding a quote.

    Found from the quotes' offsets when they are few (a bad piece usually holds a handful),
    else by looking at every line.
    """
    if body.count(b'"') > len(lines) // 8:
        return [i for i, line in enumerate(lines) if b'"' in line]
    found: list[int] = []
    line = prev = 0
    pos = body.find(b'"')
    while pos >= 0:
        line += body.count(b"\n", prev, pos)
        if not found or found[-1] != line:
            found.append(line)
        prev = pos
        pos = body.find(b'"', pos + 1)
    return found


def _line_layout(body: bytes, first_line: int, n_columns: int) -> Layout | None:
    """``layout`` line by line: the csv module only parses records that hold a quote.

    A line without a quote, outside a quoted field, is a record whose fields are its commas
    + 1 (none for an empty line or the CR of a CRLF), counted for every line by C-level
    loops. A line with a quote starts a record that runs until the quotes balance; only those
    records are walked one by one. Gives what the csv walk gives; returns None
    where that walk alone can tell (a malformed or unclosed quoted record). Walking every
    line one by one took ~45% of `validate`'s time on a 10M-row file with 100 bad rows.
    """
    lines = body.split(b"\n")
    last = lines.pop()  # after the last LF: a line only if something is there
    if last:
        lines.append(last)
    n = len(lines)
    # C-level loops (map, list.index): a Python-level loop was ~1 us a line here.
    commas = list(map(bytes.count, lines, repeat(b",")))
    counts = list(map(operator.add, commas, repeat(1)))
    i = -1
    with contextlib.suppress(ValueError):
        while True:  # lines without a comma: an empty one (or a CRLF's CR) has no field
            i = commas.index(0, i + 1)
            if lines[i] in _EMPTY_LINES and not (i == n - 1 and last == b"\r"):
                counts[i] = 0
    starts = list(range(first_line, first_line + n))
    # Lines with more fields than the header: their text past the header's fields (a line
    # that starts a quoted record gets its fields from the csv walk below).
    extras = {}
    if n and max(counts) > n_columns:
        for i in compress(range(n), map(operator.lt, repeat(n_columns), counts)):
            rest = lines[i].split(b",", n_columns)[n_columns]
            if i < n - 1 or not last:  # the CR of a CRLF, not a lone CR at the very end
                rest = rest.removesuffix(b"\r")
            extras[i] = rest.decode("utf-8", "replace")
    spans: list[tuple[int, int, int]] = []  # quoted records: first line index, lines, fields
    end = 0
    for i in _quoted_lines(body, lines):
        if i < end:
            continue  # a line of the quoted record before
        quotes = 0
        for j in range(i, n):
            quotes += lines[j].count(b'"')
            if quotes % 2 == 0:
                break
        if quotes % 2:
            return None
        raw = b"\n".join(lines[i : j + 1])
        if j < n - 1 or not last:  # the record ends at an LF: a CR before it is a CRLF's
            raw = raw.removesuffix(b"\r")
        text = _LONE_CR.sub("\x1f", raw.decode("utf-8"))
        try:
            records = list(csv.reader([text], strict=True))
        except csv.Error:
            return None
        if len(records) != 1:
            return None
        spans.append((i, j + 1 - i, len(records[0])))
        for x in range(i, j + 1):
            extras.pop(x, None)
        if len(records[0]) > n_columns:
            extras[i] = _csv_text(_lone_crs_back(records[0][n_columns:], raw))
        end = j + 1
    for i, k, fields in reversed(spans):
        counts[i : i + k] = [fields]
        starts[i : i + k] = [first_line + i]
        # the records after a quoted one that spans k lines are k - 1 places earlier
        extras = {x - (k - 1) if x > i else x: t for x, t in extras.items()}
    return Layout(start_lines=starts, field_counts=counts, extras=extras)


def _polars_read(source: str | bytes, names: tuple[str, ...], *, ragged: bool) -> pl.DataFrame:
    return pl.read_csv(
        source,
        has_header=True,
        new_columns=list(names),
        infer_schema=False,
        empty_string_is_null=False,
        quote_char='"',
        encoding="utf8",
        truncate_ragged_lines=ragged,
        raise_if_empty=False,
    )


def open_header(
    path: str, name: str
) -> tuple[int, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Return the file's size, header, extra columns and the column names Polars should use.

    Raises ``InputFileError`` for an unreadable file or a header that cannot serve the contract.
    """
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as e:
        raise InputFileError(name, f"cannot be read ({e.strerror})", kind="io") from None
    written = _read_header(name, head)
    extras = check_header(name, written)
    header = tuple(n.lower() for n in written)
    # Polars names columns positionally; an empty or repeated extra name must stay unique.
    names = tuple(h if h else f"__unnamed_{i}" for i, h in enumerate(header))
    return size, header, extras, names


class NulByteError(Exception):
    """A NUL byte in the file: it is binary, whatever Polars would make of it."""

    def __init__(self, path: str, offset: int) -> None:
        super().__init__(f"{path}: a NUL byte at byte offset {offset}")
        self.offset = offset


class BrokenPiece(Exception):
    """A piece's bytes are structurally broken; ``error`` names the problem in the file."""

    def __init__(self, error: InputFileError) -> None:
        super().__init__(error.message)
        self.error = error


class PieceRefused(Exception):
    """Polars refused a piece, and neither its bytes nor reading past long rows say why;
    ``reason`` is the first line of Polars' error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Piece:
    """Some whole records of a file: their text columns, and the bytes they were parsed from."""

    frame: pl.DataFrame
    offset: int  # where the piece's bytes start in the file
    size: int  # how many bytes it has; the first piece starts with the (BOM and) header
    first: bool
    # Polars refused the piece for rows with too many fields; it was read past them (each
    # keeps its first fields), and validation must look at every record's field count.
    ragged: bool = False
    # No field can start or end with whitespace (``unpadded``): stripping is a no-op.
    unpadded: bool = False

    def data(self, path: str) -> bytes:
        """Return the piece's bytes, read again from the file (only pieces with findings)."""
        with open(path, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)


def text_pieces(
    path: str, names: tuple[str, ...], *, batch_bytes: int, refuse_nul: bool = False,
    name: str | None = None, check_padding: bool = False,
) -> Iterator[Piece]:
    """Yield the file's records as pieces of about ``batch_bytes`` of CSV each, in order.

    Each frame is what ``read_orders`` would have read for those records: Polars parses every
    piece, the first with the header. A piece ends only at a line end with an even number of
    quote characters before it, so a quoted field that spans lines is never cut. The file is
    memory-mapped and each piece copied out once, so memory follows ``batch_bytes``. Raises
    ``NulByteError`` for a NUL byte when ``refuse_nul`` (looked for piece by piece: no extra
    pass over the file). A piece Polars refuses is diagnosed on its own bytes
    (``diagnose``: ``BrokenPiece`` for bytes that are not UTF-8 or a quoting error,
    named ``name``); if it only holds rows with too many fields, it is read past them and
    yielded ``ragged``; else ``PieceRefused`` is raised. ``check_padding``: mark each piece
    ``unpadded`` or not (only the first validation pass judges with it).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            yield Piece(_read_piece(b"", names, header=True), 0, 0, True)
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            start = 0
            while start < size:
                end = min(start + batch_bytes, size)
                while end < size:
                    cut = _last_record_end(mm, start, end)
                    if cut > start:
                        end = cut
                        break
                    end = min(end + batch_bytes, size)  # no whole record yet: read on
                if refuse_nul and (nul := mm.find(b"\x00", start, end)) >= 0:
                    raise NulByteError(path, nul)
                piece = mm[start:end]
                # The piece is copied out: drop its pages from this process's resident set
                # (they stay in the page cache), or RSS would grow with the file.
                done = end - end % mmap.PAGESIZE
                if done > start - start % mmap.PAGESIZE:
                    low = start - start % mmap.PAGESIZE
                    mm.madvise(mmap.MADV_DONTNEED, low, done - low)
                ragged = False
                try:
                    frame = _read_piece(piece, names, header=start == 0)
                except pl.exceptions.PolarsError as e:
                    try:
                        diagnose(name or path, piece, len(names), header=start == 0,
                                 first_line=newlines_before(path, start) + 1, offset=start)
                    except InputFileError as broken:
                        raise BrokenPiece(broken) from None
                    try:  # only rows with too many fields are left: read past them
                        frame = _read_piece(piece, names, header=start == 0, ragged=True)
                    except pl.exceptions.PolarsError:
                        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                        raise PieceRefused(reason) from e
                    ragged = True
                plain = check_padding and unpadded(piece)
                del piece
                yield Piece(frame, start, end - start, start == 0, ragged, plain)
                start = end


_PADDING = tuple(bytes([c]) for c in b" \t\x0b\x0c")


def unpadded(data: bytes) -> bool:
    """Return True only if no CSV field in ``data`` can start or end with whitespace.

    Then ``str.strip_chars`` is the identity on every field, and the rules can run on the
    text as parsed (measured: stripping was ~30% of judging a piece). Conservative, at memchr
    speed: False for any quote character (a quoted field may hold padding or line ends), any
    byte that is not ASCII (Unicode whitespace), a CR that does not end a line, or an ASCII
    space or tab byte at the edge of a field.
    """
    if b'"' in data or not data.isascii():
        return False
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return False
    for w in _PADDING:
        if w in data and (
            data.startswith(w) or data.endswith(w)
            or w + b"," in data or b"," + w in data
            or w + b"\n" in data or b"\n" + w in data or w + b"\r" in data
        ):
            return False
    return True


def newlines_before(path: str, offset: int, *, start: int = 0, counted: int = 0) -> int:
    """Return how many LF bytes the file holds before ``offset``.

    ``counted`` LFs are already known to lie before ``start``: only the bytes between are read.
    """
    with open(path, "rb") as f:
        f.seek(start)
        left = offset - start
        while left > 0 and (chunk := f.read(min(left, 1 << 22))):
            counted += chunk.count(b"\n")
            left -= len(chunk)
    return counted


def _read_piece(
    piece: bytes, names: tuple[str, ...], *, header: bool, ragged: bool = False
) -> pl.DataFrame:
    if header:
        return _polars_read(piece, names, ragged=ragged)
    return pl.read_csv(
        piece,
        has_header=False,
        schema={n: pl.String() for n in names},
        empty_string_is_null=False,
        quote_char='"',
        encoding="utf8",
        truncate_ragged_lines=ragged,
        # A piece's first record may be the one with too many fields: without a header,
        # Polars takes its width for the file's unless told to drop what the schema lacks;
        # and a piece of short records alone is read with the missing fields null, as the
        # first piece reads them (it sent the whole file to the whole-file path).
        extra_columns="ignore" if ragged else None,
        missing_columns="insert" if ragged else None,
        raise_if_empty=False,
    )


def _last_record_end(data: bytes | mmap.mmap, start: int, end: int) -> int:
    """Return the index just past the last LF outside quotes in ``data[start:end]``, or start."""
    cut = data.rfind(b"\n", start, end)
    if cut < 0:
        return start
    if data.find(b'"', start, cut) < 0:  # the common case, at memchr speed: nothing quoted
        return cut + 1
    region = data[start:end]
    return start + _last_unquoted_lf(region)


def _last_unquoted_lf(data: bytes) -> int:
    """Return the index just past the last LF outside quotes in ``data``, or 0 if none."""
    cut = data.rfind(b"\n")
    quotes = data.count(b'"', 0, cut) if cut >= 0 else 0
    while cut >= 0 and quotes % 2:
        prev = data.rfind(b"\n", 0, cut)
        quotes -= data.count(b'"', prev + 1, cut) if prev >= 0 else quotes
        cut = prev
    return cut + 1


def strip_columns(frame: pl.DataFrame, names: tuple[str, ...], offset: int = 0) -> pl.DataFrame:
    """Return ``__row`` (from ``offset``), the contract's columns stripped, then the extras."""
    return frame.select(
        pl.int_range(offset, offset + pl.len(), dtype=pl.Int64).alias(ROW),
        *[pl.col(c).str.strip_chars() for c in ORDER_COLUMNS],
        *[pl.col(n) for n in names if n not in ORDER_COLUMNS],
    )


def has_nul(frame: pl.DataFrame) -> bool:
    """Return whether any text field holds a NUL byte."""
    cols = [c for c, t in frame.schema.items() if t == pl.String]
    if not cols:
        return False
    return bool(frame.select(
        pl.any_horizontal([pl.col(c).str.contains("\x00", literal=True).any() for c in cols])
    ).item())


def read_orders(path: str | Path, *, display_name: str | None = None) -> RawOrders:
    """Read an order CSV as text columns; raise ``InputFileError`` for structural problems."""
    path = str(path)
    name = display_name or path
    size, header, extras, names = open_header(path, name)
    ragged = False
    try:
        frame = _polars_read(path, names, ragged=False)
    except (pl.exceptions.PolarsError, OSError) as e:
        frame = _recover(path, name, names, e)
        ragged = True
    if size > HEAD_BYTES:
        _check_no_nul(path, name, frame)
    warnings: list[str] = []
    if extras:
        warnings.append("extra columns ignored: " + ", ".join(e or "(unnamed)" for e in extras))
    frame = strip_columns(frame, names)
    return RawOrders(
        path=name,
        frame=frame,
        header=header,
        extra_columns=extras,
        size_bytes=size,
        warnings=tuple(warnings),
        ragged=ragged,
    )


def _check_no_nul(path: str, name: str, frame: pl.DataFrame) -> None:
    """Raise for NUL bytes past the first ``HEAD_BYTES`` (the head was checked already)."""
    if not has_nul(frame):
        return
    offset = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            i = chunk.find(b"\x00")
            if i >= 0:
                offset += i
                break
            offset += len(chunk)
    raise nul_error(path, name, offset)


def nul_error(path: str, name: str, offset: int) -> InputFileError:
    """Return the error for the NUL byte at ``offset`` of the file, named at its line."""
    return InputFileError(
        name,
        f"binary data, not a CSV text file (a NUL byte at byte offset {offset})",
        line=newlines_before(path, offset) + 1, byte_offset=offset, kind="binary",
    )


def diagnose(
    name: str, data: bytes, n_columns: int, *, header: bool = True, first_line: int = 1,
    offset: int = 0,
) -> Layout:
    """Raise ``InputFileError`` for bytes Polars refused, or return their layout.

    ``data`` is a whole file, or a piece of one (arguments as for ``layout``); problems are
    named at the file's lines and offsets: bytes that are not UTF-8, an unclosed quote, text
    after a closing quote, a quote inside a field. When none is found, the bytes may hold
    rows with too many fields, which validation reports row by row from the layout.
    """
    lay = layout(name, data, n_columns, header=header, first_line=first_line, offset=offset)
    body = data[len(BOM) :] if header and data.startswith(BOM) else data
    text = body.decode("utf-8")  # layout() proved that it decodes
    m = None if _STRAY_CANDIDATE.search(text) is None else next(
        (q for q in _QUOTED_OR_STRAY.finditer(text) if q.group(1) is not None), None)
    if m is not None:
        field_text = m.group(1)
        raise InputFileError(
            name,
            f"a quote inside a field that does not start with one ({field_text!r})",
            line=text.count("\n", 0, m.start(1)) + first_line, value=field_text, kind="quote",
            hint='Quote the whole field and double the quote inside it: "ab""c".',
        )
    return lay


def _recover(path: str, name: str, names: tuple[str, ...], err: Exception) -> pl.DataFrame:
    """Polars refused the file: find the precise reason, or read it past ragged rows."""
    lay = diagnose(name, Path(path).read_bytes(), len(names))
    if any(c > len(names) for c in lay.field_counts):
        # Rows with too many fields are reported row by row by validation (field_count).
        try:
            return _polars_read(path, names, ragged=True)
        except (pl.exceptions.PolarsError, OSError) as e:
            err = e
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise InputFileError(name, f"cannot be parsed as CSV ({first})", kind="structure")


def oversized_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """Return (__row, column, bytes) for fields larger than ``MAX_FIELD_BYTES``."""
    cols = [c for c in frame.columns if c != ROW]
    parts = [
        frame.filter(pl.col(c).str.len_bytes() > MAX_FIELD_BYTES).select(
            pl.col(ROW), pl.lit(c).alias("column"), pl.col(c).str.len_bytes().alias("bytes")
        )
        for c in cols
    ]
    return pl.concat(parts) if parts else pl.DataFrame()


def oversized_lines(frame: pl.DataFrame) -> pl.DataFrame:
    """Return (__row, bytes) for records longer than ``MAX_LINE_BYTES`` (fields + commas)."""
    cols = [c for c in frame.columns if c != ROW]
    size = pl.sum_horizontal([pl.col(c).str.len_bytes() for c in cols]) + (len(cols) - 1)
    return frame.select(pl.col(ROW), size.alias("bytes")).filter(
        pl.col("bytes") > MAX_LINE_BYTES
    )


def scan_orders_typed(path: str | Path) -> pl.LazyFrame:
    """Return a typed scan of an order CSV without validation (benchmarks, trusted exports)."""
    schema = {c: pl.String() for c in ORDER_COLUMNS}
    lf = pl.scan_csv(path, schema_overrides=schema, infer_schema=False)
    return lf.select(
        pl.col("order_id"),
        pl.col("customer_id"),
        pl.col("order_date").str.to_date("%Y-%m-%d"),
        pl.col("category"),
        pl.col("product_id"),
        pl.col("quantity").str.to_integer().cast(LAKE_SCHEMA["quantity"]),
        pl.col("unit_price").str.to_decimal(scale=4).cast(LAKE_SCHEMA["unit_price"]),
        is_true(pl.col("returned")).alias("returned"),
    )
