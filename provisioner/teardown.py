"""The teardown report ``down`` ends with: drained, destroyed, swept, leftovers, total spend.

Engines plug in through two hooks on :class:`~provisioner.engines.base.Engine`: ``_drain``
(runtime resources recorded against the stack, removed before anything else) and
``_leftovers`` (what is still there after destroy). A provider's sweep (resources still
carrying the stack-id tag) plugs in through :data:`SWEEPERS`, called after destroy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from provisioner.state import StackRecord, StateRegistry
    from stacks.common.progress import Progress


class TeardownItem(BaseModel):
    """One thing ``down`` drained, destroyed, swept or could not remove."""

    kind: str  # endpoint, container, image, service, folder, or a cloud type token
    name: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" ({self.detail})" if self.detail else "")


class TeardownReport(BaseModel):
    """Everything ``down`` did to one stack, and what the stack cost over its life."""

    stack: str
    stack_id: str
    provider: str
    drained: list[TeardownItem] = Field(default_factory=list)
    destroyed: list[TeardownItem] = Field(default_factory=list)
    swept: list[TeardownItem] = Field(default_factory=list)
    leftovers: list[TeardownItem] = Field(default_factory=list)
    kept: list[str] = Field(default_factory=list)
    total_spend: float = 0.0
    spend_unpriced: list[str] = Field(default_factory=list)
    hours: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.leftovers


Sweeper = Callable[["StackRecord"], tuple[list[TeardownItem], list[TeardownItem]]]
# provider -> "module:function(record) -> (swept, leftovers)", imported only when used.
SWEEPERS: dict[str, str] = {"aws": "provisioner.sweep.aws_drain:sweep_after_destroy"}


def _sweeper(provider: str) -> Sweeper | None:
    target = SWEEPERS.get(provider)
    if target is None:
        return None
    module, _, name = target.partition(":")
    fn: Sweeper = getattr(importlib.import_module(module), name)
    return fn


def teardown(
    name: str, registry: StateRegistry | None = None, progress: Progress | None = None
) -> TeardownReport:
    """Drain, destroy, sweep; then the report with the stack's estimated total spend."""
    from provisioner import api
    from provisioner.cost.spend import spend
    from provisioner.state import StateRegistry

    registry = registry or StateRegistry()
    result = api.down(name, registry=registry, progress=progress)
    record = api.record(name, registry)
    report = TeardownReport(
        stack=name,
        stack_id=record.stack_id,
        provider=record.provider,
        drained=result.drained,
        destroyed=[TeardownItem(kind="resource", name=n) for n in result.stopped],
        leftovers=result.leftovers,
        kept=result.kept,
        seconds=result.seconds,
    )
    sweeper = _sweeper(record.provider)
    if sweeper is not None:
        swept, left = sweeper(record)
        report.swept, report.leftovers = swept, report.leftovers + left
    cost = spend(record, registry, runtime=False)
    report.total_spend, report.hours = cost.total, cost.hours
    report.spend_unpriced = cost.unpriced
    return report
