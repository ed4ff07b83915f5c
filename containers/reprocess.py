"""Container entrypoint: recompute the KPIs of every lake date in a range (a changed definition).

Exit codes: 0 done; 4 transient (S3/DynamoDB throttled or unavailable: retry; a rerun
converges); 2 bad configuration (missing or malformed REPROCESS_DATE_FROM/TO).
"""

from __future__ import annotations

import os
import sys

from engine.aws_reprocess import reprocess_job
from engine.config import ReprocessSettings
from engine.containers_support import run_entrypoint


def main() -> int:
    """Run the reprocess job for the date range named by the environment; return the exit code."""
    return run_entrypoint(
        "reprocess",
        lambda: reprocess_job(ReprocessSettings.from_env()),
        level=os.environ.get("LOG_LEVEL"),
    )


if __name__ == "__main__":
    sys.exit(main())
