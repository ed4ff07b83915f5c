"""``order-kpis local-aws up|demo``: the embedded local AWS from the command line.

Registered by ``engine.cli.build_parser`` through ``add_subparsers``. moto is imported only
when a command runs, so the rest of the CLI works without the dev extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.errors import UsageError

DEMO_FILES = ("fixtures/valid_order.csv", "fixtures/orders_2025-07-07.csv",
              "fixtures/invalid_order.csv")


def _port(text: str) -> int:
    """An argparse type: a TCP port number."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def add_subparsers(subparsers: Any) -> None:
    """Register ``local-aws`` and its subcommands ``up`` and ``demo`` on ``subparsers``."""
    la = subparsers.add_parser(
        "local-aws", help="run the AWS stack locally on moto (dev extra)",
        description="The real CloudFormation stack on an embedded moto server on 127.0.0.1,"
        " with ECS tasks run as local processes. Needs moto[server]==5.2.5 (dev extra).")
    sub = la.add_subparsers(dest="local_aws_command", required=True)
    up = sub.add_parser("up", help="deploy and serve until Ctrl-C",
                        description="Start moto, deploy orchestration/template.yaml, print the"
                        " stack outputs as JSON and serve until interrupted.")
    up.add_argument("--port", type=_port, default=None, help="port on 127.0.0.1 (default: free)")
    up.add_argument("--outputs-json", metavar="FILE",
                    help="also write the outputs and endpoint to FILE")
    up.add_argument("--task-logs", metavar="DIR", help="keep each task's output in DIR")
    up.set_defaults(func=cmd_up)
    demo = sub.add_parser("demo", help="upload the sample files and show what happened",
                          description="Bring the stack up, upload the three sample files to"
                          " input/, wait for the executions and print KPIs, archived keys and"
                          " notifications.")
    demo.add_argument("--port", type=_port, default=None)
    demo.add_argument("--timeout", type=float, default=120.0, metavar="S",
                      help="seconds to wait for the executions (default 120)")
    demo.set_defaults(func=cmd_demo)


def _check_free(port: int) -> None:
    """Refuse a port something already listens on: moto's server would fail to bind on its
    thread and the start would wait for it forever."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise UsageError(f"port {port} on 127.0.0.1 is not free: {e.strerror or e}",
                             hint="choose another --port, or leave it out for a free one"
                             ) from None


def _check_outputs(outputs_json: str | None, task_logs: str | None) -> None:
    """Refuse, before the ~10 s deploy, output paths that cannot be written."""
    if outputs_json is not None:
        target = Path(outputs_json)
        if target.is_dir():
            raise UsageError(f"--outputs-json {outputs_json!r} is a folder")
        if not target.parent.is_dir():
            raise UsageError(f"--outputs-json {outputs_json!r}: folder {str(target.parent)!r}"
                             " does not exist")
    if task_logs is not None:
        folder = Path(task_logs)
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--task-logs {task_logs!r} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)


def _start(port: int | None, task_logs: str | None = None) -> Any:
    # moto logs a warning per resource type it skips (and its interpreter an ERROR for every
    # path a Choice's IsPresent finds missing), werkzeug one line per request
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if port is not None:
        _check_free(port)
    import importlib.util

    from engine.localaws.adaptations import MotoVersionError

    # moto and yaml are imported when the stack starts, not with the module
    for module in ("moto", "yaml"):
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"the local AWS needs the dev extra ({module} is missing)",
                             hint="pip install -e '.[dev]' (make install-dev)")
    from engine.localaws.stack import LocalAws, repo_root

    if not (repo_root() / "orchestration" / "template.yaml").is_file():
        raise UsageError("the local AWS deploys orchestration/template.yaml of a checkout, and"
                         f" {repo_root()} holds none (an installed wheel)",
                         hint="run it from a clone: pip install -e '.[dev]' there")
    env = LocalAws(port=port, log_dir=Path(task_logs) if task_logs else None)
    try:
        return env.start()
    except MotoVersionError as e:
        raise UsageError(str(e)) from None


def describe(env: Any) -> dict[str, Any]:
    """Return what a user needs to drive the stack: endpoint, region, outputs, inbox queues."""
    return {"endpoint": env.endpoint, "environment": env.environment(),
            "outputs": env.outputs, "notification_queues": env.inboxes}


def cmd_up(args: argparse.Namespace) -> int:
    """Deploy the stack and serve until interrupted; exit 0 after a clean stop."""
    _check_outputs(args.outputs_json, args.task_logs)
    env = _start(args.port, args.task_logs)
    stop = threading.Event()
    before: dict[int, Any] = {}
    try:
        info = describe(env)
        text = json.dumps(info, indent=2)
        print(text, flush=True)
        if args.outputs_json:
            Path(args.outputs_json).write_text(text + "\n", encoding="utf-8")
        exports = " ".join(f"{k}={v}" for k, v in env.environment().items())
        print(f"\nlocal AWS ready on {env.endpoint}; in another shell:\n  export {exports}\n"
              f"  aws s3 cp fixtures/valid_order.csv "
              f"s3://{env.outputs['InputBucketName']}/input/\nCtrl-C stops it.",
              file=sys.stderr, flush=True)
        # Ctrl-C, SIGTERM or a hang-up stops it; one more while it stops (pressed twice, a
        # supervisor repeating itself) would cut the servers' stop short: it changes nothing
        # till then.
        before = {s: signal.signal(s, lambda *_: stop.set())
                  for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                  if signal.getsignal(s) is not signal.SIG_IGN}  # `nohup` keeps its hang-up
        while not stop.wait(0.5):
            pass
    finally:
        try:
            env.stop()
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)
    print("local AWS stopped", file=sys.stderr)
    return 0


def _scan(ddb: Any, table: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    des, items, kwargs = TypeDeserializer(), [], {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        items += [{k: des.deserialize(v) for k, v in it.items()} for it in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def kpi_rows(env: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the category and daily KPI items of the stack, sorted like the contract says."""
    ddb = env.client("dynamodb")
    cat = sorted(_scan(ddb, env.outputs["CategoryTableName"]),
                 key=lambda r: (r["category"], r["order_date"]))
    day = sorted(_scan(ddb, env.outputs["OrderTableName"]), key=lambda r: r["order_date"])
    return cat, day


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str) -> str:
    def cell(v: Any) -> str:
        return str(v) if not isinstance(v, Decimal) else format(v, "f")

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c), *(len(b[i]) for b in body)]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(out)


