"""The ``order-kpis`` command line: thin; it calls the same functions the containers call.

Heavy modules (polars, pandera) are imported inside the commands so that ``--help`` is instant.
Exit codes: 0 success, 1 invalid data, 2 usage error; anything else is a bug.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import functools
import io
import json
import logging
import os
import select
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import __version__
from engine.console import entry, say, why
from engine.errors import LakeDamagedError, OrderKpisError, TransientError, UsageError
from engine.insight.cli_args import named

if TYPE_CHECKING:
    from engine.pipeline import FileOutcome
    from engine.validate import ValidationReport

log = logging.getLogger("order_kpis")

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_IO, EXIT_UNREACHABLE, EXIT_BUG = 0, 1, 2, 74, 75, 70


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own usage errors: exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _progress(stream: Any = None) -> bool:
    s = stream or sys.stderr
    return bool(getattr(s, "isatty", lambda: False)())


class _Ticker:
    """How far into a file validation is: one terminal line, rewritten at most every
    ``every`` seconds, and cleared before anything else is printed (``clear``)."""

    def __init__(self, stream: Any = None, every: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self._file: Path | None = None
        self._size = self._started = self._last = 0.0
        self._rows0 = 0
        self._shown = False

    def __call__(self, path: Path, done: int, rows: int) -> None:
        now = time.perf_counter()
        if path != self._file:  # its first piece: the rate is counted from here
            self._file, self._started, self._last, self._rows0 = path, now, now, rows
            self._size = float(max(path.stat().st_size, 1))
        if now - self._last < self.every:
            return
        self._last = now
        rate = (rows - self._rows0) / max(now - self._started, 1e-9)
        self.stream.write(f"\r{path}: {min(done / self._size, 1):.0%} read, {rows:,} orders, "
                          f"{rate:,.0f}/s\x1b[K")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _check_report_path(report: str, inputs: Sequence[Path]) -> None:
    """Refuse a --report-json path that is one of the inputs or looks like a CSV file: the
    report would replace it (``--report-json jan.csv feb.csv`` took jan.csv as the path)."""
    target = Path(report)
    hint = "give the report a path of its own, e.g. --report-json report.json"
    if target.is_dir():
        raise UsageError(f"--report-json {report!r} is a folder", hint=hint)
    if any(target.exists() and target.samefile(p) for p in inputs):
        raise UsageError(f"--report-json {report!r} would overwrite an order file", hint=hint)
    if target.suffix.lower() == ".csv":
        raise UsageError(f"--report-json {report!r}: a .csv path is not taken for the report,"
                         " which is JSON (an order file named after the option, by mistake?)",
                         hint=hint)


def _allowed_categories(explicit: str | None) -> tuple[str, ...] | None:
    """The categories of --categories-from, or of the file the environment names (which
    messages then name too)."""
    from engine.config import CATEGORIES_ENV, categories_source

    source = categories_source(explicit)
    named = source if explicit or source is None else f"{source} (from {CATEGORIES_ENV})"
    return load_categories(source, name=named)


MAX_CATEGORY_BYTES = 2048  # a DynamoDB partition key (CategoryKPIs: category, order_date)


def load_categories(source: str | None, name: str | None = None) -> tuple[str, ...] | None:
    """Return the allowed categories from a products CSV's ``category`` column, if given.

    ``name`` is what messages call the file (where ``source`` is a local copy of it)."""
    if source is None:
        return None
    import polars as pl

    path = Path(source)
    source = name or source
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else (
            "is not a regular file (a pipe or device): save it to a file first"
            if path.exists() else "not found")
        raise UsageError(f"{source}: categories file {what}")
    from engine.read import UTF16_HINT, wide_encoding

    try:
        with open(path, "rb") as f:
            if (wide := wide_encoding(f.read(4))) is not None:
                raise UsageError(f"{source}: the categories file is {wide} text, not UTF-8",
                                 hint=UTF16_HINT)
        df = pl.read_csv(path, infer_schema=False)
    except OSError as e:
        raise UsageError(f"{source}: the categories file cannot be read: {e.strerror or e}"
                         ) from None
    except pl.exceptions.PolarsError as e:
        # Polars' first line says what; the rest is advice for its own API (infer_schema_length,
        # ignore_errors) that means nothing here.
        text = str(e).strip() or type(e).__name__
        said = text.split("\n\nYou might want")[0]
        if "Original error:" in text:
            said += " (" + text.split("Original error:")[-1].strip(" `") + ")"
        said = said.replace("\n\n", ": ").replace("\n", "\\n")[:300]
        raise UsageError(f"{source}: cannot read the categories file as CSV: {said}",
                         hint="It must be a UTF-8 CSV with a header naming a 'category'"
                         " column, like fixtures/sample_products.csv.") from None
    cols = {c.strip().lower(): c for c in df.columns}
    if "category" not in cols:
        raise UsageError(
            f"{source}: has no 'category' column (columns: {', '.join(df.columns)})",
            hint="Pass a products CSV like fixtures/sample_products.csv.",
        )
    cats = sorted({c.strip() for c in df[cols["category"]].drop_nulls() if c.strip()})
    if not cats:
        raise UsageError(f"{source}: the 'category' column is empty")
    if long := next((c for c in cats if len(c.encode()) > MAX_CATEGORY_BYTES), None):
        # The category is the partition key of the CategoryKPIs table: a longer one was
        # validated, then every snapshot of its date was refused, for good.
        raise UsageError(
            f"{source}: the category {long[:40]!r}... is {len(long.encode()):,} bytes long:"
            f" at most {MAX_CATEGORY_BYTES:,} (UTF-8), DynamoDB's limit on a partition key")
    return tuple(cats)


# -- validate ------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from engine.pipeline import expand_paths
    from engine.validate import validate_file

    cats = _allowed_categories(args.categories_from)
    files = expand_paths(args.files)
    if args.report_json:
        _check_report_path(args.report_json, files)
    reports: list[ValidationReport] = []
    ticker = _Ticker() if _progress() else None
    for path in files:
        t0 = time.perf_counter()
        rep = validate_file(
            path, categories=cats, display_name=str(path), keep_rows=False,
            keep_bad_rows=False,
            on_progress=None if ticker is None else functools.partial(ticker, path),
        ).report
        if ticker is not None:
            ticker.clear()
        if args.report_json and rep.sha256 is None:
            from engine.read import file_digest

            # The JSON report identifies every file by its bytes, valid ones too.
            try:
                rep.size_bytes, rep.sha256 = file_digest(path)
            except OSError as e:  # the input failed to be read again (a bad disk)
                rep.warnings.append(f"the file could not be read for its sha256: "
                                    f"{e.strerror or e}")
        reports.append(rep)
        _print_report(rep, time.perf_counter() - t0)
    if args.report_json:
        from engine.atomic import write_text_atomic

        payload = {"files": [r.to_dict() for r in reports],
                   "valid": all(r.ok for r in reports)}
        write_text_atomic(args.report_json, json.dumps(payload, indent=2, ensure_ascii=False)
                          + "\n")
    return EXIT_OK if all(r.ok for r in reports) else EXIT_INVALID


def _print_report(rep: ValidationReport, seconds: float) -> None:
    for w in rep.warnings:
        print(f"warning: {rep.file}: {w}", file=sys.stderr)
    if rep.status == "invalid":
        print(rep.render(limit=20), file=sys.stderr)
    else:
        print(f"{rep.summary()} ({seconds:.2f} s)", file=sys.stderr)


# -- process -------------------------------------------------------------------------------
def cmd_process(args: argparse.Namespace) -> int:
    from engine.pipeline import expand_paths, kept_name, process_paths, rejected_names
    from engine.render import table_text

    if args.max_invalid_ratio is None:
        args.max_invalid_ratio = 0.01
    elif args.on_invalid != "quarantine-rows":
        raise UsageError("--max-invalid-ratio applies only with --on-invalid quarantine-rows",
                         hint="add --on-invalid quarantine-rows; without it a file with any"
                         " bad row is rejected")
    if not 0 <= args.max_invalid_ratio <= 1:
        raise UsageError("--max-invalid-ratio must be between 0 and 1")
    cats = _allowed_categories(args.categories_from)
    started, begun = time.perf_counter(), time.time()
    done = {"files": 0, "rows": 0}
    in_lake: list[str] = []  # files this run put in the lake, in order

    ticker = _Ticker() if _progress() else None

    def on_file(o: FileOutcome) -> None:
        if ticker is not None:
            ticker.clear()
        done["files"] += 1
        done["rows"] += o.report.rows
        rep = o.report
        if o.outcome in ("accepted", "quarantined"):
            in_lake.append(rep.file)
        for w in rep.warnings:
            print(f"warning: {rep.file}: {w}", file=sys.stderr)
        if o.outcome == "rejected":
            print(rep.render(limit=20, rejected=True), file=sys.stderr)
            rejected = Path(args.out) / "rejected"
            if (rejected / kept_name(Path(o.path).name)).exists():
                print(f"  kept unchanged in {rejected}", file=sys.stderr)
            else:
                print(f"  its report is in {rejected}", file=sys.stderr)
        elif o.outcome == "quarantined":
            print(f"{rep.file}: {rep.invalid_rows} invalid rows quarantined to "
                  f"{Path(args.out) / 'rejected'}; {rep.valid_rows} rows processed",
                  file=sys.stderr)
        elif o.outcome == "empty":
            print(rep.summary(), file=sys.stderr)
        if _progress():
            rate = done["rows"] / max(time.perf_counter() - started, 1e-9)
            print(f"[{done['files']} files, {done['rows']:,} rows, {rate:,.0f} rows/s] "
                  f"{rep.file}: {o.outcome}", file=sys.stderr)

    try:
        result = process_paths(
            args.paths, args.out, categories=cats, on_invalid=args.on_invalid,
            max_invalid_ratio=args.max_invalid_ratio, on_file=on_file, on_progress=ticker,
        )
    except KeyboardInterrupt as e:
        if ticker is not None:
            with contextlib.suppress(OSError):
                ticker.clear()
        said, code = why(e)
        kept_dir = Path(args.out) / "rejected"
        with contextlib.suppress(OSError):  # what this run wrote there stays: say so
            # Its inputs' outputs, written since it began (not another run's, that held the
            # lake's lock while this one waited for it, on other inputs).
            ours = {n for p in expand_paths(args.paths) for n in rejected_names(p.name)}
            if n := sum(f.name in ours and f.stat().st_mtime >= begun
                        for f in kept_dir.iterdir()):
                said += (f"; the {n} files this run wrote to {kept_dir} (rejected or quarantined"
                        " rows and their reports) stay there")
        if not in_lake:
            say(f"order-kpis: {said}. No file entered the lake, and the KPI tables were left"
                 " as they were.")
            return code
        shown = ", ".join(in_lake[:5]) + (f" and {len(in_lake) - 5} more"
                                         if len(in_lake) > 5 else "")
        files = "1 file had" if len(in_lake) == 1 else f"{len(in_lake)} files had"
        say(f"order-kpis: {said}. {files} entered the lake ({shown}); the KPI tables"
             f" do not show them yet: the next `process` or `reprocess` of {args.out} adds"
             " them.")
        return code
    if ticker is not None:
        ticker.clear()
    if not args.quiet:
        print(table_text(result.category, title="Category KPIs (category_kpis)"))
        print()
        print(table_text(result.daily, title="Daily KPIs (daily_kpis)"))
    accepted = sum(f.outcome in ("accepted", "quarantined") for f in result.files)
    rejected = sum(f.outcome == "rejected" for f in result.files)
    print(f"{len(result.files)} files: {accepted} processed, {rejected} rejected; "
          f"{len(result.recomputed)} dates recomputed; outputs in {args.out} "
          f"({time.perf_counter() - started:.2f} s)", file=sys.stderr)
    return EXIT_OK if result.all_valid else EXIT_INVALID


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    p = _Parser(prog="order-kpis", description=(
        "Validate e-commerce order CSVs and compute exact category and daily KPIs."))
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log every step")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("validate", help="check files; change nothing",
                       description="Check order CSVs against the input contract. Exit 0 when"
                       " every file is valid, 1 when any is invalid (reasons on stderr).")
    v.add_argument("files", nargs="+", metavar="FILE", help="CSV files or folders of *.csv")
    v.add_argument("--report-json", metavar="PATH",
                   help="write the findings as JSON (a bad file's first 10,000 by line, and"
                   " the counts of all)")
    v.add_argument("--categories-from", metavar="FILE",
                   help="products CSV whose 'category' column is the allowed set "
                   "(env ORDER_KPIS_CATEGORIES_FROM)")
    v.set_defaults(func=cmd_validate)

    pr = sub.add_parser("process", help="validate, add to the lake, recompute KPIs",
                        description="Validate each file; valid files enter DIR/lake; the KPIs"
                        " of every date they touch are recomputed; invalid files are kept in"
                        " DIR/rejected with a report. Exit 1 if any file was rejected or had"
                        " rows quarantined.")
    pr.add_argument("paths", nargs="+", metavar="PATH", help="CSV files or folders of *.csv")
    pr.add_argument("--out", required=True, type=named("the output folder"), metavar="DIR",
                    help="output folder")
    pr.add_argument("--categories-from", metavar="FILE",
                    help="products CSV whose 'category' column is the allowed set")
    pr.add_argument("--on-invalid", choices=("reject", "quarantine-rows"), default="reject",
                    help="reject a file with any bad row (default), or quarantine bad rows")
    pr.add_argument("--max-invalid-ratio", type=float, default=None, metavar="R",
                    help="with quarantine-rows: reject the whole file above this share"
                    " of bad rows (default 0.01)")
    pr.add_argument("-q", "--quiet", action="store_true", help="do not print the KPI tables")
    pr.set_defaults(func=cmd_process)

    from engine.insight import add_subparsers as add_insight_commands

    add_insight_commands(sub)

    rp = sub.add_parser("reprocess", help="recompute KPIs of a date range from the lake",
                        description="Recompute the KPIs of every date in the range from the"
                        " cleaned rows in DIR/lake, without re-reading any input file (for a"
                        " changed KPI definition).")
    where = rp.add_mutually_exclusive_group()
    where.add_argument("--out", type=named("the output folder"), metavar="DIR",
                       help="a `process` output folder (local)")
    where.add_argument("--state-machine-arn", metavar="ARN",
                       help="on AWS: the stack's BackfillStateMachineArn (env "
                       "ORDER_KPIS_BACKFILL_STATE_MACHINE); runs the reprocess task there")
    rp.add_argument("--date-from", required=True, type=_date, metavar="YYYY-MM-DD")
    rp.add_argument("--date-to", required=True, type=_date, metavar="YYYY-MM-DD")
    rp.add_argument("--follow", action="store_true", help="with --state-machine-arn: wait")
    rp.add_argument("-q", "--quiet", action="store_true", help="do not print the KPI tables")
    rp.set_defaults(func=cmd_reprocess)

    bf = sub.add_parser("backfill", help="run every file under an S3 prefix through the workflow",
                        description="Start the backfill workflow: a Step Functions Distributed"
                        " Map lists s3://BUCKET/PREFIX and runs the per-file workflow for each"
                        " object, MAX-CONCURRENCY at a time. Exit 0 when started (with --follow:"
                        " when it succeeded), 1 when it failed.")
    bf.add_argument("uri", metavar="s3://BUCKET/PREFIX",
                    help="the input bucket's input/... or backfill/... prefix")
    bf.add_argument("--state-machine-arn", metavar="ARN",
                    help="the stack's BackfillStateMachineArn (env"
                    " ORDER_KPIS_BACKFILL_STATE_MACHINE)")
    bf.add_argument("--max-concurrency", type=int, metavar="N",
                    help="files processed at once (default: the stack's BackfillMaxConcurrency)")
    bf.add_argument("--tolerated-failure-percentage", type=float, metavar="P",
                    help="share of files that may fail before the backfill fails (default: the"
                    " stack's BackfillToleratedFailurePercentage)")
    bf.add_argument("--follow", action="store_true",
                    help="wait and show progress (one final line when stderr is not a terminal)")
    bf.set_defaults(func=cmd_backfill)

    b = sub.add_parser("bench", add_help=False, help="benchmark this engine against peers"
                       " (order-kpis bench --help)")
    b.add_argument("bench_args", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)

    from engine.localaws.cli import add_subparsers as add_local_aws  # moto only when run

    add_local_aws(sub)
    return p


def _date(text: str) -> dt.date:
    from engine.config import parse_ymd

    try:
        return parse_ymd(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD: {text!r}") from None


def _sfn_client() -> Any:
    import boto3

    return boto3.session.Session().client("stepfunctions")


def _run_workflow(kind: str, arn: str, payload: dict[str, Any], *, follow: bool,
                  sfn: Any = None) -> int:
    from engine.backfill import Progress, check_backfill_machine, execution_name, start
    from engine.backfill import follow as follow_execution

    sfn = _sfn_client() if sfn is None else sfn
    name = execution_name(kind)
    check_backfill_machine(sfn, arn)
    execution = start(sfn, arn, payload, name)
    print(f"{kind} started: {execution}", file=sys.stderr)
    if not follow:
        print(execution)
        return EXIT_OK
    tty, files = _progress(), payload.get("mode") == "files"

    def show(p: Progress) -> None:
        if tty:
            print(f"\r\x1b[K[{name}] {p.line(files=files)}", end="", file=sys.stderr,
                  flush=True)

    def still_running(reason: str) -> None:
        print(f"\n{kind} {name}: stopped following ({reason}); the execution goes on running on"
              f" AWS: {execution}\nFollow {'its map run' if files else 'it'} in the console,"
              f" see it with `aws stepfunctions describe-execution --execution-arn {execution}`,"
              f" or stop it with `aws stepfunctions stop-execution --execution-arn {execution}`."
              " Do not run the command again: that starts another execution.", file=sys.stderr)

    try:
        final = follow_execution(sfn, execution, on_progress=show)
    except KeyboardInterrupt as e:
        said, code = why(e)
        still_running(said)
        return code
    except Exception as e:
        from botocore.exceptions import ClientError

        from engine.sinks.retry import is_aws_network_error, is_retryable

        lost = is_aws_network_error(e) or isinstance(e, TransientError) or (
            isinstance(e, ClientError) and is_retryable(e))
        if not (lost or isinstance(e, ClientError)):
            raise
        still_running(f"AWS could not be reached: {e}" if lost else f"AWS refused: {e}")
        return EXIT_UNREACHABLE if lost else EXIT_USAGE
    if tty:
        print(file=sys.stderr)
    print(f"{kind} {name}: {final.line(files=files)}", file=sys.stderr)
    return EXIT_OK if final.status == "SUCCEEDED" else EXIT_INVALID


def cmd_backfill(args: argparse.Namespace) -> int:
    from engine.backfill import files_input, parse_s3_uri
    from engine.config import backfill_state_machine

    arn = backfill_state_machine(args.state_machine_arn)
    bucket, prefix = parse_s3_uri(args.uri)
    payload = files_input(bucket, prefix, max_concurrency=args.max_concurrency,
                          tolerated_failure_percentage=args.tolerated_failure_percentage)
    return _run_workflow("backfill", arn, payload, follow=args.follow)


def cmd_reprocess(args: argparse.Namespace) -> int:
    if args.out is None:
        from engine.backfill import reprocess_input
        from engine.config import backfill_state_machine

        payload = reprocess_input(args.date_from, args.date_to)
        try:
            arn = backfill_state_machine(args.state_machine_arn)
        except UsageError:
            raise UsageError("reprocess needs --out DIR (a local lake) or --state-machine-arn ARN"
                             " (the lake on AWS)") from None
        return _run_workflow("reprocess", arn, payload, follow=args.follow)
    from engine.pipeline import reprocess_dates
    from engine.render import table_text

    started = time.perf_counter()
    dates, result = reprocess_dates(args.out, args.date_from, args.date_to)
    if not args.quiet:
        print(table_text(result.category, title="Category KPIs (category_kpis)"))
        print()
        print(table_text(result.daily, title="Daily KPIs (daily_kpis)"))
    # A missing KPI table makes the whole lake recomputed; an interrupted run leaves dates
    # pending, recomputed by any run: they are said apart from the range's.
    more = sum(not args.date_from <= d <= args.date_to for d in result.recomputed)
    also = (f", and {more:,} more outside it (a KPI table was missing, or an earlier run had"
            " left them pending)") if more else ""
    print(f"{len(dates)} lake dates in {args.date_from}..{args.date_to} recomputed{also} "
          f"({time.perf_counter() - started:.2f} s)", file=sys.stderr)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from engine.bench.runner import main as bench_main

    return bench_main(args.bench_args)


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _disk_full(e: BaseException) -> bool:
    """Whether ``e`` says a write found no room (a full disk or quota, a file too large), also
    when Arrow or Polars pass the system's words on without an errno."""
    if isinstance(e, OSError) and e.errno in _FULL:
        return True
    text = str(e)
    return any(os.strerror(code) in text for code in _FULL)


