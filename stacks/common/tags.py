"""The tags every resource of a stack carries, in one place for every provider and the runner.

``mlstack:stack-id`` is what sweeps and drains match on: exactly, never by prefix.
"""

from __future__ import annotations

from collections.abc import Mapping

STACK_TAG = "mlstack:stack"
STACK_ID_TAG = "mlstack:stack-id"
OWNER_TAG = "mlstack:owner"
EXPIRES_TAG = "mlstack:expires-at"
MANAGED_TAG = "mlstack:managed-by"


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
