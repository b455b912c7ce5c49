"""Standing and per-use cost of a plan's resources, from the price catalog.

Every planned resource becomes a :class:`ResourceCost`: priced (possibly $0: local processes,
VPCs, IAM roles) or *unpriced* with the reason. Standing items bill by the hour whether used
or not; per-use items (Batch vCPU-hours, endpoint hours, GB stored or ingested) are listed
apart with their unit price, since their amount depends on what runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from provisioner.cost.catalog import Catalog, Component, load

if TYPE_CHECKING:
    from provisioner.engines.base import PlannedChange, PlanResult
    from stacks.spec import StackSpec


class LineItem(BaseModel):
    """One price dimension of one resource: quantity x unit price."""

    price_key: str
    unit: str
    quantity: float
    unit_price: float | None = None  # None: unpriced
    per_hour: float | None = None  # standing items only
    per_month: float | None = None
    use: bool = False
    note: str = ""
    source: str = ""


class ResourceCost(BaseModel):
    component: str
    resource: str
    type: str
    items: list[LineItem] = Field(default_factory=list)
    unpriced: str = ""  # why it has no price ("" when priced)

    @property
    def priced(self) -> bool:
        return not self.unpriced

    @property
    def per_hour(self) -> float:
        return sum(i.per_hour or 0.0 for i in self.items if not i.use)

    @property
    def per_month(self) -> float:
        return sum(i.per_month or 0.0 for i in self.items if not i.use)


class UseItem(BaseModel):
    """A per-use price of a resource or runtime kind (what one unit of use costs)."""

    component: str
    resource: str
    price_key: str
    unit: str
    unit_price: float | None
    note: str = ""


class Subtotal(BaseModel):
    per_hour: float = 0.0
    per_month: float = 0.0


class CostEstimate(BaseModel):
    """The standing cost of a plan per resource and component, plus its per-use prices."""

    stack: str
    provider: str
    region: str
    currency: str = "USD"
    resources: list[ResourceCost]
    per_use: list[UseItem]
    per_hour: float
    per_month: float
    components: dict[str, Subtotal]
    unpriced: list[str]  # "component/resource (type): why"
    hours_per_month: float = 730

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for res, raw in zip(self.resources, data["resources"], strict=True):
            raw.update(per_hour=res.per_hour, per_month=res.per_month, priced=res.priced)
        return data


def _derived(change: PlannedChange, by_family: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Details plus the quantities prices need (vCPUs of a service's task, instances...)."""
    d = dict(change.details)
    if change.type == "aws:ecs/service:Service":
        family = str(d.get("task_definition", "")).rsplit("/", 1)[-1].split(":")[0]
        task = by_family.get(family, {})
        if "cpu_units" in task and "memory_mib" in task:
            d["vcpu"] = float(task["cpu_units"]) / 1024
            d["memory_gib"] = float(task["memory_mib"]) / 1024
        d["public_ips"] = 1 if d.get("public_ip") else 0
    elif change.type == "aws:rds/instance:Instance":
        d["instances"] = 2 if d.get("multi_az") else 1
    elif change.type == "aws:lb/loadBalancer:LoadBalancer":
        d["public_ips"] = 0 if d.get("internal") else 2
    return d


def line_item(comp: Component, details: dict[str, Any], catalog: Catalog, region: str) -> LineItem:
    try:
        key = comp.price.format(**details)
    except (KeyError, IndexError):
        key = comp.price
        return LineItem(price_key=key, unit="?", quantity=0, note=f"needs {comp.price}")
    qty = 1.0
    for factor in comp.qty:
        value = factor if isinstance(factor, int | float) else details.get(factor)
        if not isinstance(value, int | float):
            entry = catalog.prices.get(key)
            unit = entry.unit if entry else "?"
            return LineItem(price_key=key, unit=unit, quantity=0, note=f"{factor} unknown")
        qty *= float(value)
    entry = catalog.prices.get(key)
    unit_price = entry.in_region(region) if entry else None
    item = LineItem(
        price_key=key,
        unit=entry.unit if entry else "?",
        quantity=qty,
        unit_price=unit_price,
        use=comp.use,
        note=comp.note,
        source=entry.source if entry else "",
    )
    if unit_price is not None and not comp.use:
        if comp.monthly:
            item.per_month = unit_price * qty
            item.per_hour = item.per_month / catalog.hours_per_month
        else:
            item.per_hour = unit_price * qty
            item.per_month = item.per_hour * catalog.hours_per_month
    return item


