"""Names and tags of an AWS stack's resources, without any SDK (shared by program and runtime).

Physical names are ``mlstack-<stack id>-<part>``; past a service's length limit they shorten
to ``ml-<suffix>-<part>``. Every taggable resource carries :data:`STACK_ID_TAG` with the exact
stack id: that tag, never a name prefix, is what sweep and drain go by.
"""

from __future__ import annotations

import re

from stacks.common.tags import STACK_ID_TAG, STACK_TAG

__all__ = ["STACK_ID_TAG", "STACK_TAG", "expiry_group", "expiry_role_name", "physical_name"]


def physical_name(stack_id: str, part: str = "", limit: int = 63) -> str:
    """``mlstack-<stack id>[-part]``, shortened to ``ml-<suffix>-part`` past ``limit``."""
    full = "-".join(p for p in ("mlstack", stack_id, part) if p)
    if len(full) > limit:
        suffix = stack_id.rsplit("-", 1)[-1]
        full = "-".join(p for p in ("ml", suffix, part) if p)[:limit]
    return re.sub(r"-+", "-", full).strip("-")


def expiry_group(stack_id: str) -> str:
    """The EventBridge Scheduler group holding every expiry schedule of the stack."""
    return physical_name(stack_id, "expiry", 64)


def expiry_role_name(stack_id: str) -> str:
    """The IAM role the stack's expiry schedules run as."""
    return physical_name(stack_id, "expiry", 64)
