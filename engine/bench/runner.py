"""Runs every contender on the same generated file as whole processes and compares answers.

For each contender: one warm-up, then ``repeats`` timed runs, taken in rounds (every contender
once per round, so that all meet the same drift of a shared machine); the median wall time,
the child's peak RSS (from ``os.wait4``), rows/s, MB/s and the ratio to the parse floor (the
median of the rounds' ratios) are reported, and every run's KPI CSVs must equal the reference
answer (the first contender that produced one).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from engine.bench.generate import generate_orders
from engine.bench.peers import UNAVAILABLE
from engine.bench.peers._common import CATEGORY_FILE, DAILY_FILE
from engine.errors import UsageError

logger = logging.getLogger(__name__)

FLOOR = "polars_floor"
_PEERS = "engine.bench.peers."
# The console script calls ``engine.cli.entry``; this does the same without needing the script
# on PATH, and says "unavailable" instead of crashing while engine.cli is not there yet.
_CLI = (
    "import sys\n"
    "try:\n"
    "    from engine.cli import entry\n"
    "except ImportError as exc:\n"
    "    print(f'unavailable: engine.cli cannot be imported ({exc})', file=sys.stderr)\n"
    f"    sys.exit({UNAVAILABLE})\n"
    "sys.argv[0] = 'order-kpis'\n"
    "entry()\n"
)


# A small go-between that starts the contender and reports its wait4() numbers. Linux carries a
# parent's RSS high-water mark into a forked child's ru_maxrss, even across exec; the runner
# holds the generated data and Polars, so children forked straight from it would all report at
# least the runner's RSS. Forked from this small process, they start from its few MB instead.
_LAUNCHER = (
    "import json, os, signal, sys, time\n"
    "report, argv = sys.argv[1], sys.argv[2:]\n"
    "parent = os.getppid()\n"
    "pid = 0\n"
    "def stop(*_):\n"
    "    if pid:\n"
    "        os.kill(pid, signal.SIGKILL)\n"
    "    os._exit(143)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    # Linux: told (SIGTERM) when the runner dies, however it dies, so its contender goes too
    "try:\n"
    "    import ctypes\n"
    "    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != parent:\n"
    "    os._exit(143)\n"
    "t = time.perf_counter()\n"
    "pid = os.posix_spawn(argv[0], argv, os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "seconds = time.perf_counter() - t\n"
    "code = os.waitstatus_to_exitcode(status)\n"
    "with open(report, 'w') as fh:\n"
    "    json.dump({'seconds': seconds, 'max_rss_kb': usage.ru_maxrss, 'code': code}, fh)\n"
    "sys.exit(code if 0 <= code < 256 else 1)\n"
)


@dataclass(frozen=True)
class Contender:
    """A named command that reads ``{csv}`` and writes KPI CSVs into ``{out}``."""

    name: str
    description: str
    argv: tuple[str, ...]
    writes_kpis: bool = True


CONTENDERS: tuple[Contender, ...] = (
    Contender(
        "engine_process",
        "order-kpis process CSV --out DIR: read, validate, lake, KPIs, sinks (the product path)",
        ("-c", _CLI, "process", "{csv}", "--out", "{out}"),
    ),
    Contender(
        "engine_validate",
        "order-kpis validate CSV: read and validate in batches; no lake, no KPIs",
        ("-c", _CLI, "validate", "{csv}"),
        writes_kpis=False,
    ),
    Contender(
        "engine_kpis",
        "engine.read.scan_orders_typed + engine.kpis, collect_all in-memory (no validation)",
        ("-m", _PEERS + "engine_kpis", "--polars-engine", "in-memory", "{csv}", "{out}"),
    ),
    Contender(
        "engine_kpis_streaming",
        "the same as engine_kpis on Polars' streaming engine",
        ("-m", _PEERS + "engine_kpis", "--polars-engine", "streaming", "{csv}", "{out}"),
    ),
    Contender(
        "duckdb_sql",
        "DuckDB read_csv into a table + 2 GROUP BY, DECIMAL(18,4) prices",
        ("-m", _PEERS + "duckdb_sql", "{csv}", "{out}"),
    ),
    Contender(
        "pandas_groupby",
        "pandas read_csv(engine='pyarrow') + 2 groupbys on integer ten-thousandths",
        ("-m", _PEERS + "pandas_groupby", "{csv}", "{out}"),
    ),
    Contender(
        "python_loop",
        "csv.DictReader loop, dict accumulation, Decimal",
        ("-m", _PEERS + "python_loop", "{csv}", "{out}"),
    ),
    Contender(
        FLOOR,
        "parse floor: Polars typed read of all columns, no KPIs",
        ("-m", _PEERS + "polars_floor", "{csv}", "{out}"),
        writes_kpis=False,
    ),
)
CONTENDER_NAMES: tuple[str, ...] = tuple(c.name for c in CONTENDERS)
REFERENCE_PREFERENCE: tuple[str, ...] = ("python_loop", "duckdb_sql", "pandas_groupby")
# Only a peer may be missing (its library comes with the ``bench`` extra); an engine contender
# that cannot start is a failure of the engine.
ENGINE_PREFIX = "engine_"


def default_results_dir() -> Path:
    """Return ``benchmarks/results`` of the checkout ``engine`` is imported from, if it is
    one; else ``benchmarks/results`` under the current folder (an installed wheel)."""
    checkout = Path(__file__).resolve().parents[2] / "benchmarks"
    return checkout / "results" if checkout.is_dir() else Path("benchmarks/results")


@dataclass
class ContenderResult:
    """One contender's runs: status is ok, mismatch, failed or skipped."""

    name: str
    description: str
    status: str = "ok"
    note: str = ""
    times_s: list[float] = field(default_factory=list)
    warmup_s: float | None = None
    median_s: float | None = None
    peak_rss_mb: float | None = None
    rows_per_s: float | None = None
    mb_per_s: float | None = None
    ratio_to_floor: float | None = None
    answers_match: bool | None = None


