"""One error hierarchy. Whether a failure is retried is a property of its class."""

from __future__ import annotations


class OrderKpisError(Exception):
    """Base of every error this project raises on purpose.

    ``transient`` says whether running the same work again may succeed (throttling, a task
    killed midway). Bad data is never transient: retrying it only repeats the rejection.
    """

    transient: bool = False
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        if hint is not None:
            self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nHint: {self.hint}"
        return self.message


class TerminalError(OrderKpisError):
    """A failure that a retry cannot fix."""

    transient = False


class TransientError(OrderKpisError):
    """A failure that the same work, retried later, may get past."""

    transient = True


class UsageError(TerminalError):
    """The command was called wrongly (exit code 2)."""


class LakeDamagedError(TerminalError):
    """A bookkeeping file of a local lake is not what the lake writes (edited, cut off)."""

    def __init__(self, path: object, problem: object) -> None:
        super().__init__(
            f"{path}: the lake's bookkeeping file is damaged ({problem})",
            hint="the lake beside it cannot be trusted: restore the file, or process the input"
            " files again into a new --out folder",
        )


class KpiTableDamagedError(LakeDamagedError):
    """A KPI table of a local output folder is not as this version writes it (cut off, other
    columns or types): read on, its values would be rounded, merged wrongly or refused later."""

    def __init__(self, path: object, problem: object) -> None:
        TerminalError.__init__(
            self,
            f"{path}: not a KPI table as this version writes it ({problem})",
            hint="the KPI tables are computed from the lake: move this file aside, then run"
            " `order-kpis reprocess` on the folder (any range), which recomputes a missing"
            " table from the whole lake",
        )


class InputFileError(TerminalError):
    """A file that cannot be read as the input contract says (structure, encoding, header)."""

    def __init__(
        self,
        path: str,
        message: str,
        *,
        line: int | None = None,
        column: str | None = None,
        value: str | None = None,
        byte_offset: int | None = None,
        kind: str = "structure",
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.value = value
        self.byte_offset = byte_offset
        self.kind = kind
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}", hint=hint)


class ConfigError(TerminalError):
    """A setting is missing or malformed."""


class WriteThrottledError(TransientError):
    """A write kept being throttled or left unprocessed after the bounded retries."""


class StaleSnapshotError(TerminalError):
    """A newer KPI snapshot for the same date is already stored; this one must not overwrite it."""


class TableWriteThrottledError(WriteThrottledError):
    """DynamoDB kept throttling or leaving items unprocessed; carries what was not written."""

    def __init__(
        self,
        table: str,
        *,
        unwritten: int,
        written: int,
        attempts: int,
        last_error: str | None = None,
    ) -> None:
        self.table = table
        self.unwritten = unwritten
        self.written = written
        self.attempts = attempts
        self.last_error = last_error
        reason = f" (last error: {last_error})" if last_error else ""
        super().__init__(
            f"{table}: {unwritten} item(s) not written after {attempts} attempt(s),"
            f" {written} written{reason}",
            hint="The table is throttled; the task can be retried as a whole (writes are"
            " idempotent), or raise the table's capacity.",
        )


class KpiItemError(TerminalError):
    """A KPI row cannot become a DynamoDB item exactly (float, NaN, null, too many decimals)."""

    def __init__(self, table: str, row: int, column: str, value: object, reason: str) -> None:
        self.table = table
        self.row = row
        self.column = column
        self.value = value
        self.reason = reason
        super().__init__(
            f"{table} row {row}, column {column!r}: {reason} (value {value!r})",
            hint="KPI money and rate columns must be Decimal(38,2) / Decimal(38,4) as"
            " docs/CONTRACT.md says; build them with engine.kpis, not with floats.",
        )


class DynamoWriteError(TerminalError):
    """DynamoDB refused a write for a reason a retry cannot fix (validation, size, access)."""

    def __init__(self, table: str, code: str, message: str) -> None:
        self.table = table
        self.code = code
        super().__init__(f"{table}: {code}: {message}")
