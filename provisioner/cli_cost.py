"""Cost commands: ``cost``, ``extend``, ``reap``, ``prices refresh``; and the cost parts of
``plan`` and ``down``. Imported by the CLI; heavy modules load inside the commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from provisioner.cost.estimate import CostEstimate
    from provisioner.engines.base import PlanResult
    from provisioner.teardown import TeardownReport
    from stacks.spec import StackSpec


def plan_estimate(result: PlanResult, spec: StackSpec) -> CostEstimate:
    from provisioner.cost.estimate import estimate_plan

    return estimate_plan(result, spec)


def print_plan_cost(out: Console, est: CostEstimate) -> None:
    """Per component standing cost, per-use prices, and what is unpriced."""
    from rich.table import Table

    from provisioner.cost.estimate import money

    table = Table(title="standing cost (on-demand list prices)", box=None, title_justify="left")
    for col in ("component", "$/hour", "$/month"):
        table.add_column(col, justify="right" if col != "component" else "left")
    for name, sub in est.components.items():
        table.add_row(name, money(sub.per_hour), money(sub.per_month))
    table.add_row("[bold]total[/]", money(est.per_hour), money(est.per_month))
    out.print(table)
    if est.per_use:
        use = Table(title="per-use prices (billed only when used)", box=None, title_justify="left")
        for col in ("component", "resource", "price", "unit", "note"):
            use.add_column(col)
        for u in est.per_use:
            use.add_row(u.component, u.resource, money(u.unit_price), u.unit, u.note)
        out.print(use)
    for line in est.unpriced:
        out.print(f"[yellow]unpriced[/]: {line}")
    region = est.region or "?"
    out.print(
        f"Standing cost in {region}: {money(est.per_hour)}/hour, {money(est.per_month)}/month"
        f" ({est.hours_per_month:.0f} h){' plus unpriced items' if est.unpriced else ''}."
    )


def resource_cost_cells(est: CostEstimate) -> dict[str, tuple[str, str]]:
    """component/resource -> ($/hour, $/month) cells for the plan table."""
    from provisioner.cost.estimate import money

    cells: dict[str, tuple[str, str]] = {}
    for res in est.resources:
        key = f"{res.component}/{res.resource}"
        cells[key] = (
            ("unpriced", "unpriced")
            if res.unpriced
            else (money(res.per_hour), money(res.per_month))
        )
    return cells


def print_teardown(report: TeardownReport) -> None:
    from provisioner.cost.estimate import money

    click.echo(f"stack {report.stack} destroyed in {report.seconds:.1f}s")
    click.echo(f"  drained:   {', '.join(map(str, report.drained)) or 'nothing'}")
    click.echo(f"  destroyed: {', '.join(i.name for i in report.destroyed) or 'nothing'}")
    if report.swept:
        click.echo(f"  swept:     {', '.join(map(str, report.swept))}")
    click.echo(f"  leftovers: {', '.join(map(str, report.leftovers)) or 'none'}")
    for item in report.kept:
        click.echo(f"  kept:      {item}")
    extra = " plus unpriced items" if report.spend_unpriced else ""
    click.echo(
        f"  estimated total spend: {money(report.total_spend)} over {report.hours:.2f} h{extra}"
    )


def runtime_usage(record: Any) -> Any:
    """The stack's deployments, and on a Batch stack its runs' steps, from its metadata server.

    The token comes from the stack's secrets backend and goes only into the request header.
    """
    import json
    import urllib.parse
    import urllib.request

    from provisioner import api
    from provisioner.cost.spend import RuntimeUsage
    from runner.secrets import resolve_token

    out = resolve_token(api.outputs(record.name))
    token = out.metadata.token.get_secret_value() if out.metadata.token else ""

    def get(path: str) -> Any:
        req = urllib.request.Request(f"{out.metadata.url}{path}")
        req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    stack = urllib.parse.quote(record.name)
    usage = RuntimeUsage(deployments=get(f"/deployments?stack={stack}"))
    if out.orchestrator.kind == "aws_batch":
        runs = get(f"/runs?stack={stack}&limit=1000")
        for run in runs:
            usage.steps += get(f"/runs/{urllib.parse.quote(run['id'])}")["steps"]
        if len(runs) == 1000:
            usage.notes.append("Batch job hours cover the newest 1000 runs only")
    return usage


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cost(name: str | None, as_json: bool) -> None:
    """Spend so far per stack and component (standing cost accrued, runtime usage added)."""
    from provisioner import api
    from provisioner.cost.estimate import money
    from provisioner.cost.reaper import clock
    from provisioner.cost.spend import spend
    from provisioner.render import print_json
    from provisioner.state import StateRegistry

    registry = StateRegistry()
    records = [api.record(name, registry)] if name else registry.list()
    at = clock()
    spends = [spend(r, registry, at=at, usage=runtime_usage) for r in records]
    if as_json:
        print_json([s.model_dump(mode="json") for s in spends])
        return
    if not spends:
        click.echo("no stacks")
        return
    for s in spends:
        budget = f" of budget {money(s.budget)}" if s.budget else ""
        click.echo(
            f"{s.stack}  {s.provider}  {s.status}  {money(s.total)}{budget} over {s.hours:.2f} h"
            f"  (standing {money(s.standing_per_hour)}/hour)"
        )
        for comp, amount in s.components.items():
            click.echo(f"  {comp}: {money(amount)}")
        for charge in s.runtime:
            click.echo(f"  {charge.resource}: {money(charge.amount)} ({charge.hours:.2f} h)")
        for line in s.unpriced:
            click.echo(f"  unpriced: {line}")
        for note in s.notes:
            click.echo(f"  note: {note}")


@click.command()
@click.argument("name")
@click.argument("duration")
def extend(name: str, duration: str) -> None:
    """Push a stack's expiry out by DURATION (30m, 2h, 1d)."""
    from provisioner.cli_report import report_stack
    from provisioner.cost.ttl import extend as do_extend

    record = do_extend(name, duration)
    assert record.expires_at is not None
    report_stack(name)
    click.echo(f"stack {name} now expires at {record.expires_at:%Y-%m-%d %H:%M:%SZ}")


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be destroyed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def reap(dry_run: bool, as_json: bool) -> None:
    """Destroy every stack past its TTL or over its budget. Safe from cron."""
    from provisioner.cost.reaper import reap as do_reap
    from provisioner.render import print_json

    result = do_reap(dry_run=dry_run, log=None if as_json else click.echo, usage=runtime_usage)
    if as_json:
        print_json(result.model_dump(mode="json"))
    if result.failed:
        raise SystemExit(1)


