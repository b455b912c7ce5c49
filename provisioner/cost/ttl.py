"""``mlstack extend NAME 2h``: push a stack's expiry out.

A provider with an in-cloud expiry (schedules at ``expires_at``) registers a hook in
:data:`EXTENDERS` that moves it; the local provider needs none.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime

from provisioner.state import StackRecord, StateRegistry, now
from stacks.common.errors import UsageError
from stacks.spec import StackSpec, parse_ttl

# provider -> "module:function(record, old_expiry)", imported only when used.
EXTENDERS: dict[str, str] = {"aws": "provisioner.cost.ttl:move_aws_expiry"}


def move_aws_expiry(record: StackRecord, old: datetime | None) -> None:
    """Move the stack's EventBridge expiry schedules to its new ``expires_at``."""
    from stacks.common.aws_expiry import move_expiry

    if record.expires_at is not None:
        region = str(getattr(record.spec, "region", None) or "")
        move_expiry(record.stack_id, record.expires_at, region=region)


def extend(name: str, by: str, registry: StateRegistry | None = None) -> StackRecord:
    """Move ``expires_at`` ``by`` later (from now if it already passed or was never set)."""
    try:
        delta = parse_ttl(by)
    except ValueError as exc:
        raise UsageError(f"extend {name}: duration {by!r}: {exc}") from None
    registry = registry or StateRegistry()
    with registry.stack_lock(name):
        record = registry.get(name)
        if record is None or record.status == "destroyed":
            raise UsageError(f"stack {name!r} is not up", "see `mlstack status`")
        old: datetime | None = record.expires_at
        base = max(old, now()) if old else now()
        record.expires_at = base + delta
        record.log("extend", f"expiry moved to {record.expires_at:%Y-%m-%d %H:%M:%SZ} (+{by})")
        registry.save(record)
        hook = EXTENDERS.get(record.provider)
        if hook:
            module, _, fn = hook.partition(":")
            mover: Callable[[StackRecord, datetime | None], None] = getattr(
                importlib.import_module(module), fn
            )
            mover(record, old)
    return record


def with_lifetime(spec: StackSpec, ttl: str | None, budget: float | None) -> StackSpec:
    """``spec`` with ``--ttl`` / ``--budget`` from the command line in place of its own."""
    if ttl is None and budget is None:
        return spec
    data = spec.model_dump(mode="json")
    if ttl is not None:
        try:
            parse_ttl(ttl)
        except ValueError as exc:
            raise UsageError(f"--ttl {ttl!r}: {exc}") from None
        data["ttl"] = ttl
    if budget is not None:
        if not 0 < budget <= 1_000_000:
            raise UsageError(f"--budget {budget:g}: must be more than 0 and at most 1000000")
        data["budget"] = float(budget)
    return type(spec).model_validate(data)
