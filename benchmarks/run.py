"""Run the benchmark from a checkout: ``python benchmarks/run.py --rows 1000000``.

A thin wrapper over ``engine.bench.runner`` (the same code as ``order-kpis bench``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.bench.runner import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
