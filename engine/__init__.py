"""order-kpis: validate e-commerce order CSVs and compute exact business KPIs."""

from __future__ import annotations

__version__ = "0.1.0"