@dataclass
class BenchResult:
    """A whole run: the file, the machine, every contender, and whether answers agreed."""

    date: str
    rows: int
    bytes: int
    seed: int
    repeats: int
    machine: dict[str, object]
    contenders: list[ContenderResult]
    reference: str | None
    answers_match: bool | None  # None: fewer than two contenders wrote KPIs, nothing compared
    ok: bool
    generate_s: float
    json_path: str = ""
    markdown_path: str = ""
    data_dir: str = ""  # where the CSV, outputs and logs were kept (``keep_data``)

    def to_json(self) -> dict[str, object]:
        """Return the result as plain JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class _Run:
    seconds: float
    max_rss_kb: int
    returncode: int
    stderr: str


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _child_env() -> dict[str, str]:
    # Children must import the same ``engine`` as this process, installed or from a checkout.
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("POLARS_VERBOSE", "0")
    return env


def _run_once(contender: Contender, csv: Path, out: Path, logs: Path) -> _Run:
    """Return wall time, peak RSS (KiB) and exit code of one whole-process run."""
    import subprocess

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    fill = {"{csv}": str(csv), "{out}": str(out)}
    argv = [sys.executable] + [fill.get(a, a) for a in contender.argv]
    err_path = logs / f"{contender.name}.stderr"
    report = logs / f"{contender.name}.wait4.json"
    report.unlink(missing_ok=True)
    launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(report)]
    with (logs / f"{contender.name}.stdout").open("wb") as so, err_path.open("wb") as se:
        began = time.perf_counter()
        # A group of its own: the launcher's child, the contender, is stopped with it when
        # this run is stopped (Ctrl-C, SIGTERM), instead of running on with its files.
        proc = subprocess.Popen(launcher + argv, stdout=so, stderr=se, stdin=subprocess.DEVNULL,
                                env=_child_env(), process_group=0)
        try:
            proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        outer = time.perf_counter() - began
    try:
        got = json.loads(report.read_text())
        seconds, rss, code = float(got["seconds"]), int(got["max_rss_kb"]), int(got["code"])
    except (OSError, ValueError, KeyError):
        seconds, rss, code = outer, 0, proc.returncode or 1
    return _Run(seconds, rss, code, _read_text(err_path))


def _answer(out: Path) -> tuple[str, str] | None:
    cat, day = out / CATEGORY_FILE, out / DAILY_FILE
    if not (cat.is_file() and day.is_file()):
        return None
    # Line endings are not part of the answer.
    return (
        _read_text(cat).replace("\r\n", "\n").rstrip("\n"),
        _read_text(day).replace("\r\n", "\n").rstrip("\n"),
    )


def _first_difference(a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), start=1):
        if x != y:
            return f"line {i}: expected {x!r}, got {y!r}"
    return f"line counts differ: {len(a.splitlines())} vs {len(b.splitlines())}"


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def machine_description() -> dict[str, object]:
    """Return CPU model, cores, RAM and the versions of Python and the libraries compared."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib: float | None = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    versions: dict[str, str | None] = {"python": platform.python_version()}
    from importlib.metadata import PackageNotFoundError, version

    for lib in ("polars", "pandera", "duckdb", "pandas", "pyarrow", "numpy"):
        try:
            versions[lib] = version(lib)
        except PackageNotFoundError:
            versions[lib] = None
    origins: dict[str, str | None] = {}
    for mod in ("engine", "engine.kpis", "engine.read", "engine.cli"):
        try:
            spec = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            spec = None
        origins[mod] = spec.origin if spec else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "platform": platform.platform(),
        "versions": versions,
        "engine_modules": origins,
    }


