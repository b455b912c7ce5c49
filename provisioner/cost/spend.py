"""Spend so far: standing cost accrued over the stack's life plus runtime usage.

The standing rate comes from the same estimate as ``plan`` (the stack's recorded spec, planned
offline), cached per stack id and spec hash under ``$MLSTACK_HOME/cost/`` so the reaper does not
re-run a Pulumi mock program every minute. Runtime usage (endpoints created by runs) comes from
the stack's metadata server while the stack is up and reachable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from provisioner.cost.catalog import load
from provisioner.cost.estimate import CostEstimate, estimate_plan, line_item
from provisioner.state import StackRecord, StateRegistry, now

# record -> the stack's deployments as the metadata server lists them (the CLI passes one:
# the provisioner never imports the runner, which resolves the token).
Fetch = Callable[[StackRecord], list[dict[str, Any]]]


class RuntimeCharge(BaseModel):
    """A resource created at run time (an endpoint): its hours and what they cost."""

    component: str
    resource: str
    kind: str
    hours: float
    unit_price: float | None
    amount: float | None
    note: str = ""


class StackSpend(BaseModel):
    """What a stack has cost from creation until now (or until it was destroyed)."""

    stack: str
    stack_id: str
    provider: str
    status: str
    start: datetime
    end: datetime
    hours: float
    standing_per_hour: float
    standing: float
    components: dict[str, float] = Field(default_factory=dict)
    runtime: list[RuntimeCharge] = Field(default_factory=list)
    total: float
    unpriced: list[str] = Field(default_factory=list)
    budget: float | None = None
    expires_at: datetime | None = None
    notes: list[str] = Field(default_factory=list)


def record_estimate(record: StackRecord, registry: StateRegistry) -> CostEstimate | None:
    """The standing-cost estimate of the record's spec (cached); None if it cannot be planned."""
    folder = registry.home / "cost"
    path = folder / f"{record.stack_id}-{record.spec_hash}.json"
    try:
        return CostEstimate.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    from provisioner.engines import get_engine
    from stacks.common.errors import MlstackError

    spec = record.spec
    try:
        plan = get_engine(record.provider, registry).plan(spec)
    except (MlstackError, ValueError, ImportError):
        return None
    estimate = estimate_plan(plan, spec)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(estimate.model_dump_json(), encoding="utf-8")
    return estimate


def ended_at(record: StackRecord) -> datetime | None:
    """When a destroyed stack was destroyed (its last ``destroyed`` event)."""
    if record.status != "destroyed":
        return None
    for event in reversed(record.events):
        if event.kind == "down" and event.message == "destroyed":
            return event.at
    return record.updated_at


def spend(
    record: StackRecord,
    registry: StateRegistry | None = None,
    at: datetime | None = None,
    runtime: bool = True,
    deployments: Fetch | None = None,
) -> StackSpend:
    """Standing cost over the stack's lifetime plus the runtime usage known so far."""
    registry = registry or StateRegistry()
    end = ended_at(record) or at or now()
    hours = max((end - record.created_at).total_seconds(), 0.0) / 3600
    estimate = record_estimate(record, registry)
    budget = record.spec.budget
    result = StackSpend(
        stack=record.name,
        stack_id=record.stack_id,
        provider=record.provider,
        status=record.status,
        start=record.created_at,
        end=end,
        hours=hours,
        standing_per_hour=estimate.per_hour if estimate else 0.0,
        standing=(estimate.per_hour if estimate else 0.0) * hours,
        total=0.0,
        budget=float(budget) if isinstance(budget, int | float) else None,
        expires_at=record.expires_at,
    )
    if estimate is None:
        result.unpriced.append("the whole stack: its recorded spec could not be planned here")
    else:
        result.components = {n: s.per_hour * hours for n, s in estimate.components.items()}
        result.unpriced += estimate.unpriced
    if runtime and record.status != "destroyed":
        charges, notes = runtime_charges(record, end, deployments)
        result.runtime, result.notes = charges, notes
        result.unpriced += [
            f"{c.component}/{c.resource}: {c.note}" for c in charges if c.amount is None
        ]
    result.total = result.standing + sum(c.amount or 0.0 for c in result.runtime)
    return result


def runtime_charges(
    record: StackRecord, at: datetime, fetch: Fetch | None
) -> tuple[list[RuntimeCharge], list[str]]:
    """Endpoint hours from the metadata server (``fetch``), priced from the catalog."""
    if fetch is None:
        return [], ["runtime usage not asked for (no metadata client given)"]
    try:
        deployments = fetch(record)
    except Exception as exc:  # unreachable from here: say so, never guess
        return [], [f"runtime usage unknown: metadata server not reachable ({type(exc).__name__})"]
    catalog = load()
    region = getattr(record.spec, "region", None) or ("local" if record.provider == "local" else "")
    deployer = record.outputs.deployer.kind if record.outputs else record.provider
    default_type = getattr(record.spec.components.deployer, "instance_type", None)
    charges: list[RuntimeCharge] = []
    for dep in deployments:
        kind = "sagemaker_endpoint" if deployer == "sagemaker" else "local_endpoint"
        created = datetime.fromisoformat(dep["created_at"])
        live = dep["status"] in ("starting", "running")
        until = at if live else datetime.fromisoformat(dep["updated_at"])
        if created.tzinfo is None:
            created = created.replace(tzinfo=at.tzinfo)
        if until.tzinfo is None:
            until = until.replace(tzinfo=at.tzinfo)
        hours = max((until - created).total_seconds(), 0.0) / 3600
        details = {"instance_type": dep["details"].get("instance_type", default_type), "count": 1}
        amount: float | None = 0.0
        unit_price: float | None = 0.0
        note = ""
        for comp in catalog.runtime.get(kind, []):
            item = line_item(comp, details, catalog, region)
            if item.unit_price is None or amount is None:
                amount, unit_price, note = None, None, f"no {region} price for {item.price_key}"
                continue
            unit_price = (unit_price or 0.0) + item.unit_price * item.quantity
            amount += item.unit_price * item.quantity * hours
        charges.append(
            RuntimeCharge(
                component="deployer",
                resource=f"endpoint {dep['name']}",
                kind=kind,
                hours=hours,
                unit_price=unit_price,
                amount=amount,
                note=note,
            )
        )
    return charges, []
