"""The tags every resource of a stack carries, in one place for every provider and the runner.

``mlstack:stack-id`` is what sweeps and drains match on: exactly, never by prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

STACK_TAG = "mlstack:stack"
STACK_ID_TAG = "mlstack:stack-id"
OWNER_TAG = "mlstack:owner"
EXPIRES_TAG = "mlstack:expires-at"
MANAGED_TAG = "mlstack:managed-by"


def expiry_tag(expires_at: datetime | None) -> str:
    """The ``mlstack:expires-at`` value of an expiry time: ISO UTC to the second, or never."""
    return expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if expires_at else "never"


def stack_tags(
    *,
    name: str,
    stack_id: str,
    owner: str | None = None,
    expires_at: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The spec's own tags plus mlstack's identity tags (which the spec cannot override)."""
    return {
        **dict(extra or {}),
        STACK_TAG: name,
        STACK_ID_TAG: stack_id,
        OWNER_TAG: owner or "unknown",
        EXPIRES_TAG: expires_at or "never",
        MANAGED_TAG: "mlstack",
    }