class _Progress:
    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, message: str) -> None:
        logger.info(message)
        if self.tty:
            print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def run_bench(
    rows: int,
    *,
    repeats: int = 3,
    contenders: Sequence[str] | None = None,
    workdir: str | Path | None = None,
    results_dir: str | Path | None = None,
    seed: int = 0,
    keep_data: bool = False,
) -> BenchResult:
    """Return the results of running ``contenders`` on one generated file of ``rows`` rows.

    Writes ``<results_dir>/<date>-<rows>.json`` (``-2``, ``-3``... after it: an earlier
    result is never replaced) and ``<results_dir>/latest.md``. The CSV, outputs and logs go
    to a new folder in ``workdir`` (default: the system's temporary folder), removed at the
    end unless ``keep_data``; nothing else in ``workdir`` is touched.
    """
    chosen = [c for c in CONTENDERS if contenders is None or c.name in contenders]
    unknown = set(contenders or ()) - set(CONTENDER_NAMES)
    if unknown:
        raise ValueError(f"unknown contenders {sorted(unknown)}; known: {list(CONTENDER_NAMES)}")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    progress = _Progress()
    results = Path(default_results_dir() if results_dir is None else results_dir)
    results.mkdir(parents=True, exist_ok=True)  # before the work: a bad folder fails at once
    # The folders of ``workdir`` this run makes, deepest first, to remove if left empty.
    made = [] if workdir is None else [
        p for p in (Path(workdir), *Path(workdir).parents) if not p.exists()]
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="order-kpis-bench-", dir=workdir))
    csv = work / f"orders-{rows}-seed{seed}.csv"
    try:
        progress(f"generating {rows:,} rows -> {csv}")
        gen = generate_orders(csv, rows, seed=seed)
        outcomes: list[ContenderResult] = []
        answers: dict[str, list[tuple[str, str]]] = {}
        runs: dict[str, list[_Run]] = {}
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)

        def run(c: Contender, label: str) -> _Run:
            progress(f"{c.name}: {label}")
            return _run_once(c, csv, work / "out" / c.name, logs)

        active: list[tuple[Contender, ContenderResult]] = []
        for c in chosen:
            res = ContenderResult(c.name, c.description)
            outcomes.append(res)
            warm = run(c, "warm-up")
            res.warmup_s = round(warm.seconds, 4)
            if warm.returncode == UNAVAILABLE and not c.name.startswith(ENGINE_PREFIX):
                res.status, res.note = "skipped", _tail(warm.stderr, 2)
                logger.warning("%s skipped: %s", c.name, res.note)
            elif warm.returncode != 0:
                _fail(res, f"exit {warm.returncode}: {_tail(warm.stderr)}")
            else:
                active.append((c, res))
                runs[c.name] = []
        # Rounds: every contender once per round, so that all of them meet the same drift of
        # a shared machine, and each ratio to the floor is taken within a round.
        for i in range(repeats):
            for c, res in active:
                if res.status != "ok":
                    continue
                done = run(c, f"run {i + 1}/{repeats}")
                if done.returncode != 0:
                    _fail(res, f"exit {done.returncode}: {_tail(done.stderr)}")
                    continue
                runs[c.name].append(done)
                if c.writes_kpis:
                    answer = _answer(work / "out" / c.name)
                    if answer is None:
                        _fail(res, "no KPI CSVs written")
                    else:
                        answers.setdefault(c.name, []).append(answer)
        for c, res in active:
            if res.status == "ok" and runs[c.name]:
                res.times_s = [round(r.seconds, 4) for r in runs[c.name]]
                res.median_s = round(statistics.median(res.times_s), 4)
                res.peak_rss_mb = round(max(r.max_rss_kb for r in runs[c.name]) / 1024, 1)
                res.rows_per_s = round(rows / res.median_s) if res.median_s else None
                res.mb_per_s = round(gen.bytes / 1e6 / res.median_s, 1) if res.median_s else None
        reference = _compare(outcomes, answers)
        failed = any(r.status in ("failed", "mismatch") for r in outcomes)
        floor = next((r for r in outcomes if r.name == FLOOR and r.median_s), None)
        for r in outcomes:
            if floor is not None and r.median_s and len(r.times_s) == len(floor.times_s):
                # The median of the rounds' ratios: each compares two runs a few seconds apart.
                r.ratio_to_floor = round(statistics.median(
                    t / f for t, f in zip(r.times_s, floor.times_s, strict=True) if f > 0), 2)
        progress.done()
        answers_match: bool | None = all(r.answers_match is not False for r in outcomes)
        if reference is None or sum(1 for a in answers.values() if a) < 2:
            answers_match = reference = None  # one answer, or none: checked against nothing
            for r in outcomes:
                if r.answers_match is True:
                    r.answers_match = None
                    r.note = "answer not checked: no other contender wrote KPIs"
        now = datetime.now(UTC)
        bench = BenchResult(
            date=now.isoformat(timespec="seconds"),
            rows=rows,
            bytes=gen.bytes,
            seed=seed,
            repeats=repeats,
            machine=machine_description(),
            contenders=outcomes,
            reference=reference,
            answers_match=answers_match,
            ok=answers_match is not False and not failed,
            generate_s=round(gen.seconds, 3),
            data_dir=str(work) if keep_data else "",
        )
        _write_results(bench, results, now)
        return bench
    finally:
        if not keep_data:
            shutil.rmtree(work, ignore_errors=True)
            for folder in made:
                try:
                    folder.rmdir()  # only if the run left it empty
                except OSError:
                    break


