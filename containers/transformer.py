"""Container entrypoint: add a validated file to the S3 lake and republish the KPIs of its dates.

Exit codes: 0 done; 4 transient (S3/DynamoDB throttled or unavailable: retry; a rerun
converges); 2 bad configuration or no cleaned rows for the file (the validator did not run).
"""

from __future__ import annotations

import os
import sys

from engine.aws_jobs import transform_object
from engine.config import Settings
from engine.containers_support import run_entrypoint


def main() -> int:
    """Run the transformer for the file named by the environment; return the exit code."""
    return run_entrypoint(
        "transformer",
        lambda: transform_object(Settings.from_env()),
        level=os.environ.get("LOG_LEVEL"),
    )


if __name__ == "__main__":
    sys.exit(main())
