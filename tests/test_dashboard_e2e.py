"""End to end: ``order-kpis process`` on the fixtures, then ``dashboard``, in headless Chromium."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest

from tests import oracle
from tests.test_dashboard import assert_script_ran_cleanly, card, chromium

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
VALID = [FIX / "valid_order.csv", FIX / "orders_2025-07-07.csv"]
INVALID = FIX / "invalid_order.csv"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Return the process output folder and the dashboard command's stderr."""
    base = tmp_path_factory.mktemp("e2e")
    out = base / "out"
    done = cli("process", *map(str, VALID), str(INVALID), "--out", str(out))
    assert done.returncode == 1, done.stderr  # one file rejected: exit 1, outputs still written
    page = base / "report.html"
    dash = cli("dashboard", "--from-dir", str(out), "--out", str(page))
    assert dash.returncode == 0, dash.stderr
    assert dash.stdout == ""
    return out, dash.stderr


def test_process_tables_equal_the_oracle(processed: tuple[Path, str]) -> None:
    out, _ = processed
    cats, days = oracle.kpis_from_paths(VALID)
    assert oracle.read_csv_table(out / "category_kpis.csv") == cats
    assert oracle.read_csv_table(out / "daily_kpis.csv") == days


def test_dashboard_says_where_it_wrote(processed: tuple[Path, str]) -> None:
    out, stderr = processed
    assert f"dashboard written to {out.parent / 'report.html'}" in stderr


def test_browser_cards_are_the_oracle_numbers_and_rejections_are_listed(
    processed: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = processed
    page = out.parent / "report.html"
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    assert_script_ran_cleanly(dom)

    cats, days = oracle.kpis_from_paths(VALID)
    revenue = sum(Decimal(d["total_revenue"]) for d in days)
    orders = sum(int(d["total_orders"]) for d in days)
    returned = sum(int(c["returned_orders"]) for c in cats)
    rate = (Decimal(returned) / orders).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)
    customers = sum(int(d["unique_customers"]) for d in days)
    assert len(days) == 2  # so the customers card is a sum of daily counts, and says so
    assert card(dom, "card-revenue") == f"{revenue:,.2f}"
    assert card(dom, "card-orders") == str(orders)
    assert card(dom, "card-rate-raw") == str(rate)
    assert card(dom, "card-rate") == f"{rate * 100:.2f}%"
    assert card(dom, "card-customers") == str(customers)
    assert card(dom, "card-customers-label") == "Sum of daily unique customers"

    report = json.loads((out / "rejected" / "invalid_order.csv.errors.json").read_text())
    assert "invalid_order.csv" in dom
    for finding in report["findings"][:5]:
        assert html.escape(finding["message"], quote=False) in dom
