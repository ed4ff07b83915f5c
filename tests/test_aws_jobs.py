"""The validator and transformer jobs against moto server (S3) and DynamoDB Local, over HTTP."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest
from botocore.exceptions import ClientError

import engine.aws_jobs as jobs
from engine.config import Settings
from engine.containers_support import EXIT_CONFIG, EXIT_TRANSIENT, run_entrypoint
from engine.lake import source_id
from engine.s3lake import S3Lake
from engine.state import file_pk
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


def run(stack: Stack, key: str) -> tuple[int, int | None]:
    """Validate then (if valid) transform ``key``; give both exit codes."""
    settings = Settings.from_env(stack.env(key))
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


def test_invalid_file_is_rejected_with_exit_3_and_a_summary(stack: Stack) -> None:
    key = "bad day/orders+1.csv"
    stack.upload(key, order_csv([*V1, ("ORD9", "", "2025/07/06", "Toys", "P9", -1, "1", "x")]))
    assert run(stack, key) == (3, None)
    status = stack.record(file_pk(stack.input_bucket, stack.env(key)["S3_INPUT_KEY"]), "status")
    assert status is not None and status["status"] == "REJECTED"
    assert "rejected" in status["summary"] and status["invalid_rows"] == 1
    assert stack.object_keys() == [f"rejected/{key}", f"rejected/{key}.errors.json"]
    assert stack.items(stack.category_table) == []


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
                if m.get("unpublished"):
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


def test_missing_setting_exits_2(stack: Stack) -> None:
    env = stack.env("orders/x.csv")
    del env["STATE_TABLE"]
    code = run_entrypoint(
        "validator", lambda: jobs.validate_object(Settings.from_env(env)), configure=False
    )
    assert code == EXIT_CONFIG
