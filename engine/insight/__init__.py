"""Reading KPI tables back: queries, exports for BI tools and an offline HTML dashboard.

Import the submodules (``query``, ``export``, ``dashboard``); this package itself stays light so
that the command line can register its arguments without importing Polars.
"""

from __future__ import annotations

from engine.insight.cli_args import add_subparsers

__all__ = ["add_subparsers"]
