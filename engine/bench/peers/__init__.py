"""Peer implementations of the two KPI tables, each run as its own process by the runner.

Every peer is ``python -m engine.bench.peers.<name> CSV OUTDIR`` and writes
``OUTDIR/category_kpis.csv`` and ``OUTDIR/daily_kpis.csv`` in the canonical form of
``_common.write_kpis`` (``polars_floor`` only parses and writes nothing). Exit code
``UNAVAILABLE`` (5) means a library the peer needs is not installed.
"""

from __future__ import annotations

UNAVAILABLE = 5