def run_demo(env: Any, root: Path, *, timeout: float = 120.0) -> dict[str, Any]:
    """Upload the sample files one after the other, each once the one before is done; return
    what happened.

    One at a time because ``orders_2025-07-07.csv`` corrects an order of ``valid_order.csv``:
    of two files holding one (order_date, order_id), the one whose rows reach the lake later
    wins, and two uploads at once reach it in either order (4 of 5 demos kept the old order
    when both went up together)."""
    s3 = env.client("s3")
    deadline = time.monotonic() + timeout
    executions: list[dict[str, Any]] = []
    for done, name in enumerate(DEMO_FILES, start=1):
        s3.upload_file(str(root / name), env.outputs["InputBucketName"],
                       f"input/{Path(name).name}")
        print(f"uploaded {name} -> s3://{env.outputs['InputBucketName']}/input/", file=sys.stderr)
        executions = env.wait_executions(
            done, timeout=max(0.0, deadline - time.monotonic()),
            progress=lambda m: print(m, file=sys.stderr))
    listing = s3.list_objects_v2(Bucket=env.outputs["CleanedBucketName"])
    keys = sorted(o["Key"] for o in listing.get("Contents", []))
    left = s3.list_objects_v2(Bucket=env.outputs["InputBucketName"]).get("Contents", [])
    cat, day = kpi_rows(env)
    return {
        "executions": [{"name": e["name"], "status": e["status"]} for e in executions],
        "category_kpis": cat, "daily_kpis": day,
        "processed": [k for k in keys if k.startswith("processed/")],
        "rejected": [k for k in keys if k.startswith("rejected/")],
        "input_left": sorted(o["Key"] for o in left),
        "success": env.notifications("SuccessTopicArn", wait=2.0),
        "failure": env.notifications("FailureTopicArn", wait=2.0),
    }


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo on a fresh stack and print it; exit 0 when every file ended as expected."""
    logging.getLogger("engine.localaws").setLevel(logging.WARNING)
    env = _start(args.port)
    try:
        started = time.perf_counter()
        try:
            result = run_demo(env, env.root, timeout=args.timeout)
        except TimeoutError as late:
            print(f"order-kpis: the demo's executions did not end in time: {late}",
                  file=sys.stderr)
            return 1
        print()
        print(_table(result["category_kpis"], ("category", "order_date", "daily_revenue",
                     "avg_order_value", "avg_return_rate", "orders", "returned_orders"),
                     "Category KPIs (DynamoDB)"))
        print()
        print(_table(result["daily_kpis"], ("order_date", "total_orders", "total_revenue",
                     "total_items_sold", "return_rate", "unique_customers"),
                     "Daily KPIs (DynamoDB)"))
        print("\nexecutions:")
        for e in result["executions"]:
            print(f"  {e['status']:<9} {e['name']}")
        print("archived to processed/: " + ", ".join(result["processed"]))
        print("moved to rejected/:     " + ", ".join(result["rejected"]))
        print("left in input/:         " + (", ".join(result["input_left"]) or "(nothing)"))
        for kind in ("success", "failure"):
            for n in result[kind]:
                print(f"\n[{kind} topic] {n['Subject']}\n  " + n["Message"].replace(" | ", "\n  "))
        print(f"\ndemo done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    finally:
        env.stop()
    statuses = sorted(e["status"] for e in result["executions"])
    return 0 if statuses == ["FAILED", "SUCCEEDED", "SUCCEEDED"] else 1


def demo(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``make demo-aws``: same as ``order-kpis local-aws demo``."""
    from engine.cli import main

    return main(["local-aws", "demo", *(argv or [])])