def _damaged_parquet(args: argparse.Namespace, e: Exception) -> str | None:
    """If Polars or Arrow failed on a Parquet file of the command's output folder (the lake,
    the KPI tables), return which file, and why, read footer by footer; else None. A file
    that reads but lacks the columns the project writes there is damaged too."""
    if "parquet" not in str(e).lower() and not type(e).__module__.startswith("polars"):
        return None
    # dashboard has both: --from-dir is the folder it reads, --out the HTML file it writes
    folder = next((v for v in (getattr(args, k, None) for k in ("from_dir", "dir", "out"))
                   if isinstance(v, str) and v and Path(v).is_dir()), None)
    if folder is None:
        return None
    damaged = [f"{path} ({problem})" for path in sorted(Path(folder).rglob("*.parquet"))
               if (problem := _parquet_problem(path)) is not None]
    if not damaged:
        return None
    shown = "\n  ".join(damaged[:5]) + (f"\n  and {len(damaged) - 5} more" if len(damaged) > 5
                                       else "")
    return f"Parquet files of the output folder cannot be read:\n  {shown}"


def _parquet_problem(path: Path) -> str | None:
    """What is wrong with a Parquet file at ``path`` of an output folder, from its footer read
    once: unreadable, or without a column the project writes there, or (a KPI table, which
    queries compare and sum) with a column of another type than the contract's; else None."""
    import polars as pl

    from engine.kpis import TABLE_SCHEMAS, table_problem
    from engine.lake import LAKE_COLUMNS

    try:
        have = pl.read_parquet_schema(path)
    except Exception as bad:  # any reason this footer cannot be read names the file
        return str(bad)
    if path.parent.name.startswith("order_date="):  # a lake object: its types vary (scales)
        missing = [c for c in LAKE_COLUMNS if c not in have]
        return f"no column {', '.join(missing)}" if missing else None
    table = TABLE_SCHEMAS.get(path.name)
    return None if table is None else table_problem(have, table)


