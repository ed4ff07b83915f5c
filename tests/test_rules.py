"""The fused verdict (``rules.checked_piece``) and the pandera model judge rows the same way.

Pandera is the reference here: the streaming validator trusts the fused verdict only when it
says "valid", so a row it passes must pass pandera (after stripping) with the same typed
values; and plainly written valid rows must pass it, or valid files would pay for pandera.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine import rules
from engine.columns import DEFAULT_CATEGORIES, ORDER_COLUMNS
from engine.read import MAX_FIELD_BYTES, MAX_LINE_BYTES, ROW, strip_columns, unpadded
from engine.schema import OrderModel, order_model
from engine.validate import _row_schema

ROOT = Path(__file__).resolve().parents[1]
NAMES = (*ORDER_COLUMNS, "note")

# Values near each rule's edges, padded or not; every column draws from its own list.
PAD = st.sampled_from(["", "", "", " ", "\t", "  "])
VALUES: dict[str, list[str]] = {
    "order_id": ["ORD1", "", "ORD 2", "é", '"q"'],
    "customer_id": ["C1", "", "C 9"],
    "order_date": ["2025-07-06", "2024-02-29", "2025-02-29", "2025-7-6", "2025/07/06",
                   "0000-01-01", "0001-01-01",
                   "20250706", "+2025-07-06", "2025-07-06T00:00", "",
                   "\uff12\uff10\uff12\uff15-01-01"],
    "category": [*DEFAULT_CATEGORIES, "books", "Toys", "", "Books "],
    "product_id": ["P1", "", "SKU-9"],
    "quantity": ["1", "7", "0", "-1", "+3", "1.0", "01", "9" * 18, "9" * 19, "1e3", "",
                 "٣", "1000000000", "1000000001", "0001000000000"],
    "unit_price": ["19.99", "0.0001", "0", "0.00001", "1.", ".5", "-1", "1,5", "1e3",
                   "9" * 18, "99999999999999.99", "1" * 19, "", "12.3400", "٣.5",
                   "1000000000", "1000000000.0000", "1000000000.0001", "999999999.9999"],
    "returned": ["true", "false", "TRUE", "False", "tRuE", "yes", "1", "", "t rue"],
    "note": ["", "x"],
}


@st.composite
def text_rows(draw: st.DrawFn, pad: st.SearchStrategy[str] = PAD) -> pl.DataFrame:
    n = draw(st.integers(1, 6))
    data = {
        c: [draw(pad) + draw(st.sampled_from(VALUES[c])) + draw(pad) for _ in range(n)]
        for c in NAMES
    }
    return pl.DataFrame(data, schema={c: pl.String for c in NAMES})


def _verdicts(text: pl.DataFrame, *, strip: bool = True) -> tuple[pl.DataFrame, list[bool]]:
    judged = rules.checked_piece(
        NAMES, DEFAULT_CATEGORIES, max_field_bytes=MAX_FIELD_BYTES, max_line_bytes=MAX_LINE_BYTES,
        strip=strip,
    )(text.lazy()).collect()
    return judged, judged[rules.OK].to_list()


def _pandera_passes(row: pl.DataFrame) -> bool:
    try:
        _row_schema(OrderModel).validate(strip_columns(row, NAMES).drop(ROW), lazy=True)
    except pa.errors.SchemaErrors:
        return False
    return True


# The default run takes a sample (pandera row by row is ~0.1 s an example); `pytest -m slow`
# runs the long one.
_FUSED_SLOW = settings(max_examples=1500, deadline=None,
                       suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_rows())
def test_fused_verdict_agrees_with_pandera_row_by_row(text: pl.DataFrame) -> None:
    _check_fused_against_pandera(text)


@pytest.mark.slow
@_FUSED_SLOW
@given(text=text_rows())
def test_long_run_fused_verdict_agrees_with_pandera_row_by_row(text: pl.DataFrame) -> None:
    _check_fused_against_pandera(text)


def _check_fused_against_pandera(text: pl.DataFrame) -> None:
    judged, ok = _verdicts(text)
    for i in range(text.height):
        row = text.slice(i, 1)
        passes = _pandera_passes(row)
        if ok[i]:
            assert passes, f"fused verdict passed a row pandera rejects: {row.to_dicts()}"
            want = strip_columns(row, NAMES).select(rules.typed_columns())
            got = judged.slice(i, 1).select(list(rules.LAKE_SCHEMA))
            assert got.equals(want), (got.to_dicts(), want.to_dicts())
        elif passes:
            # Allowed only when stripping changed a self-trimming field: that piece is judged
            # again by pandera, on its stripped text.
            padded = [c for c in ORDER_COLUMNS if row[c][0] != row[c][0].strip()]
            assert padded, f"fused verdict rejected a plainly valid row: {row.to_dicts()}"


# Bytes that are, or sit next to, whitespace in CSV text: ASCII and Unicode spaces, CR, LF.
CSV_CHARS = st.sampled_from(["a", "1", ",", "\n", "\r", "\r\n", " ", "\t", "\x0b", "\x0c",
                             '"', "\u00a0", "\u3000", "\u0085", "é", "\x1f"])
# Mostly unpadded text: spaces only inside fields, unless a rarer character pads one.
FEW_PADS = st.sampled_from(["a", "1", "b c", ",", "\n", "\r\n"] * 8 + [" ", "\t", "\r"])


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(st.lists(CSV_CHARS, max_size=40), st.lists(FEW_PADS, max_size=40))
       .map("".join))
def test_unpadded_bytes_hold_no_field_that_stripping_changes(text: str) -> None:
    data = ("h1,h2\n" + text).encode()
    if not unpadded(data):
        return
    try:
        frame = pl.read_csv(data, infer_schema=False, truncate_ragged_lines=True)
    except pl.exceptions.PolarsError:
        return
    for c in frame.columns:
        values = frame[c].drop_nulls().to_list()
        assert values == [v.strip(" \t\n\r\x0b\x0c") for v in values], (data, c)
        assert frame[c].drop_nulls().equals(frame[c].drop_nulls().str.strip_chars()), (data, c)


def test_unpadded_spots_every_kind_of_padding() -> None:
    plain = b"h1,h2\r\nab,c d\r\ne,f\n"
    assert unpadded(plain)
    for bad in [b" a,b\n", b"a ,b\n", b"a, b\n", b"a,b \n", b"a,b\n c,d\n", b"a,b\t\r\n",
                b"a,b\r", b"a,b\x0c\n", b"a,\xc2\xa0b\n", b'a,"b"\n', b"a,b ", b"a,b\r\r\n"]:
        assert not unpadded(bad), bad


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=text_rows(pad=st.just("")))
def test_unstripped_verdict_equals_the_stripped_one_on_unpadded_text(text: pl.DataFrame) -> None:
    _check_unstripped_against_stripped(text)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=text_rows(pad=st.just("")))
def test_long_run_unstripped_verdict_equals_the_stripped_one(text: pl.DataFrame) -> None:
    _check_unstripped_against_stripped(text)


def _check_unstripped_against_stripped(text: pl.DataFrame) -> None:
    assume(unpadded(text.write_csv(quote_style="never").encode()))
    assert _verdicts(text, strip=False)[0].equals(_verdicts(text)[0])


# Characters near the regex-free rules' edges: the words' letters in both cases, signs,
# digits that are not ASCII, and characters whose lower case is special.
RULE_CHARS = st.sampled_from([*"truefalsTRUEFALS", *"0123456789", "+", "-", " ", ".", "_",
                              "\u0130", "\u0131", "\u017f", "\u212a", "\uff54", "\u0663",
                              "\uff19", "\u00e9"])


@st.composite
def word_spellings(draw: st.DrawFn) -> str:
    """``true`` or ``false`` in a random letter case, at times with a letter swapped."""
    word = list(draw(st.sampled_from(["true", "false"])))
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    word = [ch.upper() if up else ch for ch, up in zip(word, flips, strict=True)]
    if draw(st.booleans()):
        word[draw(st.integers(0, len(word) - 1))] = draw(RULE_CHARS)
    return "".join(word)


# Optional sign, digits, at times a stray character: where the integer rule's edges are.
SIGNED_DIGITS = st.from_regex(r"[+-]?[0-9\u0663]{0,20}[ .e_+]?", fullmatch=True)


def _judge(rule: rules.Rule, values: list[str | None]) -> list[bool | None]:
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    return frame.select(rule(pl.col("v"), ()))["v"].to_list()


def test_no_character_but_an_ascii_capital_lower_cases_to_a_letter_of_true_or_false() -> None:
    # What lets ``true_or_false`` list spellings instead of lower-casing every value.
    letters = set("truefals")
    assert [c for c in range(0x110000)
            if c > 0x7F and letters & set(chr(c).lower())] == []


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.one_of(word_spellings(), st.lists(RULE_CHARS, max_size=7)
                                 .map("".join), st.text(), st.none()), min_size=1, max_size=20))
def test_true_or_false_is_either_word_in_any_letter_case(values: list[str | None]) -> None:
    def lower(v: str | None) -> str | None:
        return None if v is None else v.lower()

    assert _judge(rules.true_or_false, values) == [
        None if v is None else lower(v) in ("true", "false") for v in values]
    typed = pl.DataFrame({"v": values}, schema={"v": pl.String}).select(
        rules.is_true(pl.col("v")))["v"].to_list()
    assert typed == [None if v is None else lower(v) == "true" for v in values]


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.one_of(SIGNED_DIGITS, st.lists(RULE_CHARS, max_size=21)
                                 .map("".join), st.text(), st.none()), min_size=1, max_size=20))
def test_positive_integer_is_the_digits_pattern_without_a_regex(values: list[str | None]) -> None:
    def expected(v: str | None) -> bool:
        return (v is not None and re.fullmatch(rules.INTEGER_PATTERN, v) is not None
                and len(v.encode()) <= rules.MAX_NUMBER_CHARS
                and 0 < int(v) <= rules.MAX_QUANTITY)

    assert _judge(rules.positive_integer, values) == [expected(v) for v in values]


def test_bounds_and_year_one_by_hand() -> None:
    # The largest values any KPI sum can take without overflow, and the first real year.
    assert _judge(rules.positive_integer, ["1000000000", "1000000001", "999999999999999999"]) \
        == [True, False, False]
    assert _judge(rules.positive_decimal, ["1000000000", "1000000000.0000", "1000000000.0001",
                                           "9999999999999.9999", "0.0001"]) \
        == [True, True, False, False, True]
    assert _judge(rules.calendar_date, ["0000-01-01", "0001-01-01", "9999-12-31", None]) \
        == [False, True, True, False]


def test_plain_valid_rows_pass_the_fused_verdict() -> None:
    text = pl.read_csv(ROOT / "fixtures/orders_2025-07-07.csv", infer_schema=False)
    text = text.with_columns(pl.lit("").alias("note"))
    assert unpadded(text.write_csv(quote_style="never").encode())
    _, ok = _verdicts(text)
    assert text.height > 0 and all(ok)
    assert _verdicts(text, strip=False)[0].equals(_verdicts(text)[0])


def test_oversized_fields_and_nulls_fail_the_verdict() -> None:
    row = {c: VALUES[c][0] for c in NAMES}
    big = pl.DataFrame([{**row, "note": "x" * (MAX_FIELD_BYTES + 1)}])
    missing = pl.DataFrame([{**row, "returned": None}], schema={c: pl.String for c in NAMES})
    assert _verdicts(pl.DataFrame([row]))[1] == [True]
    assert _verdicts(big)[1] == [False]
    assert _verdicts(missing)[1] == [False]


def test_the_model_checks_exactly_the_rules() -> None:
    schema = OrderModel.to_schema()
    declared = {
        (name, check.name) for name, col in schema.columns.items() for check in col.checks
    }
    stated = {(c, rule) for rule, (_, cols) in rules.ROW_RULES.items() for c in cols}
    assert declared == stated
    assert tuple(n for n, c in schema.columns.items() if c.unique) == rules.UNIQUE_COLUMNS
    assert set(schema.columns) == set(ORDER_COLUMNS)
    assert all(not c.nullable for c in schema.columns.values())


def test_custom_categories_reach_both_runners() -> None:
    row = pl.DataFrame([{**{c: VALUES[c][0] for c in NAMES}, "category": "Toys"}])
    judged = rules.checked_piece(
        NAMES, ("Toys",), max_field_bytes=MAX_FIELD_BYTES, max_line_bytes=MAX_LINE_BYTES,
    )(row.lazy()).collect()
    assert judged[rules.OK].to_list() == [True]
    _row_schema(order_model(["Toys"])).validate(strip_columns(row, NAMES).drop(ROW))
    with pytest.raises(pa.errors.SchemaError):
        _row_schema(OrderModel).validate(strip_columns(row, NAMES).drop(ROW))


def _imports_pandera(*args: str, module: str = "pandera") -> bool:
    code = (
        "import sys\nfrom engine.cli import main\n"
        f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
        f"print({module!r} in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def test_a_valid_file_is_validated_without_importing_pandera(tmp_path: Path) -> None:
    assert not _imports_pandera("validate", str(ROOT / "fixtures/valid_order.csv"))
    assert not _imports_pandera("process", str(ROOT / "fixtures/valid_order.csv"),
                                "--out", str(tmp_path / "out"))
    # Nor pandas (the dev extras install it): pyarrow's ``scalar`` imported it while staging.
    assert importlib.util.find_spec("pandas") is not None
    assert not _imports_pandera("process", str(ROOT / "fixtures/valid_order.csv"),
                                "--out", str(tmp_path / "again"), module="pandas")
    # A file with findings is reported by the pandera model.
    assert _imports_pandera("validate", str(ROOT / "fixtures/invalid_order.csv"))


def test_the_container_jobs_start_without_pandera() -> None:
    code = (
        "import sys\nimport engine.aws_jobs, engine.aws_reprocess, engine.s3lake\n"
        "print('pandera' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