def _fail(res: ContenderResult, note: str) -> None:
    res.status, res.note = "failed", note
    logger.error("%s failed: %s", res.name, note)


def _compare(
    results: list[ContenderResult], answers: dict[str, list[tuple[str, str]]]
) -> str | None:
    """Mark every contender's answers against the reference; return the reference's name."""
    # The reference is the most obviously exact peer that ran: a mistake in the engine must
    # show up as the engine's mismatch, not as everyone else's.
    order = [*REFERENCE_PREFERENCE, *(r.name for r in results)]
    reference = next((n for n in order if answers.get(n)), None)
    if reference is None:
        return None
    want = answers[reference][0]
    for r in results:
        got_all = answers.get(r.name)
        if not got_all or r.status != "ok":
            continue
        r.answers_match = True
        for run, got in enumerate(got_all, start=1):
            for which, w, g in zip((CATEGORY_FILE, DAILY_FILE), want, got, strict=True):
                if w != g:
                    r.answers_match = False
                    r.status = "mismatch"
                    r.note = (
                        f"ANSWER MISMATCH vs {reference} in {which} (run {run}): "
                        f"{_first_difference(w, g)}"
                    )
                    logger.error("%s: %s", r.name, r.note)
                    break
            if r.answers_match is False:
                break
        if r.name == reference:
            r.note = r.note or "reference answer"
    return reference


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(bench: BenchResult) -> str:
    """Return the result as a markdown table with a short header."""
    m = bench.machine
    v = m.get("versions", {})
    assert isinstance(v, dict)
    lines = [
        f"# order-kpis benchmark: {bench.rows:,} rows ({bench.bytes / 1e6:.0f} MB)",
        "",
        f"{bench.date} · {m.get('cpu')} · {m.get('cores')} cores · {m.get('ram_gib')} GiB · "
        + " · ".join(f"{k} {val}" for k, val in v.items() if val),
        "",
        f"Median of {bench.repeats} whole-process runs after one warm-up, taken in rounds "
        "(every contender once per round); x floor: the median of the rounds' ratios. "
        f"Answers match: **{_verdict(bench.answers_match)}**"
        + (f" (reference: {bench.reference})" if bench.reference else "")
        + f". Run ok: **{'yes' if bench.ok else 'NO'}**.",
        "",
        "| contender | status | median s | peak RSS MB | M rows/s | MB/s | x floor | answers |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in bench.contenders:
        rate = None if r.rows_per_s is None else r.rows_per_s / 1e6
        answers = {True: "match", False: "**MISMATCH**", None: "-"}[r.answers_match]
        lines.append(
            f"| {r.name} | {r.status} | {_fmt(r.median_s, '.2f')} | "
            f"{_fmt(r.peak_rss_mb, '.0f')} | {_fmt(rate, '.2f')} | {_fmt(r.mb_per_s, '.0f')} | "
            f"{_fmt(r.ratio_to_floor, '.2f')} | {answers} |"
        )
    notes = [f"- **{r.name}**: {r.note}" for r in bench.contenders if r.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def _verdict(match: bool | None) -> str:
    return {True: "yes", False: "NO", None: "not checked (fewer than two answers)"}[match]


def _write_results(bench: BenchResult, results_dir: Path, now: datetime) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{now:%Y-%m-%d}-{bench.rows}"
    json_path = results_dir / f"{stem}.json"
    n = 1
    while json_path.exists():  # a run of the same day and size: keep the earlier one
        n += 1
        json_path = results_dir / f"{stem}-{n}.json"
    md_path = results_dir / "latest.md"
    bench.json_path, bench.markdown_path = str(json_path), str(md_path)
    with json_path.open("x", encoding="utf-8") as fh:
        fh.write(json.dumps(bench.to_json(), indent=2) + "\n")
    md_path.write_text(markdown(bench), encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="order-kpis bench",
        description="Time this engine against peers on one generated file; compare answers.",
    )
    p.add_argument("--rows", type=int, default=2_000_000, help="rows to generate (2,000,000)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per contender (3)")
    p.add_argument(
        "--only",
        default=None,
        help=f"comma-separated contenders (default all: {','.join(CONTENDER_NAMES)})",
    )
    p.add_argument("--seed", type=int, default=0, help="generator seed, at least 0 (0)")
    p.add_argument("--workdir", default=None,
                   help="folder in which a new folder holds the CSV, outputs and logs"
                   " (default: the system's temporary folder)")
    p.add_argument("--results-dir", default=None,
                   help="where the JSON and latest.md go (default: benchmarks/results of the"
                   " checkout, else of the current folder)")
    p.add_argument("--keep-data", action="store_true",
                   help="keep the CSV, outputs and per-contender logs (their folder is printed)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark command line; return 0 when every answer matched, else 1."""
    parser = _parser()
    args = parser.parse_args(argv)
    only = None if args.only is None else [s for s in args.only.split(",") if s]
    if only == []:
        parser.error("--only: name at least one contender")
    unknown = sorted(set(only or ()) - set(CONTENDER_NAMES))
    if unknown:
        parser.error(f"--only: unknown contenders {unknown}; known: {','.join(CONTENDER_NAMES)}")
    if args.repeats < 1 or args.rows < 1:
        parser.error("--repeats and --rows must be at least 1")
    if args.seed < 0:
        parser.error("--seed must be at least 0")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stops = (signal.SIGTERM, signal.SIGHUP)
    before = {}
    if threading.current_thread() is threading.main_thread():
        # A stop (SIGTERM, or a terminal's hang-up) ends the run like Ctrl-C: the running
        # contender and the data go. The caller's handlers are given back at the end.
        before = {s: signal.signal(s, _stop) for s in stops
                  if signal.getsignal(s) is not signal.SIG_IGN}  # `nohup`: no hang-up
    try:
        bench = run_bench(
            args.rows,
            repeats=args.repeats,
            contenders=only,
            workdir=args.workdir,
            results_dir=args.results_dir,
            seed=args.seed,
            keep_data=args.keep_data,
        )
    except UsageError as e:
        print(f"order-kpis bench: error: {e}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError) as e:
        print(f"order-kpis bench: error: {e.filename}: a part of this path is a file, not a"
              " folder", file=sys.stderr)
        return 74
    except OSError as e:
        print(f"order-kpis bench: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 74
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    print(markdown(bench))
    print(f"wrote {bench.json_path} and {bench.markdown_path}")
    if bench.data_dir:
        print(f"kept the CSV, outputs and logs in {bench.data_dir}")
    return 0 if bench.ok else 1


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    raise SystemExit(main())