def _aws_setup_problem(e: Exception) -> str | None:
    """Return a hint if ``e`` is boto's word that no region or credentials are set up."""
    found = sys.modules.get("botocore.exceptions")
    if found is None:
        return None
    if isinstance(e, found.NoRegionError):
        return "set AWS_DEFAULT_REGION, or a region in ~/.aws/config."
    if isinstance(e, (found.NoCredentialsError, found.PartialCredentialsError)):
        return "set AWS credentials (environment, ~/.aws/credentials or an instance role)."
    if isinstance(e, ValueError) and str(e).startswith("Invalid endpoint"):
        named = [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]
        return (f"check {' or '.join(sorted(named)) or 'the endpoint setting'}: a URL such as"
                " https://dynamodb.eu-west-1.amazonaws.com, or unset it to reach AWS itself.")
    return None


_CREDENTIALS_HINT = ("the credentials in use may not make this call, or have expired: check"
                     " who they are (aws sts get-caller-identity) and what their policies allow.")
_REFUSAL_HINTS = {
    "ResourceNotFoundException": "a table (or other resource) named by the command does not exist"
    " in this account and region: check --category-table, --order-table, --state-table and"
    " AWS_DEFAULT_REGION.",
    "StateMachineDoesNotExist": "check --state-machine-arn (or ORDER_KPIS_BACKFILL_STATE_MACHINE):"
    " the stack output BackfillStateMachineArn, in this region.",
    "InvalidArn": "check --state-machine-arn (or ORDER_KPIS_BACKFILL_STATE_MACHINE): the stack"
    " output BackfillStateMachineArn.",
    "NoSuchBucket": "the bucket does not exist: check the s3:// URI.",
    **dict.fromkeys(("AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                     "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken",
                     "ExpiredTokenException", "InvalidSignatureException",
                     "SignatureDoesNotMatch", "InvalidAccessKeyId"), _CREDENTIALS_HINT),
}


