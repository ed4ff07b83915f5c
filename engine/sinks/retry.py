"""Capped exponential backoff with full jitter, shared by every DynamoDB write path."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Error codes after which the same request, sent again later, may succeed.
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)


@dataclass(frozen=True)
class Backoff:
    """How often and how long to wait between attempts (full jitter, AWS architecture blog)."""

    max_attempts: int = 8
    """Calls made for one unit of work before giving up (the first call counts)."""
    base_delay: float = 0.05
    """Seconds; the cap of the jitter window doubles from here after each failed attempt."""
    max_delay: float = 5.0
    """Seconds; the jitter window never grows beyond this."""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def window(self, attempt: int) -> float:
        """The upper bound of the wait after failed attempt number ``attempt`` (0-based)."""
        return min(self.max_delay, self.base_delay * 2.0**attempt)

    def wait(self, attempt: int) -> float:
        """Sleep a uniformly random time in [0, window(attempt)) and give it back."""
        delay = float(self.rng()) * self.window(attempt)
        self.sleep(delay)
        return delay


def error_code(exc: Any) -> str:
    """The AWS error code of a botocore ClientError ('' when there is none)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_aws_network_error(exc: BaseException) -> bool:
    """Whether botocore says the network to AWS failed: no connection, a timeout, a body cut
    off on its way. Imports botocore only if the caller already has (then ``exc`` may be
    one of its errors)."""
    found = sys.modules.get("botocore.exceptions")
    return found is not None and isinstance(exc, (
        found.ConnectionError,  # no connection, connect timeouts, proxy and TLS failures
        found.HTTPClientError,  # read timeouts, a connection closed, a body cut off mid-way
        found.IncompleteReadError,  # a body shorter than its length
    ))


def is_retryable(exc: BaseException) -> bool:
    """Whether a botocore error is throttling or a server-side hiccup worth retrying."""
    return error_code(exc) in RETRYABLE_CODES
