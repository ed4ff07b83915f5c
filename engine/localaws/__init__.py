"""The embedded local AWS: moto server with the real stack and a few documented adaptations.

Only for development and tests: needs the dev extra (``moto[server]==5.2.5``). See
``docs/local-aws.md``.
"""

from __future__ import annotations

from engine.localaws.stack import OUTPUT_KEYS, LocalAws, local_aws

__all__ = ["OUTPUT_KEYS", "LocalAws", "local_aws"]
