"""Benchmarks: a fast synthetic order generator, peer implementations and a runner.

The same code backs ``order-kpis bench`` (installed wheel) and ``benchmarks/run.py`` (checkout).
Peers need the ``bench`` extra (numpy, pandas, duckdb); a missing one is skipped with a note.
"""

from __future__ import annotations
