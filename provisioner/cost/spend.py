"""Spend so far: standing cost accrued over the stack's life plus runtime usage.

The standing rate comes from the same estimate as ``plan`` (the stack's recorded spec, planned
offline), cached per stack id and spec hash under ``$MLSTACK_HOME/cost/`` so the reaper does not
re-run a Pulumi mock program every minute. Runtime usage comes from the stack's metadata
server while the stack is up and reachable from here: endpoint hours from its deployments and,
on a Batch stack, job vCPU-hours and GB-hours from its runs' steps (each step that ran is a
Fargate job from its start to its end, billed at the Fargate size its ``resources`` round
up to, or the Batch default, plus its public IPv4 address).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from provisioner.cost.catalog import load
from provisioner.cost.estimate import CostEstimate, estimate_plan, line_item
from provisioner.state import StackRecord, StateRegistry, now
from stacks.common.constants import BATCH_DEFAULT_MEMORY_GIB, BATCH_DEFAULT_VCPU
from stacks.spec.aws import fargate_fit


@dataclass
class RuntimeUsage:
    """What a stack's metadata server knows of its runtime usage, as its API lists it."""

    deployments: list[dict[str, Any]] = field(default_factory=list)  # GET /deployments?stack=
    steps: list[dict[str, Any]] = field(default_factory=list)  # the steps of GET /runs/{id}
    notes: list[str] = field(default_factory=list)


# record -> its runtime usage (the CLI passes one: the provisioner never imports the runner,
# which resolves the token).
Fetch = Callable[[StackRecord], RuntimeUsage]


class RuntimeCharge(BaseModel):
    """Resources created at run time (an endpoint, a run's Batch jobs): hours and cost."""

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
    usage: Fetch | None = None,
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
        charges, notes = runtime_charges(record, end, usage)
        result.runtime, result.notes = charges, notes
        result.unpriced += [
            f"{c.component}/{c.resource}: {c.note}" for c in charges if c.amount is None
        ]
    result.total = result.standing + sum(c.amount or 0.0 for c in result.runtime)
    return result


def runtime_charges(
    record: StackRecord, at: datetime, fetch: Fetch | None
) -> tuple[list[RuntimeCharge], list[str]]:
    """Endpoint hours and Batch job hours from the metadata server (``fetch``), priced."""
    if fetch is None:
        return [], ["runtime usage not asked for (no metadata client given)"]
    try:
        usage = fetch(record)
    except Exception as exc:  # unreachable from here: say so, never guess
        return [], [f"runtime usage unknown: metadata server not reachable ({type(exc).__name__})"]
    region = getattr(record.spec, "region", None) or ("local" if record.provider == "local" else "")
    deployer = record.outputs.deployer.kind if record.outputs else record.provider
    default_type = getattr(record.spec.components.deployer, "instance_type", None)
    charges: list[RuntimeCharge] = []
    for dep in usage.deployments:
        kind = "sagemaker_endpoint" if deployer == "sagemaker" else "local_endpoint"
        live = dep["status"] in ("starting", "running")
        hours = _hours(dep["created_at"], None if live else dep["updated_at"], at)
        details = {"instance_type": dep["details"].get("instance_type", default_type), "count": 1}
        charges.append(_charge("deployer", f"endpoint {dep['name']}", kind, details, hours, region))
    if record.outputs and record.outputs.orchestrator.kind == "aws_batch":
        charges += _batch_jobs(usage.steps, at, region)
    return charges, list(usage.notes)


def _hours(start: str, end: str | None, at: datetime) -> float:
    """Hours from ``start`` to ``end`` (ISO times; naive ones in ``at``'s zone), or to ``at``."""
    began = datetime.fromisoformat(start)
    until = datetime.fromisoformat(end) if end else at
    began = began if began.tzinfo else began.replace(tzinfo=at.tzinfo)
    until = until if until.tzinfo else until.replace(tzinfo=at.tzinfo)
    return max((until - began).total_seconds(), 0.0) / 3600


def _charge(
    component: str, resource: str, kind: str, details: dict[str, Any], hours: float, region: str
) -> RuntimeCharge:
    """``hours`` of one runtime resource of ``kind`` priced from the catalog's runtime table."""
    catalog = load()
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
    return RuntimeCharge(
        component=component,
        resource=resource,
        kind=kind,
        hours=hours,
        unit_price=unit_price,
        amount=amount,
        note=note,
    )


def _batch_jobs(steps: list[dict[str, Any]], at: datetime, region: str) -> list[RuntimeCharge]:
    """One charge per run: the Fargate jobs of its steps that ran (cached steps ran none)."""
    per_run: dict[str, list[RuntimeCharge]] = {}
    for step in steps:
        if not step.get("started_at") or step.get("status") == "cached":
            continue
        # The driver records a step's resources among its run settings (runner/driver.py).
        resources = ((step.get("spec") or {}).get("settings") or {}).get("resources") or {}
        cpu, memory = resources.get("cpu"), resources.get("memory_gib")
        # Billed as the Fargate size it ran as: the request rounded up (2 vCPU needs 4 GiB).
        vcpu, gib = fargate_fit(cpu, memory) or (
            cpu or BATCH_DEFAULT_VCPU,
            memory or BATCH_DEFAULT_MEMORY_GIB,
        )
        details = {"vcpu": vcpu, "memory_gib": gib}
        hours = _hours(step["started_at"], step.get("ended_at"), at)
        job = _charge("orchestrator", step["name"], "batch_job", details, hours, region)
        per_run.setdefault(step["run_id"], []).append(job)
    charges = []
    for run_id, jobs in per_run.items():
        priced = all(j.amount is not None for j in jobs)
        hours = sum(j.hours for j in jobs)
        amount = sum(j.amount or 0.0 for j in jobs) if priced else None
        charges.append(
            RuntimeCharge(
                component="orchestrator",
                resource=f"batch jobs of run {run_id} ({len(jobs)} steps)",
                kind="batch_job",
                hours=hours,
                unit_price=(amount / hours if hours else 0.0) if amount is not None else None,
                amount=amount,
                note="" if priced else next(j.note for j in jobs if j.amount is None),
            )
        )
    return charges