@click.group()
def prices() -> None:
    """The price catalog: show it, refresh it from the AWS Price List API."""


@prices.command("refresh")
def prices_refresh() -> None:
    """Fetch current prices (needs AWS credentials) into $MLSTACK_HOME/prices.json."""
    from provisioner.cost.refresh import refresh
    from stacks.common.errors import UsageError

    try:
        out = refresh()
    except Exception as exc:  # botocore's errors: no credentials, denied, no network
        if type(exc).__module__.startswith(("botocore", "boto3")):
            raise UsageError(
                f"prices refresh: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                "it needs AWS credentials allowed pricing:GetProducts; the packaged catalog"
                " stays in use",
            ) from None
        raise
    click.echo(f"refreshed {len(out['prices'])} prices into $MLSTACK_HOME/prices.json")


@prices.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def prices_show(as_json: bool) -> None:
    """Every price in the catalog: unit, per region, source and date."""
    from provisioner.cost.catalog import load
    from provisioner.render import print_json

    catalog = load()
    if as_json:
        print_json(catalog.model_dump(mode="json")["prices"])
        return
    for key, price in catalog.prices.items():
        regions = ", ".join(f"{r} ${v:g}" for r, v in price.regions.items())
        fresh = " (refreshed)" if key in catalog.refreshed else ""
        click.echo(f"{key}: per {price.unit}: {regions}; {price.source} {price.date}{fresh}")


COMMANDS = [cost, extend, reap, prices]
