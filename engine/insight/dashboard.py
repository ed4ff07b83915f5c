"""One self-contained HTML dashboard of the KPI tables: no network, no external files.

Python embeds the KPI rows as exact decimal strings and integer cents; the page's own script
draws inline SVG charts and recomputes the period cards with BigInt integer arithmetic, so every
number shown equals the KPI tables (floats are used only for pixel positions). The cards of the
whole range are also rendered by Python, so the page says the right thing even without script.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Final

import polars as pl

from engine.kpis import CATEGORY_SCHEMA, DAILY_SCHEMA

logger = logging.getLogger(__name__)

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; yellow last (low contrast).
PALETTE: Final = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#000000",
    "#F0E442",
)
_PLACEHOLDER: Final = re.compile(r"__[A-Z_]+__")
_CENT: Final = Decimal("0.01")
_RATE: Final = Decimal("0.0001")


@dataclass(frozen=True)
class Rejection:
    """What a dashboard shows of one rejected file's ``.errors.json``."""

    name: str
    """The rejected file's name."""
    findings: int
    """How many findings the report has (those it lists, and those it only counts)."""
    first: tuple[dict[str, str], ...]
    """The first few findings, each as text fields line, column, rule, value, message."""
    summary: str
    """The report's summary, as text."""
    accepted_at: str | None = None
    """When a file of the same name entered the lake after this rejection (a corrected
    export), as the lake recorded it; None if none has."""
    quarantined: bool = False
    """``process --on-invalid quarantine-rows`` set the bad rows aside and accepted the others
    (the report's ``outcome``): the file itself entered the lake."""


@dataclass(frozen=True)
class PeriodCards:
    """The KPI cards of a period, computed exactly from the daily and category tables."""

    date_from: date | None
    date_to: date | None
    days: int
    """Days of the period that have KPI rows."""
    revenue: Decimal
    orders: int
    returned: int | None
    """None when a day's returned orders are not known (``returned_by_day``)."""
    return_rate: Decimal | None
    """sum(returned) / sum(orders), 4 places half-even; None without orders or ``returned``."""
    customers_sum: int
    """Sum of daily unique customers: a customer active on several days counts once per day."""
    customers_max: int
    """The busiest day's unique customers: a lower bound of the period's distinct customers."""
    extra: dict[str, str] = field(default_factory=dict)


def returned_by_day(category_df: pl.DataFrame, daily_df: pl.DataFrame) -> dict[date, int | None]:
    """Return the returned orders of each day of ``daily_df``: the sum of its categories'
    ``returned_orders`` (an order is in one category), or None when the category rows hold
    fewer orders than the day, because only some categories were read (``--categories``)."""
    grouped = category_df.group_by("order_date").agg(
        pl.col("orders").sum(), pl.col("returned_orders").sum())
    sums = {day: (int(orders), int(returned)) for day, orders, returned in grouped.iter_rows()}
    out: dict[date, int | None] = {}
    for day, total in daily_df.select("order_date", "total_orders").iter_rows():
        orders, returned = sums.get(day, (0, 0))
        out[day] = returned if orders == int(total) else None
    return out


def period_cards(
    category_df: pl.DataFrame,
    daily_df: pl.DataFrame,
    date_from: date | None = None,
    date_to: date | None = None,
) -> PeriodCards:
    """Return the cards of the days between ``date_from`` and ``date_to`` (default: all)."""
    daily = daily_df
    if date_from is not None:
        daily = daily.filter(pl.col("order_date") >= date_from)
    if date_to is not None:
        daily = daily.filter(pl.col("order_date") <= date_to)
    per_day = list(returned_by_day(category_df, daily).values())
    revenue = sum((Decimal(v) for v in daily.get_column("total_revenue").to_list()), Decimal(0))
    orders = sum(int(v) for v in daily.get_column("total_orders").to_list())
    returned = None if None in per_day else sum(n for n in per_day if n is not None)
    customers = [int(v) for v in daily.get_column("unique_customers").to_list()]
    rate = (
        (Decimal(returned) / Decimal(orders)).quantize(_RATE, rounding=ROUND_HALF_EVEN)
        if orders and returned is not None
        else None
    )
    return PeriodCards(
        date_from=date_from,
        date_to=date_to,
        days=daily.height,
        revenue=revenue.quantize(_CENT),
        orders=orders,
        returned=returned,
        return_rate=rate,
        customers_sum=sum(customers),
        customers_max=max(customers, default=0),
    )


def format_money(value: Decimal) -> str:
    """Return money as shown on the page: thousands separated, exactly two decimals."""
    return f"{value.quantize(_CENT):,}"


