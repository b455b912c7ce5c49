"""``mlstack sweep``: what still carries a stack's tag after ``down``; ``--delete`` removes it.

With ``--stack-id`` it needs no state file and no Pulumi state. Dry run by default; deleting
asks for the stack id to be typed, or ``--yes``. Only the exact stack-id tag value counts.
"""

from __future__ import annotations

import os
import re
import sys

import click

from stacks.common.errors import UsageError

STACK_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?-[a-z0-9]{6}$")


def _target(
    name: str | None, stack_id: str | None, provider: str | None, region: str | None
) -> tuple[str, str, str | None]:
    """(stack id, provider, region) from the state record or the options."""
    if bool(name) == bool(stack_id):
        raise UsageError("give a stack NAME or --stack-id ID (one of them)")
    if name:
        from provisioner import api

        rec = api.record(name)
        spec_region = getattr(rec.spec, "region", None)
        return rec.stack_id, provider or rec.provider, region or spec_region
    assert stack_id is not None
    if not STACK_ID.match(stack_id):
        raise UsageError(
            f"--stack-id {stack_id!r} is not a stack id",
            "a stack id is NAME-xxxxxx, as shown by `mlstack status` or the mlstack:stack-id tag",
        )
    return stack_id, provider or "aws", region


@click.command()
@click.argument("name", required=False)
@click.option("--stack-id", help="Sweep by stack id; needs no state (e.g. after it was lost).")
@click.option(
    "--provider", type=click.Choice(["aws", "local"]), help="With --stack-id (default aws)."
)
@click.option("--region", help="AWS region (default: the stack's, or AWS_REGION).")
@click.option("--delete", is_flag=True, help="Delete what is found, in dependency order.")
@click.option("--yes", "-y", is_flag=True, help="Delete without typing the stack id.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sweep(
    name: str | None,
    stack_id: str | None,
    provider: str | None,
    region: str | None,
    delete: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """List (or --delete) every resource still tagged with the stack's id."""
    from provisioner import sweep as sweeps

    sid, kind, region = _target(name, stack_id, provider, region)
    if delete and not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"refusing to delete the resources of {sid} without --yes (no terminal to ask)"
            )
        typed = click.prompt(f"Type the stack id {sid} to delete everything tagged with it")
        if typed.strip() != sid:
            raise UsageError(f"{typed.strip()!r} is not {sid}; nothing was deleted")
    if kind == "local":
        from provisioner.sweep.local import sweep_local

        result = sweep_local(sid, delete=delete)
    else:
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise UsageError("no AWS region for the sweep", "pass --region or set AWS_REGION")
        result = sweeps.sweep_aws(sid, region, delete=delete)
    if as_json:
        from provisioner.render import print_json

        print_json(result.model_dump(mode="json") | {"summary": result.summary()})
    else:
        for res in result.found:
            state = "deleted" if res.deleted else ("FAILED" if res.error else "found")
            line = f"  {state:8} {res.kind:28} {res.name}  ({res.region})"
            click.echo(line + (f": {res.error}" if res.error else ""))
        click.echo(result.summary())
    if result.errors:
        sys.exit(1)
