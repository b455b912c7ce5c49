"""``mlstack run``, ``runs``, ``run-show``, ``deployments``, ``undeploy``, ``ui``.

The one place that joins provisioner (which stack, its outputs and token) and runner (the
pipeline). Everything heavy is imported inside the commands.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from provisioner.cli_logs import RUN_STACK_OPTION, find_run
from stacks.common.errors import UsageError

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient
    from stacks.outputs import StackOutputs

STACK_OPTION = click.option(
    "--stack",
    "stack",
    default=None,
    help="Stack to use (default: $MLSTACK_STACK or the only one up).",
)


def resolve_stack(name: str | None) -> str:
    """The stack a command acts on: explicit, from $MLSTACK_STACK, or the only one up."""
    name = name or os.environ.get("MLSTACK_STACK")
    if name:
        return name
    from provisioner.state import StateRegistry

    live = [r.name for r in StateRegistry().list() if r.status != "destroyed"]
    if len(live) == 1:
        return live[0]
    if not live:
        raise UsageError("no stack is up", "run `mlstack up SPEC_FILE` first")
    raise UsageError(f"several stacks are up ({', '.join(live)})", "choose one with --stack")


def stack_outputs(name: str | None) -> StackOutputs:
    from provisioner import api
    from runner.secrets import resolve_token

    return resolve_token(api.outputs(resolve_stack(name)))


def reap(outputs: StackOutputs, client: MetadataClient) -> list[str]:
    from runner.reaping import reap as reap_runs

    return reap_runs(outputs, client)


def reap_quietly(name: str) -> None:
    """Finish what killed drivers left on stack ``name`` (best effort: never fails a command
    that only touches the stack, such as ``status``, ``up`` or ``down``)."""
    try:
        outputs = stack_outputs(name)
        with metadata_client(outputs, timeout=3.0) as client:  # a wedged server: no hang
            reap(outputs, client)
    except Exception:  # a stack that is down or unreachable has nothing to reap
        return


def metadata_client(outputs: StackOutputs, timeout: float = 10.0) -> MetadataClient:
    from runner.metadata.client import MetadataClient

    token = outputs.metadata.token
    assert token is not None
    return MetadataClient(
        outputs.metadata.url,
        token.get_secret_value(),
        timeout=timeout,
        ca_pem=outputs.metadata.ca_pem,
    )


@click.command()
@click.argument("pipeline_ref", metavar="FILE.py:PIPELINE")
@STACK_OPTION
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter.")
@click.option("--no-cache", is_flag=True, help="Run every step even if a cached result exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's result as JSON.")
@click.option("--fail-fast", is_flag=True, default=None, help="Stop running steps when one fails.")
@click.option(
    "--logs/--no-logs",
    "live_logs",
    default=None,
    help="Show running steps' output live (default: on a terminal, while one step runs).",
)
def run(
    pipeline_ref: str,
    stack: str | None,
    params: tuple[str, ...],
    no_cache: bool,
    as_json: bool,
    fail_fast: bool | None,
    live_logs: bool | None,
) -> None:
    """Run a pipeline on a stack, with live progress per step.

    Exit codes: 0 completed, 1 a step failed, 2 bad input, 130 cancelled.
    """
    from provisioner.render import LiveProgress, print_json
    from runner.driver import run as run_pipeline
    from runner.loader import load_pipeline, parse_params

    pipeline = load_pipeline(pipeline_ref)
    typed = pipeline.compile(parse_params(params)).params  # bad parameters: exit 2, nothing ran
    outputs = stack_outputs(stack)
    title = f"mlstack run {pipeline.name} on {outputs.stack}"
    with LiveProgress(title, logs=live_logs) as progress:
        result = run_pipeline(pipeline, outputs, params=typed, no_cache=no_cache,
                              progress=progress, fail_fast=fail_fast or None)  # fmt: skip
    cached = sum(1 for s in result.steps.values() if s.cached)
    if as_json:
        print_json(_result_json(result))
    else:
        click.echo(
            f"run {result.run_id} {result.status} in {result.seconds:.2f}s"
            f" ({len(result.steps)} steps, {cached} cached)"
        )
    result.raise_for_status()


def _result_json(result: Any) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "pipeline": result.pipeline,
        "status": result.status,
        "seconds": result.seconds,
        "tracker_run_id": result.tracker_run_id,
        "steps": {
            name: {
                "status": s.status,
                "seconds": s.seconds,
                "error": s.error,
                "attempts": s.attempts,
                "outputs": {k: a.model_dump(mode="json") for k, a in s.outputs.items()},
            }
            for name, s in result.steps.items()
        },
    }


def _seconds(start: Any, end: Any) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _duration(start: Any, end: Any) -> str:
    seconds = _seconds(start, end)
    return "-" if seconds is None else f"{seconds:.2f}s"


@click.command()
@STACK_OPTION
@click.option("--limit", default=20, show_default=True, help="How many runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(stack: str | None, limit: int, as_json: bool) -> None:
    """Recent runs: status, duration, cached steps."""
    from provisioner.render import print_json

    outputs = stack_outputs(stack)
    with metadata_client(outputs) as client:
        reap(outputs, client)  # a run whose driver died is failed, not running
        found = client.list_runs(stack=outputs.stack, limit=limit)
        details = [client.get_run(r.id) for r in found]
    rows: list[dict[str, Any]] = []
    for d in details:
        cached = sum(1 for s in d.steps if s.status == "cached")
        rows.append(
            {
                "run_id": d.id,
                "pipeline": d.pipeline,
                "status": d.status.value,
                "created_at": d.created_at,
                "started_at": d.started_at,
                "ended_at": d.ended_at,
                "duration_seconds": _seconds(d.started_at, d.ended_at),
                "steps": len(d.steps),
                "cached": cached,
                "error": d.error,
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"no runs on stack {outputs.stack} yet")
        return
    from rich.table import Table

    from provisioner.render import console, styled

    table = Table(box=None, pad_edge=False)
    for col in ("run", "pipeline", "status", "started", "duration", "steps", "cached"):
        table.add_column(col)
    for r in rows:
        duration = "-" if r["duration_seconds"] is None else f"{r['duration_seconds']:.2f}s"
        table.add_row(
            r["run_id"][:12], r["pipeline"], styled(r["status"]),
            r["created_at"].strftime("%Y-%m-%d %H:%M:%S"), duration, str(r["steps"]),
            str(r["cached"]),
        )  # fmt: skip
    console().print(table)


@click.command("run-show")
@click.argument("run_id")
@RUN_STACK_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def run_show(run_id: str, stack: str | None, as_json: bool) -> None:
    """A run's steps: status, timings, cache hits, artifacts and lineage."""
    from provisioner.render import print_json

    outputs, detail = find_run(run_id, stack)
    with metadata_client(outputs) as client:
        reap(outputs, client)
        detail = client.get_run(detail.id)  # as the reaper left it
        edges = client.lineage(detail.id)
        reasons = cache_reasons(client, detail)
    if as_json:
        data = detail.model_dump(mode="json")
        data["lineage"] = [e.model_dump(mode="json") for e in edges]
        for step in data["steps"]:
            step["cache_reason"] = reasons.get(step["name"], "")
            step["attempts"] = _attempts(step["spec"])
        print_json(data)
        return
    from rich.table import Table

    from provisioner.render import console, styled

    out = console()
    out.print(
        f"[bold]run {detail.id}[/]  {detail.pipeline}  {styled(detail.status.value)}"
        f"  {_duration(detail.started_at, detail.ended_at)}  params {detail.params}"
    )
    if detail.error:
        out.print(f"error: {detail.error}")
    table = Table(box=None, pad_edge=False)
    for col in ("step", "status", "duration", "inputs", "outputs", "cache"):
        table.add_column(col)
    for s in detail.steps:
        ins = [f"{e.name}" for e in edges if e.step_id == s.id and e.direction.value == "input"]
        outs = [
            f"{e.name}={e.artifact_uri.rsplit('/', 2)[-2][:10]}"
            for e in edges
            if e.step_id == s.id and e.direction.value == "output"
        ]
        status = styled(s.status.value)
        if _attempts(s.spec) > 1:
            status += f" ({_attempts(s.spec)} attempts)"
        table.add_row(s.name, status, _duration(s.started_at, s.ended_at),
                      ", ".join(ins), ", ".join(outs), reasons.get(s.name, ""))  # fmt: skip
    out.print(table)


