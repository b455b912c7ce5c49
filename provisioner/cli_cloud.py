"""``mlstack refresh`` and ``mlstack recover``: drift and crash recovery for cloud stacks.

Both run the Pulumi CLI (through the Automation API); without it they stop with one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from stacks.common.errors import UsageError

if TYPE_CHECKING:
    from provisioner.engines.pulumi import DriftReport, PulumiEngine
    from stacks.common.progress import Progress

CLOUD = ("aws", "kubernetes")


def _engine(name: str, progress: Progress) -> PulumiEngine:
    from provisioner import api
    from provisioner.engines import get_engine
    from provisioner.engines.pulumi import PulumiEngine
    from provisioner.state import StateRegistry

    registry = StateRegistry()
    record = api.record(name, registry)
    if record.provider not in CLOUD:
        raise UsageError(
            f"stack {name!r} is a {record.provider} stack; refresh applies to"
            " aws and kubernetes stacks",
            "a local stack converges with `mlstack up`",
        )
    engine = get_engine(record.provider, registry, progress)
    assert isinstance(engine, PulumiEngine)
    return engine


def _local_recover(name: str, as_json: bool) -> bool:
    """Recover a local stack; False when ``name`` is a cloud stack."""
    from provisioner.engines.local import LocalEngine
    from provisioner.render import LiveProgress
    from provisioner.state import StateRegistry
    from stacks.common.errors import StateError

    registry = StateRegistry()
    try:
        record = registry.get(name)
    except StateError:
        record = None
    if record is not None and record.provider != "local":
        return False
    engine = LocalEngine(registry)
    if record is None and not engine.stack_dir(name).is_dir():
        raise UsageError(f"no stack named {name!r}", "see `mlstack status` for known stacks")
    with LiveProgress(f"mlstack recover {name}") as progress:
        engine.progress = progress
        stopped = engine.recover(name)
    if as_json:
        from provisioner.render import print_json

        print_json({"stack": name, "stopped_pids": stopped})
    else:
        kept = "" if record else "; its data is kept: `mlstack up SPEC` starts it again"
        click.echo(f"stack {name}: stopped {len(stopped)} daemon process(es) no record owns{kept}")
    return True


def _report(report: DriftReport, as_json: bool) -> None:
    if as_json:
        from provisioner.render import print_json

        print_json(report.model_dump(mode="json"))
        return
    checked = sum(report.changes.values())
    if report.drifted:
        click.echo(
            f"stack {report.stack}: {len(report.drifted)} of {checked} resources drifted:"
            f" {', '.join(report.drifted)}"
        )
        click.echo("  the state now records what is there; `mlstack up SPEC` converges it back")
    else:
        click.echo(f"stack {report.stack}: no drift ({checked} resources checked)")


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def refresh(name: str, as_json: bool) -> None:
    """Compare a cloud stack with what really exists (drift made outside mlstack)."""
    from provisioner.render import LiveProgress

    with LiveProgress(f"mlstack refresh {name}") as progress:
        report = _engine(name, progress).refresh(name)
    _report(report, as_json)


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def recover(name: str, as_json: bool) -> None:
    """After a crash: clear a stale lock and pending operations, then refresh.

    A local stack (also one whose state.json is corrupted or lost): stop its daemons that
    no record owns, found from its folder alone.
    """
    from provisioner.render import LiveProgress

    if _local_recover(name, as_json):
        return
    with LiveProgress(f"mlstack recover {name}") as progress:
        report = _engine(name, progress).recover(name)
    if not as_json:
        lock = "cleared a stale lock" if report.lock_cleared else "no stale lock"
        pending = ", ".join(report.pending_cleared) or "none"
        click.echo(f"stack {name}: {lock}; pending operations cleared: {pending}")
        if report.pending_cleared:
            click.echo(
                "  interrupted creates may have left resources behind; they carry the tag"
                " mlstack:stack-id, so `mlstack up SPEC` or `mlstack down` finds what is tracked"
            )
    _report(report, as_json)
