"""The reaper: destroy every stack past its TTL or over its budget, one at a time, logged.

Safe from cron: a machine-wide lock (``$MLSTACK_HOME/locks/reaper.lock``) keeps two reapers
from racing; a stack without a TTL or a budget is never touched, nor one whose per-stack
lock is held (an ``up`` or ``down`` in progress). Each decision and step goes to stdout and
to ``$MLSTACK_HOME/logs/reaper.log``.

The reaper's clock is ``MLSTACK_NOW`` (ISO 8601, e.g. ``2030-01-01T00:00:00Z``) when set,
else the real time. Only the reaper (and ``mlstack cost``'s accrual) read it: it exists so
tests and dry runs can ask "what would be reaped at time T" without waiting.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, Field

from provisioner.state import StackRecord, StateRegistry, now
from stacks.common.errors import MlstackError, StackLocked, UsageError

if TYPE_CHECKING:
    from provisioner.cost.spend import Fetch

CLOCK_ENV = "MLSTACK_NOW"
Log = Callable[[str], None]


def clock() -> datetime:
    """``MLSTACK_NOW`` when set (a test clock), else the real time."""
    text = os.environ.get(CLOCK_ENV, "").strip()
    if not text:
        return now()
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{CLOCK_ENV}={text!r} is not an ISO 8601 time",
            "use e.g. 2030-01-01T00:00:00Z, or unset it for the real time",
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class Decision(BaseModel):
    stack: str
    action: Literal["destroy", "keep", "skip"]
    reason: str
    spend: float | None = None


class ReapResult(BaseModel):
    at: datetime
    dry_run: bool
    locked: bool = False  # another reaper held the machine-wide lock: nothing was done
    decisions: list[Decision] = Field(default_factory=list)
    destroyed: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)


def busy(registry: StateRegistry, name: str) -> bool:
    """True while another command holds the stack's change lock (an up or down runs).

    The lock is only probed when its owner file exists (written by every holder), so a
    reaper never makes an ``up`` that starts at the same instant fail on the lock.
    """
    if not (registry.home / "locks" / f"{name}.owner").exists():
        return False
    try:
        with registry.stack_lock(name):
            return False
    except StackLocked:
        return True


def decide(
    record: StackRecord, registry: StateRegistry, at: datetime, usage: Fetch | None = None
) -> Decision:
    """Whether the reaper destroys this stack now, and why (or why not).

    ``usage`` fetches the stack's runtime usage (endpoints, Batch jobs) so a budget counts it.
    """
    from provisioner.cost.spend import spend

    budget = record.spec.budget
    if record.status == "destroyed":
        return Decision(stack=record.name, action="skip", reason="already destroyed")
    if record.expires_at is None and budget is None:
        return Decision(stack=record.name, action="skip", reason="no TTL and no budget")
    if busy(registry, record.name):
        return Decision(stack=record.name, action="skip", reason="an up or down is in progress")
    if record.expires_at is not None and at >= record.expires_at:
        return Decision(
            stack=record.name,
            action="destroy",
            reason=f"expired at {record.expires_at:%Y-%m-%d %H:%M:%SZ}",
        )
    if isinstance(budget, int | float):
        cost = spend(record, registry, at=at, usage=usage)
        if cost.total >= budget:
            return Decision(
                stack=record.name,
                action="destroy",
                reason=f"estimated spend ${cost.total:.2f} reached its budget ${budget:.2f}",
                spend=cost.total,
            )
        return Decision(
            stack=record.name,
            action="keep",
            reason=f"spend ${cost.total:.2f} of ${budget:.2f}; expires {_when(record)}",
            spend=cost.total,
        )
    return Decision(stack=record.name, action="keep", reason=f"expires {_when(record)}")


def _when(record: StackRecord) -> str:
    return f"{record.expires_at:%Y-%m-%d %H:%M:%SZ}" if record.expires_at else "never"


def reap(
    registry: StateRegistry | None = None,
    dry_run: bool = False,
    log: Log | None = None,
    usage: Fetch | None = None,
) -> ReapResult:
    """Decide for every stack; destroy (drain -> destroy -> sweep) those due, one at a time."""
    from provisioner.teardown import teardown

    registry = registry or StateRegistry()
    at = clock()
    logfile = registry.home / "logs" / "reaper.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        with logfile.open("a", encoding="utf-8") as fh:
            fh.write(f"{now():%Y-%m-%dT%H:%M:%SZ} {line}\n")
        if log:
            log(line)

    result = ReapResult(at=at, dry_run=dry_run)
    (registry.home / "locks").mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(registry.home / "locks" / "reaper.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        result.locked = True
        say("another reaper is running (locks/reaper.lock is held): nothing done")
        return result
    try:
        say(f"reap at {at:%Y-%m-%dT%H:%M:%SZ}{' (dry run)' if dry_run else ''}")
        for record in registry.list():
            decision = decide(record, registry, at, usage)
            result.decisions.append(decision)
            if decision.action == "skip" and decision.reason == "already destroyed":
                continue
            verb = "would destroy" if dry_run and decision.action == "destroy" else decision.action
            say(f"{record.name}: {verb}: {decision.reason}")
            if decision.action != "destroy" or dry_run:
                continue
            try:
                report = teardown(record.name, registry)
            except StackLocked:
                say(f"{record.name}: skip: an up or down started meanwhile")
                continue
            except (MlstackError, OSError) as exc:
                result.failed.append(record.name)
                say(f"{record.name}: destroy failed: {str(exc).splitlines()[0]}")
                continue
            fresh = registry.get(record.name)
            if fresh is not None:
                fresh.log("reap", f"reaped: {decision.reason}")
                registry.save(fresh)
            result.destroyed.append(record.name)
            say(
                f"{record.name}: destroyed ({len(report.drained)} drained,"
                f" {len(report.destroyed)} destroyed, {len(report.leftovers)} left;"
                f" estimated total spend ${report.total_spend:.2f})"
            )
    finally:
        lock.release()
    return result