def price_resource(
    change: PlannedChange, details: dict[str, Any], catalog: Catalog, region: str
) -> ResourceCost:
    """The cost of one planned resource; unpriced (with why) when any dimension lacks a price."""
    res = ResourceCost(component=change.component, resource=change.resource, type=change.type)
    comps = catalog.resources.get(change.type)
    if comps is None:
        res.unpriced = f"{change.type or 'this kind'} is not in the price catalog"
        return res
    if change.type == "aws:lb/loadBalancer:LoadBalancer" and details.get("lb_type") not in (
        None,
        "application",
    ):
        res.unpriced = f"load balancer type {details.get('lb_type')} is not in the catalog"
        return res
    for comp in comps:
        item = line_item(comp, details, catalog, region)
        res.items.append(item)
        if item.unit_price is None and not res.unpriced:
            why = item.note if item.unit == "?" or "unknown" in item.note else ""
            res.unpriced = why or f"no {region} price for {item.price_key}"
    return res


def _runtime_kinds(spec: StackSpec | None) -> list[tuple[str, str, dict[str, Any]]]:
    """Runtime resource kinds a stack creates as it is used: (component, kind, details)."""
    if spec is None:
        return []
    found: list[tuple[str, str, dict[str, Any]]] = []
    deployer = spec.components.deployer
    if deployer.flavor is not None and deployer.flavor.value == "sagemaker":
        found.append(
            (
                "deployer",
                "sagemaker_endpoint",
                {"instance_type": deployer.instance_type, "count": 1},
            )
        )
    return found


def estimate_plan(
    plan: PlanResult, spec: StackSpec | None = None, catalog: Catalog | None = None
) -> CostEstimate:
    """Standing cost per resource and component, per-use prices, unpriced resources named."""
    catalog = catalog or load()
    region = "local" if plan.provider == "local" else getattr(spec, "region", None) or ""
    if plan.provider == "kubernetes":
        region = "kubernetes"
    live = [c for c in plan.changes if c.action != "delete"]
    by_family = {
        str(c.details.get("family")): c.details
        for c in live
        if c.type == "aws:ecs/taskDefinition:TaskDefinition"
    }
    resources: list[ResourceCost] = []
    per_use: list[UseItem] = []
    for change in live:
        details = _derived(change, by_family)
        res = price_resource(change, details, catalog, region)
        resources.append(res)
        per_use += [
            UseItem(
                component=change.component,
                resource=change.resource,
                price_key=i.price_key,
                unit=i.unit,
                unit_price=i.unit_price,
                note=i.note,
            )
            for i in res.items
            if i.use
        ]
    for component, kind, details in _runtime_kinds(spec):
        for comp in catalog.runtime.get(kind, []):
            item = line_item(comp, details, catalog, region)
            per_use.append(
                UseItem(
                    component=component,
                    resource=kind,
                    price_key=item.price_key,
                    unit=item.unit,
                    unit_price=item.unit_price,
                    note=comp.note,
                )
            )
    components: dict[str, Subtotal] = {}
    for res in resources:
        sub = components.setdefault(res.component, Subtotal())
        sub.per_hour += res.per_hour
        sub.per_month += res.per_month
    return CostEstimate(
        stack=plan.stack,
        provider=plan.provider,
        region=region,
        resources=resources,
        per_use=per_use,
        per_hour=sum(r.per_hour for r in resources),
        per_month=sum(r.per_month for r in resources),
        components=components,
        unpriced=[
            f"{r.component}/{r.resource} ({r.type}): {r.unpriced}" for r in resources if r.unpriced
        ]
        + [
            f"{u.component}/{u.resource}: no {region} price for {u.price_key}"
            for u in per_use
            if u.unit_price is None
        ],
        hours_per_month=catalog.hours_per_month,
    )


def money(value: float | None) -> str:
    """$ with enough digits for small hourly figures; None prints as 'unpriced', never $0."""
    if value is None:
        return "unpriced"
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    if abs(value) < 0.0001:
        return f"${value:.6f}"
    text = f"{value:.4f}".rstrip("0")
    return "$" + (text + "0" if len(text.split(".")[1]) < 2 else text)