def _aws_answer(e: Exception) -> tuple[int, str] | None:
    """Return (exit code, message) if ``e`` is AWS answering a call with an error.

    Refusals (a missing table or state machine, access denied, a value AWS will not take) are
    the caller's to fix: 2, with AWS's words and a hint. AWS failing to answer (5xx,
    throttling after the SDK's retries) is worth running again: 75.
    """
    found = sys.modules.get("botocore.exceptions")
    if found is None or not isinstance(e, found.ClientError):
        return None
    from engine.sinks.retry import error_code, is_retryable

    code = error_code(e) or "?"
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    said = e.response.get("Error", {}).get("Message") or ""
    call = f"{e.operation_name} ({code}{': ' + said if said else ''})"
    if (status >= 500 or status == 429 or is_retryable(e)
            or code in ("Throttling", "SlowDown", "RequestTimeout", "TooManyRequestsException")):
        return EXIT_UNREACHABLE, (f"AWS could not answer {call}.\nNothing was changed by the"
                                  " call that failed; run the command again.")
    hint = _REFUSAL_HINTS.get(code, "check the names and options given to the command.")
    return EXIT_USAGE, f"AWS refused {call}.\nHint: {hint}"


class _WholeWrites(io.RawIOBase):
    """A file descriptor whose every write is whole, or an ``OSError``.

    CPython's buffered standard output takes a write larger than its buffer that the machine
    accepts only in part (a full disk, a file-size limit, a pipe whose reader went away) as
    written, and no later flush says otherwise: ``query`` cut its output short on a full disk
    with exit 0, and ``| head`` gave 0 instead of 141.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._failed = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        total = len(view)
        if self._failed:  # raised once, and the command said so: the rest goes nowhere, so
            return total  # the interpreter's last flush does not fail again (exit 120)
        try:
            while view:
                try:
                    view = view[os.write(self._fd, view):]
                except BlockingIOError:  # a non-blocking descriptor: wait until it takes more
                    select.select([], [self._fd], [])
        except BaseException:
            # Also a Ctrl-C in the middle: the buffer above would write it all again, from
            # its start, at the interpreter's last flush (bytes written twice).
            self._failed = True
            raise
        return total


def _whole_stdout() -> None:
    """Put standard output, when it is the process's own, behind ``_WholeWrites``."""
    out = sys.stdout
    if out is not sys.__stdout__ or not isinstance(out, io.TextIOWrapper):
        return  # captured (tests) or replaced by the caller: theirs to handle
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    out.flush()
    # Unbuffered as it was (python -u, PYTHONUNBUFFERED): each write goes out as it comes.
    raw = _WholeWrites(fd)
    unbuffered = not isinstance(out.buffer, io.BufferedWriter)
    sys.stdout = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw),
                                  encoding=out.encoding, errors=out.errors,
                                  line_buffering=out.line_buffering, write_through=unbuffered)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    # Where numpy is installed, pyarrow imports it, and its OpenBLAS starts a thread that
    # spins for ~0.1-0.25 CPU-s (measured: `process` of a 2-row file, 0.76 -> 0.62 CPU-s);
    # nothing here does linear algebra. A value already set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # The global options are flags: the first other word is the command.
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    if argv[at : at + 1] == ["bench"] and "--help" not in argv[:at] and "-h" not in argv[:at]:
        # The benchmark runner owns its options (including --help).
        args = parser.parse_args(argv[: at + 1])
        args.bench_args = argv[at + 1 :]
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if sys.stdout is None:  # started with standard output closed (`>&-`): refuse before work
        print("order-kpis: error: standard output is closed\nHint: redirect it to a file or"
              " to /dev/null instead.", file=sys.stderr)
        return EXIT_IO
    _whole_stdout()
    try:
        run = getattr(args, "func", None) or args.handler
        code: int = run(args)
        sys.stdout.flush()  # a write that fails (a full disk, a closed pipe) fails here, in reach
        return code
    except UsageError as e:
        print(f"order-kpis: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except LakeDamagedError as e:  # a file of the output folder, not the input data
        print(f"order-kpis: error: {e}", file=sys.stderr)
        return EXIT_IO
    except TransientError as e:  # AWS still throttling after the retries: run it again
        print(f"order-kpis: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except OrderKpisError as e:
        print(f"order-kpis: {e}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt as e:
        said, code = why(e)
        say(f"order-kpis: {said}; outputs were left as they were before")
        return code
    except BrokenPipeError:  # the reader of our output went away (`| head`): stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE
    except Exception as e:
        if args.debug:
            raise
        if (hint := _aws_setup_problem(e)) is not None:
            print(f"order-kpis: error: {e}\nHint: {hint}", file=sys.stderr)
            return EXIT_USAGE
        from engine.sinks.retry import is_aws_network_error

        if is_aws_network_error(e):  # some are OSErrors too: they come first
            print(f"order-kpis: error: AWS could not be reached: {e}\nNothing was changed by"
                  " the call that failed; run the command again.", file=sys.stderr)
            return EXIT_UNREACHABLE
        # Not for the embedded AWS: a ClientError there is an adaptation's bug, not AWS's word.
        command = getattr(args, "func", None)
        local_aws = str(getattr(command, "__module__", "")).startswith("engine.localaws")
        if not local_aws and (answer := _aws_answer(e)) is not None:
            code, message = answer
            print(f"order-kpis: error: {message}", file=sys.stderr)
            return code
        if (damaged := _damaged_parquet(args, e)) is not None:
            print(f"order-kpis: error: {damaged}\nHint: the folder's outputs cannot be trusted:"
                  " restore the file, or process the input files again into a new --out"
                  " folder.", file=sys.stderr)
            return EXIT_IO
        if _disk_full(e):
            print(f"order-kpis: error: the machine refused a write: {e}\nFree some space and"
                  " run the command again; the files it writes are replaced whole or not at all"
                  " (what went to standard output or a pipe may be cut short).",
                  file=sys.stderr)
            return EXIT_IO
        if isinstance(e, OSError) and e.filename is not None:
            # The machine's answer about a path, not a bug: permissions, a file for a folder.
            where = ": ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
            print(f"order-kpis: error: {where}: {e.strerror or e}\nNothing was half-written:"
                  " each output is replaced whole or not at all.", file=sys.stderr)
            return EXIT_IO
        print(f"order-kpis: internal error (a bug, please report it): "
              f"{type(e).__name__}: {e}\nRun again with --debug for the traceback.",
              file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":  # pragma: no cover
    entry()