def format_percent(rate: Decimal | None) -> str:
    """Return a 4-place rate as an exact percentage with two decimals (0.1250 -> 12.50%)."""
    if rate is None:
        return "n/a"
    return f"{(rate * 100).quantize(_CENT)}%"


def load_rejections(folder: str | Path, *, limit: int = 10, first: int = 5) -> list[Rejection]:
    """Return the latest ``limit`` rejections from ``folder/rejected/*.errors.json``, newest first.

    Reports that cannot be read are listed with their error rather than hidden.
    """
    base = Path(folder) / "rejected"
    if not base.is_dir():
        return []
    paths = sorted(
        base.glob("*.errors.json"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True
    )
    out: list[Rejection] = []
    for path in paths[:limit]:
        text: str | Exception
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("cannot read %s: %s", path, exc)
            text = exc
        rejection = _rejection(path.name.removesuffix(".errors.json"), text, first)
        # A quarantined file entered the lake right after its report: that is not a later
        # correction (a correction of it would, in turn, replace this report or not: unknown).
        accepted = None if rejection.quarantined else _accepted_since(
            Path(folder), Path(rejection.name).name, path.stat().st_mtime)
        out.append(dataclasses.replace(rejection, accepted_at=accepted))
    return out


def _accepted_since(folder: Path, name: str, rejected_at: float) -> str | None:
    """Return when a file called ``name`` entered the lake of ``folder``, if it did after
    ``rejected_at`` (a POSIX time): the lake knows a file by its name, so that one is its
    corrected export."""
    from engine.lake import LocalLake

    at = LocalLake(folder / "lake").ingested_at(name)
    return None if at is None else _later(at, rejected_at)


def _later(at: str, rejected_at: float) -> str | None:
    """Return ``at`` (a lake manifest's ``ingested_at``) if it is later than ``rejected_at``."""
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return None  # a manifest this page need not judge
    return at if when.tzinfo is not None and when.timestamp() > rejected_at else None


def load_rejections_s3(
    bucket: str, prefix: str, *, limit: int = 10, first: int = 5, client: Any = None
) -> list[Rejection]:
    """Return the latest ``limit`` rejections from the ``*.errors.json`` reports under
    ``s3://bucket/prefix`` (where the validator on AWS writes them: ``rejected/<key>``),
    newest first. The listing is walked page by page, keeping only the newest ``limit``.
    Reports that cannot be read are listed with their error rather than hidden.
    """
    import heapq

    from botocore.exceptions import ClientError

    if client is None:
        import boto3

        client = boto3.client("s3")
    listed = (
        obj
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
        if obj["Key"].endswith(".errors.json")
    )
    newest = heapq.nlargest(limit, listed, key=lambda o: (o["LastModified"], o["Key"]))
    out: list[Rejection] = []
    for obj in newest:
        text: str | Exception
        try:
            text = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode("utf-8")
        except UnicodeDecodeError as exc:
            text = exc
        except ClientError as exc:  # gone since the listing, or not ours to read: say so
            logger.warning("cannot read s3://%s/%s: %s", bucket, obj["Key"], exc)
            text = exc
        name = obj["Key"].removeprefix(prefix).lstrip("/").removesuffix(".errors.json")
        rejection = _rejection(name, text, first)
        accepted = _accepted_since_s3(client, bucket, rejection.name,
                                      obj["LastModified"].timestamp())
        out.append(dataclasses.replace(rejection, accepted_at=accepted))
    return out


def _accepted_since_s3(client: Any, bucket: str, uri: str, rejected_at: float) -> str | None:
    """``_accepted_since`` for the stack: the report names its file ``s3://bucket/key``, whose
    S3 lake manifest is in the bucket of the reports (the cleaned bucket)."""
    from botocore.exceptions import ClientError

    from engine.lake import source_id
    from engine.s3lake import manifest_key

    if not uri.startswith("s3://"):
        return None
    try:
        body = client.get_object(Bucket=bucket, Key=manifest_key(source_id(uri[5:])))["Body"]
        at = json.loads(body.read())["ingested_at"]
    except (ClientError, ValueError, KeyError, TypeError):
        return None  # never accepted, not ours to read, or a manifest this page need not judge
    return _later(str(at), rejected_at)


def _rejection(fallback: str, text: str | Exception, first: int) -> Rejection:
    """Return the rejection a report's text describes (``text`` an error: it is unreadable)."""
    if isinstance(text, Exception):
        return Rejection(fallback, 0, (), f"report unreadable: {text}")
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejection(fallback, 0, (), f"report unreadable: {exc}")
    if not isinstance(report, dict):
        return Rejection(fallback, 0, (), "report is not a JSON object")
    findings = report.get("findings")
    summary = _text(report.get("summary"))
    if not isinstance(findings, list):
        summary = (summary + " " if summary else "") + "(the report has no findings list)"
        findings = []
    omitted = report.get("omitted_findings")  # a file rejected whole lists its first ones
    counted = len(findings) + (omitted if isinstance(omitted, int) and omitted > 0 else 0)
    return Rejection(
        name=str(report.get("file") or fallback),
        findings=counted,
        first=tuple(_finding(f) for f in findings[:first]),
        summary=summary,
        quarantined=report.get("outcome") == "quarantined",
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _finding(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {"message": _text(raw)}
    return {k: _text(raw.get(k)) for k in ("line", "column", "rule", "value", "message")}


def _cents(value: Decimal) -> str:
    return str(int(value.quantize(_CENT) * 100))


READ_ALL_LOCAL = "leave out --categories, or name every category in it"
READ_ALL_DYNAMODB = "name every category in --categories, or give --state-table in its place"


def dashboard_data(category_df: pl.DataFrame, daily_df: pl.DataFrame) -> dict[str, Any]:
    """Return the data the page embeds: exact decimal strings and integer cents as strings."""
    category_df = category_df.select(pl.col(n).cast(t) for n, t in CATEGORY_SCHEMA.items()).sort(
        "category", "order_date"
    )
    daily_df = daily_df.select(pl.col(n).cast(t) for n, t in DAILY_SCHEMA.items()).sort(
        "order_date"
    )
    returned_map = returned_by_day(category_df, daily_df)
    categories = sorted(set(category_df.get_column("category").to_list()))
    index = {name: i for i, name in enumerate(categories)}
    days = [
        {
            "d": row["order_date"].isoformat(),
            "rev": _cents(row["total_revenue"]),
            "revText": str(row["total_revenue"]),
            "orders": row["total_orders"],
            "items": row["total_items_sold"],
            "cust": row["unique_customers"],
            "rate": str(row["return_rate"]),
            "ret": returned_map[row["order_date"]],
        }
        for row in daily_df.iter_rows(named=True)
    ]
    cats = [
        {
            "c": index[row["category"]],
            "d": row["order_date"].isoformat(),
            "rev": _cents(row["daily_revenue"]),
            "revText": str(row["daily_revenue"]),
            "orders": row["orders"],
            "ret": row["returned_orders"],
            "aov": str(row["avg_order_value"]),
        }
        for row in category_df.iter_rows(named=True)
    ]
    return {"categories": categories, "palette": list(PALETTE), "days": days, "cats": cats}


def _embed_json(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    # Inside <script>, "</script>" or "<!--" in a category name would end the element early.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def build_html(
    category_df: pl.DataFrame,
    daily_df: pl.DataFrame,
    *,
    rejections: Sequence[Rejection] | None = (),
    title: str = "Order KPIs",
    generated_at: datetime | None = None,
    read_all: str = READ_ALL_LOCAL,
) -> str:
    """Return the dashboard as one HTML document with inline CSS, script and SVG.

    ``rejections`` None: none were read (the panel says where they would come from).
    ``read_all``: how to read every category, said where a day's returned orders are not
    known because only some were read.
    """
    partial = f". Not known: some days have orders in categories not read ({read_all})"
    data = dashboard_data(category_df, daily_df)
    cards = period_cards(category_df, daily_df)
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    first_day = data["days"][0]["d"] if data["days"] else ""
    last_day = data["days"][-1]["d"] if data["days"] else ""
    esc = html.escape
    replacements = {
        "__TITLE__": esc(title),
        "__GENERATED__": esc(generated),
        "__FIRST__": esc(first_day),
        "__LAST__": esc(last_day),
        "__REVENUE__": esc(format_money(cards.revenue)),
        "__ORDERS__": f"{cards.orders:,}",
        "__RETURNED__": "n/a" if cards.returned is None else f"{cards.returned:,}",
        "__RATE_NOTE__": esc(partial) if cards.returned is None else "",
        "__RATE_NOTE_TEXT__": esc(partial),
        "__RATE_PCT__": esc(format_percent(cards.return_rate)),
        "__RATE_RAW__": esc(str(cards.return_rate) if cards.return_rate is not None else "n/a"),
        "__CUST_SUM__": f"{cards.customers_sum:,}",
        "__CUST_MAX__": f"{cards.customers_max:,}",
        "__CUST_LABEL__": "Unique customers"
        if cards.days <= 1
        else "Sum of daily unique customers",
        "__DAYS__": str(cards.days),
        "__REJECTIONS__": _rejections_html(rejections),
        "__DATA__": _embed_json(data),
        "__CSS__": _CSS,
        "__JS__": _JS,
    }
    # One pass, so a placeholder-looking text inside the data is never substituted again.
    return _PLACEHOLDER.sub(lambda m: replacements.get(m.group(0), m.group(0)), _TEMPLATE)


def write_dashboard(path: str | Path, page: str) -> Path:
    """Write the page atomically (temporary file, then rename; a pipe or a terminal is
    written through) and return its path."""
    from engine.atomic import write_text_atomic

    target = Path(path)
    write_text_atomic(target, page)
    logger.info("dashboard written to %s (%d bytes)", target, len(page.encode("utf-8")))
    return target


def _rejections_html(rejections: Sequence[Rejection] | None) -> str:
    if rejections is None:
        return (
            '<p class="muted" id="rejections-not-read">Rejections were not read: they are'
            " in S3, not DynamoDB (<code>--rejections-from s3://&lt;cleaned bucket&gt;/rejected/"
            "</code>).</p>"
        )
    if not rejections:
        return '<p class="muted" id="no-rejections">No rejected files.</p>'
    esc = html.escape
    parts = []
    for rej in rejections:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{esc(f.get(k, ''))}</td>"
                for k in ("line", "column", "rule", "value", "message")
            )
            + "</tr>"
            for f in rej.first
        )
        more = rej.findings - len(rej.first)
        more_text = f'<p class="muted">and {more:,} more findings</p>' if more > 0 else ""
        table = (
            '<table class="findings"><thead><tr><th>line</th><th>column</th><th>rule</th>'
            f"<th>value</th><th>message</th></tr></thead><tbody>{rows}</tbody></table>"
            if rows
            else ""
        )
        noun = "finding" if rej.findings == 1 else "findings"
        since = (
            f'<p class="accepted">Since accepted: a file of this name entered the lake at'
            f" {esc(rej.accepted_at)}; this rejection is history.</p>"
            if rej.accepted_at else ""
        )
        kept = (
            '<p class="quarantined">Quarantined: the rows below were set aside (in'
            f" <code>{esc(rej.name)}.rows.csv</code>); the file's other rows were accepted.</p>"
            if rej.quarantined else ""
        )
        parts.append(
            f'<article class="rejection" data-file="{esc(rej.name, quote=True)}">'
            f'<h3>{esc(rej.name)} <span class="count">{rej.findings:,} {noun}</span></h3>'
            f'{since}{kept}<p class="summary">{esc(rej.summary)}</p>{table}{more_text}</article>'
        )
    return "".join(parts)


_CSS: Final = """
:root{--ink:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa;--card:#fff;--accent:#0072B2}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--ink);background:var(--bg)}
header{background:#14324a;color:#fff;padding:16px 24px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cfe0ee;font-size:13px}
main{max-width:1200px;margin:0 auto;padding:16px 24px 40px}
.controls{display:flex;flex-wrap:wrap;gap:12px;align-items:end;margin:8px 0 16px}
.controls label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}
.controls input{font:inherit;padding:4px 6px;border:1px solid var(--line);border-radius:4px}
.controls button{font:inherit;padding:5px 12px;border:1px solid var(--accent);background:#fff;
color:var(--accent);border-radius:4px;cursor:pointer}
.controls button:hover{background:#e8f1f8}
#period-error{color:#a40e26;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px}
.card h2{margin:0;font-size:13px;font-weight:600;color:var(--muted);text-transform:uppercase;
letter-spacing:.03em}
.card .value{font-size:28px;font-weight:700;margin:4px 0;font-variant-numeric:tabular-nums}
.card p{margin:0;font-size:12.5px;color:var(--muted)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px;margin-top:12px}
.panel{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.panel h2{margin:0 0 6px;font-size:16px}
.chart svg{width:100%;height:auto;display:block}
.legend{display:flex;flex-wrap:wrap;gap:10px;font-size:12.5px;margin-top:4px}
.legend span{display:inline-flex;align-items:center;gap:5px}
.legend i{width:12px;height:12px;border-radius:2px;display:inline-block}
.muted{color:var(--muted)}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{border-bottom:1px solid var(--line);padding:3px 6px;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.rejection h3{font-size:14px;margin:10px 0 2px}
.rejection .count{font-weight:400;color:#a40e26;margin-left:6px}
.rejection .summary{margin:0 0 4px;font-size:13px}
details{margin-top:12px}
#js-error{background:#ffebe9;border:1px solid #a40e26;color:#a40e26;padding:8px;margin:8px 0}
"""

_JS: Final = r"""
(function () {
  "use strict";
  function reportError(message) {
    var box = document.getElementById("js-error");
    if (!box) {
      box = document.createElement("div");
      box.id = "js-error";
      box.setAttribute("role", "alert");
      document.body.insertBefore(box, document.body.firstChild);
    }
    box.textContent = "Script error: " + message;
    document.documentElement.setAttribute("data-js-error", "1");
  }
  window.onerror = function (message, source, line) {
    reportError(String(message) + (line ? " (line " + line + ")" : ""));
  };
  window.addEventListener("unhandledrejection", function (event) {
    reportError("unhandled rejection: " + String(event.reason));
  });

  var SVG = "http://www.w3.org/2000/svg";
  var DATA = JSON.parse(document.getElementById("kpi-data").textContent);
  var W = 560, H = 260, M = {l: 64, r: 14, t: 12, b: 46};

  function groupThousands(text) { return text.replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function padLeft(text, n) { while (text.length < n) { text = "0" + text; } return text; }
  function fmtCents(c) {
    var neg = c < 0n; if (neg) { c = -c; }
    return (neg ? "-" : "") + groupThousands((c / 100n).toString()) + "." +
      padLeft((c % 100n).toString(), 2);
  }
  // Half-even rounding of n/d for n >= 0, d > 0 (BigInt), like Decimal.quantize(ROUND_HALF_EVEN).
  function divHalfEven(n, d) {
    var q = n / d, twice = (n % d) * 2n;
    if (twice > d || (twice === d && q % 2n === 1n)) { q += 1n; }
    return q;
  }
  function fmtRate(scaled) { // scaled = rate * 10^4
    return (scaled / 10000n).toString() + "." + padLeft((scaled % 10000n).toString(), 4);
  }
  function fmtPercent(scaled) { // 4-place rate as a percentage with 2 places: exact
    return (scaled / 100n).toString() + "." + padLeft((scaled % 100n).toString(), 2) + "%";
  }
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) {
      node.setAttribute(k, String(attrs[k])); } }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function tip(node, text) { el("title", {}, node).textContent = text; return node; }
  function niceStep(max, ticks) {
    if (!(max > 0)) { return 1; }
    var raw = max / ticks, pow = Math.pow(10, Math.floor(Math.log10(raw))), unit = raw / pow;
    return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * pow;
  }
  function tickLabel(v, step, percent) {
    if (percent) { v *= 100; step *= 100; }
    var places = step >= 1 ? 0 : Math.min(4, Math.ceil(-Math.log10(step)));
    var text = v.toFixed(places);
    var parts = text.split(".");
    return groupThousands(parts[0]) + (parts[1] ? "." + parts[1] : "") + (percent ? "%" : "");
  }
  function frame(holder, id, title, desc, yMax, percent, days) {
    holder.textContent = "";
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-labelledby": id + "-t " + id + "-d", "data-chart": id, "data-drawn": "js"}, holder);
    el("title", {id: id + "-t"}, svg).textContent = title;
    el("desc", {id: id + "-d"}, svg).textContent = desc;
    var step = niceStep(yMax, 4), top = Math.max(step, Math.ceil(yMax / step) * step);
    var plotW = W - M.l - M.r, plotH = H - M.t - M.b;
    var y = function (v) { return M.t + plotH - (v / top) * plotH; };
    for (var v = 0; v <= top + step / 2; v += step) {
      el("line", {x1: M.l, x2: W - M.r, y1: y(v), y2: y(v), stroke: "#e1e4e8"}, svg);
      el("text", {x: M.l - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11,
        fill: "#57606a"}, svg).textContent = tickLabel(v, step, percent);
    }
    var n = days.length, band = plotW / Math.max(n, 1);
    var x = function (i) { return M.l + band * (i + 0.5); };
    var every = Math.max(1, Math.ceil(n / 8));
    for (var i = 0; i < n; i += every) {
      el("text", {x: x(i), y: H - M.b + 16, "text-anchor": "middle", "font-size": 11,
        fill: "#57606a"}, svg).textContent = days[i].slice(5);
    }
    el("line", {x1: M.l, x2: W - M.r, y1: y(0), y2: y(0), stroke: "#57606a"}, svg);
    return {svg: svg, x: x, y: y, band: band};
  }
  // values[i] === null marks a calendar day without a KPI row: the line breaks there.
  function lineChart(holder, id, title, desc, days, values, labels, colour, percent) {
    var max = 0; values.forEach(function (v) { if (v !== null && v > max) { max = v; } });
    var f = frame(holder, id, title, desc, max, percent, days);
    var runs = [], run = [];
    values.forEach(function (v, i) {
      if (v === null) { if (run.length) { runs.push(run); } run = []; } else { run.push(i); }
    });
    if (run.length) { runs.push(run); }
    runs.forEach(function (idx) {
      var pts = idx.map(function (i) {
        return f.x(i).toFixed(1) + "," + f.y(values[i]).toFixed(1);
      });
      el("polygon", {points: f.x(idx[0]).toFixed(1) + "," + f.y(0) + " " + pts.join(" ") + " " +
        f.x(idx[idx.length - 1]).toFixed(1) + "," + f.y(0), fill: colour, "fill-opacity": 0.15,
        stroke: "none"}, f.svg);
      el("polyline", {points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": 2.5,
        "stroke-linejoin": "round"}, f.svg);
      idx.forEach(function (i) {
        tip(el("circle", {cx: f.x(i), cy: f.y(values[i]), r: 3.5, fill: colour,
          "data-value": labels[i]}, f.svg), days[i] + ": " + labels[i]);
      });
    });
    return f.svg;
  }
  // Every date from the first day to the last, UTC, as YYYY-MM-DD, so that a day without KPI
  // rows is a gap; over more than MAX_CALENDAR_DAYS, the days with rows only (the calendar
  // was cut there, and every later day was left out of the charts).
  var MAX_CALENDAR_DAYS = 4000;
  function calendar(days) {
    var d = new Date(days[0].d + "T00:00:00Z");
    var end = new Date(days[days.length - 1].d + "T00:00:00Z");
    if ((end - d) / 86400000 >= MAX_CALENDAR_DAYS) {
      return days.map(function (x) { return x.d; });
    }
    var out = [];
    while (d <= end) { out.push(d.toISOString().slice(0, 10)); d.setUTCDate(d.getUTCDate() + 1); }
    return out;
  }
  function stackedBars(holder, id, title, desc, days, cats, categories, palette) {
    var byDay = {};
    cats.forEach(function (r) { (byDay[r.d] = byDay[r.d] || []).push(r); });
    var max = 0;
    days.forEach(function (d) {
      var s = 0; (byDay[d] || []).forEach(function (r) { s += Number(BigInt(r.rev)) / 100; });
      if (s > max) { max = s; }
    });
    var f = frame(holder, id, title, desc, max, false, days);
    days.forEach(function (d, i) {
      var base = 0;
      (byDay[d] || []).forEach(function (r) {
        var v = Number(BigInt(r.rev)) / 100, y0 = f.y(base), y1 = f.y(base + v);
        tip(el("rect", {x: f.x(i) - f.band * 0.35, width: f.band * 0.7, y: y1,
          height: Math.max(0, y0 - y1), fill: palette[r.c % palette.length],
          "data-value": r.revText}, f.svg), d + " " + categories[r.c] + ": " + r.revText);
        base += v;
      });
    });
    return f.svg;
  }
  function aovBars(holder, id, title, rows, palette) {
    holder.textContent = "";
    var rowH = 30, h = Math.max(60, rows.length * rowH + 30), left = 150, right = 110;
    var svg = el("svg", {viewBox: "0 0 " + W + " " + h, role: "img", "aria-labelledby": id + "-t",
      "data-chart": id, "data-drawn": "js"}, holder);
    el("title", {id: id + "-t"}, svg).textContent = title;
    var max = 0; rows.forEach(function (r) { if (r.num > max) { max = r.num; } });
    rows.forEach(function (r, i) {
      var yy = 10 + i * rowH, w = max > 0 ? (r.num / max) * (W - left - right) : 0;
      el("text", {x: left - 8, y: yy + 17, "text-anchor": "end", "font-size": 12,
        fill: "#1b1f24"}, svg).textContent = r.name;
      tip(el("rect", {x: left, y: yy + 4, width: Math.max(1, w), height: 18,
        fill: palette[r.c % palette.length], "data-value": r.text}, svg),
        r.name + ": " + r.text + " (" + r.orders + " orders)");
      el("text", {x: left + w + 6, y: yy + 17, "font-size": 12, fill: "#1b1f24",
        "class": "aov-value"}, svg).textContent = r.text;
    });
    return svg;
  }

  function setText(id, text) { document.getElementById(id).textContent = text; }

  function render(from, to) {
    var days = DATA.days.filter(function (d) { return d.d >= from && d.d <= to; });
    var cats = DATA.cats.filter(function (r) { return r.d >= from && r.d <= to; });
    var revenue = 0n, orders = 0n, returned = 0n, custSum = 0n, custMax = 0n, partial = false;
    days.forEach(function (d) {
      revenue += BigInt(d.rev); orders += BigInt(d.orders);
      if (d.ret === null) { partial = true; } else { returned += BigInt(d.ret); }
      custSum += BigInt(d.cust); if (BigInt(d.cust) > custMax) { custMax = BigInt(d.cust); }
    });
    setText("card-revenue", fmtCents(revenue));
    setText("card-orders", groupThousands(orders.toString()));
    setText("card-returned", partial ? "n/a" : groupThousands(returned.toString()));
    setText("card-rate-orders", groupThousands(orders.toString()));
    var note = document.getElementById("card-rate-note");
    note.textContent = partial ? note.getAttribute("data-note") : "";
    if (orders > 0n && !partial) {
      var scaled = divHalfEven(returned * 10000n, orders);
      setText("card-rate", fmtPercent(scaled)); setText("card-rate-raw", fmtRate(scaled));
    } else { setText("card-rate", "n/a"); setText("card-rate-raw", "n/a"); }
    setText("card-customers", groupThousands(custSum.toString()));
    setText("card-customers-max", groupThousands(custMax.toString()));
    setText("card-customers-label", days.length <= 1 ? "Unique customers"
      : "Sum of daily unique customers");
    setText("card-days", String(days.length));
    setText("period-label", days.length ? from + " to " + to : "no data in " + from + " to " + to);

    // The x axis is the calendar, so a day without KPI rows shows as a gap, not as a slope.
    var dates = days.length ? calendar(days) : [];
    var byDate = {};
    days.forEach(function (d) { byDate[d.d] = d; });
    lineChart(document.getElementById("chart-revenue"), "revenue", "Daily revenue",
      "Total revenue per day, " + from + " to " + to, dates,
      dates.map(function (d) { return byDate[d] ? Number(BigInt(byDate[d].rev)) / 100 : null; }),
      dates.map(function (d) { return byDate[d] ? byDate[d].revText : ""; }), "#0072B2", false);
    lineChart(document.getElementById("chart-return-rate"), "return-rate", "Daily return rate",
      "Returned orders divided by orders, per day", dates,
      dates.map(function (d) { return byDate[d] ? Number(byDate[d].rate) : null; }),
      dates.map(function (d) { return byDate[d] ? byDate[d].rate : ""; }), "#D55E00", true);
    stackedBars(document.getElementById("chart-category-revenue"), "category-revenue",
      "Revenue by category per day", "Stacked daily revenue of each category", dates, cats,
      DATA.categories, DATA.palette);

    var agg = {};
    cats.forEach(function (r) {
      var a = agg[r.c] = agg[r.c] || {rev: 0n, orders: 0n};
      a.rev += BigInt(r.rev); a.orders += BigInt(r.orders);
    });
    var rows = Object.keys(agg).map(Number).sort(function (a, b) { return a - b; })
      .filter(function (c) { return agg[c].orders > 0n; })
      .map(function (c) {
        var cents = divHalfEven(agg[c].rev, agg[c].orders);
        return {c: c, name: DATA.categories[c], text: fmtCents(cents),
          num: Number(cents) / 100, orders: agg[c].orders.toString()};
      });
    aovBars(document.getElementById("chart-aov"), "aov",
      "Average order value by category (revenue / orders over the period)", rows, DATA.palette);
    var legend = document.getElementById("legend");
    legend.textContent = "";
    DATA.categories.forEach(function (name, i) {
      var item = document.createElement("span"), swatch = document.createElement("i");
      swatch.style.background = DATA.palette[i % DATA.palette.length];
      item.appendChild(swatch); item.appendChild(document.createTextNode(name));
      legend.appendChild(item);
    });
    var body = document.getElementById("daily-rows");
    body.textContent = "";
    days.forEach(function (d) {
      var tr = document.createElement("tr");
      [d.d, d.revText, String(d.orders), d.ret === null ? "n/a" : String(d.ret), d.rate,
       String(d.items), String(d.cust)]
        .forEach(function (v, i) {
          var td = document.createElement("td"); td.textContent = v;
          if (i > 0) { td.className = "num"; } tr.appendChild(td);
        });
      body.appendChild(tr);
    });
    document.documentElement.setAttribute("data-period", from + "/" + to);
  }

  function apply() {
    var from = document.getElementById("from").value, to = document.getElementById("to").value;
    var msg = document.getElementById("period-error");
    if (!from || !to) {  // an empty input, or a date that is none (2025-02-30 in a link)
      msg.textContent = "Choose a start and an end date: real calendar dates."; return;
    }
    if (from > to) {
      msg.textContent = "Choose a start date on or before the end date."; return;
    }
    msg.textContent = "";
    render(from, to);
  }
  try {
    var first = DATA.days.length ? DATA.days[0].d : "", last = DATA.days.length
      ? DATA.days[DATA.days.length - 1].d : "";
    var fromInput = document.getElementById("from"), toInput = document.getElementById("to");
    var hash = /from=(\d{4}-\d{2}-\d{2}).*to=(\d{4}-\d{2}-\d{2})/.exec(location.hash || "");
    fromInput.value = hash ? hash[1] : first; toInput.value = hash ? hash[2] : last;
    fromInput.addEventListener("change", apply); toInput.addEventListener("change", apply);
    document.getElementById("all").addEventListener("click", function () {
      fromInput.value = first; toInput.value = last; apply(); });
    document.getElementById("last7").addEventListener("click", function () {
      var end = new Date(last + "T00:00:00Z"); end.setUTCDate(end.getUTCDate() - 6);
      var start = end.toISOString().slice(0, 10);
      fromInput.value = start < first ? first : start; toInput.value = last; apply(); });
    if (DATA.days.length) { apply(); }
    document.documentElement.setAttribute("data-rendered", "ok");
  } catch (e) {
    reportError(e && e.stack ? e.stack : String(e));
  }
})();
"""

_TEMPLATE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>__TITLE__</title>
<style>__CSS__</style>
</head>
<body>
<header><h1>__TITLE__</h1>
<p>KPI data __FIRST__ to __LAST__ &middot; generated __GENERATED__ &middot; works offline</p>
</header>
<main>
<form class="controls" onsubmit="return false" aria-label="Period">
<label for="from">From<input type="date" id="from" min="__FIRST__" max="__LAST__"
 value="__FIRST__"></label>
<label for="to">To<input type="date" id="to" min="__FIRST__" max="__LAST__"
 value="__LAST__"></label>
<button type="button" id="all">Whole range</button>
<button type="button" id="last7">Last 7 days</button>
<span class="muted">Period: <strong id="period-label">__FIRST__ to __LAST__</strong></span>
<span id="period-error" role="status"></span>
</form>
<section class="cards" aria-label="KPI cards for the period">
<div class="card"><h2>Revenue</h2><div class="value" id="card-revenue">__REVENUE__</div>
<p>Sum of daily total revenue over <span id="card-days">__DAYS__</span> days with orders</p></div>
<div class="card"><h2>Orders</h2><div class="value" id="card-orders">__ORDERS__</div>
<p>Sum of daily total orders</p></div>
<div class="card"><h2 id="card-customers-label">__CUST_LABEL__</h2>
<div class="value" id="card-customers">__CUST_SUM__</div>
<p>Each day's distinct count, added up: a customer ordering on several days counts once per
day, so this is not the period's distinct count. Busiest day:
<span id="card-customers-max">__CUST_MAX__</span> (a lower bound).</p></div>
<div class="card"><h2>Return rate</h2><div class="value" id="card-rate">__RATE_PCT__</div>
<p><span id="card-rate-raw">__RATE_RAW__</span> = <span id="card-returned">__RETURNED__</span>
returned / <span id="card-rate-orders">__ORDERS__</span> orders of the period<span
id="card-rate-note" data-note="__RATE_NOTE_TEXT__">__RATE_NOTE__</span></p></div>
</section>
<section class="grid">
<div class="panel"><h2>Daily revenue</h2><div class="chart" id="chart-revenue"></div></div>
<div class="panel"><h2>Daily return rate</h2><div class="chart" id="chart-return-rate"></div></div>
<div class="panel"><h2>Revenue by category per day</h2>
<div class="chart" id="chart-category-revenue"></div>
<div class="legend" id="legend"></div></div>
<div class="panel"><h2>Average order value by category</h2>
<div class="chart" id="chart-aov"></div></div>
</section>
<noscript><p>Charts and the period selector need JavaScript; the cards above cover the whole
range.</p></noscript>
<details><summary>Daily data table</summary>
<table><thead><tr><th>date</th><th class="num">revenue</th><th class="num">orders</th>
<th class="num">returned</th><th class="num">return rate</th><th class="num">items sold</th>
<th class="num">unique customers</th></tr></thead><tbody id="daily-rows"></tbody></table></details>
<section class="panel" style="margin-top:12px" aria-label="Latest validation rejections">
<h2>Latest validation rejections</h2>__REJECTIONS__</section>
</main>
<script type="application/json" id="kpi-data">__DATA__</script>
<script>__JS__</script>
</body>
</html>
"""
