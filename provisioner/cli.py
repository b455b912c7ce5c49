"""The ``mlstack`` command: parse, call the library, render. Nothing heavy at import time.

Exit codes: 0 ok, 1 failure, 2 bad input. Errors print one line; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

import click

from stacks.common.errors import MlstackError, UsageError

SPEC = click.Path(path_type=Path, dir_okay=True, exists=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="mlstack")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Provision whole MLOps stacks from one spec file, run pipelines on them, tear them down."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("spec_file", type=SPEC)
@click.option(
    "--json", "as_json", is_flag=True, help="The whole spec, every default filled in, as JSON."
)
def validate(spec_file: Path, as_json: bool) -> None:
    """Check a stack spec: one line naming its flavors, or with --json the whole spec with
    every default filled in (passwords in URLs masked)."""
    from stacks.spec import load_spec

    spec = load_spec(spec_file)
    if as_json:
        from provisioner.render import print_json

        print_json({"file": str(spec_file), "valid": True, "spec": spec.redacted()})
        return
    flavors = ", ".join(
        f"{name}={getattr(spec.components, name).flavor.value}"
        for name in type(spec.components).model_fields
    )
    click.echo(f"{spec_file}: valid — stack {spec.name!r} on {spec.provider.value} ({flavors})")


@cli.command()
@click.argument("spec_file", type=SPEC)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan(spec_file: Path, as_json: bool) -> None:
    """Show what `up` would start, stop or change. Changes nothing."""
    from provisioner import api
    from provisioner.cli_cost import plan_estimate, print_plan_cost, resource_cost_cells
    from stacks.spec import load_spec

    spec = load_spec(spec_file)
    result = api.plan(spec)
    estimate = plan_estimate(result, spec)
    if as_json:
        from provisioner.render import print_json

        data = result.model_dump(mode="json") | {"summary": result.summary()}
        print_json(data | {"cost": estimate.public()})
        return
    from rich.table import Table

    from provisioner.render import console, styled

    cells = resource_cost_cells(estimate)
    table = Table(title=f"plan for stack {result.stack} ({result.provider})", box=None)
    for col in ("component", "resource", "action", "reason", "$/hour", "$/month", "settings"):
        table.add_column(col)
    for c in result.changes:
        settings = ", ".join(f"{k}={v}" for k, v in c.details.items() if k != "task_definition")
        hour, month = cells.get(f"{c.component}/{c.resource}", ("-", "-"))
        table.add_row(c.component, c.resource, styled(c.action), c.reason, hour, month, settings)
    out = console()
    out.print(table)
    for note in result.notes:
        out.print(f"note: {note}")
    print_plan_cost(out, estimate)
    out.print(f"Plan: {result.summary()}.")


@cli.command()
@click.argument("spec_file", type=SPEC)
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as JSON at the end.")
@click.option("--ttl", help="Lifetime (30m, 8h, 2d); overrides the spec's ttl.")
@click.option("--budget", type=float, help="Budget in USD; overrides the spec's budget.")
def up(spec_file: Path, as_json: bool, ttl: str | None, budget: float | None) -> None:
    """Create or converge a stack; live progress per service, then its outputs."""
    from provisioner import api
    from provisioner.cli_report import report_stack
    from provisioner.cost.ttl import with_lifetime
    from provisioner.render import LiveProgress, print_json
    from stacks.spec import load_spec

    spec = with_lifetime(load_spec(spec_file), ttl, budget)
    with LiveProgress(f"mlstack up {spec.name}") as progress:
        result = api.up(spec, progress=progress, spec_path=str(spec_file.resolve()))
    from provisioner.cli_runs import reap_quietly

    reap_quietly(spec.name)
    report_stack(spec.name, result.outputs)  # for the dashboard's stacks page
    if as_json:
        print_json(result.outputs.public())
        return
    if result.changed:
        click.echo(f"stack {spec.name} is up in {result.seconds:.1f}s: {', '.join(result.changed)}")
    else:
        click.echo(f"stack {spec.name} is up: no changes ({len(result.unchanged)} unchanged)")
    _print_outputs(result.outputs.public())


def _print_outputs(data: dict[str, Any]) -> None:
    for component, value in data.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items() if v not in (None, {}, []))
            click.echo(f"  {component}: {shown}")
        elif value is not None:
            click.echo(f"  {component}: {value}")


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Include destroyed stacks.")
def status(name: str | None, as_json: bool, show_all: bool) -> None:
    """Every stack (or one): provider, status, age, TTL, each service and its health."""
    from provisioner import api
    from provisioner.render import age, print_json, styled, ttl_left
    from provisioner.state import StateRegistry

    registry = StateRegistry()
    records = [api.record(name, registry)] if name else registry.list()
    if not name and not show_all:
        records = [r for r in records if r.status != "destroyed"]
    rows = []
    from provisioner.cli_runs import reap_quietly

    for rec in records:
        if rec.status == "up":
            reap_quietly(rec.name)
        services = api.status(rec, registry)
        rows.append((rec, services))
    if as_json:
        shown = [
            {
                "name": rec.name,
                "stack_id": rec.stack_id,
                "provider": rec.provider,
                "status": rec.status,
                "created_at": rec.created_at,
                "updated_at": rec.updated_at,
                "expires_at": rec.expires_at,
                "ttl": rec.ttl,
                "services": [s.model_dump(mode="json") for s in services],
                "events": [e.model_dump(mode="json") for e in rec.events[-10:]],
            }
            for rec, services in rows
        ]
        print_json(shown[0] if name else shown)  # one stack named: an object
        return
    if not rows:
        click.echo("no stacks; create one with `mlstack up SPEC_FILE`")
        return
    from rich.table import Table

    from provisioner.render import console

    out = console()
    for rec, services in rows:
        out.print(
            f"[bold]{rec.name}[/]  {rec.provider}  {styled(rec.status)}  age {age(rec.created_at)}"
            f"  ttl {ttl_left(rec.expires_at)}  id {rec.stack_id}"
        )
        if services:
            table = Table(box=None, pad_edge=False, show_header=True)
            for col in ("service", "state", "pid", "url", "detail"):
                table.add_column(col)
            for s in services:
                table.add_row(s.name, styled(s.state), str(s.pid or "-"), s.url or "-", s.detail)
            out.print(table)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--show-secrets", is_flag=True, help="Reveal secret outputs (metadata token).")
def outputs(name: str, as_json: bool, show_secrets: bool) -> None:
    """The stack's outputs: what runs and steps use to reach each component."""
    from provisioner import api
    from provisioner.render import print_json

    out = api.outputs(name)
    if show_secrets:
        from runner.secrets import resolve_token

        out = resolve_token(out)
    data = out.revealed() if show_secrets else out.public()
    if not show_secrets:
        data["metadata"]["token"] = "(secret: use --show-secrets)"
    if as_json:
        print_json(data)
    else:
        _print_outputs(data)


