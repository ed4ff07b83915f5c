"""The validator and transformer jobs against moto server (S3) and DynamoDB Local, over HTTP."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import io
import itertools
import os
import tempfile
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

import engine.aws_jobs as jobs
from engine.config import Settings
from engine.containers_support import EXIT_CONFIG, EXIT_TRANSIENT, exit_code_for, run_entrypoint
from engine.lake import LAKE_COLUMNS, StagedSource, source_id
from engine.rules import LAKE_SCHEMA
from engine.s3lake import S3Lake
from engine.state import file_pk
from engine.validate import validate_file
from tests.aws.stack import Stack, oracle, order_csv

pytestmark = pytest.mark.integration

D1, D2 = "2025-07-06", "2025-07-07"
V1 = [
    ("ORD1", "C1", D1, "Electronics", "P1", 2, "199.99", "false"),
    ("ORD2", "C2", D1, "Books", "P2", 1, "29.995", "TRUE"),
    ("ORD3", "C1", D1, "Books", "P3", 3, "0.0050", "false"),
    ("ORD4", "C3", D2, "Clothing", "P4", 1, "10.005", "true"),
]
# A corrected re-upload: ORD1 changed, ORD2 gone, no more rows for D2.
V2 = [
    ("ORD1", "C1", D1, "Electronics", "P1", 1, "199.99", "true"),
    ("ORD3", "C1", D1, "Books", "P3", 3, "0.0050", "false"),
]


def run(stack: Stack, key: str, **env: str) -> tuple[int, int | None]:
    """Validate then (if valid) transform ``key`` (``env``: more settings); give both exit
    codes."""
    settings = Settings.from_env({**stack.env(key), **env})
    clients = jobs.Clients(stack.s3, stack.dynamodb)
    v = jobs.validate_object(settings, clients)
    if v != 0:
        return v, None
    return v, jobs.transform_object(settings, clients)


def expect(stack: Stack, files: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
    cats, days = oracle([(f"{stack.input_bucket}/{k}", rows) for k, rows in files])
    assert stack.items(stack.category_table) == cats
    assert stack.items(stack.order_table) == days


@pytest.mark.parametrize(
    "key",
    ["orders/2025-07-06.csv", "in box/orders 7 July.csv", "a+b/c+d.csv", "ünï/çødé 東京.csv"],
)
def test_valid_file_gives_the_oracle_kpis_and_records(stack: Stack, key: str) -> None:
    stack.upload(key, order_csv(V1))
    assert run(stack, key) == (0, 0)
    expect(stack, [(key, V1)])
    raw = stack.env(key)["S3_INPUT_KEY"]
    status = stack.record(file_pk(stack.input_bucket, raw), "status")
    assert status is not None
    assert status["status"] == "VALID"
    assert status["decoded_key"] == key
    assert status["rows"] == 4 and status["dates"] == [D1, D2]
    done = stack.record(file_pk(stack.input_bucket, raw), "transform")
    assert done is not None and done["status"] == "DONE" and done["dates"] == [D1, D2]
    sid = source_id(f"{stack.input_bucket}/{key}")
    assert stack.object_keys() == sorted(
        [
            f"cleaned/{sid}.parquet",
            f"lake/_sources/{sid}.json",
            f"lake/order_date={D1}/{sid}.parquet",
            f"lake/order_date={D2}/{sid}.parquet",
            f"reports/{key}.json",
            *(
                f"kpis/{root}/{table}/month=2025-07/part-0.{ext}"
                for root, ext in (("kpis", "parquet"), ("kpis_csv", "csv"))
                for table in ("category_kpis", "daily_kpis")
            ),
        ]
    )


def test_an_upload_the_key_no_longer_holds_is_superseded_and_changes_nothing(
    stack: Stack,
) -> None:
    """The workflow names the upload (S3_INPUT_ETAG, the event's etag). A key that holds
    another upload by the time the validator reads it, or none, is not validated: its bytes
    are gone, and a later upload has its own run."""
    key = "orders/replaced.csv"
    stack.upload(key, order_csv(V1))
    etag = stack.s3.head_object(Bucket=stack.input_bucket, Key=key)["ETag"]
    stack.upload(key, order_csv(V2))  # a later upload of the key
    before = stack.object_keys()
    raw = stack.env(key)["S3_INPUT_KEY"]
    settings = Settings.from_env({**stack.env(key), "S3_INPUT_ETAG": etag})
    clients = jobs.Clients(stack.s3, stack.dynamodb)
    for gone in (False, True):
        if gone:
            stack.s3.delete_object(Bucket=stack.input_bucket, Key=key)
        assert jobs.validate_object(settings, clients) == 0
        status = stack.record(file_pk(stack.input_bucket, raw), "status")
        assert status is not None and status["status"] == "SUPERSEDED"
        assert status["etag"] == etag.strip('"') and status["decoded_key"] == key
        assert "no longer holds that upload" in status["summary"] and key in status["summary"]
        assert stack.object_keys() == before  # no cleaned file, no report, no lake object
    assert stack.items(stack.order_table) == []


def test_the_upload_the_key_holds_is_validated_as_usual(stack: Stack) -> None:
    key = "orders/current.csv"
    stack.upload(key, order_csv(V1))
    etag = stack.s3.head_object(Bucket=stack.input_bucket, Key=key)["ETag"].strip('"')
    assert run(stack, key, S3_INPUT_ETAG=etag) == (0, 0)
    expect(stack, [(key, V1)])
    settings = Settings.from_env(stack.env(key))
    cleaned = stack.s3.head_object(Bucket=stack.cleaned_bucket, Key=jobs.cleaned_key(settings))
    assert cleaned["Metadata"]["input-etag"] == etag


def test_the_transformer_refuses_rows_another_upload_wrote(stack: Stack) -> None:
    """A validator still running after its execution was stopped can overwrite the cleaned
    rows of the key after the next upload's validator: the transformer of that next upload
    must not take them for its own."""
    key = "orders/two-validators.csv"
    stack.upload(key, order_csv(V1))
    settings = Settings.from_env(stack.env(key))
    clients = jobs.Clients(stack.s3, stack.dynamodb)
    assert jobs.validate_object(settings, clients) == 0
    later = Settings.from_env({**stack.env(key), "S3_INPUT_ETAG": "0123456789abcdef"})
    code = run_entrypoint(
        "transformer", lambda: jobs.transform_object(later, clients), configure=False
    )
    assert code == EXIT_CONFIG
    assert stack.items(stack.order_table) == [] and stack.items(stack.category_table) == []
    assert not [k for k in stack.object_keys() if k.startswith("lake/")]


def test_invalid_file_is_rejected_with_exit_3_and_a_summary(stack: Stack) -> None:
    key = "bad day/orders+1.csv"
    stack.upload(key, order_csv([*V1, ("ORD9", "", "2025/07/06", "Toys", "P9", -1, "1", "x")]))
    assert run(stack, key) == (3, None)
    status = stack.record(file_pk(stack.input_bucket, stack.env(key)["S3_INPUT_KEY"]), "status")
    assert status is not None and status["status"] == "REJECTED"
    assert "rejected" in status["summary"] and status["invalid_rows"] == 1
    # The notice names the first findings at their line, column and value (5 on that row:
    # customer_id, order_date, category, quantity, returned), and how many more there are.
    line = len(V1) + 2  # the header is line 1
    first = status["summary"].split(" First: ", 1)[1]
    assert first.count(f"line {line}: ") == 3 and first.endswith("; and 2 more findings.")
    assert "'2025/07/06'" in status["summary"] or "'Toys'" in status["summary"]
    assert stack.object_keys() == [f"rejected/{key}", f"rejected/{key}.errors.json"]
    assert stack.items(stack.category_table) == []


def test_a_rejected_upload_named_like_a_report_never_replaces_that_report(stack: Stack) -> None:
    """``a.csv``'s report is rejected/a.csv.errors.json; an upload named a.csv.errors.json,
    rejected, put its bytes there, and a.csv's status record then named garbage as its
    report. Its bytes now go to <key>.input, which the status record and notice name."""
    bad = order_csv([*V1, ("ORD9", "C9", "2025-07-06", "Toys", "P9", 1, "1.00", "false")])
    first, second = "in/a.csv", "in/a.csv.errors.json"
    stack.upload(first, bad)
    assert run(stack, first) == (3, None)
    report = stack.s3.get_object(Bucket=stack.cleaned_bucket,
                                 Key=f"rejected/{first}.errors.json")["Body"].read()
    stack.upload(second, "garbage\x00")
    assert run(stack, second) == (3, None)
    assert stack.s3.get_object(Bucket=stack.cleaned_bucket,
                               Key=f"rejected/{first}.errors.json")["Body"].read() == report
    assert stack.s3.get_object(Bucket=stack.cleaned_bucket,
                               Key=f"rejected/{second}.input")["Body"].read() == b"garbage\x00"
    status = stack.record(file_pk(stack.input_bucket, second), "status")
    assert status is not None and status["rejected_key"] == f"rejected/{second}.input"
    assert status["report_uri"].endswith(f"/rejected/{second}.errors.json")
    assert jobs.rejected_keys(first) == (f"rejected/{first}", f"rejected/{first}.errors.json")
    assert jobs.rejected_keys("x.input")[0] == "rejected/x.input.input"
    assert jobs.rejected_keys("a.csv.rows.csv")[0] == "rejected/a.csv.rows.csv.input"


def test_same_event_three_times_leaves_the_same_objects_and_items(stack: Stack) -> None:
    key = "orders/dup.csv"
    stack.upload(key, order_csv(V1))
    assert run(stack, key) == (0, 0)
    keys, cats, days = (
        stack.object_keys(),
        stack.items(stack.category_table),
        stack.items(stack.order_table),
    )
    for _ in range(2):
        assert run(stack, key) == (0, 0)
        assert stack.object_keys() == keys
        assert stack.items(stack.category_table) == cats
        assert stack.items(stack.order_table) == days
    expect(stack, [(key, V1)])


def test_corrected_reupload_drops_the_old_rows_and_dates(stack: Stack) -> None:
    key = "orders/fix me.csv"
    stack.upload(key, order_csv(V1))
    assert run(stack, key) == (0, 0)
    stack.upload(key, order_csv(V2))
    assert run(stack, key) == (0, 0)
    expect(stack, [(key, V2)])
    assert not [k for k in stack.object_keys() if f"order_date={D2}" in k]


@pytest.mark.parametrize("read_from", ["local copies", "S3"])
def test_a_large_shared_date_is_deduplicated_in_slices_query_by_query(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, read_from: str
) -> None:
    import engine.kpis

    # A date of up to LOCAL_READ_MB is copied whole (one GET per object) and read
    # locally; a larger one is read from S3, only the columns the queries use.
    tuning = {"LOCAL_READ_MB": "0"} if read_from == "S3" else {}
    remote_reads: list[int] = []
    real_collect_all = S3Lake.collect_all

    def counted(self: S3Lake, *args: Any, **kwargs: Any) -> Any:
        remote_reads.append(1)
        return real_collect_all(self, *args, **kwargs)

    monkeypatch.setattr(S3Lake, "collect_all", counted)
    slices: list[int] = []
    real = engine.kpis.latest_orders_in_slices

    def spy(rows: pl.LazyFrame, n: int) -> pl.LazyFrame:
        slices.append(n)
        return real(rows, n)

    monkeypatch.setattr(engine.kpis, "latest_orders_in_slices", spy)
    # D1 holds 3 + 2 rows after v2 (3 slices of 2 rows), 3 + 2 + 3 after v3 (4 slices), each
    # read from a local copy of the date's objects.
    monkeypatch.setattr(engine.kpis, "SLICE_ROWS", 2)
    v3 = [("ORD1", "C7", D1, "Books", "P1", 4, "5.55", "false"),
          ("ORD9", "C2", D1, "Clothing", "P9", 1, "1.01", "true"),
          ("ORD3", "C3", D1, "Books", "P3", 2, "0.0050", "true"),
          # A date of one source above SLICE_ROWS: queried one after the other, no slices.
          *[(f"NEW{i}", f"C{i}", "2025-07-08", "Electronics", "P5", i, "2.50", "false")
            for i in (1, 2, 3)]]
    files = [("shared/v1.csv", V1), ("shared/v2.csv", V2), ("shared/v3.csv", v3)]
    for key, rows in files:
        stack.upload(key, order_csv(rows))
        assert run(stack, key, **tuning) == (0, 0)
    expect(stack, files)
    assert set(slices) == {3, 4}
    assert bool(remote_reads) == (read_from == "S3")


def test_sixteen_files_of_one_date_at_once_each_twice_match_the_oracle(stack: Stack) -> None:
    files = []
    for i in range(16):
        rows = [
            (
                f"F{i}-{j}",
                f"C{j % 5}",
                D1,
                ("Books", "Electronics", "Clothing")[j % 3],
                f"P{j}",
                1 + (i + j) % 4,
                f"{i}.{j:02d}5",
                "true" if (i * j) % 3 else "false",
            )
            for j in range(6)
        ]
        # Two orders in every file: the copy from the file whose rows were stored last wins.
        rows += [
            ("SHARED-A", f"C{i}", D1, "Books", "PA", 1 + i, "3.33", "false"),
            ("SHARED-B", "C9", D1, "Clothing", "PB", 2, f"{i + 1}.5", "true"),
        ]
        files.append((f"batch/file {i:02d}.csv", rows))
    for key, rows in files:
        stack.upload(key, order_csv(rows))
    errors: list[BaseException] = []

    def work(key: str) -> None:
        try:
            assert run(stack, key) == (0, 0)
        except BaseException as exc:  # reported after join
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k, _ in files for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # "Stored last" is the lake's own order: each source object's _seq.
    lake = S3Lake(
        stack.cleaned_bucket, state_table=stack.state_table, s3=stack.s3, dynamodb=stack.dynamodb
    )
    seqs = dict(
        lake.collect(
            [dt.date(2025, 7, 6)], lambda lf: lf.group_by("_source").agg(pl.col("_seq").max())
        ).iter_rows()
    )
    ordered = sorted(files, key=lambda f: seqs[f"{stack.input_bucket}/{f[0]}"])
    expect(stack, ordered)


# -- kills, throttling, unavailability, configuration ---------------------------------------


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def steps_of_a_clean_run(stack: Stack, key: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    real = jobs.run_step

    def spy(name: str, fn: Callable[[], Any], *a: Any, **kw: Any) -> Any:
        names.append(name)
        return real(name, fn, *a, **kw)

    monkeypatch.setattr(jobs, "run_step", spy)
    assert run(stack, key) == (0, 0)
    monkeypatch.setattr(jobs, "run_step", real)
    return names


def test_kill_at_every_step_boundary_then_rerun_converges(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "orders/kill me.csv"
    stack.upload(key, order_csv(V1))
    probe = steps_of_a_clean_run(stack, "orders/kill me.csv", monkeypatch)
    n_steps = len(probe) + 1  # +1: inside the lake write, objects stored, manifest not yet
    real_step, real_manifest = jobs.run_step, S3Lake._put_manifest
    for kill_at in range(n_steps):
        # Start from V1 fully processed, then deliver the correction V2 and kill it.
        stack.upload(key, order_csv(V1))
        assert run(stack, key) == (0, 0)
        stack.upload(key, order_csv(V2))
        count = {"n": 0}

        def killing_step(
            name: str,
            fn: Callable[[], Any],
            *a: Any,
            kill_at: int = kill_at,
            count: dict[str, int] = count,
            **kw: Any,
        ) -> Any:
            if count["n"] == kill_at:
                raise Killed(name)
            count["n"] += 1
            return real_step(name, fn, *a, **kw)

        if kill_at == len(probe):

            def killing_manifest(self: S3Lake, sid: str, m: dict[str, Any]) -> None:
                if m.get("ingested_at") and m.get("unpublished"):  # the last write, not the intent
                    raise Killed("manifest")
                real_manifest(self, sid, m)

            monkeypatch.setattr(S3Lake, "_put_manifest", killing_manifest)
        else:
            monkeypatch.setattr(jobs, "run_step", killing_step)
        with pytest.raises(Killed):
            run(stack, key)
        monkeypatch.setattr(jobs, "run_step", real_step)
        monkeypatch.setattr(S3Lake, "_put_manifest", real_manifest)
        assert run(stack, key) == (0, 0), f"rerun after a kill at step {kill_at}"
        expect(stack, [(key, V2)])
        assert not [k for k in stack.object_keys() if f"order_date={D2}" in k], kill_at
        sid = source_id(f"{stack.input_bucket}/{key}")
        manifest = S3Lake(
            stack.cleaned_bucket,
            state_table=stack.state_table,
            s3=stack.s3,
            dynamodb=stack.dynamodb,
        ).manifest(f"{stack.input_bucket}/{key}")
        assert manifest is not None and manifest["unpublished"] == [], kill_at
        assert manifest["source_id"] == sid


@pytest.mark.parametrize("first", [False, True], ids=["resent", "new-source"])
def test_a_run_killed_while_uploading_new_dates_leaves_nothing_after_any_later_run(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, first: bool
) -> None:
    # V2's dates D3 and D4 were uploaded, then the task died before the manifest named them:
    # a later correction (V3, D1 only) deleted only the dates the manifest knew, and D3 and
    # D4 stayed in the lake for good, counted by the next recompute of those dates.
    d3, d4 = "2025-07-08", "2025-07-09"
    v2 = [("ORD7", "C7", d3, "Books", "P7", 1, "5.00", "false"),
          ("ORD8", "C8", d4, "Books", "P8", 2, "6.00", "false")]
    v3 = [("ORD9", "C9", D1, "Books", "P9", 1, "7.00", "false")]
    key = "orders/killed upload.csv"
    if not first:
        stack.upload(key, order_csv(V1))
        assert run(stack, key) == (0, 0)
    stack.upload(key, order_csv(v2))
    real_put_dates = S3Lake._put_dates

    def killed_after_upload(self: S3Lake, *a: Any, **kw: Any) -> set[dt.date]:
        real_put_dates(self, *a, **kw)
        raise Killed("after the date objects, before the manifest")

    monkeypatch.setattr(S3Lake, "_put_dates", killed_after_upload)
    with pytest.raises(Killed):
        run(stack, key)
    monkeypatch.setattr(S3Lake, "_put_dates", real_put_dates)
    assert [k for k in stack.object_keys() if f"order_date={d3}" in k]  # left behind
    stack.upload(key, order_csv(v3))
    assert run(stack, key) == (0, 0)
    assert not [k for k in stack.object_keys() if d3 in k or d4 in k]
    expect(stack, [(key, v3)])


class ThrottlingDynamo:
    """The real client, except that the first ``n`` TransactWriteItems calls are throttled."""

    def __init__(self, real: Any, n: int) -> None:
        self.real, self.left = real, n

    def transact_write_items(self, **kw: Any) -> Any:
        if self.left > 0:
            self.left -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}},
                "TransactWriteItems",
            )
        return self.real.transact_write_items(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_throttled_publish_is_retried_then_succeeds(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.sinks.retry.time.sleep", lambda s: None)
    key = "orders/throttled.csv"
    stack.upload(key, order_csv(V1))
    settings = Settings.from_env(stack.env(key))
    clients = jobs.Clients(stack.s3, ThrottlingDynamo(stack.dynamodb, 3))
    assert jobs.validate_object(settings, clients) == 0
    assert jobs.transform_object(settings, clients) == 0
    expect(stack, [(key, V1)])


def test_throttling_that_never_ends_exits_4(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.sinks.retry.time.sleep", lambda s: None)
    key = "orders/throttled.csv"
    stack.upload(key, order_csv(V1))
    settings = Settings.from_env(stack.env(key))
    clients = jobs.Clients(stack.s3, ThrottlingDynamo(stack.dynamodb, 10**6))
    assert jobs.validate_object(settings, clients) == 0
    code = run_entrypoint(
        "transformer", lambda: jobs.transform_object(settings, clients), configure=False
    )
    assert code == EXIT_TRANSIENT


def test_unreachable_s3_exits_4(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from botocore.config import Config

    from tests.aws.fixtures import free_port

    dead = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    settings = Settings.from_env(stack.env("orders/x.csv"))
    code = run_entrypoint(
        "validator",
        lambda: jobs.validate_object(settings, jobs.Clients(dead, stack.dynamodb)),
        configure=False,
    )
    assert code == EXIT_TRANSIENT


@pytest.mark.parametrize(
    ("name", "value"),
    [("DATE_WORKERS", "0"), ("DATE_WORKERS", "eight"), ("DATE_WORKERS", "65"),
     ("LOCAL_READ_MB", "-1"), ("LOCAL_READ_MB", "1.5")],
)
def test_a_bad_lake_tuning_setting_exits_2_naming_it(
    stack: Stack, name: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**stack.env("orders/x.csv"), name: value}
    code = run_entrypoint(
        "transformer", lambda: jobs.transform_object(Settings.from_env(env)), configure=False
    )
    assert code == EXIT_CONFIG
    assert f"{name}={value!r} must be a whole number" in caplog.text


def test_lake_tuning_defaults_and_settings() -> None:
    from engine.config import LakeTuning

    assert LakeTuning.from_env({}) == LakeTuning(8, 64 * 1024 * 1024)
    assert LakeTuning.from_env({"DATE_WORKERS": " 3 ", "LOCAL_READ_MB": "0"}) == LakeTuning(3, 0)
    assert LakeTuning.from_env({"DATE_WORKERS": "", "LOCAL_READ_MB": "128"}) == LakeTuning(
        8, 128 * 1024 * 1024
    )


def test_missing_setting_exits_2(stack: Stack) -> None:
    env = stack.env("orders/x.csv")
    del env["STATE_TABLE"]
    code = run_entrypoint(
        "validator", lambda: jobs.validate_object(Settings.from_env(env)), configure=False
    )
    assert code == EXIT_CONFIG


# -- streaming: pieces in, row groups out, one date at a time -------------------------------

DAYS = ("2025-07-05", "2025-07-06", "2025-07-07")


def many_rows(n: int, *, tag: str = "") -> list[tuple[Any, ...]]:
    """``n`` orders over three dates, ids out of order (so sorting them changes something)."""
    return [
        (
            f"ORD{(i * 7919) % 10007:05d}{tag}",
            f"C{i % 11}",
            DAYS[i % 3],
            ("Books", "Electronics", "Clothing")[i % 3 != 1],
            f"P{i % 13}",
            1 + i % 4,
            f"{1 + i % 50}.{i % 10000:04d}",
            "TRUE" if i % 5 == 0 else "false",
        )
        for i in range(n)
    ]


def typed(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The rows as the lake types them, computed here without the engine."""
    return [
        {
            "order_id": r[0],
            "customer_id": r[1],
            "order_date": dt.date.fromisoformat(r[2]),
            "category": r[3],
            "product_id": r[4],
            "quantity": int(r[5]),
            "unit_price": Decimal(r[6]),
            "returned": r[7].lower() == "true",
        }
        for r in rows
    ]


def get(stack: Stack, key: str) -> tuple[bytes, dict[str, str]]:
    """Return an object of the cleaned bucket and its user metadata."""
    obj = stack.s3.get_object(Bucket=stack.cleaned_bucket, Key=key)
    return obj["Body"].read(), obj["Metadata"]


def small_pieces(monkeypatch: pytest.MonkeyPatch, batch_bytes: int = 2048) -> None:
    """Make the validator job read its file in pieces of ``batch_bytes`` (32 MiB in service)."""
    piecewise = functools.partial(validate_file, batch_bytes=batch_bytes)
    monkeypatch.setattr(jobs, "validate_file", piecewise)


def test_a_file_in_many_pieces_is_stored_piece_by_piece_then_date_by_date(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, rows = "big/orders.csv", many_rows(400)
    text = order_csv(rows)
    stack.upload(key, text)
    small_pieces(monkeypatch)
    # Every temporary file of both jobs (input, id hashes, cleaned rows, per-date files).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    writes: list[int] = []
    real_write = StagedSource.write

    def counted_write(self: StagedSource, part: pl.DataFrame) -> None:
        writes.append(part.height)
        real_write(self, part)

    monkeypatch.setattr(StagedSource, "write", counted_write)
    assert run(stack, key) == (0, 0)
    assert list(tmp_path.iterdir()) == []

    source = f"{stack.input_bucket}/{key}"
    sid = source_id(source)
    data, meta = get(stack, f"cleaned/{sid}.parquet")
    cleaned = pq.ParquetFile(io.BytesIO(data))
    groups = cleaned.metadata.num_row_groups
    assert groups >= 8  # one per piece: the validator never held the file's rows
    etag = stack.s3.head_object(Bucket=stack.input_bucket, Key=key)["ETag"].strip('"')
    assert meta == {"sha256": hashlib.sha256(text.encode()).hexdigest(), "rows": "400",
                    "input-etag": etag}
    whole = pl.read_parquet(data)
    assert whole.schema == LAKE_SCHEMA
    assert whole.to_dicts() == typed(rows)
    # The transformer read it one row group at a time.
    assert writes == [cleaned.metadata.row_group(i).num_rows for i in range(groups)]

    manifest = S3Lake(
        stack.cleaned_bucket, state_table=stack.state_table, s3=stack.s3, dynamodb=stack.dynamodb
    ).manifest(source)
    assert manifest is not None
    assert (manifest["rows"], manifest["dates"]) == (400, list(DAYS))
    for day in DAYS:
        data, _ = get(stack, f"lake/order_date={day}/{sid}.parquet")
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        assert meta.num_row_groups > 1  # written piece by piece, never sorted as a whole
        date_stats = meta.row_group(0).column(2).statistics
        assert date_stats is not None and date_stats.has_min_max  # for readers that filter
        want = [r for r in typed(rows) if r["order_date"].isoformat() == day]  # file order
        got = pl.read_parquet(data)
        assert got.schema == LAKE_COLUMNS
        assert got.to_dicts() == [{**r, "_seq": manifest["seq"], "_source": source} for r in want]
    expect(stack, [(key, rows)])

    # Redelivered: the same content keeps its seq, so the objects come back identical.
    before = {k: get(stack, k)[0] for k in stack.object_keys("lake/order_date=")}
    assert run(stack, key) == (0, 0)
    again = S3Lake(
        stack.cleaned_bucket, state_table=stack.state_table, s3=stack.s3, dynamodb=stack.dynamodb
    ).manifest(source)
    assert again is not None and again["seq"] == manifest["seq"]
    for k, data in before.items():
        assert pl.read_parquet(get(stack, k)[0]).equals(pl.read_parquet(data))
    expect(stack, [(key, rows)])


def test_a_changed_file_of_the_same_size_gets_a_new_seq(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "big/resent.csv"
    small_pieces(monkeypatch)
    lake = S3Lake(
        stack.cleaned_bucket, state_table=stack.state_table, s3=stack.s3, dynamodb=stack.dynamodb
    )
    stack.upload(key, order_csv(many_rows(120)))
    assert run(stack, key) == (0, 0)
    first = lake.manifest(f"{stack.input_bucket}/{key}")
    changed = [(*r[:5], r[5] + 1, *r[6:]) for r in many_rows(120)]  # same rows, new quantities
    stack.upload(key, order_csv(changed))
    assert run(stack, key) == (0, 0)
    second = lake.manifest(f"{stack.input_bucket}/{key}")
    assert first is not None and second is not None
    assert second["rows"] == first["rows"] and second["seq"] > first["seq"]
    expect(stack, [(key, changed)])


def test_a_bad_row_in_the_last_piece_leaves_no_cleaned_object(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = "big/bad at the end.csv"
    rows = [*many_rows(300), ("ORDX", "C1", "2025-07-06", "Books", "P1", 0, "1.00", "false")]
    stack.upload(key, order_csv(rows))
    small_pieces(monkeypatch)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert run(stack, key) == (3, None)
    assert stack.object_keys() == [f"rejected/{key}", f"rejected/{key}.errors.json"]
    assert list(tmp_path.iterdir()) == []
    # One level down: pieces were written before the bad one was met, and thrown away.
    pieces: list[int] = []
    real_write = jobs.CleanedParquet.write

    def counted_write(self: jobs.CleanedParquet, part: pl.DataFrame) -> None:
        pieces.append(part.height)
        real_write(self, part)

    monkeypatch.setattr(jobs.CleanedParquet, "write", counted_write)
    local, dest = tmp_path / "orders.csv", tmp_path / "cleaned.parquet"
    local.write_text(order_csv(rows))
    result, n = jobs.validate_to_parquet(local, dest, categories=None, display_name=key)
    assert result.report.invalid_rows == 1 and not result.streamed
    assert len(pieces) >= 5 and n == 0 and not dest.exists()


def _open_files_named(name: str) -> list[str]:
    fds = Path("/proc/self/fd")
    links = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            links.append(os.readlink(fd))
    return [link for link in links if name in link]


@pytest.mark.parametrize("failing_piece", ["third", "last"])
def test_a_failed_cleaned_write_fails_the_validation_and_leaves_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failing_piece: str
) -> None:
    # Row groups are encoded on a worker thread: its failure is the validation's failure,
    # whether the next write meets it (third piece) or only the final close (last piece).
    small_pieces(monkeypatch)
    rows = many_rows(300)
    real = jobs.CleanedParquet._write_now
    calls: list[int] = []

    def failing(self: jobs.CleanedParquet, part: pl.DataFrame) -> None:
        calls.append(part.height)
        last = rows[-1][0] in part["order_id"].to_list()
        if (failing_piece == "third" and len(calls) == 3) or (failing_piece == "last" and last):
            raise OSError(28, "No space left on device")
        real(self, part)

    monkeypatch.setattr(jobs.CleanedParquet, "_write_now", failing)
    local, dest = tmp_path / "orders.csv", tmp_path / "cleaned.parquet"
    local.write_text(order_csv(rows))
    with pytest.raises(OSError, match="No space left") as raised:
        jobs.validate_to_parquet(local, dest, categories=None, display_name="k")
    assert len(calls) >= (3 if failing_piece == "third" else 6)  # 2 KB pieces: ~8
    # Closed by the job, not by the garbage collector: the traceback (kept alive here by
    # ``raised``) still holds the writer.
    assert raised.traceback and _open_files_named("cleaned.parquet") == []
    assert not dest.exists()
    assert not any(t.name.startswith("cleaned") for t in threading.enumerate())


def test_the_cleaned_file_holds_required_columns_and_a_null_fails_it(tmp_path: Path) -> None:
    local, dest = tmp_path / "orders.csv", tmp_path / "cleaned.parquet"
    rows = many_rows(5)
    local.write_text(order_csv(rows))
    result, n = jobs.validate_to_parquet(local, dest, categories=None, display_name="k")
    assert result.report.ok and n == 5
    schema = pq.ParquetFile(dest).schema
    # No definition levels: validation let no null through, as in the lake's objects.
    assert [schema.column(i).max_definition_level for i in range(len(schema))] == [0] * 8
    assert pl.read_parquet(dest).to_dicts() == typed(rows)

    with_null = pl.DataFrame(typed(rows), schema=LAKE_SCHEMA).with_columns(
        pl.when(pl.col("order_id") == rows[2][0]).then(None).otherwise(pl.col("customer_id"))
        .alias("customer_id")
    )
    with pytest.raises(ValueError, match="null"), jobs.CleanedParquet(tmp_path / "x.parquet") as w:
        w.write(with_null)


def test_an_error_while_validating_stands_over_a_failed_cleaned_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken_write(self: jobs.CleanedParquet, part: pl.DataFrame) -> None:
        raise OSError("the disk went away")

    def validate_then_fail(path: Path, **kwargs: Any) -> None:
        kwargs["on_rows"](pl.DataFrame(typed(many_rows(3)), schema=LAKE_SCHEMA))
        raise KeyboardInterrupt  # what stopped the validation is what the caller sees

    monkeypatch.setattr(jobs.CleanedParquet, "_write_now", broken_write)
    monkeypatch.setattr(jobs, "validate_file", validate_then_fail)
    local, dest = tmp_path / "orders.csv", tmp_path / "cleaned.parquet"
    local.write_text(order_csv(many_rows(3)))
    with pytest.raises(KeyboardInterrupt):
        jobs.validate_to_parquet(local, dest, categories=None, display_name="k")
    assert not any(t.name.startswith("cleaned") for t in threading.enumerate())


def test_a_hash_collision_is_compared_as_text_and_the_file_still_streams(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key, rows = "big/collision.csv", many_rows(200)
    stack.upload(key, order_csv(rows))
    small_pieces(monkeypatch)
    # Two distinct ids with one 64-bit hash: both rows are read again and their text compared.
    alike = pl.Series([rows[3][0], rows[150][0]]).hash()
    monkeypatch.setattr("engine.validate._HashBuckets.duplicates", lambda self: alike)
    settings = Settings.from_env(stack.env(key))
    clients = jobs.Clients(stack.s3, stack.dynamodb)
    with caplog.at_level("INFO", logger="engine.validate"):
        assert jobs.validate_object(settings, clients) == 0
    assert "whole file" not in caplog.text
    data, meta = get(stack, jobs.cleaned_key(settings))
    assert meta["rows"] == "200"
    assert pl.read_parquet(data).to_dicts() == typed(rows)
    assert jobs.transform_object(settings, clients) == 0
    expect(stack, [(key, rows)])


def test_a_header_only_file_stores_a_zero_row_object_with_the_lake_columns(
    stack: Stack,
) -> None:
    key = "empty/orders.csv"
    stack.upload(key, order_csv([]))
    assert run(stack, key) == (0, 0)
    settings = Settings.from_env(stack.env(key))
    data, meta = get(stack, jobs.cleaned_key(settings))
    assert meta["rows"] == "0"
    frame = pl.read_parquet(data)
    assert frame.height == 0 and frame.schema == LAKE_SCHEMA
    manifest = S3Lake(
        stack.cleaned_bucket, state_table=stack.state_table, s3=stack.s3, dynamodb=stack.dynamodb
    ).manifest(f"{stack.input_bucket}/{key}")
    assert manifest is not None and (manifest["rows"], manifest["dates"]) == (0, [])
    assert stack.object_keys("lake/order_date=") == []
    assert stack.items(stack.category_table) == [] and stack.items(stack.order_table) == []


def test_a_header_only_reupload_names_the_dates_it_removed_in_the_notice(stack: Stack) -> None:
    # "rows: 0 | dates: (none)": the KPIs of V1's two dates changed without a word.
    key = "orders/emptied.csv"
    stack.upload(key, order_csv(V1))
    assert run(stack, key) == (0, 0)
    stack.upload(key, order_csv([]))
    assert run(stack, key) == (0, 0)
    done = stack.record(file_pk(stack.input_bucket, stack.env(key)["S3_INPUT_KEY"]), "transform")
    assert done is not None
    assert done["dates_text"] == f"(none); no longer held, KPIs recomputed: {D1}, {D2}"
    assert (done["dates"], done["dates_count"], done["affected_dates"]) == ([], 0, [D1, D2])
    assert stack.items(stack.category_table) == [] and stack.items(stack.order_table) == []


def test_a_file_of_more_dates_than_a_record_lists_keeps_its_records_small(stack: Stack) -> None:
    # Every date went into the status record: ~37,000 dates made it larger than DynamoDB's
    # 400 KB, and the validator exited 2 on every run (no verdict). Validation alone here.
    days = [dt.date(1950, 1, 1) + dt.timedelta(n) for n in range(1500)]
    key = "orders/many dates.csv"
    stack.upload(key, order_csv([(f"O{i}", "C1", d.isoformat(), "Books", "P", 1, "1.00", "false")
                                 for i, d in enumerate(days)]))
    settings = Settings.from_env(stack.env(key))
    assert jobs.validate_object(settings, jobs.Clients(stack.s3, stack.dynamodb)) == 0
    status = stack.record(file_pk(stack.input_bucket, stack.env(key)["S3_INPUT_KEY"]), "status")
    assert status is not None and status["dates_count"] == 1500
    assert status["dates"] == [d.isoformat() for d in days[: jobs.MAX_LISTED_DATES]]
    assert jobs.dates_text(days) == "1950-01-01 .. 1954-02-08 (1,500 dates)"
    assert jobs.dates_text(days[:31]) == ", ".join(d.isoformat() for d in days[:31])


def test_a_cleaned_bucket_that_refuses_the_upload_exits_2_not_1(stack: Stack) -> None:
    key = "orders/nowhere.csv"
    stack.upload(key, order_csv(V1))
    env = {**stack.env(key), "S3_CLEANED_BUCKET": f"{stack.cleaned_bucket}-missing"}
    settings = Settings.from_env(env)
    code = run_entrypoint(
        "validator",
        lambda: jobs.validate_object(settings, jobs.Clients(stack.s3, stack.dynamodb)),
        configure=False,
    )
    assert code == EXIT_CONFIG  # NoSuchBucket, reported by upload_file as S3UploadFailedError


@pytest.mark.parametrize("workers", [None, "1"])
def test_dates_are_published_and_exported_side_by_side_within_the_row_budget(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, workers: str | None
) -> None:
    import engine.kpis
    import engine.s3lake as s3lake

    # 12 dates of 10 orders; a budget of 25 rows lets two dates be read at once, not three.
    monkeypatch.setattr(engine.kpis, "SLICE_ROWS", 25)
    days = [f"2025-07-{d:02d}" for d in range(1, 13)]
    rows = [(f"O{i}", f"C{i % 7}", days[i % 12], "Books", "P", 1 + i % 3, f"{i}.5", "false")
            for i in range(120)]
    key = "many/dates.csv"
    stack.upload(key, order_csv(rows))
    held: list[int] = []
    most = {"dates": 0, "rows": 0}
    lock = threading.Lock()
    real = s3lake._date_kpis_of

    def gauged(read: Any, local: Any, n: int, sources: int) -> Any:
        with lock:
            held.append(n)
            most["dates"] = max(most["dates"], len(held))
            most["rows"] = max(most["rows"], sum(held))
        try:
            return real(read, local, n, sources)
        finally:
            with lock:
                held.remove(n)

    monkeypatch.setattr(s3lake, "_date_kpis_of", gauged)
    assert run(stack, key, **({"DATE_WORKERS": workers} if workers else {})) == (0, 0)
    expect(stack, [(key, rows)])
    if workers is None:
        # Two dates of orders at once, at most (the month's export also reads its 19 empty
        # dates, which hold nothing and run beside them).
        assert most["rows"] == 20 and most["dates"] >= 2
    else:  # DATE_WORKERS=1: one date after the other, though the budget holds two
        assert most == {"rows": 10, "dates": 1}
    month = stack.s3.get_object(
        Bucket=stack.cleaned_bucket, Key="kpis/kpis_csv/daily_kpis/month=2025-07/part-0.csv"
    )["Body"].read().decode()
    assert [line.split(",")[0] for line in month.splitlines()[1:]] == days  # in date order


def test_a_small_date_copy_cut_off_on_its_way_is_read_again(tmp_path: Path) -> None:
    from botocore.exceptions import IncompleteReadError

    from engine.s3lake import LakeReadError

    data = b"PAR1" + bytes(range(256)) * 40 + b"PAR1"

    class Body(io.BytesIO):
        def __init__(self, cut: bool) -> None:
            super().__init__(data)
            self.cut = cut

        def read(self, size: int | None = -1) -> bytes:
            if self.cut and self.tell() > 1000:
                raise IncompleteReadError(actual_bytes=1000, expected_bytes=len(data))
            return super().read(size)

    class S3:
        def __init__(self, cuts: int) -> None:
            self.cuts, self.bodies = cuts, []

        def get_object(self, Bucket: str, Key: str, **same: str) -> dict[str, Any]:
            # a repeat asks for the version the first answer was (its ETag)
            assert same == ({"IfMatch": '"v1"'} if self.bodies else {})
            body = Body(cut=len(self.bodies) < self.cuts)
            self.bodies.append(body)
            return {"Body": body, "ETag": '"v1"'}

    s3 = S3(cuts=2)
    lake = S3Lake("b", state_table="t", s3=s3, dynamodb=object())
    (path,) = lake.download(["lake/order_date=2025-07-06/x.parquet"], tmp_path, small=True)
    assert path.read_bytes() == data  # the third GET, whole; not the cut-off bytes
    assert len(s3.bodies) == 3 and all(b.closed for b in s3.bodies)
    s3 = S3(cuts=4)
    lake = S3Lake("b", state_table="t", s3=s3, dynamodb=object())
    with pytest.raises(LakeReadError, match=r"x\.parquet"):
        lake.download(["lake/order_date=2025-07-06/x.parquet"], tmp_path, small=True)
    assert len(s3.bodies) == 4 and all(b.closed for b in s3.bodies)


def test_an_input_replaced_between_two_reads_is_transient(tmp_path: Path) -> None:
    # The first body is cut off; the repeat asks for the same version (If-Match) and S3
    # answers 412 because a new upload replaced it: run again later (exit 4), not exit 2.
    from botocore.exceptions import ClientError, IncompleteReadError

    from engine.containers_support import exit_code_for
    from engine.s3lake import ObjectReplacedError

    class Cut(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise IncompleteReadError(actual_bytes=0, expected_bytes=10)

    class S3:
        def get_object(self, Bucket: str, Key: str, **same: str) -> dict[str, Any]:
            if same:
                raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "x"}},
                                  "GetObject")
            return {"Body": Cut(b""), "ETag": '"v1"'}

    with pytest.raises(ObjectReplacedError, match="replaced while it was read") as caught:
        jobs._get_to_file(S3(), "b", "input/x.csv", tmp_path / "x.csv")
    assert exit_code_for(caught.value) == EXIT_TRANSIENT


# -- the allowed categories from S3 (CATEGORIES_S3_URI) -------------------------------------


def _validate_with_categories(stack: Stack, key: str, uri: str) -> int:
    env = {**stack.env(key), "CATEGORIES_S3_URI": uri}
    return run_entrypoint(
        "validator", lambda: jobs.validate_object(Settings.from_env(env)), configure=False
    )


def test_categories_from_s3_reject_a_row_outside_them(stack: Stack) -> None:
    uri = f"s3://{stack.cleaned_bucket}/config/products.csv"
    stack.s3.put_object(Bucket=stack.cleaned_bucket, Key="config/products.csv",
                        Body=b"product_id,category\nP1,Electronics\nP2,Books\n")
    stack.upload("orders/cats.csv", order_csv(V1))  # V1 holds a Clothing order
    assert _validate_with_categories(stack, "orders/cats.csv", uri) == 3
    status = stack.record(file_pk(stack.input_bucket, "orders/cats.csv"), "status")
    assert status is not None and "'Clothing'" in status["summary"]
    stack.upload("orders/cats2.csv", order_csv(V2))  # Electronics and Books only
    assert _validate_with_categories(stack, "orders/cats2.csv", uri) == 0


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("s3://{bucket}/config/items.csv", "has no 'category' column (columns: sku, kind)"),
        ("s3://{bucket}", "CATEGORIES_S3_URI='s3://{bucket}' names no object"),
        ("s3://{bucket}/config/", "names no object"),
        ("s3://{bucket}/config/gone.csv", "s3://{bucket}/config/gone.csv: no such object"),
        # A bucket that is not there, or cannot be a bucket's name: the error named neither
        # the bucket nor the variable ("Parameter validation failed:").
        ("s3://no-such-bucket-x1/x.csv",
         "s3://no-such-bucket-x1/x.csv: the bucket 'no-such-bucket-x1' does not exist"),
        ("s3://Bad Bucket/x.csv", "CATEGORIES_S3_URI: 'Bad Bucket' is not a bucket name"),
    ],
)
def test_a_bad_categories_object_exits_2_naming_it_not_a_local_copy(
    stack: Stack, uri: str, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    stack.s3.put_object(Bucket=stack.cleaned_bucket, Key="config/items.csv",
                        Body=b"sku,kind\nP1,Books\n")
    stack.upload("orders/x.csv", order_csv(V2))
    uri = uri.format(bucket=stack.cleaned_bucket)
    assert _validate_with_categories(stack, "orders/x.csv", uri) == EXIT_CONFIG
    errors = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert said.format(bucket=stack.cleaned_bucket) in errors
    assert "/tmp" not in errors  # the task's local copy is not named
    if uri.endswith("items.csv"):
        assert f"{uri}: has no 'category'" in errors


@pytest.mark.parametrize("variable", ["S3_INPUT_BUCKET", "S3_CLEANED_BUCKET"])
@pytest.mark.parametrize("bucket", ["My Bucket", "bad/bucket", "x" * 256])
def test_a_bucket_variable_that_cannot_name_a_bucket_exits_2_naming_it(
        variable: str, bucket: str) -> None:
    from engine.config import ReprocessSettings
    from engine.errors import ConfigError

    env = {"S3_INPUT_BUCKET": "in", "S3_INPUT_KEY": "k", "S3_CLEANED_BUCKET": "Old_Bucket.1",
           "ORDER_KPI_TABLE": "o", "CATEGORY_KPI_TABLE": "c", "STATE_TABLE": "s",
           "REPROCESS_DATE_FROM": "2025-01-01", "REPROCESS_DATE_TO": "2025-01-02"}
    assert Settings.from_env(env).cleaned_bucket == "Old_Bucket.1"  # an older bucket's name
    with pytest.raises(ConfigError, match=f"^{variable}: .* is not a bucket name") as info:
        Settings.from_env({**env, variable: bucket})
    assert exit_code_for(info.value) == EXIT_CONFIG
    if variable == "S3_CLEANED_BUCKET":
        with pytest.raises(ConfigError, match=f"^{variable}: "):
            ReprocessSettings.from_env({**env, variable: bucket})


def test_archive_parts_cover_a_file_past_one_copy_exactly() -> None:
    from engine.config import ArchiveTuning

    mib, gib = 1024 * 1024, 1024**3
    assert jobs.archive_parts(5 * gib, ArchiveTuning()) is None  # one CopyObject takes it
    parts = jobs.archive_parts(5 * gib + 1, ArchiveTuning())
    assert parts is not None and len(parts) == 11 and parts[0] == {"n": 1, "range":
                                                                    f"bytes=0-{512 * mib - 1}"}
    assert parts[-1] == {"n": 11, "range": f"bytes={10 * 512 * mib}-{5 * gib}"}
    # Ranges follow each other without a gap or an overlap, up to the last byte.
    for size, tuning in ((13 * mib + 7, ArchiveTuning(0, 5 * mib)), (6 * gib, ArchiveTuning())):
        got = jobs.archive_parts(size, tuning)
        assert got is not None
        bounds = [tuple(map(int, p["range"].removeprefix("bytes=").split("-"))) for p in got]
        assert bounds[0][0] == 0 and bounds[-1][1] == size - 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(bounds))
        assert [p["n"] for p in got] == list(range(1, len(got) + 1))
    # S3 takes at most 10,000 parts: a huge file gets longer ones.
    huge = jobs.archive_parts(100_000 * 5 * mib, ArchiveTuning(0, 5 * mib))
    assert huge is not None and len(huge) == 10_000
    assert ArchiveTuning.from_env({"ARCHIVE_SINGLE_COPY_MAX_MB": "5", "ARCHIVE_PART_MB": "5"}) \
        == ArchiveTuning(5 * mib, 5 * mib)