def _attempts(spec: dict[str, Any]) -> int:
    """How many times a step was started (the metadata server counts them; 0: never ran)."""
    return int(spec.get("attempt") or 0)


def cache_reasons(client: MetadataClient, detail: Any) -> dict[str, str]:
    """Step name -> why it was or was not a cache hit, against the pipeline's previous run."""
    from runner.cache import explain

    earlier = [
        r for r in client.list_runs(stack=detail.stack, pipeline=detail.pipeline, limit=50)
        if r.created_at < detail.created_at
    ]  # fmt: skip
    previous = {s.name: s for s in client.get_run(earlier[0].id).steps} if earlier else {}
    reasons: dict[str, str] = {}
    for s in detail.steps:
        info = s.spec.get("cache") or {}
        source = info.get("source_run")
        if s.status.value == "cached":
            reasons[s.name] = f"hit: same key as run {str(source)[:12]}"
        elif s.status.value == "skipped":
            reasons[s.name] = "skipped: an upstream step failed"
        elif info.get("mode", "on") != "on":
            reasons[s.name] = f"miss: cache {info['mode']}"
        else:
            before = previous.get(s.name)
            reasons[s.name] = "miss: " + explain(info, before.spec.get("cache") if before else None)
    return reasons


@click.command()
@STACK_OPTION
@click.option("--all", "show_all", is_flag=True, help="Include stopped and failed ones.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def deployments(stack: str | None, show_all: bool, as_json: bool) -> None:
    """Model endpoints: URL, model version, status."""
    from provisioner.render import print_json
    from runner.deployers import deployer_for

    outputs = stack_outputs(stack)
    with metadata_client(outputs) as client:
        found = client.list_deployments(stack=outputs.stack)
    if not show_all:
        found = [d for d in found if d.status.value in ("starting", "running")]
    deployer = deployer_for(outputs)
    live = {d.id: deployer.describe(d) for d in found}  # e.g. SageMaker's InService
    if as_json:
        print_json([d.model_dump(mode="json") | {"live_status": live[d.id]} for d in found])
        return
    if not found:
        click.echo(f"no deployments on stack {outputs.stack}")
        return
    for d in found:
        status = f"{d.status.value} ({live[d.id]})" if live[d.id] else d.status.value
        click.echo(
            f"{d.id[:12]}  {d.name}  {d.model_name} v{d.model_version}  {status}"
            f"  {d.endpoint_url}/invocations"
        )


@click.command()
@click.argument("deployment")
@STACK_OPTION
def undeploy(deployment: str, stack: str | None) -> None:
    """Stop a model endpoint (by id, id prefix or name)."""
    from runner.deploy import find
    from runner.deployers import deployer_for

    outputs = stack_outputs(stack)
    with metadata_client(outputs) as client:
        found = find(client, outputs.stack, deployment)
        deployer_for(outputs).undeploy(client, found)
    click.echo(f"deployment {found.name} ({found.id[:12]}) stopped")


@click.command()
@click.argument("name", required=False)
@click.option("--no-browser", is_flag=True, help="Print the login URL instead of opening it.")
def ui(name: str | None, no_browser: bool) -> None:
    """Open the stack's dashboard (a one-time login URL; printed when there is no display)."""
    from provisioner.cli_report import report_stack

    outputs = stack_outputs(name)
    report_stack(outputs.stack, outputs)  # the stacks page shows health and spend as of now
    with metadata_client(outputs) as client:
        login = client.login_code()
    url = f"{outputs.metadata.url.rstrip('/')}{login.path}"
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not (no_browser or headless):
        import webbrowser

        if webbrowser.open(url):
            click.echo(f"opened the dashboard of stack {outputs.stack} in your browser")
            return
    click.echo(
        f"dashboard of stack {outputs.stack} (the link works once, for {login.expires_in:.0f} s):"
    )
    click.echo(url)


COMMANDS = [run, runs, run_show, deployments, undeploy, ui]
