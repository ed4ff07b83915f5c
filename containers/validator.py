"""Container entrypoint: validate one order file from S3 (env -> Settings -> engine -> exit code).

Exit codes: 0 valid (cleaned rows and report written); 3 rejected (report under rejected/);
4 transient (S3/DynamoDB throttled or unavailable: retry); 2 bad configuration.
"""

from __future__ import annotations

import os
import sys

from engine.aws_jobs import validate_object
from engine.config import Settings
from engine.containers_support import run_entrypoint


def main() -> int:
    """Run the validator for the file named by the environment; return the exit code."""
    return run_entrypoint(
        "validator",
        lambda: validate_object(Settings.from_env()),
        level=os.environ.get("LOG_LEVEL"),
    )


if __name__ == "__main__":
    sys.exit(main())
