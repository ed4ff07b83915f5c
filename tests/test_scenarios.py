"""Seeded multi-step scenarios through the lake, checked against the plain-Python oracle.

Each scenario is a few ``process`` and ``reprocess`` runs on one folder: several files a run,
overlapping dates, order ids shared between files, files re-sent under the same name with rows
or whole dates removed and orders changed or moved, header-only files, rejected files,
``reprocess`` over a random sub-range, far dates (0001-01-01 .. 9999-12-31), quantities and
prices up to 1e9, odd categories through ``--categories-from``, and BOM / CRLF / padded values.
After every step both KPI tables, CSV and Parquet, must equal ``tests.oracle.Lake``'s, which
models file names (a re-sent name replaces its earlier rows) and knows nothing of the engine.

A failure prints the step list with every file's bytes, and the folder it ran in (pytest keeps
the last three runs' folders). To run one seed again: ``pytest tests/test_scenarios.py -k
"oracle and seed-17"``, or one of the long run's: ``pytest -m slow ... -k "long and seed-1042"``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest

from engine.cli import main
from tests import oracle

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["order_id", "customer_id", "order_date", "category", "product_id", "quantity",
           "unit_price", "returned"]
HEADER = ",".join(COLUMNS) + "\n"
DEFAULT_CATEGORIES = ["Electronics", "Books", "Clothing"]
ODD_CATEGORIES = ["Books", "Électronique", "Toys, Games", 'Say "hi"', "=SUM(A1)", "+plus",
                  "@at", "-dash", "a  b", "日本語", "Z", "z", "Books2", "x;y", "Ünïcode ✓",
                  "back\\slash", "multi\nline", "-12.50", "+3", "-1+2"]
NEAR_DATES = [f"2025-07-{d:02d}" for d in range(1, 8)]
FAR_DATES = ["0001-01-01", "9999-12-31", "1899-12-31", "1969-12-31", "1970-01-01",
             "2000-02-29", "2024-02-29", "2262-04-12", "1677-09-21", "0999-06-15"]
TIE_PRICES = ["0.005", "0.015", "0.025", "1.125", "0.01", "0.02", "2.5"]
SPECIAL_PRICES = ["0.0001", "0.005", "0.015", "0.025", "0.0050", "0.0049", "0.0051", "1.005",
                  "2.675", "0.125", "0.375", "0.0625", "1000000000", "999999999.9999", "0.01",
                  "1", "1.5", "10.10", "33.3333", "0.3333", "12.3450"]
HUGE_QUANTITIES = [1_000_000_000, 999_999_999, 123_456_789]

DEFAULT_SEEDS = range(60)
LONG_SEEDS = range(1000, 1400)

# Everything a default run must exercise; test_default_seeds_cover_every_feature holds it.
FEATURES = frozenset({
    "several files in one run", "one name twice in one run", "an order in two files",
    "a date in two files", "re-send", "re-send drops a date", "re-send changes an order",
    "re-send moves an order", "re-send drops an order another file holds", "header-only new name",
    "header-only re-send", "rejected file", "rejected re-send keeps the earlier file",
    "reprocess", "far date", "date 0001-01-01", "date 9999-12-31", "quantity 1e9",
    "price 1e9", "odd categories", "formula-like category", "BOM", "CRLF", "padded value",
    "header case and spaces", "columns reordered", "extra column",
})


# ----------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class SentFile:
    """One file of a ``process`` run: its name (the lake's identity), bytes and fate."""

    name: str
    data: bytes
    kind: str  # new, re-send, header-only (random scenarios) or hand (hand-built cases)
    rejected: bool


@dataclass(frozen=True)
class Process:
    files: tuple[SentFile, ...]


@dataclass(frozen=True)
class Reprocess:
    date_from: str
    date_to: str


Step = Process | Reprocess


@dataclass
class Scenario:
    seed: int
    categories: list[str] | None  # None: the default set, no --categories-from
    steps: list[Step] = field(default_factory=list)
    features: set[str] = field(default_factory=set)

    def describe(self) -> str:
        """Return the scenario as text: enough to rebuild it by hand."""
        lines = [f"scenario seed {self.seed}; categories: {self.categories or 'default'}"]
        for k, step in enumerate(self.steps):
            if isinstance(step, Reprocess):
                lines.append(f"step {k}: reprocess {step.date_from}..{step.date_to}")
                continue
            lines.append(f"step {k}: process {len(step.files)} file(s), each in its own folder")
            for f in step.files:
                verdict = "must be rejected" if f.rejected else "valid"
                lines.append(f"  {f.name} ({f.kind}, {verdict}):")
                lines += [f"    {line!r}" for line in f.data.splitlines(keepends=True)]
        return "\n".join(lines)


def _price(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(SPECIAL_PRICES)
    places = rng.choice([0, 1, 2, 3, 4])
    whole = rng.choice([0, 0, 1, 5, 19, 250, 12345])
    digits = "".join(rng.choice("0123456789") for _ in range(places))
    text = f"{whole}.{digits}" if places else str(whole)
    if places and rng.random() < 0.1:
        text += "0" * (4 - places)  # trailing zeros, still at most 4 places
    return text if Decimal(text) else "0.0005"


def _quantity(rng: random.Random) -> int:
    if rng.random() < 0.08:
        return rng.choice(HUGE_QUANTITIES)
    return rng.choice([1, 1, 1, 2, 3, 7, 10, 100])


class _Generator:
    """Builds one scenario from a seed; tracks what the lake holds to aim re-sends and ranges."""

    def __init__(self, seed: int) -> None:
        rng = self.rng = random.Random(seed)
        odd, far, self.ties = rng.random() < 0.35, rng.random() < 0.35, rng.random() < 0.25
        self.categories = rng.sample(ODD_CATEGORIES, 5) if odd else DEFAULT_CATEGORIES
        self.dates = rng.sample(NEAR_DATES, 3)
        if far:  # one of the two ends of the calendar, and two more far dates
            self.dates += [rng.choice(FAR_DATES[:2]), *rng.sample(FAR_DATES[2:], 2)]
        self.ids = [f"O{i}" for i in range(40)]
        self.customers = [f"C{i}" for i in range(8)] + ["c0", "C 1"]
        self.held: dict[str, list[dict[str, str]]] = {}  # name -> rows of its valid version
        self.scenario = Scenario(seed, self.categories if odd else None)
        if odd:
            self.scenario.features.add("odd categories")

    def build(self) -> Scenario:
        rng = self.rng
        for k in range(rng.randint(2, 5)):
            if k and rng.random() < 0.15:
                self.scenario.steps.append(self._reprocess())
            else:
                files = tuple(self._file() for _ in range(rng.randint(1, 3)))
                self.scenario.steps.append(Process(files))
                names = [f.name for f in files]
                if len(names) > 1:
                    self.scenario.features.add("several files in one run")
                if len(set(names)) < len(names):
                    self.scenario.features.add("one name twice in one run")
        return self.scenario

    def _reprocess(self) -> Reprocess:
        held = sorted({r["order_date"] for rows in self.held.values() for r in rows})
        start = self.rng.choice(held or ["2025-07-01"])
        end = self.rng.choice([d for d in sorted(NEAR_DATES + FAR_DATES) if d >= start])
        self.scenario.features.add("reprocess")
        return Reprocess(start, end)

    def _row(self, order_id: str) -> dict[str, str]:
        rng = self.rng
        return {"order_id": order_id, "customer_id": rng.choice(self.customers),
                "order_date": rng.choice(self.dates), "category": rng.choice(self.categories),
                "product_id": f"P{rng.randint(1, 5)}", "quantity": str(_quantity(rng)),
                "unit_price": _price(rng), "returned": str(rng.random() < 0.3).lower()}

    def _new_rows(self) -> list[dict[str, str]]:
        rng = self.rng
        rows = [self._row(i) for i in rng.sample(self.ids, rng.randint(1, 34 if self.ties else 25))]
        if self.ties:  # many orders of one (category, date): rates like 1/32, prices x.xx5
            date, category = rows[0]["order_date"], rows[0]["category"]
            for r in rows:
                if rng.random() < 0.85:
                    r.update(order_date=date, category=category, quantity="1",
                             unit_price=rng.choice(TIE_PRICES),
                             returned=str(rng.random() < 0.15).lower())
        return rows

    def _resent_rows(self, name: str) -> list[dict[str, str]]:
        rng, feats = self.rng, self.scenario.features
        rows = [dict(r) for r in self.held[name] if rng.random() < 0.6]
        if rows and rng.random() < 0.5:
            gone = rng.choice(rows)["order_date"]
            rows = [r for r in rows if r["order_date"] != gone]
            feats.add("re-send drops a date")
        for r in rows:
            if rng.random() < 0.3:
                r.update(unit_price=_price(rng), returned=str(r["returned"] == "false").lower())
                feats.add("re-send changes an order")
            if rng.random() < 0.15:
                r.update(order_date=rng.choice(self.dates), category=rng.choice(self.categories),
                         customer_id=rng.choice(self.customers), quantity=str(_quantity(rng)))
                feats.add("re-send moves an order")
        kept = {(r["order_date"], r["order_id"]) for r in rows}
        others = {(r["order_date"], r["order_id"])
                  for other, rs in self.held.items() if other != name for r in rs}
        if any(key in others and key not in kept
               for key in ((r["order_date"], r["order_id"]) for r in self.held[name])):
            feats.add("re-send drops an order another file holds")
        return rows

    def _file(self) -> SentFile:
        rng, feats = self.rng, self.scenario.features
        name = rng.choice(["f0.csv", "f1.csv", "f2.csv", "orders 2025.csv"])
        what = rng.random()
        if name in self.held and what < 0.4:
            rows, kind = self._resent_rows(name), "re-send"
        elif what < 0.48:
            rows, kind = [], "header-only"
        else:
            rows, kind = self._new_rows(), "new"
        rejected = bool(rows) and rng.random() < 0.08
        if rejected:
            feats.add("rejected file")
            if name in self.held:
                feats.add("rejected re-send keeps the earlier file")
        else:
            if kind == "header-only":
                feats.add("header-only re-send" if name in self.held else "header-only new name")
            elif name in self.held:
                feats.add("re-send")
            self._note_overlaps(name, rows)
            self.held[name] = rows
        return SentFile(name, self._write(rows, rejected=rejected), kind, rejected)

    def _note_overlaps(self, name: str, rows: list[dict[str, str]]) -> None:
        feats = self.scenario.features
        others = [r for other, rs in self.held.items() if other != name for r in rs]
        if {r["order_date"] for r in rows} & {r["order_date"] for r in others}:
            feats.add("a date in two files")
        if ({(r["order_date"], r["order_id"]) for r in rows}
                & {(r["order_date"], r["order_id"]) for r in others}):
            feats.add("an order in two files")
        for r in rows:
            if r["order_date"] in FAR_DATES:
                feats.add("far date")
            if r["order_date"] in ("0001-01-01", "9999-12-31"):
                feats.add(f"date {r['order_date']}")
            if int(r["quantity"]) >= 10**9:
                feats.add("quantity 1e9")
            if Decimal(r["unit_price"]) >= 999_999_999:
                feats.add("price 1e9")
            if r["category"].startswith(("=", "+", "-", "@")):
                feats.add("formula-like category")

    def _write(self, rows: list[dict[str, str]], *, rejected: bool) -> bytes:
        """Return the CSV bytes of ``rows``, in a randomly chosen legal form."""
        rng, feats = self.rng, self.scenario.features
        columns = COLUMNS[:]
        if rng.random() < 0.3:
            rng.shuffle(columns)
            feats.add("columns reordered")
        header = columns[:]
        for i, c in enumerate(header):
            if rng.random() < 0.1:
                header[i] = f" {c.upper()} "
                feats.add("header case and spaces")
        extra = rng.random() < 0.1
        if extra:
            header.append("note")
            feats.add("extra column")
        crlf = rng.random() < 0.2
        if crlf:
            feats.add("CRLF")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n")
        writer.writerow(header)
        for n, r in enumerate(rows):
            values = []
            for c in columns:
                v = r[c]
                if c == "returned":
                    v = rng.choice([v, v.upper(), v.title()])
                if rng.random() < 0.05 and "\n" not in v:
                    v = f" {v} "
                    feats.add("padded value")
                values.append(v)
            if rejected and n == len(rows) - 1:
                values[columns.index("quantity")] = "0"
            writer.writerow([*values, "n"] if extra else values)
        data = buf.getvalue().encode()
        if rng.random() < 0.1:
            feats.add("BOM")
            data = b"\xef\xbb\xbf" + data
        return data


def make_scenario(seed: int) -> Scenario:
    """Return the scenario of a seed (the same on every machine and run)."""
    return _Generator(seed).build()


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Observed:
    """What one step left behind: its exit code, stderr and both tables in both formats."""

    code: int
    stderr: str
    csv: tuple[list[dict[str, str]], list[dict[str, str]]] | None
    parquet: tuple[list[tuple[object, ...]], list[tuple[object, ...]]] | None
    schemas: tuple[dict[str, str], dict[str, str]] | None
    rejected_copies: dict[str, bytes]


def _run_cli(argv: list[str], *, in_subprocess: bool) -> tuple[int, str]:
    if in_subprocess:
        done = subprocess.run([sys.executable, "-m", "engine.cli", *argv], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              check=False)
        return done.returncode, done.stderr
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def _observe(out: Path, code: int, stderr: str, step: Step) -> Observed:
    tables = [out / f"{t}_kpis.{ext}" for ext in ("csv", "parquet") for t in ("category", "daily")]
    csv_tables = parquet = schemas = None
    if all(p.exists() for p in tables[:2]):
        csv_tables = (oracle.read_csv_table(tables[0]), oracle.read_csv_table(tables[1]))
    if all(p.exists() for p in tables[2:]):
        frames = [pl.read_parquet(p) for p in tables[2:]]
        parquet = (frames[0].rows(), frames[1].rows())
        schemas = ({c: str(t) for c, t in frames[0].schema.items()},
                   {c: str(t) for c, t in frames[1].schema.items()})
    copies = {}
    if isinstance(step, Process):
        for f in step.files:
            copy = out / "rejected" / f.name
            if f.rejected and copy.exists():
                copies[f.name] = copy.read_bytes()
    return Observed(code, stderr, csv_tables, parquet, schemas, copies)


def run_scenario(sc: Scenario, base: Path, *, in_subprocess: bool = False) -> list[Observed]:
    """Run every step of ``sc`` in ``base`` (inputs under ``base/step<k>``, outputs in
    ``base/out``) and return what each step left."""
    out = base / "out"
    extra: list[str] = []
    if sc.categories is not None:
        products = base / "products.csv"
        with open(products, "w", newline="", encoding="utf-8") as handle:
            w = csv.writer(handle)
            w.writerow(["product_id", "category"])
            w.writerows([f"P{i}", c] for i, c in enumerate(sc.categories))
        extra = ["--categories-from", str(products)]
    seen: list[Observed] = []
    for k, step in enumerate(sc.steps):
        if isinstance(step, Reprocess):
            argv = ["reprocess", "--out", str(out), "--date-from", step.date_from,
                    "--date-to", step.date_to, "-q"]
        else:
            paths = []
            for j, f in enumerate(step.files):
                p = base / f"step{k}" / f"d{j}" / f.name
                p.parent.mkdir(parents=True)
                p.write_bytes(f.data)
                paths.append(str(p))
            argv = ["process", *paths, "--out", str(out), "-q", *extra]
        code, err = _run_cli(argv, in_subprocess=in_subprocess)
        seen.append(_observe(out, code, err, step))
    return seen


# ----------------------------------------------------------------------------- checking

CATEGORY_SCHEMA = dict(zip(oracle.CATEGORY_COLUMNS, [
    "String", "Date", "Decimal(precision=38, scale=2)", "Decimal(precision=38, scale=2)",
    "Decimal(precision=38, scale=4)", "Int64", "Int64"], strict=True))
DAILY_SCHEMA = dict(zip(oracle.DAILY_COLUMNS, [
    "Date", "Int64", "Decimal(precision=38, scale=2)", "Int64", "Decimal(precision=38, scale=4)",
    "Int64"], strict=True))


def _table_diff(name: str, got: list[object], want: list[object]) -> list[str]:
    if got == want:
        return []
    if sorted(map(repr, got)) == sorted(map(repr, want)):
        return [f"{name}: the oracle's rows in another order"]
    extra = [r for r in got if r not in want][:5]
    missing = [r for r in want if r not in got][:5]
    return [f"{name}: engine only {r}" for r in extra] + [f"{name}: oracle only {r}"
                                                          for r in missing]


def step_problems(sc: Scenario, seen: list[Observed], lake_factory: Callable[[], oracle.Lake]
                  = oracle.Lake) -> tuple[int, list[str]]:
    """Return the first step whose outcome differs from the oracle's, and how (-1, [] if none)."""
    lake = lake_factory()
    for k, (step, got) in enumerate(zip(sc.steps, seen, strict=True)):
        if isinstance(step, Process):
            for f in step.files:
                if not f.rejected:
                    lake.ingest(f.name, f.data)
        problems = []
        want_code = int(isinstance(step, Process) and any(f.rejected for f in step.files))
        if got.code != want_code:
            problems.append(f"exit {got.code}, expected {want_code}: {got.stderr[-800:]}")
        if isinstance(step, Process):
            last_rejected = {f.name: f.data for f in step.files if f.rejected}
            for name, data in last_rejected.items():
                if got.rejected_copies.get(name) != data:
                    problems.append(f"rejected/{name} is not the rejected file's bytes")
        want_cat, want_day = lake.tables()
        want_csv = lake.csv_tables()
        if got.csv is None or got.parquet is None or got.schemas is None:
            if want_cat or want_day:
                problems.append("the KPI tables are missing")
        else:
            problems += _table_diff("category_kpis.csv", list(got.csv[0]), list(want_csv[0]))
            problems += _table_diff("daily_kpis.csv", list(got.csv[1]), list(want_csv[1]))
            if got.schemas != (CATEGORY_SCHEMA, DAILY_SCHEMA):
                problems.append(f"Parquet schemas {got.schemas}")
            problems += _table_diff("category_kpis.parquet", list(got.parquet[0]),
                                    list(want_cat))
            problems += _table_diff("daily_kpis.parquet", list(got.parquet[1]), list(want_day))
        if problems:
            return k, problems
    return -1, []


def assert_matches_oracle(sc: Scenario, seen: list[Observed], base: Path) -> None:
    step, problems = step_problems(sc, seen)
    assert not problems, (
        f"step {step} differs from the oracle:\n  " + "\n  ".join(problems)
        + f"\nfolder kept: {base}\n{sc.describe()}"
    )


_OBSERVED: dict[int, tuple[Path, list[Observed]]] = {}


def observed(seed: int, factory: pytest.TempPathFactory) -> tuple[Path, list[Observed]]:
    """Return the engine's outcome of a default seed's scenario (each run once per session,
    shared by the oracle check and the wrong-oracle check)."""
    if seed not in _OBSERVED:
        base = factory.mktemp(f"scenario-{seed}")
        _OBSERVED[seed] = base, run_scenario(make_scenario(seed), base)
    return _OBSERVED[seed]


# ----------------------------------------------------------------------------- random tests


@pytest.mark.parametrize("seed", DEFAULT_SEEDS, ids=lambda s: f"seed-{s}")
def test_scenario_tables_equal_the_oracle(seed: int,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    base, seen = observed(seed, tmp_path_factory)
    assert_matches_oracle(make_scenario(seed), seen, base)


@pytest.mark.slow
@pytest.mark.parametrize("seed", LONG_SEEDS, ids=lambda s: f"seed-{s}")
def test_scenario_tables_equal_the_oracle_long(seed: int, tmp_path: Path) -> None:
    sc = make_scenario(seed)
    # Every 25th through a real process, as a user runs it (start-up, logging, exit codes).
    assert_matches_oracle(sc, run_scenario(sc, tmp_path, in_subprocess=seed % 25 == 0),
                          tmp_path)


def test_default_seeds_cover_every_feature() -> None:
    covered: set[str] = set()
    for seed in DEFAULT_SEEDS:
        covered |= make_scenario(seed).features
    assert FEATURES - covered == set()
    assert covered <= FEATURES  # a new tag belongs in FEATURES, so that it stays covered


class _HalfUpLake(oracle.Lake):
    """Wrong on purpose: rounds halves up."""

    def round(self, value: Fraction, places: int) -> Decimal:
        scaled = value * 10**places
        return Decimal((2 * scaled.numerator + scaled.denominator)
                       // (2 * scaled.denominator)).scaleb(-places)


class _ResendKeepsOldRowsLake(oracle.Lake):
    """Wrong on purpose: a re-sent name adds a source instead of replacing its rows."""

    def __init__(self) -> None:
        super().__init__()
        self._sent = 0

    def ingest(self, name: str, data: bytes) -> None:
        self._sent += 1
        super().ingest(f"{name}#{self._sent}", data)


class _FirstWinsLake(oracle.Lake):
    """Wrong on purpose: of two files holding an order, the earlier one wins."""

    def orders(self) -> list[dict[str, str]]:
        first: dict[tuple[str, str], dict[str, str]] = {}
        for _, rows in sorted(self._sources.values(), key=lambda s: -s[0]):
            for r in rows:
                first[(r["order_date"], r["order_id"])] = r
        return list(first.values())


@pytest.mark.parametrize("wrong", [_HalfUpLake, _ResendKeepsOldRowsLake, _FirstWinsLake],
                         ids=["half-up", "resend-keeps-old-rows", "first-wins"])
def test_a_wrong_oracle_disagrees_with_the_engine(
    wrong: type[oracle.Lake], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The check can fail: each deliberately wrong oracle differs on some default seed (half-up
    differing also shows that the default seeds reach rounding ties)."""
    failing = [seed for seed in DEFAULT_SEEDS
               if step_problems(make_scenario(seed), observed(seed, tmp_path_factory)[1],
                                wrong)[1]]
    assert failing, f"{wrong.__doc__} agrees with the engine on every default seed"


# ----------------------------------------------------------------------------- hand-built cases


def send(name: str, *rows: str, rejected: bool = False) -> SentFile:
    """Return a file of ``rows`` (CSV lines after the header) for a hand-built case."""
    return SentFile(name, (HEADER + "".join(r + "\n" for r in rows)).encode(), "hand", rejected)


@dataclass(frozen=True)
class HandCase:
    """Steps and the tables they must end with, worked out by hand (not by the oracle)."""

    steps: list[Step]
    category: list[str]  # the final category_kpis.csv rows, "," between cells
    daily: list[str]
    categories: list[str] | None = None


def _many(prefix: str, n: int, date: str, category: str, returned: int) -> list[str]:
    return [f"{prefix}{i},C{i},{date},{category},P,1,1,{str(i < returned).lower()}"
            for i in range(n)]


HAND_CASES = {
    # quantity x price, sums and averages landing on half a cent round to the even cent.
    "revenue-and-average-ties": HandCase(
        [Process((send("m.csv",
                       "A1,C,2025-07-01,Books,P,1,0.005,false",  # 0.005 -> 0.00
                       "B1,C,2025-07-01,Clothing,P,3,0.005,false",  # 0.015 -> 0.02
                       "E1,C,2025-07-01,Electronics,P,1,0.025,false",  # 0.025 -> 0.02
                       "A2,C,2025-07-02,Books,P,1,0.03,false",  # avg 0.07 / 2 -> 0.04
                       "A3,C,2025-07-02,Books,P,1,0.04,false",
                       "B2,C,2025-07-02,Clothing,P,1,0.01,false",  # avg 0.05 / 2 -> 0.02
                       "B3,C,2025-07-02,Clothing,P,1,0.04,false",
                       "E2,C,2025-07-02,Electronics,P,1,0.0049,false",  # avg 0.01 / 2 -> 0.00
                       "E3,C,2025-07-02,Electronics,P,1,0.0051,false",
                       "A4,C,2025-07-03,Books,P,1,2.675,false",  # exactly 2.675 -> 2.68
                       "A5,C,2025-07-04,Books,P,1,2.665,false",  # 2.665 -> 2.66
                       "A6,C,2025-07-04,Clothing,P,7,0.0005,false"),))],  # 0.0035 -> 0.00
        ["Books,2025-07-01,0.00,0.00,0.0000,1,0", "Books,2025-07-02,0.07,0.04,0.0000,2,0",
         "Books,2025-07-03,2.68,2.68,0.0000,1,0", "Books,2025-07-04,2.66,2.66,0.0000,1,0",
         "Clothing,2025-07-01,0.02,0.02,0.0000,1,0", "Clothing,2025-07-02,0.05,0.02,0.0000,2,0",
         "Clothing,2025-07-04,0.00,0.00,0.0000,1,0",
         "Electronics,2025-07-01,0.02,0.02,0.0000,1,0",
         "Electronics,2025-07-02,0.01,0.00,0.0000,2,0"],
        ["2025-07-01,3,0.04,5,0.0000,1", "2025-07-02,6,0.13,6,0.0000,1",  # 0.045 -> 0.04
         "2025-07-03,1,2.68,1,0.0000,1", "2025-07-04,2,2.67,8,0.0000,1"],  # 2.6685 -> 2.67
    ),
    # 1/32 = 0.03125 -> 0.0312, 3/32 -> 0.0938, 5/32 -> 0.1562, 1/160 = 0.00625 -> 0.0062.
    "rate-ties": HandCase(
        [Process((send("r.csv", *_many("O", 32, "2025-07-01", "Books", 1),
                       *_many("Q", 32, "2025-07-01", "Clothing", 3),
                       *_many("R", 32, "2025-07-02", "Books", 5),
                       *_many("S", 160, "2025-07-03", "Books", 1)),))],
        ["Books,2025-07-01,32.00,1.00,0.0312,32,1", "Books,2025-07-02,32.00,1.00,0.1562,32,5",
         "Books,2025-07-03,160.00,1.00,0.0062,160,1",
         "Clothing,2025-07-01,32.00,1.00,0.0938,32,3"],
        ["2025-07-01,64,64.00,64,0.0625,32", "2025-07-02,32,32.00,32,0.1562,32",
         "2025-07-03,160,160.00,160,0.0062,160"],
    ),
    # 1e9 x 999999999.9999 sixty times: 6e28 ten-thousandths, far beyond 64 bits; and an
    # average of 1000000000.0100 / 2 = 500000000.005 that must still round to even.
    "huge-lines": HandCase(
        [Process((send("h.csv",
                       *[f"G{i},C{i % 3},2025-07-01,Books,P,1000000000,999999999.9999,"
                         f"{str(i % 2 == 1).lower()}" for i in range(60)],
                       *[f"H{i},C,2025-07-01,Clothing,P,1000000000,1000000000,false"
                         for i in range(3)],
                       "E1,C,2025-07-01,Electronics,P,1,999999999.9999,false",
                       "E2,C,2025-07-01,Electronics,P,1,0.0101,false"),))],
        ["Books,2025-07-01,59999999999994000000.00,999999999999900000.00,0.5000,60,30",
         "Clothing,2025-07-01,3000000000000000000.00,1000000000000000000.00,0.0000,3,0",
         "Electronics,2025-07-01,1000000000.01,500000000.00,0.0000,2,0"],
        ["2025-07-01,65,63000000000994000000.01,63000000002,0.4615,4"],
    ),
    # b.csv's newer version of O1 goes with b.csv's re-send: a.csv's older version counts again.
    "re-send-drops-the-newer-version": HandCase(
        [Process((send("a.csv", "O1,C1,2025-07-01,Books,P,1,10,false"),)),
         Process((send("b.csv", "O1,C2,2025-07-01,Clothing,P,2,20,true",
                       "O2,C2,2025-07-02,Books,P,1,5,false"),)),
         Process((send("b.csv", "O2,C2,2025-07-02,Books,P,1,5,false"),))],
        ["Books,2025-07-01,10.00,10.00,0.0000,1,0", "Books,2025-07-02,5.00,5.00,0.0000,1,0"],
        ["2025-07-01,1,10.00,1,0.0000,1", "2025-07-02,1,5.00,1,0.0000,1"],
    ),
    # A re-send moving an order to another date and category leaves nothing of it behind.
    "re-send-moves-an-order": HandCase(
        [Process((send("a.csv", "O1,C1,2025-07-01,Books,P,1,10,false",
                       "O2,C1,2025-07-01,Books,P,1,5,false"),)),
         Process((send("a.csv", "O1,C3,2025-07-03,Clothing,P,2,10,true",
                       "O2,C1,2025-07-01,Books,P,1,5,false"),))],
        ["Books,2025-07-01,5.00,5.00,0.0000,1,0", "Clothing,2025-07-03,20.00,20.00,1.0000,1,1"],
        ["2025-07-01,1,5.00,1,0.0000,1", "2025-07-03,1,20.00,2,1.0000,1"],
    ),
    # The re-sent older name is now the latest source; b.csv emptied does not bring 20 back.
    "re-sent-older-name-wins": HandCase(
        [Process((send("a.csv", "O1,C1,2025-07-01,Books,P,1,10,false"),)),
         Process((send("b.csv", "O1,C1,2025-07-01,Books,P,1,20,false"),)),
         Process((send("a.csv", "O1,C1,2025-07-01,Books,P,1,30,false"),)),
         Process((send("b.csv"),))],
        ["Books,2025-07-01,30.00,30.00,0.0000,1,0"],
        ["2025-07-01,1,30.00,1,0.0000,1"],
    ),
    # Header only, a known name loses its orders; rejected, it keeps them.
    "header-only-and-rejected-re-sends": HandCase(
        [Process((send("a.csv", "O1,C1,2025-07-01,Books,P,1,10,false"),
                  send("b.csv", "O2,C1,2025-07-02,Books,P,1,10,false"))),
         Process((send("a.csv"),)),
         Process((send("b.csv", "O2,C1,2025-07-02,Books,P,1,99,false",
                       "O3,C1,2025-07-03,Books,P,0,99,false", rejected=True),)),
         Reprocess("2025-07-01", "2025-07-31")],
        ["Books,2025-07-02,10.00,10.00,0.0000,1,0"],
        ["2025-07-02,1,10.00,1,0.0000,1"],
    ),
    # The calendar's two ends, the Julian-Gregorian switch and the day before the epoch.
    "far-dates": HandCase(
        [Process((send("a.csv", "O1,C1,0001-01-01,Books,P,1,1,false",
                       "O2,C1,9999-12-31,Books,P,1,1,false",
                       "O3,C1,1969-12-31,Books,P,2,1,true",
                       "O4,C1,1582-10-10,Books,P,1,1,false"),
                  send("b.csv", "O2,C2,9999-12-31,Clothing,P,1,2.5,false"))),
         Reprocess("0001-01-01", "9999-12-31"),
         Reprocess("9999-12-31", "9999-12-31")],
        ["Books,0001-01-01,1.00,1.00,0.0000,1,0", "Books,1582-10-10,1.00,1.00,0.0000,1,0",
         "Books,1969-12-31,2.00,2.00,1.0000,1,1", "Clothing,9999-12-31,2.50,2.50,0.0000,1,0"],
        ["0001-01-01,1,1.00,1,0.0000,1", "1582-10-10,1,1.00,1,0.0000,1",
         "1969-12-31,1,2.00,2,1.0000,1", "9999-12-31,1,2.50,1,0.0000,1"],
    ),
    # Categories a spreadsheet would run are shown with a "'"; a number-like one stays.
    "formula-like-categories": HandCase(
        [Process((send("c.csv", "O1,C1,2025-07-01,-12.50,P,1,10,false",
                       'O2,C1,2025-07-01,"=1+2",P,1,10,false',
                       'O3,C1,2025-07-01,"a,b ""q""",P,1,10,false',
                       "O4,C1,2025-07-01,@x,P,1,1,true"),))],
        ["-12.50,2025-07-01,10.00,10.00,0.0000,1,0", "'=1+2,2025-07-01,10.00,10.00,0.0000,1,0",
         "'@x,2025-07-01,1.00,1.00,1.0000,1,1", 'a,b "q",2025-07-01,10.00,10.00,0.0000,1,0'],
        ["2025-07-01,4,31.00,4,0.2500,1"],
        categories=["-12.50", "=1+2", 'a,b "q"', "@x"],
    ),
}


@pytest.mark.parametrize("case", list(HAND_CASES.values()), ids=list(HAND_CASES))
def test_hand_built_case_ends_with_the_tables_worked_out_by_hand(
    case: HandCase, tmp_path: Path
) -> None:
    sc = Scenario(-1, case.categories, case.steps)
    seen = run_scenario(sc, tmp_path)
    assert_matches_oracle(sc, seen, tmp_path)
    assert seen[-1].csv is not None
    cat, day = seen[-1].csv
    # The category cell is split off first: it may hold a comma.
    assert [",".join(r.values()) for r in cat] == case.category, sc.describe()
    assert [",".join(r.values()) for r in day] == case.daily, sc.describe()