@cli.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the teardown report as JSON.")
@click.option("--force", is_flag=True, help="Cancel the stack's active runs first.")
def down(name: str, yes: bool, as_json: bool, force: bool) -> None:
    """Drain, destroy, sweep; end with the teardown report. The record stays, destroyed.

    Refuses while runs are active on the stack, unless --force: that cancels them and waits
    for their steps to stop before tearing anything down.
    """
    from provisioner import api
    from provisioner.cli_cost import print_teardown
    from provisioner.render import LiveProgress, print_json
    from provisioner.teardown import teardown

    rec = api.record(name)  # a clear error for an unknown name before asking anything
    if rec.status != "destroyed" and rec.outputs:
        from provisioner.cli_runs import reap_quietly

        reap_quietly(name)  # a killed driver's run: failed, its MLflow run ended, first
    outputs, active = (
        _active_runs(name) if rec.status != "destroyed" and rec.outputs else (None, [])
    )
    if active and not force:
        from runner.active_runs import RunsActive, describe

        word = "runs are" if len(active) > 1 else "run is"
        raise RunsActive(
            f"{len(active)} {word} active on stack {name!r}: {describe(active)}",
            "wait for them, or `mlstack down --force` to cancel them first",
        )
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to destroy {name!r} without --yes (no terminal to ask)")
        click.confirm(f"Destroy stack {name!r} and all its data?", abort=True)
    if active:
        from runner.active_runs import CANCEL_TIMEOUT_SECONDS, cancel_runs, describe, is_remote

        assert outputs is not None  # found active runs through them
        for run, stopped in cancel_runs(outputs, active):
            if stopped:
                click.echo(f"cancelled {describe([run])}", err=True)
                continue
            what = "tearing down anyway" if is_remote(run) else "killed its driver"
            click.echo(
                f"warning: {describe([run])} did not stop within "
                f"{CANCEL_TIMEOUT_SECONDS:g} s of being cancelled: {what}",
                err=True,
            )
    with LiveProgress(f"mlstack down {name}") as progress:
        report = teardown(name, progress=progress)
    if as_json:
        print_json(report.model_dump(mode="json") | {"ok": report.ok})
    else:
        print_teardown(report)
    if not report.ok:
        raise SystemExit(1)


def _active_runs(name: str) -> tuple[Any, list[Any]]:
    """The stack's outputs (token resolved) and active runs; no runs (with a warning) if its
    metadata server cannot say."""
    from provisioner import api
    from runner.active_runs import active_runs
    from runner.secrets import resolve_token

    try:
        outputs = resolve_token(api.outputs(name))
        return outputs, active_runs(outputs)
    except MlstackError as exc:
        click.echo(f"warning: cannot ask stack {name!r} for active runs: {exc}", err=True)
        return None, []


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the stack spec (for editor completion and checks)."""
    import json

    from stacks.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


from provisioner.cli_secrets import secret  # noqa: E402 - registers the group below

cli.add_command(secret)

from provisioner.cli_cloud import recover, refresh  # noqa: E402 - refresh/recover of cloud stacks

cli.add_command(refresh)
cli.add_command(recover)

from provisioner.cli_sweep import sweep  # noqa: E402 - stack-scoped leak sweep

cli.add_command(sweep)

from provisioner.cli_logs import COMMANDS as LOG_COMMANDS  # noqa: E402
from provisioner.cli_runs import COMMANDS as RUN_COMMANDS  # noqa: E402

for _command in RUN_COMMANDS + LOG_COMMANDS:
    cli.add_command(_command)

from provisioner.cli_cost import COMMANDS as COST_COMMANDS  # noqa: E402

for _command in COST_COMMANDS:
    cli.add_command(_command)

from provisioner.cli_images import COMMANDS as IMAGE_COMMANDS  # noqa: E402

for _command in IMAGE_COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clean line per error, tracebacks only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="mlstack", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        code, line = _describe(exc)
        click.echo(f"error: {line}", err=True)
        sys.exit(code)
    sys.exit(0)


def _describe(exc: Exception) -> tuple[int, str]:
    """Exit code and one line for any error (every mlstack error is an MlstackError)."""
    if isinstance(exc, MlstackError):
        code = int(getattr(exc, "exit_code", 1))
        return code, " ".join(str(exc).split("\n")[0:1]) + _tail(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # a write no layer named
        where = f" holding {exc.filename}" if exc.filename else ""
        return 1, f"no space left on the device{where} (free some space and run it again)"
    return 1, f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"


def _tail(exc: Exception) -> str:
    """Multi-line headlines (log tails) print after the first line, indented."""
    lines = str(exc).split("\n")
    return "" if len(lines) == 1 else "\n" + "\n".join("  " + ln for ln in lines[1:])
